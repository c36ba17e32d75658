"""Envoy Gateway's JSONPath extension to RFC 6902 patches, for the fixture builder.

An EnvoyPatchPolicy operation may carry `jsonPath` as well as `path`: Envoy Gateway evaluates
the JSONPath on the resource (with the ohler55/ojg `jp` package), turns each location it finds
into an RFC 6901 JSON pointer, appends `path` to it, and applies the operation once per pointer
(envoyproxy/gateway v1.9.0, internal/utils/jsonpatch/patch.go `ApplyJSONPatches` and
jsonpathtopointer.go `ConvertPathToPointers`). No location at all is an error for that
operation. The operations themselves are applied with `jsonpatch` (PyPI), an RFC 6902
implementation, with the option Envoy Gateway sets, `EnsurePathExistsOnAdd`: an `add` creates
the missing parents of its target.

The JSONPath subset read here is what ojg accepts and our manifests use: `$`, `.name`, `..name`
(the node and all its descendants), `[n]`, `[*]`, `['name']`, and filters
`[?(@.a.b == 'text')]`, `[?(@.a =~ /regex/)]`. Anything else is an error, never a silent miss.
"""

import re

import jsonpatch
import jsonpointer

# A location is a list of object keys (str) and array indices (int).


def _tokens(expr: str) -> list[tuple]:
    out, i = [], 0
    if expr.startswith("$"):
        i = 1
    while i < len(expr):
        if expr.startswith("..", i):
            i += 2
            out.append(("descend",))
            m = re.match(r"[A-Za-z0-9_\-]+|\*", expr[i:])
            if m:
                out.append(("child", m.group(0)))
                i += len(m.group(0))
            continue
        if expr[i] == ".":
            m = re.match(r"[A-Za-z0-9_\-]+|\*", expr[i + 1:])
            if not m:
                raise ValueError(f"jsonPath {expr!r}: no name after '.' at {i}")
            out.append(("child", m.group(0)))
            i += 1 + len(m.group(0))
            continue
        if expr.startswith("[?(", i):
            end = _filter_end(expr, i)
            out.append(("filter", _parse_filter(expr[i + 3:end])))
            i = end + 2
            continue
        if expr[i] == "[":
            end = expr.index("]", i)
            inner = expr[i + 1:end].strip()
            if inner == "*":
                out.append(("child", "*"))
            elif re.fullmatch(r"-?\d+", inner):
                out.append(("nth", int(inner)))
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                out.append(("child", inner[1:-1]))
            else:
                raise ValueError(f"jsonPath {expr!r}: cannot read [{inner}]")
            i = end + 1
            continue
        if i == 0:
            m = re.match(r"[A-Za-z0-9_\-]+", expr)
            if m:
                out.append(("child", m.group(0)))
                i = len(m.group(0))
                continue
        raise ValueError(f"jsonPath {expr!r}: unexpected {expr[i]!r} at {i}")
    return out


def _filter_end(expr: str, start: int) -> int:
    """Index of the `)` that closes the filter opened at `start` (`[?(`), skipping quoted
    strings and /regex/ literals."""
    i, quote = start + 3, None
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"/":
            quote = c
        elif c == ")" and expr.startswith(")]", i):
            return i
        i += 1
    raise ValueError(f"jsonPath {expr!r}: unclosed filter")


def _parse_filter(text: str):
    m = re.fullmatch(r"\s*@((?:\.[A-Za-z0-9_\-]+)+)\s*(==|!=|=~)\s*(.+?)\s*", text)
    if not m:
        raise ValueError(f"jsonPath filter {text!r}: only @.field ==|!=|=~ value is read")
    fields = m.group(1)[1:].split(".")
    op, raw = m.group(2), m.group(3)
    if op == "=~":
        if not (len(raw) >= 2 and raw[0] == "/" and raw[-1] == "/"):
            raise ValueError(f"jsonPath filter {text!r}: =~ needs a /regex/")
        return fields, op, re.compile(raw[1:-1])
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return fields, op, raw[1:-1]
    raise ValueError(f"jsonPath filter {text!r}: compare with a quoted string")


def _children(node, loc):
    if isinstance(node, dict):
        for k, v in node.items():
            yield loc + [k], v
    elif isinstance(node, list):
        for n, v in enumerate(node):
            yield loc + [n], v


def _descendants(node, loc):
    yield loc, node
    for child_loc, child in _children(node, loc):
        yield from _descendants(child, child_loc)


def _holds(node, predicate) -> bool:
    fields, op, want = predicate
    for f in fields:
        if not isinstance(node, dict) or f not in node:
            return False
        node = node[f]
    if op == "=~":
        # ojg matches a regex against strings only.
        return isinstance(node, str) and want.search(node) is not None
    equal = isinstance(node, str) and node == want
    return equal if op == "==" else not equal


def locate(document, expr: str) -> list[list]:
    """Every location in `document` that `expr` selects, in document order."""
    tokens = _tokens(expr)
    if not tokens:
        # Envoy Gateway refuses a bare `$` (ConvertPathToPointers).
        raise ValueError("jsonPath '$' alone is not allowed")
    current = [([], document)]
    descend = False
    for tok in tokens:
        if tok[0] == "descend":
            descend = True
            continue
        nodes = current
        if descend:
            nodes = [d for loc, node in current for d in _descendants(node, loc)]
            descend = False
        nxt = []
        for loc, node in nodes:
            if tok[0] == "child":
                if tok[1] == "*":
                    nxt.extend(_children(node, loc))
                elif isinstance(node, dict) and tok[1] in node:
                    nxt.append((loc + [tok[1]], node[tok[1]]))
            elif tok[0] == "nth":
                if isinstance(node, list) and -len(node) <= tok[1] < len(node):
                    n = tok[1] % len(node)
                    nxt.append((loc + [n], node[n]))
            elif tok[0] == "filter":
                nxt.extend((cl, c) for cl, c in _children(node, loc) if _holds(c, tok[1]))
        current = nxt
    return [loc for loc, _ in current]


def pointer(loc: list) -> str:
    """The RFC 6901 pointer of a location (`~` and `/` escaped)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def _ensure_parents(document, target: str) -> None:
    parts = jsonpointer.JsonPointer(target).parts
    node = document
    for n, part in enumerate(parts[:-1]):
        nxt = parts[n + 1]
        if isinstance(node, dict):
            if part not in node:
                node[part] = [] if nxt == "-" or nxt.isdigit() else {}
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return  # let the patch itself report the bad path


def apply_operation(document, operation: dict):
    """Applies one EnvoyPatchPolicy / EnvoyProxy bootstrap operation (`op`, `path`, optional
    `jsonPath`, `from`, `value`) the way Envoy Gateway does; returns the new document."""
    if operation.get("jsonPath"):
        locations = locate(document, operation["jsonPath"])
        if not locations:
            raise ValueError(f"no jsonPointers were found while evaluating the jsonPath: "
                             f"{operation['jsonPath']!r}")
        suffix = operation.get("path") or ""
        targets = [pointer(loc).rstrip("/") + ("/" + suffix.lstrip("/") if suffix else "")
                   for loc in locations]
    else:
        targets = [operation["path"]]
    for target in targets:
        op = {"op": operation["op"], "path": target}
        for key in ("from", "value"):
            if key in operation:
                op[key] = operation[key]
        if op["op"] == "add":
            _ensure_parents(document, target)
        document = jsonpatch.apply_patch(document, [op])
    return document
