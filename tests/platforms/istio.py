"""The Envoy configuration istiod generates for deploy/istio/ (fixture builder; generate.py)."""

import copy
import hashlib
import json
import os
import sys

from common import (PLACEHOLDER_SHA256, ROUTER, WASM_FILTER_TYPE, Args, bootstrap, ca_secret,
                    hcm_of, listener, manifests, of_kind, static_cluster)

# ---------------------------------------------------------------------------------------------
# Istio (rules from istio/istio 1.28.0, the minimum the docs name; from 1.30 a WasmPlugin is
# first translated into a TrafficExtension and its ECDS resource named after that, which no
# test depends on)
# ---------------------------------------------------------------------------------------------

# Proto merge, as Istio's EnvoyFilter MERGE does it (pilot/pkg/networking/core/envoyfilter/
# rc_patch.go `merge.Merge(route, value)`; pkg/proto/merge is proto.Merge with Duration replaced
# whole): message fields merge field by field, repeated fields are appended, scalars (and
# durations, strings in JSON) replaced, and setting one member of a oneof clears the others. The oneofs of the messages our patches touch (envoy/config/route/v3/
# route_components.proto):
ONEOFS = [
    {"route", "redirect", "direct_response", "filter_action", "non_forwarding_action"},
    {"cluster", "cluster_header", "weighted_clusters", "cluster_specifier_plugin",
     "inline_cluster_specifier_plugin"},
    {"host_rewrite_literal", "auto_host_rewrite", "host_rewrite_header",
     "host_rewrite_path_regex"},
]


def proto_merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        for group in ONEOFS:
            if key in group:
                for other in group - {key}:
                    dst.pop(other, None)
        if isinstance(value, dict) and isinstance(dst.get(key), dict) and "@type" not in value:
            proto_merge(dst[key], value)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key].extend(copy.deepcopy(value))
        else:
            dst[key] = copy.deepcopy(value)


def istio_cluster(host: str, port: int, docs: list[dict], args: Args) -> dict:
    """`outbound|<port>||<host>` for a ServiceEntry host (pilot/pkg/model/service.go
    BuildSubsetKey), with TLS originated as its DestinationRule says
    (pilot/pkg/networking/core/cluster_tls.go constructUpstreamTLS, SIMPLE mode): SNI from
    `sni`, SANs from `subjectAltNames`, the CA from SDS `file-root:system` when the rule names
    no caCertificates."""
    name = f"outbound|{port}||{host}"
    entries = [s for s in of_kind(docs, "ServiceEntry") if host in s["spec"]["hosts"]
               and any(p["number"] == port for p in s["spec"]["ports"])
               and visible_from(s, GATEWAY_NAMESPACE)]
    if not entries:
        sys.exit(f"generate: Istio has no cluster {name}: no ServiceEntry for {host} port "
                 f"{port} visible in {GATEWAY_NAMESPACE}")
    rules = [d for d in of_kind(docs, "DestinationRule") if d["spec"]["host"] == host
             and visible_from(d, GATEWAY_NAMESPACE)]
    tls = None
    if rules:
        setting = rules[0]["spec"].get("trafficPolicy", {}).get("tls", {})
        if setting.get("mode") == "SIMPLE":
            root = "file-root:" + setting.get("caCertificates", "system")
            tls = {"common_tls_context": {"combined_validation_context": {
                "default_validation_context": {"match_subject_alt_names": [
                    {"exact": san} for san in setting.get("subjectAltNames", [])]},
                "validation_context_sds_secret_config": {"name": root}}}}
            if setting.get("sni"):
                tls["sni"] = setting["sni"]
    return static_cluster(name, host, args, tls)


def istio_gateway_server(docs: list[dict], virtual_service: dict) -> tuple[dict, dict]:
    """The Gateway a VirtualService names, resolved as Istio does: `gateways` entries are
    `<namespace>/<name>` or a bare name in the VirtualService's namespace
    (pilot/pkg/model/virtualservice.go resolveGatewayName)."""
    ns = virtual_service["metadata"]["namespace"]
    for ref in virtual_service["spec"].get("gateways", []):
        gw_ns, _, gw_name = ref.rpartition("/")
        gw_ns = gw_ns or ns
        for gw in of_kind(docs, "Gateway"):
            if (gw["metadata"]["name"], gw["metadata"].get("namespace")) == (gw_name, gw_ns):
                return gw, gw["spec"]["servers"][0]
    sys.exit(f"generate: VirtualService {virtual_service['metadata']['name']} names gateways "
             f"{virtual_service['spec'].get('gateways')} and deploy/istio ships none of them: "
             "the gateway gets no route")


# The gateway is installed with Istio's `gateway` Helm chart as this release, in this namespace
# (docs/istio.md).
HELM_RELEASE = "istio-ingress"
GATEWAY_NAMESPACE = "istio-ingress"


def visible_from(config: dict, namespace: str) -> bool:
    """`exportTo` (pilot/pkg/model/push_context.go): `.` is the object's own namespace, `*`
    every namespace; no exportTo means every namespace (the mesh default)."""
    export = config["spec"].get("exportTo", ["*"])
    return "*" in export or namespace in export or \
        ("." in export and config["metadata"]["namespace"] == namespace)


def gateway_pod_labels(release: str) -> dict:
    """The labels the gateway chart puts on its pods: `app: <release>` and `istio: <release
    without its "istio-" prefix>` (manifests/charts/gateway/templates/_helpers.tpl
    gateway.selectorLabels, Istio 1.28.0)."""
    return {"app": release, "istio": release.removeprefix("istio-")}


def selects_pods(selector: dict, what: str) -> None:
    """A selector picks the gateway pods when its labels are a subset of theirs."""
    pods = gateway_pod_labels(HELM_RELEASE)
    if not selector or any(pods.get(k) != v for k, v in selector.items()):
        sys.exit(f"generate: {what} selects {selector}, but the pods of Helm release "
                 f"{HELM_RELEASE} carry {pods}: it applies to nothing")


def apply_envoyfilter(ef: dict, gateway: dict, lst: dict, route_config: dict,
                      added_clusters: list[dict]) -> None:
    """Applies an EnvoyFilter's GATEWAY patches to the gateway's listener and routes
    (pilot/pkg/networking/core/envoyfilter/listener_patch.go for HTTP_FILTER INSERT_BEFORE:
    the value goes before the first filter matching `subFilter.name`; rc_patch.go for
    HTTP_ROUTE MERGE: proto.Merge into every route whose name matches, and HTTP_ROUTE
    INSERT_BEFORE: the value goes before the route whose name matches; cluster_patch.go
    InsertedClusters for CLUSTER ADD: the value is added as it is, collected in
    `added_clusters`)."""
    selects_pods(ef["spec"].get("workloadSelector", {}).get("labels", {}),
                 f"EnvoyFilter {ef['metadata']['name']}")
    for patch in ef["spec"]["configPatches"]:
        match, op = patch.get("match", {}), patch["patch"]["operation"]
        if match.get("context") not in (None, "ANY", "GATEWAY"):
            continue
        if patch["applyTo"] == "HTTP_FILTER" and op == "INSERT_BEFORE":
            sub = match["listener"]["filterChain"]["filter"]["subFilter"]["name"]
            filters = hcm_of(lst)["http_filters"]
            at = next((n for n, f in enumerate(filters) if f["name"] == sub), None)
            if at is None:
                sys.exit(f"generate: INSERT_BEFORE {sub}: no such filter")
            filters.insert(at, copy.deepcopy(patch["patch"]["value"]))
        elif patch["applyTo"] == "HTTP_ROUTE" and op == "MERGE":
            want = match["routeConfiguration"]["vhost"]["route"]["name"]
            hits = [r for vh in route_config["virtual_hosts"] for r in vh["routes"]
                    if r.get("name") == want]
            if not hits:
                sys.exit(f"generate: HTTP_ROUTE MERGE: no route named {want}")
            for route in hits:
                proto_merge(route, patch["patch"]["value"])
        elif patch["applyTo"] == "HTTP_ROUTE" and op == "INSERT_BEFORE":
            want = match["routeConfiguration"]["vhost"]["route"]["name"]
            found = False
            for vh in route_config["virtual_hosts"]:
                at = next((n for n, r in enumerate(vh["routes"]) if r.get("name") == want), None)
                if at is not None:
                    vh["routes"].insert(at, copy.deepcopy(patch["patch"]["value"]))
                    found = True
            if not found:
                sys.exit(f"generate: HTTP_ROUTE INSERT_BEFORE: no route named {want}")
        elif patch["applyTo"] == "CLUSTER" and op == "ADD":
            added_clusters.append(copy.deepcopy(patch["patch"]["value"]))
        else:
            sys.exit(f"generate: patch {patch['applyTo']} {op} is not implemented here")


def gateway_virtual_service(docs: list[dict]) -> dict:
    """The VirtualService bound to a Gateway (not to the `mesh` sidecars)."""
    bound = [v for v in of_kind(docs, "VirtualService")
             if any(g != "mesh" for g in v["spec"].get("gateways", []))]
    if len(bound) != 1:
        sys.exit(f"generate: expected one VirtualService bound to a gateway, found {len(bound)}")
    return bound[0]


def wasmplugin_filter(plugin: dict, args: Args) -> dict:
    """A WasmPlugin as istiod delivers it: an HTTP filter whose configuration comes by ECDS,
    named `extensions.istio.io/wasmplugin/<ns>.<name>`, accepting a Wasm or an RBAC config
    (the agent's deny-all when a FAIL_CLOSE module cannot be fetched), never served before the
    proxy has it (initial_fetch_timeout 0) (pilot/pkg/networking/core/extension/wasmplugin.go
    toEnvoyHTTPFilter); the Wasm config from pilot/pkg/model/extensions.go buildPluginConfig:
    name `<ns>.<name>`, root_id from pluginName, the pluginConfig as JSON, FAIL_CLOSE as
    FAIL_CLOSED, and nothing else, so no allow_on_headers_stop_iteration. Phase AUTHN/AUTHZ
    puts it before the other filters here (listener_builder.go). The agent turns the module's
    OCI URL into a local file (pkg/wasm); here it is --module. ADS becomes a watched file."""
    ns, name = plugin["metadata"]["namespace"], plugin["metadata"]["name"]
    spec = plugin["spec"]
    resource = f"extensions.istio.io/wasmplugin/{ns}.{name}"
    config = {
        "name": f"{ns}.{name}",
        "root_id": spec.get("pluginName", ""),
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": json.dumps(spec.get("pluginConfig", {}))},
        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": args.module}}},
    }
    if spec.get("failStrategy", "FAIL_CLOSE") == "FAIL_CLOSE":
        config["failure_policy"] = "FAIL_CLOSED"
    path = os.path.join(args.out, f"ecds-{ns}.{name}.json")
    with open(path, "w") as f:
        json.dump({"version_info": "1", "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": resource,
            "typed_config": {"@type": WASM_FILTER_TYPE, "config": config}}]}, f)
    return {"name": resource, "config_discovery": {
        "config_source": {"path_config_source": {"path": path}, "initial_fetch_timeout": "0s",
                          "resource_api_version": "V3"},
        "type_urls": [WASM_FILTER_TYPE,
                      "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"]}}


def istio(args: Args, variant: str = "envoyfilter") -> tuple[dict, list[str]]:
    docs = manifests("istio")
    vs = gateway_virtual_service(docs)
    if not visible_from(vs, GATEWAY_NAMESPACE):
        sys.exit(f"generate: VirtualService {vs['metadata']['name']} is not exported to "
                 f"{GATEWAY_NAMESPACE}, where the gateway runs")
    gateway, server = istio_gateway_server(docs, vs)
    selects_pods(gateway["spec"].get("selector", {}), f"Gateway {gateway['metadata']['name']}")
    for plugin in of_kind(docs, "WasmPlugin"):
        selects_pods(plugin["spec"].get("selector", {}).get("matchLabels", {}),
                     f"WasmPlugin {plugin['metadata']['name']}")
    port = server["port"]["number"]
    # Listener `0.0.0.0_<port>` (pilot/pkg/networking/core/gateway.go getListenerName); the
    # gateway chart's Service maps 80 to targetPort 80 (manifests/charts/gateway/values.yaml).
    # Route configuration `http.<port>` (pilot/pkg/model/gateway.go gatewayRDSRouteName);
    # virtual host `<host>:<port>` (pilot/pkg/networking/util DomainName).
    routes = []
    for http in vs["spec"]["http"]:
        dest = http["route"][0]["destination"]
        route = {
            # Route name: the HTTPRoute's `name` (pilot/pkg/networking/core/route/route.go).
            "name": http["name"],
            "match": {"prefix": http["match"][0]["uri"]["prefix"]},
            "route": {
                "cluster": f"outbound|{dest['port']['number']}||{dest['host']}",
                # Istio's defaults: no route timeout, its default retry policy
                # (pilot/pkg/networking/core/route/retry/retry.go DefaultPolicy).
                "timeout": "0s",
                "retry_policy": {
                    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,"
                                "retriable-status-codes",
                    "num_retries": 2,
                    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                              "typed_config": {"@type": "type.googleapis.com/"
                                                               "envoy.extensions.retry.host."
                                                               "previous_hosts.v3."
                                                               "PreviousHostsPredicate"}}],
                    "host_selection_retry_max_attempts": "5",
                },
            },
        }
        routes.append(route)
    route_config = {"name": f"http.{port}", "virtual_hosts": [
        {"name": f"{h}:{port}", "domains": [h, f"{h}:*"], "routes": routes}
        for h in server["hosts"]]}
    # The gateway's HCM (pilot/pkg/networking/core/listener_builder.go
    # buildHTTPConnectionManager): stat prefix `outbound_0.0.0.0_<port>`, Istio's path
    # normalisation default, and of its HTTP filters those upstream Envoy has, in its order
    # (fault, cors, router last).
    hcm = {
        "stat_prefix": f"outbound_0.0.0.0_{port}",
        "normalize_path": True,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "use_remote_address": True,
        "route_config": route_config,
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3."
                         "HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            ROUTER,
        ],
    }
    lst = listener(f"0.0.0.0_{port}", args, hcm)
    policies = []
    added: list[dict] = []
    if variant == "wasmplugin":
        # wasmplugin.yaml applied instead of envoyfilter.yaml (never both).
        for plugin in of_kind(docs, "WasmPlugin"):
            hcm_of(lst)["http_filters"].insert(0, wasmplugin_filter(plugin, args))
            policies.append(plugin["spec"].get("pluginConfig", {}))
    else:
        # In name order: posturio, then posturio-fallback (the order changes nothing here).
        for ef in sorted(of_kind(docs, "EnvoyFilter"), key=lambda e: e["metadata"]["name"]):
            apply_envoyfilter(ef, gateway, lst, route_config, added)
        if args.policy:
            replace_policy(hcm_of(lst)["http_filters"], args.policy)

    # Every cluster the configuration names: routes (after patches), the module's fetch, and
    # the providers the policy routes to with cluster_header.
    wanted = set()
    for vh in route_config["virtual_hosts"]:
        for r in vh["routes"]:
            if "cluster" in r.get("route", {}):
                wanted.add(r["route"]["cluster"])
    for f in hcm_of(lst)["http_filters"]:
        cfg = f.get("typed_config", {})
        if cfg.get("@type") != WASM_FILTER_TYPE:
            continue
        plugin = cfg["config"]
        remote = plugin["vm_config"]["code"].get("remote")
        if remote:
            wanted.add(remote["http_uri"]["cluster"])
            if remote.get("sha256") == PLACEHOLDER_SHA256:
                with open(args.module, "rb") as m:
                    remote["sha256"] = hashlib.sha256(m.read()).hexdigest()
        policies.append(json.loads(plugin["configuration"]["value"]))
    for policy in policies:
        wanted.update(p["cluster"] for p in policy["providers"].values())
    clusters = []
    for name in sorted(wanted):
        _, cport, _, host = name.split("|")
        clusters.append(istio_cluster(host, int(cport), docs, args))

    # Istio's bootstrap stats_config (tools/packaging/common/envoy_bootstrap.json): its own
    # tags, use_all_default_tags false, and a stats matcher that keeps only listed prefixes
    # (pkg/bootstrap/config.go requiredEnvoyStatsMatcherInclusionPrefixes and friends).
    stats_config = {
        "use_all_default_tags": False,
        "stats_tags": [
            {"tag_name": "cluster_name", "regex": r"^cluster(\.(.+);)"},
            {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
            {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
            {"tag_name": "cache", "regex": r"(cache\.(.+?)\.)"},
            {"tag_name": "component", "regex": r"(component\.(.+?)\.)"},
            {"tag_name": "tag", "regex": r"(tag\.(.+?);\.)"},
            {"tag_name": "wasm_filter", "regex": r"(wasm_filter\.(.+?)\.)"},
        ],
        "stats_matcher": {"inclusion_list": {"patterns":
            [{"prefix": p} for p in ["reporter=", "cluster_manager", "listener_manager",
                                     "server", "cluster.xds-grpc", "wasm"]]
            + [{"suffix": s} for s in ["rbac.allowed", "rbac.denied", "shadow_allowed",
                                       "shadow_denied", "downstream_cx_active"]]
            + [{"safe_regex": {"regex": r"vhost\..*\.route\..*"}}]}},
    }
    for cluster in added:
        clusters.append(resolve_added_cluster(cluster, docs, args))
    tls_contexts = [c["transport_socket"] for c in clusters if "transport_socket" in c] + \
        [m["transport_socket"] for c in clusters for m in c.get("transport_socket_matches", [])]
    secrets = sorted({t["typed_config"]["common_tls_context"]["combined_validation_context"]
                      ["validation_context_sds_secret_config"]["name"] for t in tls_contexts})
    # SDS `file-root:system` is the proxy's system CA bundle (security/pkg/nodeagent/sds).
    config = bootstrap(args, stats_config, lst, clusters, [ca_secret(s, args) for s in secrets])
    # The node as Istio's agent names a gateway: `router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`
    # and the cluster `<deployment>.<ns>` (pkg/model/proxy.go ServiceNode, pkg/bootstrap).
    config["node"] = {
        "id": f"router~127.0.0.1~{HELM_RELEASE}-0.{GATEWAY_NAMESPACE}~"
              f"{GATEWAY_NAMESPACE}.svc.cluster.local",
        "cluster": f"{HELM_RELEASE}.{GATEWAY_NAMESPACE}",
    }
    return config, istio_bootstrap_override(docs, args)


def replace_policy(http_filters: list[dict], path: str) -> None:
    """The listener filter's policy replaced by the file at `path`, as `posturio render` writes
    it when the EnvoyFilter's marker names that file."""
    with open(path) as f:
        policy = f.read()
    for f in http_filters:
        config = f.get("typed_config", {}).get("config", {})
        if f.get("typed_config", {}).get("@type") == WASM_FILTER_TYPE and \
                config.get("name") == "posturio":
            config["configuration"]["value"] = policy
            return
    sys.exit("generate: --policy: no Posturio filter in the listener")


def resolve_added_cluster(cluster: dict, docs: list[dict], args: Args) -> dict:
    """A cluster an EnvoyFilter ADDs, with the generator's substitutions (generate.py): each
    DNS endpoint resolves to its --endpoint; the system CAs Istio's agent serves by SDS
    (`file-root:system` on `sds-grpc`) become the static secret of that name; the provider key
    files mounted from a Secret at /etc/posturio/keys are written from that Secret into the
    output; a placeholder module digest becomes the module's."""
    cluster = copy.deepcopy(cluster)
    if cluster.get("type") in ("STRICT_DNS", "LOGICAL_DNS"):
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
        for locality in cluster["load_assignment"]["endpoints"]:
            for lb in locality["lb_endpoints"]:
                address = lb["endpoint"]["address"]["socket_address"]
                host = address["address"]
                if host not in args.endpoints:
                    sys.exit(f"generate: no --endpoint for {host}")
                address["address"] = "127.0.0.1"
                address["port_value"] = args.endpoints[host]
    for m in cluster.get("transport_socket_matches", []):
        sds = m["transport_socket"]["typed_config"]["common_tls_context"][
            "combined_validation_context"]["validation_context_sds_secret_config"]
        sds.pop("sds_config", None)
    keys = os.path.join(args.out, "keys")
    os.makedirs(keys, exist_ok=True)
    for secret in of_kind(docs, "Secret"):
        for name, text in secret.get("stringData", {}).items():
            with open(os.path.join(keys, name), "w") as f:
                f.write(text)
    text = json.dumps(cluster).replace("/etc/posturio/keys/", keys + "/")
    with open(args.module, "rb") as m:
        digest = hashlib.sha256(m.read()).hexdigest()
    return json.loads(text.replace(PLACEHOLDER_SHA256, digest))


def istio_bootstrap_override(docs: list[dict], args: Args) -> list[str]:
    """The gateway pod's `sidecar.istio.io/bootstrapOverride` ConfigMap: the gateway injection
    template mounts its custom_bootstrap.json and sets ISTIO_BOOTSTRAP_OVERRIDE
    (manifests/charts/istio-control/istio-discovery/files/gateway-injection-template.yaml),
    and the agent passes the file to Envoy as `--config-yaml` (pkg/envoy/proxy.go args), which
    Envoy merges into the bootstrap. So Envoy itself does the merge here too."""
    maps = [c for c in of_kind(docs, "ConfigMap") if "custom_bootstrap.json" in c.get("data", {})]
    if not maps:
        return []
    path = os.path.join(args.out, "custom_bootstrap.json")
    with open(path, "w") as f:
        f.write(maps[0]["data"]["custom_bootstrap.json"])
    with open(path) as f:
        return ["--config-yaml", f.read()]


def istio_sidecar(args: Args) -> tuple[dict, list[str]]:
    """A workload's sidecar with the VirtualServices bound to `mesh` (egress.yaml): the
    outbound HTTP listener of the port, `0.0.0.0_<port>` with route configuration `<port>`
    (pilot/pkg/networking/core/listener.go, httproute.go), virtual hosts `<host>:<port>` for
    each host, and the route's destination as `outbound|<port>||<host>`. The hop from the
    sidecar to the gateway is plain HTTP here; in the mesh it is Istio mutual TLS, which is
    Istio's own and not under test."""
    docs = manifests("istio")
    routes_by_port: dict[int, list] = {}
    for vs in of_kind(docs, "VirtualService"):
        if "mesh" not in vs["spec"].get("gateways", []):
            continue
        for http in vs["spec"]["http"]:
            port = http["match"][0]["port"]
            dest = http["route"][0]["destination"]
            for host in vs["spec"]["hosts"]:
                entry = [s for s in of_kind(docs, "ServiceEntry") if host in s["spec"]["hosts"]
                         and any(p["number"] == port and p["protocol"] == "HTTP"
                                 for p in s["spec"]["ports"]) and visible_from(s, "default")]
                if not entry:
                    sys.exit(f"generate: no ServiceEntry makes {host}:{port} HTTP for workloads")
                routes_by_port.setdefault(port, []).append((host, http["name"], dest))
    if len(routes_by_port) != 1:
        sys.exit("generate: expected the mesh routes on one port")
    (port, entries), = routes_by_port.items()
    clusters = {}
    vhosts = []
    for host, name, dest in entries:
        cluster = f"outbound|{dest['port']['number']}||{dest['host']}"
        clusters[cluster] = static_cluster(cluster, dest["host"], args, None)
        vhosts.append({"name": f"{host}:{port}", "domains": [host, f"{host}:{port}"],
                       "routes": [{"name": name, "match": {"prefix": "/"},
                                   "route": {"cluster": cluster, "timeout": "0s"}}]})
    hcm = {"stat_prefix": f"outbound_0.0.0.0_{port}",
           "route_config": {"name": str(port), "virtual_hosts": vhosts},
           "http_filters": [ROUTER]}
    lst = listener(f"0.0.0.0_{port}", args, hcm)
    return bootstrap(args, {}, lst, list(clusters.values()), []), []
