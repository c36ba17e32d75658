"""The Envoy configuration Envoy Gateway generates for deploy/envoy-gateway/ (fixture builder;
generate.py)."""

import copy
import hashlib
import json
import os
import sys

import jsonpath
from common import (PLACEHOLDER_SHA256, ROUTER, TLS_TYPE, WASM_FILTER_TYPE, Args, bootstrap,
                    ca_secret, endpoint, listener, manifests, of_kind, one, static_cluster)

# ---------------------------------------------------------------------------------------------
# Envoy Gateway (rules from envoyproxy/gateway v1.9.0; the same names since v1.6.0)
# ---------------------------------------------------------------------------------------------

def eg_route_rank(route: dict) -> tuple:
    """Gateway API precedence as Envoy Gateway sorts routes (internal/gatewayapi/sort.go):
    Exact > RegularExpression > PathPrefix, longer paths first, then more header matches."""
    match = route["match"]
    kind = 2 if "path" in match else 1 if "safe_regex" in match else 0
    path = match.get("path") or match.get("prefix") or ""
    return (-kind, -len(path), -len(match.get("headers", [])))


def envoy_gateway(args: Args) -> tuple[dict, list[str]]:
    docs = manifests("envoy-gateway")
    gateway = one(docs, "Gateway")
    gw_ns, gw_name = gateway["metadata"]["namespace"], gateway["metadata"]["name"]
    # Policies attach by targetRef(s) in their own namespace, routes by parentRefs
    # (Gateway API; internal/gatewayapi/envoyextensionpolicy.go, envoypatchpolicy.go, route.go):
    # one that names another Gateway changes nothing here.
    def names_gateway(obj: dict, refs: list[dict]) -> bool:
        return obj["metadata"]["namespace"] == gw_ns and any(
            r.get("kind", "Gateway") == "Gateway" and r["name"] == gw_name for r in refs)
    for obj in of_kind(docs, "EnvoyExtensionPolicy"):
        if not names_gateway(obj, obj["spec"].get("targetRefs", [])):
            sys.exit(f"generate: EnvoyExtensionPolicy {obj['metadata']['name']} does not "
                     f"target Gateway {gw_ns}/{gw_name}: Posturio is not loaded")
    for obj in of_kind(docs, "EnvoyPatchPolicy"):
        if not names_gateway(obj, [obj["spec"]["targetRef"]]):
            sys.exit(f"generate: EnvoyPatchPolicy {obj['metadata']['name']} does not target "
                     f"Gateway {gw_ns}/{gw_name}: it is not applied")
    for obj in of_kind(docs, "HTTPRoute"):
        if not names_gateway(obj, obj["spec"].get("parentRefs", [])):
            sys.exit(f"generate: HTTPRoute {obj['metadata']['name']} is not attached to "
                     f"Gateway {gw_ns}/{gw_name}")
    gw_listener = gateway["spec"]["listeners"][0]
    # IR and xDS listener name `<ns>/<gateway>/<listener>` (internal/gatewayapi/helpers.go
    # irListenerName; internal/xds/translator/listener.go xdsListenerName with the default name
    # scheme); route configuration of the same name (routeConfigName), virtual host
    # `<listener>/<host with dots as _>`, `*` for no hostname (translator.go virtualHostName).
    listener_name = f"{gw_ns}/{gw_name}/{gw_listener['name']}"
    # Ports below 1024 are shifted by 10000 in the proxy (internal/gatewayapi/listener.go).
    container_port = gw_listener["port"] + 10000 if gw_listener["port"] < 1024 else \
        gw_listener["port"]

    backends = {b["metadata"]["name"]: b for b in of_kind(docs, "Backend")}
    tls_policies = {ref["name"]: t for t in of_kind(docs, "BackendTLSPolicy")
                    for ref in t["spec"]["targetRefs"]}
    for t in of_kind(docs, "BackendTLSPolicy"):
        if t["apiVersion"] != "gateway.networking.k8s.io/v1":
            sys.exit(f"generate: BackendTLSPolicy {t['metadata']['name']} is {t['apiVersion']}; "
                     "the standard Gateway API CRDs (>= 1.4) serve only v1")
    route_filters = {f["metadata"]["name"]: f for f in of_kind(docs, "HTTPRouteFilter")}

    wasm_names = []
    http_filters = []
    eeps = [(eep, idx, wasm) for eep in of_kind(docs, "EnvoyExtensionPolicy")
            for idx, wasm in enumerate(eep["spec"].get("wasm", []))]
    for eep, idx, wasm in eeps:
        # IR name `envoyextensionpolicy/<ns>/<name>/wasm/<index>` (internal/gatewayapi/
        # envoyextensionpolicy.go irConfigNameForWasm); filter name
        # `envoy.filters.http.wasm/<IR name>`, added disabled to the listener's HCM
        # (internal/xds/translator/wasm.go buildHCMWasmFilter, wasmConfig).
        ir_name = f"envoyextensionpolicy/{eep['metadata']['namespace']}/" \
                  f"{eep['metadata']['name']}/wasm/{idx}"
        filter_name = f"envoy.filters.http.wasm/{ir_name}"
        wasm_names.append(filter_name)
        plugin = {
            "name": wasm.get("name", ir_name),
            "vm_config": {"vm_id": ir_name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": args.module}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(policy_of(wasm, args),
                                                  separators=(",", ":"))},
            "fail_open": bool(wasm.get("failOpen", False)),
        }
        if "rootID" in wasm:
            plugin["root_id"] = wasm["rootID"]
        http_filters.append({"name": filter_name, "disabled": True,
                             "typed_config": {"@type": WASM_FILTER_TYPE, "config": plugin}})
    http_filters.append(ROUTER)

    routes, clusters = [], []
    for route in of_kind(docs, "HTTPRoute"):
        ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
        for r_idx, rule in enumerate(route["spec"]["rules"]):
            # Cluster per rule `httproute/<ns>/<name>/rule/<n>` (helpers.go
            # irRouteDestinationName); route `.../rule/<n>/match/<m>/<host>`.
            cluster_name = f"httproute/{ns}/{name}/rule/{r_idx}"
            action = None
            host_rewrite = None
            remove_headers = []
            auto_host = False
            for flt in rule.get("filters", []):
                if flt["type"] == "ExtensionRef" and flt["extensionRef"]["kind"] == \
                        "HTTPRouteFilter" and "urlRewrite" in \
                        route_filters[flt["extensionRef"]["name"]]["spec"]:
                    # route.go: an HTTPRouteFilter hostname of type Backend is
                    # auto_host_rewrite (the picked endpoint's hostname).
                    rewrite = route_filters[flt["extensionRef"]["name"]]["spec"]["urlRewrite"]
                    if rewrite.get("hostname", {}).get("type") != "Backend":
                        sys.exit("generate: only an HTTPRouteFilter hostname of type Backend "
                                 "is implemented here")
                    auto_host = True
                elif flt["type"] == "URLRewrite" and flt["urlRewrite"].get("hostname"):
                    # route.go: URLRewrite hostname -> host_rewrite_literal. Nothing else
                    # rewrites Host.
                    host_rewrite = flt["urlRewrite"]["hostname"]
                elif flt["type"] == "RequestHeaderModifier":
                    # route.go: removals become the route's request_headers_to_remove,
                    # applied by the router after the route was chosen.
                    remove_headers.extend(flt["requestHeaderModifier"].get("remove", []))
                elif flt["type"] == "ExtensionRef" and \
                        flt["extensionRef"]["kind"] == "HTTPRouteFilter":
                    direct = route_filters[flt["extensionRef"]["name"]]["spec"]["directResponse"]
                    # route.go buildXdsDirectResponseAction; content type as a response
                    # header.
                    action = ("direct_response", {"status": direct.get("statusCode", 200),
                              "body": {"inline_string": direct["body"]["inline"]}},
                              direct.get("contentType"))
            refs = rule.get("backendRefs", [])
            if action is None and len(refs) > 1:
                pool = pool_cluster(cluster_name, refs, backends, tls_policies, args)
                breakers = circuit_breakers(docs, route)
                if breakers:
                    pool["circuit_breakers"] = breakers
                clusters.append(pool)
                route_action = {"cluster": cluster_name}
                if auto_host:
                    route_action["auto_host_rewrite"] = True
                if rule.get("timeouts", {}).get("request"):
                    route_action["timeout"] = rule["timeouts"]["request"]
                retry = retry_policy(docs, route)
                if retry:
                    route_action["retry_policy"] = retry
                action = ("route", route_action, None)
            if action is None:
                if len(refs) != 1 or refs[0].get("kind") != "Backend":
                    sys.exit(f"generate: rule {r_idx} of HTTPRoute {name}: one Backend expected")
                backend = backends[refs[0]["name"]]
                fqdn = backend["spec"]["endpoints"][0]["fqdn"]
                policy = tls_policies.get(refs[0]["name"])
                tls = None
                if policy is not None:
                    hostname = policy["spec"]["validation"]["hostname"]
                    # translator.go buildXdsUpstreamTLSSocketWthCert / buildValidationContext:
                    # SNI = hostname, and with no subjectAltNames the hostname is the SAN;
                    # the system CA from SDS `system_ca_certificates`.
                    tls = {"sni": hostname, "common_tls_context": {"combined_validation_context": {
                        "default_validation_context": {"match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": hostname}}]},
                        "validation_context_sds_secret_config": {
                            "name": "system_ca_certificates"}}}}
                clusters.append(static_cluster(cluster_name, fqdn["hostname"], args, tls))
                route_action = {"cluster": cluster_name}
                if host_rewrite:
                    route_action["host_rewrite_literal"] = host_rewrite
                if rule.get("timeouts", {}).get("request"):
                    route_action["timeout"] = rule["timeouts"]["request"]
                action = ("route", route_action, None)
            for m_idx, match in enumerate(rule.get("matches", [{}])):
                path = match.get("path", {"type": "PathPrefix", "value": "/"})
                env_match = {"prefix": path["value"]} if path["type"] == "PathPrefix" else \
                    {"path": path["value"]}
                headers = [{"name": h["name"], "string_match": {"exact": h["value"]}}
                           for h in match.get("headers", [])]
                if headers:
                    env_match["headers"] = headers
                xds_route = {"name": f"httproute/{ns}/{name}/rule/{r_idx}/match/{m_idx}/*",
                             "match": env_match, action[0]: action[1]}
                if remove_headers:
                    xds_route["request_headers_to_remove"] = list(remove_headers)
                if action[2]:
                    xds_route["response_headers_to_add"] = [{"header": {
                        "key": "content-type", "value": action[2]},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
                # wasm.go patchRoute: every route the policy covers enables the filter with
                # an empty FilterConfig (the EnvoyExtensionPolicy targets the Gateway).
                xds_route["typed_per_filter_config"] = {
                    f: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                        "config": {}} for f in wasm_names}
                routes.append(xds_route)
    routes.sort(key=eg_route_rank)

    hcm = {
        "stat_prefix": f"http-{container_port}",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "route_config": {"name": listener_name, "virtual_hosts": [
            {"name": f"{listener_name}/*", "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters,
    }
    lst = listener(listener_name, args, hcm)

    # EnvoyPatchPolicy: JSONPatch on the xDS resource of that type and name, rendered as JSON
    # with proto field names (internal/xds/translator/jsonpatch.go, jsonMarshalOpts
    # UseProtoNames).
    for epp in of_kind(docs, "EnvoyPatchPolicy"):
        for patch in epp["spec"]["jsonPatches"]:
            if patch["type"] == "type.googleapis.com/envoy.config.cluster.v3.Cluster":
                clusters = patch_cluster(clusters, patch, docs, args)
                continue
            if patch["type"] != "type.googleapis.com/envoy.config.listener.v3.Listener":
                sys.exit(f"generate: EnvoyPatchPolicy on {patch['type']} not implemented here")
            if patch["name"] != lst["name"]:
                sys.exit(f"generate: EnvoyPatchPolicy names listener {patch['name']}; Envoy "
                         f"Gateway generates {lst['name']}: the patch finds nothing")
            lst = jsonpath.apply_operation(lst, patch["operation"])

    # The default bootstrap's stats_config (internal/xds/bootstrap/bootstrap.yaml.tpl), then
    # the EnvoyProxy's bootstrap JSONPatch (internal/xds/bootstrap/util.go jsonPatchBootstrap,
    # the same ApplyJSONPatches).
    boot = bootstrap(args, {
        "use_all_default_tags": True,
        "stats_tags": [
            {"regex": r"\.zone(\.(([^\.]+)\.))", "tag_name": "from_zone"},
            {"regex": r"\.zone\.[^\.]+\.(([^\.]+)\.)", "tag_name": "to_zone"},
            {"regex": r"^cluster(\..+\.(.+))\.total_match_count$",
             "tag_name": "socket_match_name"},
            {"regex": r"circuit_breakers\.((.+?)\.).+", "tag_name": "priority"},
        ]}, lst, clusters, [ca_secret("system_ca_certificates", args)])
    ref = gateway["spec"].get("infrastructure", {}).get("parametersRef")
    if ref and ref["kind"] == "EnvoyProxy":
        proxy = one(docs, "EnvoyProxy", ref["name"])
        bs = proxy["spec"].get("bootstrap", {})
        if bs.get("type") != "JSONPatch":
            sys.exit("generate: only a JSONPatch bootstrap is implemented here")
        for op in bs["jsonPatches"]:
            boot = jsonpath.apply_operation(boot, op)
    # Envoy Gateway starts the proxy with `--service-cluster <gateway> --service-node <pod>`
    # (internal/infrastructure/common/proxy_args.go); SDS from files needs a node.
    return boot, ["--service-cluster", f"{gw_ns}/{gw_name}", "--service-node", "envoy-0"]


def policy_of(wasm: dict, args: Args) -> dict:
    """The Wasm filter's configuration, or with --policy the policy file in its place (what
    `posturio render` writes into the EnvoyExtensionPolicy when its marker names that file)."""
    if args.policy and wasm.get("name") == "posturio":
        with open(args.policy) as f:
            return json.load(f)
    return wasm.get("config", {})


def pool_cluster(name: str, refs: list[dict], backends: dict, tls_policies: dict,
                 args: Args) -> dict:
    """A rule with several Backend refs of one address type and no backendRef filters: ONE
    cluster with a locality per backendRef, region `<cluster>/backend/<n>`, weight from the
    ref, priority 1 for a `fallback: true` Backend, TLS per locality by transport socket match
    (`<cluster>/tls/<n>`), an empty TLS socket for the cluster and HttpProtocolOptions with
    auto config (internal/xds/translator/cluster.go buildXdsClusterLoadAssignment,
    buildWeightedLocalities, buildTypedExtensionProtocolOptions; internal/gatewayapi/route.go,
    helpers.go; the shape of testdata/out/xds-ir/backend-priority.clusters.yaml). DNS
    endpoints resolve to --endpoint (generate.py)."""
    localities, matches = [], []
    for index, ref in enumerate(refs):
        if ref.get("kind") != "Backend" or ref.get("filters"):
            sys.exit(f"generate: {name}: only Backend refs without filters are implemented")
        backend = backends[ref["name"]]
        host = backend["spec"]["endpoints"][0]["fqdn"]["hostname"]
        match_name = f"{name}/tls/{index}"
        lb = endpoint(args, host)
        lb["load_balancing_weight"] = 1
        lb["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": {
            "name": match_name}}}
        locality = {"locality": {"region": f"{name}/backend/{index}"},
                    "load_balancing_weight": ref.get("weight", 1), "lb_endpoints": [lb]}
        if backend["spec"].get("fallback"):
            locality["priority"] = 1
        localities.append(locality)
        hostname = tls_policies[ref["name"]]["spec"]["validation"]["hostname"]
        matches.append({"name": match_name, "match": {"name": match_name}, "transport_socket": {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_TYPE, "sni": hostname, "common_tls_context": {
                    "combined_validation_context": {
                        "default_validation_context": {"match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": hostname}}]},
                        "validation_context_sds_secret_config": {
                            "name": "system_ca_certificates"}}}}}})
    return {
        "name": name, "type": "STATIC", "connect_timeout": "10s",
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "load_assignment": {"cluster_name": name, "endpoints": localities},
        "transport_socket": {"name": "dummy.transport_socket", "typed_config": {
            "@type": TLS_TYPE, "common_tls_context": {}}},
        "transport_socket_matches": matches,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "auto_config": {"http_protocol_options": {}}}},
    }


def circuit_breakers(docs: list[dict], route: dict) -> dict | None:
    """A BackendTrafficPolicy's circuitBreaker on the HTTPRoute it targets, as the cluster's
    DEFAULT thresholds, each field 1024 unless given (internal/xds/translator/cluster.go
    buildXdsClusterCircuitBreaker; the CRD's defaults)."""
    for btp in of_kind(docs, "BackendTrafficPolicy"):
        if not any(t["kind"] == "HTTPRoute" and t["name"] == route["metadata"]["name"]
                   for t in btp["spec"]["targetRefs"]):
            continue
        breaker = btp["spec"].get("circuitBreaker")
        if breaker is None:
            continue
        return {"thresholds": [{
            "priority": "DEFAULT",
            "max_connections": breaker.get("maxConnections", 1024),
            "max_pending_requests": breaker.get("maxPendingRequests", 1024),
            "max_requests": breaker.get("maxParallelRequests", 1024),
            "max_retries": breaker.get("maxParallelRetries", 1024),
        }]}
    return None


def retry_policy(docs: list[dict], route: dict) -> dict | None:
    """A BackendTrafficPolicy's retry on the HTTPRoute it targets (internal/xds/translator/
    route.go buildRetryPolicy: previous_hosts, 5 host selection attempts, previous_priorities
    from numAttemptsPerPriority)."""
    for btp in of_kind(docs, "BackendTrafficPolicy"):
        if not any(t["kind"] == "HTTPRoute" and t["name"] == route["metadata"]["name"]
                   for t in btp["spec"]["targetRefs"]):
            continue
        retry = btp["spec"].get("retry")
        if not retry:
            continue
        policy = {
            "retry_on": ",".join(retry["retryOn"]["triggers"]),
            "retriable_status_codes": retry["retryOn"].get("httpStatusCodes", []),
            "num_retries": retry.get("numRetries", 2),
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                          "previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 5,
        }
        if retry.get("numAttemptsPerPriority"):
            policy["retry_priority"] = {
                "name": "envoy.retry_priorities.previous_priorities",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry."
                                          "priority.previous_priorities.v3."
                                          "PreviousPrioritiesConfig",
                                 "update_frequency": retry["numAttemptsPerPriority"]}}
        if retry.get("perRetry", {}).get("timeout"):
            policy["per_try_timeout"] = retry["perRetry"]["timeout"]
        return policy
    return None


def patch_cluster(clusters: list[dict], patch: dict, docs: list[dict], args: Args) -> list[dict]:
    """An EnvoyPatchPolicy operation on a Cluster (internal/xds/translator/jsonpatch.go: `add`
    with no path adds the value as a whole cluster; otherwise JSONPatch on the named one), with
    the generator's substitutions on what it adds: DNS names resolve to --endpoint, the proxy
    image's CA file is --ca, the provider key files mounted at /etc/posturio/keys are written
    from their Secret, and a placeholder module digest becomes the module's."""
    op = copy.deepcopy(patch["operation"])
    keys = os.path.join(args.out, "keys")
    os.makedirs(keys, exist_ok=True)
    for secret in of_kind(docs, "Secret"):
        for name, text in secret.get("stringData", {}).items():
            with open(os.path.join(keys, name), "w") as f:
                f.write(text)
    with open(args.module, "rb") as m:
        digest = hashlib.sha256(m.read()).hexdigest()
    text = json.dumps(op).replace("/etc/posturio/keys/", keys + "/") \
        .replace("/etc/ssl/certs/ca-certificates.crt", args.ca) \
        .replace(PLACEHOLDER_SHA256, digest)
    op = json.loads(text)
    if op["op"] == "add" and not op.get("path") and not op.get("jsonPath"):
        cluster = op["value"]
        if cluster.get("type") == "STRICT_DNS":
            cluster["type"] = "STATIC"
            cluster.pop("dns_lookup_family", None)
            for locality in cluster["load_assignment"]["endpoints"]:
                for lb in locality["lb_endpoints"]:
                    address = lb["endpoint"]["address"]["socket_address"]
                    resolved = endpoint(args, address["address"])
                    lb["endpoint"]["address"] = resolved["endpoint"]["address"]
        return clusters + [cluster]
    at = next((n for n, c in enumerate(clusters) if c["name"] == patch["name"]), None)
    if at is None:
        sys.exit(f"generate: EnvoyPatchPolicy names cluster {patch['name']}, which Envoy "
                 "Gateway does not generate: the patch finds nothing")
    out = list(clusters)
    out[at] = jsonpath.apply_operation(clusters[at], op)
    return out
