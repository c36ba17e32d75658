#!/usr/bin/env python3
"""Validates Kubernetes manifests against the CRD schemas of the releases our docs name.

    validate_crds.py istio|envoy-gateway|envoy-gateway-native FILE.yaml [FILE.yaml ...]

Every document must be of a kind and apiVersion that each release set below serves, and match
that version's `openAPIV3Schema` (tests/platforms/crds/, see SOURCES.md there) as the API server
would check it with strict field validation (kubectl's default): an unknown field is an error,
as are a wrong type, a value outside an enum, a missing required field. What is not checked:
CEL rules (`x-kubernetes-validations`), which need a CEL evaluator. Prints one line per problem
and exits 1 if there is any.
"""

import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crds")

# The releases each platform's docs name: the minimum and the newest validated. Envoy Gateway
# is checked with the Gateway API CRDs it ships (v1.6.0 bundles Gateway API v1.4.0, v1.9.0
# bundles v1.6.1), standard channel.
RELEASES = {
    "envoy-gateway": [["gateway-api-v1.4.0", "envoy-gateway-v1.6.0"],
                      ["gateway-api-v1.6.1", "envoy-gateway-v1.9.0"]],
    "istio": [["istio-1.28.0"], ["istio-1.30.0"]],
    # deploy/envoy-gateway/native/: dynamic modules, which Envoy Gateway serves since v1.8.0
    # (same fields in v1.8.0 and v1.9.0); checked against v1.9.0, the release vendored here.
    # Its manifests are of Envoy Gateway's own kinds only.
    "envoy-gateway-native": [["envoy-gateway-v1.9.0"]],
}

# Built-in kinds: no CRD; checked for shape only.
CORE = {("v1", "ConfigMap"), ("v1", "Secret")}


def to_json_schema(node):
    """A structural OpenAPI v3 schema as JSON Schema, strict about unknown fields."""
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def schema_for(release: str, api_version: str, kind: str):
    group, _, version = api_version.rpartition("/")
    path = os.path.join(HERE, release, f"{group}_{kind}_{version}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        schema = json.load(f)
    # The API server takes these of every object, whether the CRD lists them or not (Istio's
    # do not).
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})
    return to_json_schema(schema)


def check(platform: str, files: list[str]) -> list[str]:
    problems = []
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            where = f"{os.path.basename(path)}: {kind} {doc.get('metadata', {}).get('name')}"
            if (api_version, kind) in CORE:
                for field in ("data", "stringData"):
                    if not all(isinstance(v, str) for v in doc.get(field, {}).values()):
                        problems.append(f"{where}: {field} values must be strings")
                continue
            for releases in RELEASES[platform]:
                schema = next((s for s in (schema_for(r, api_version, kind) for r in releases)
                               if s is not None), None)
                if schema is None:
                    problems.append(f"{where}: {api_version} {kind} is not served by "
                                    f"{' + '.join(releases)}")
                    continue
                validator = jsonschema.Draft7Validator(schema)
                for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                    field = ".".join(str(p) for p in error.absolute_path) or "(document)"
                    problems.append(f"{where}: {' + '.join(releases)}: {field}: "
                                    f"{error.message}")
    return problems


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in RELEASES:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(sys.argv[1], sys.argv[2:])
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
