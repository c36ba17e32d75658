#!/usr/bin/env python3
"""The fallback pool of deploy/<platform>/fallback/ as the platform hands it to Envoy, for
`envoy --mode validate` (tests/istio.rs, tests/envoy_gateway.rs).

    pool.py istio|envoy-gateway --out DIR

Writes DIR/envoy.json, a bootstrap holding the pool cluster and the route that retries into
it, and prints one JSON line: {"config": path, "args": [extra Envoy arguments]}.

- istio: the EnvoyFilter's CLUSTER ADD value and HTTP_ROUTE INSERT_BEFORE value, as istiod
  passes them through (pilot/pkg/networking/core/envoyfilter/cluster_patch.go and rc_patch.go,
  Istio 1.28.0), beside stand-ins for the clusters they name that istiod and Istio's agent
  provide (`sds-grpc`, the artifact host's).
- envoy-gateway: the cluster and route Envoy Gateway v1.6.0 generates for the HTTPRoute rule
  `llm-fallback` rule 0 (one STRICT_DNS cluster, one locality per backendRef with region
  `<cluster>/backend/<n>`, a fallback Backend at priority 1, TLS by transport socket match,
  HttpProtocolOptions with auto config; the retry policy of the BackendTrafficPolicy;
  internal/xds/translator/cluster.go, route.go, translator.go), then the EnvoyPatchPolicy's
  operations applied by Envoy Gateway's JSONPatch semantics (jsonpath.py).

What is substituted: the key files the Secret provider-keys.yaml mounts at
/etc/posturio/keys are written to DIR/keys from that Secret (Envoy checks that the paths
exist), and the system CA file is --ca-file. Nothing here runs the pool: the upstream filter
fetches its module remotely, which validate mode does not do.
"""

import argparse
import copy
import json
import os
import sys

import yaml

import jsonpath
from common import REPO, ROUTER, HCM_TYPE, TLS_TYPE

KEYS_DIR = "/etc/posturio/keys/"
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def load(platform: str) -> list[dict]:
    folder = os.path.join(REPO, "deploy", platform, "fallback")
    docs = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".yaml"):
            with open(os.path.join(folder, name)) as f:
                docs.extend(d for d in yaml.safe_load_all(f) if d is not None)
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def write_keys(docs: list[dict], out: str) -> str:
    """The Secret's files, where the bootstrap will read them."""
    keys = os.path.join(out, "keys")
    os.makedirs(keys, exist_ok=True)
    for secret in of_kind(docs, "Secret"):
        for name, text in secret.get("stringData", {}).items():
            with open(os.path.join(keys, name), "w") as f:
                f.write(text)
    return keys + "/"


def stub_cluster(name: str, http2: bool = False) -> dict:
    cluster = {"name": name, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {
                       "address": "127.0.0.1", "port_value": 1}}}}]}]}}
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}}
    return cluster


def istio_pool(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    filters = of_kind(docs, "EnvoyFilter")
    patches = [p for f in filters for p in f["spec"]["configPatches"]]
    clusters = [copy.deepcopy(p["patch"]["value"]) for p in patches
                if p["applyTo"] == "CLUSTER" and p["patch"]["operation"] == "ADD"]
    routes = [copy.deepcopy(p["patch"]["value"]) for p in patches
              if p["applyTo"] == "HTTP_ROUTE" and p["patch"]["operation"] == "INSERT_BEFORE"]
    if not clusters or not routes:
        sys.exit("pool: deploy/istio/fallback adds no cluster or no route")
    # Provided by istiod and the agent on a real gateway: the SDS cluster (gRPC) and the
    # artifact host's cluster (../providers.yaml).
    clusters += [stub_cluster("sds-grpc", http2=True),
                 stub_cluster("outbound|443||artifacts.example.com")]
    return clusters, routes


def eg_pool(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    route = next(r for r in of_kind(docs, "HTTPRoute") if r["metadata"]["name"] == "llm-fallback")
    ns = route["metadata"]["namespace"]
    rule = route["spec"]["rules"][0]
    name = f"httproute/{ns}/llm-fallback/rule/0"
    backends = {b["metadata"]["name"]: b for b in of_kind(docs, "Backend")}
    # ../gateway.yaml's Backends are named too (openai).
    with open(os.path.join(REPO, "deploy", "envoy-gateway", "gateway.yaml")) as f:
        base = [d for d in yaml.safe_load_all(f) if d is not None]
    backends.update({b["metadata"]["name"]: b for b in of_kind(base, "Backend")})
    tls_by_backend = {}
    for policy in of_kind(docs, "BackendTLSPolicy") + of_kind(base, "BackendTLSPolicy"):
        for ref in policy["spec"]["targetRefs"]:
            tls_by_backend[ref["name"]] = policy["spec"]["validation"]["hostname"]
    localities, matches = [], []
    for index, ref in enumerate(rule["backendRefs"]):
        backend = backends[ref["name"]]
        fqdn = backend["spec"]["endpoints"][0]["fqdn"]
        match_name = f"{name}/tls/{index}"
        hostname = tls_by_backend[ref["name"]]
        locality = {
            "locality": {"region": f"{name}/backend/{index}"},
            "load_balancing_weight": ref.get("weight", 1),
            "lb_endpoints": [{
                "endpoint": {"hostname": fqdn["hostname"], "address": {"socket_address": {
                    "address": fqdn["hostname"], "port_value": fqdn["port"]}}},
                "load_balancing_weight": 1,
                "metadata": {"filter_metadata": {
                    "envoy.transport_socket_match": {"name": match_name}}}}],
        }
        if backend["spec"].get("fallback"):
            locality["priority"] = 1
        localities.append(locality)
        matches.append({"name": match_name, "match": {"name": match_name}, "transport_socket": {
            "name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": TLS_TYPE, "sni": hostname, "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": CA_FILE},
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": hostname}}]}}}}})
    cluster = {
        "name": name, "type": "STRICT_DNS", "connect_timeout": "10s",
        "dns_refresh_rate": "30s", "respect_dns_ttl": True,
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "load_assignment": {"cluster_name": name, "endpoints": localities},
        "transport_socket_matches": matches,
        # cluster.go: auto HTTP config needs a cluster-level transport socket; Envoy Gateway
        # sets an empty TLS one (testdata/out/xds-ir/backend-priority.clusters.yaml).
        "transport_socket": {"name": "dummy.transport_socket", "typed_config": {
            "@type": TLS_TYPE, "common_tls_context": {}}},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "auto_config": {"http_protocol_options": {}}}},
    }
    clusters = {name: cluster}
    for epp in of_kind(docs, "EnvoyPatchPolicy"):
        for patch in epp["spec"]["jsonPatches"]:
            if patch["type"] != "type.googleapis.com/envoy.config.cluster.v3.Cluster":
                sys.exit(f"pool: EnvoyPatchPolicy on {patch['type']} not implemented here")
            op = patch["operation"]
            if op["op"] == "add" and not op.get("path") and not op.get("jsonPath"):
                # jsonpatch.go: add with no path adds the value as a whole resource.
                clusters[op["value"]["name"]] = copy.deepcopy(op["value"])
                continue
            if patch["name"] not in clusters:
                sys.exit(f"pool: EnvoyPatchPolicy names cluster {patch['name']}, which Envoy "
                         "Gateway does not generate: the patch finds nothing")
            clusters[patch["name"]] = jsonpath.apply_operation(clusters[patch["name"]], op)
    # The route (route.go buildRetryPolicy with the BackendTrafficPolicy's retry).
    btp = next(b for b in of_kind(docs, "BackendTrafficPolicy")
               if any(t["name"] == "llm-fallback" for t in b["spec"]["targetRefs"]))
    retry = btp["spec"]["retry"]
    policy = {
        "retry_on": ",".join(retry["retryOn"]["triggers"]),
        "retriable_status_codes": retry["retryOn"].get("httpStatusCodes", []),
        "num_retries": retry["numRetries"],
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                  "typed_config": {"@type": "type.googleapis.com/envoy."
                                                   "extensions.retry.host.previous_hosts.v3."
                                                   "PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": 5,
        "retry_priority": {"name": "envoy.retry_priorities.previous_priorities",
                           "typed_config": {"@type": "type.googleapis.com/envoy.extensions."
                                            "retry.priority.previous_priorities.v3."
                                            "PreviousPrioritiesConfig",
                                            "update_frequency": retry["numAttemptsPerPriority"]}},
    }
    if retry.get("perRetry", {}).get("timeout"):
        policy["per_try_timeout"] = retry["perRetry"]["timeout"]
    header = rule["matches"][0]["headers"][0]
    remove = [h for f in rule["filters"] if f["type"] == "RequestHeaderModifier"
              for h in f["requestHeaderModifier"]["remove"]]
    xds_route = {"name": f"{name}/match/0/*",
                 "match": {"prefix": "/", "headers": [{"name": header["name"],
                                                       "string_match": {"exact": header["value"]}}]},
                 "route": {"cluster": name, "auto_host_rewrite": True,
                           "timeout": rule["timeouts"]["request"], "retry_policy": policy},
                 "request_headers_to_remove": remove}
    return list(clusters.values()), [xds_route]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("platform", choices=["istio", "envoy-gateway"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--ca-file", required=True)
    ns = parser.parse_args()
    docs = load(ns.platform)
    clusters, routes = (istio_pool if ns.platform == "istio" else eg_pool)(docs)
    keys = write_keys(docs, ns.out)
    config = {
        "node": {"id": "posturio-pool-check", "cluster": "posturio-pool-check"},
        "static_resources": {"clusters": clusters, "listeners": [{
            "name": "pool", "address": {"socket_address": {"address": "127.0.0.1",
                                                           "port_value": 10080}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM_TYPE, "stat_prefix": "pool",
                                 "route_config": {"virtual_hosts": [{
                                     "name": "pool", "domains": ["*"], "routes": routes}]},
                                 "http_filters": [ROUTER]}}]}]}]},
    }
    text = json.dumps(config, indent=1).replace(KEYS_DIR, keys).replace(CA_FILE, ns.ca_file)
    path = os.path.join(ns.out, "envoy.json")
    with open(path, "w") as f:
        f.write(text)
    print(json.dumps({"config": path, "args": []}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
