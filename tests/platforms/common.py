"""What the fixture builder's two platforms share: the manifests, and the pieces of an Envoy
bootstrap that both emulations write the same way (see generate.py for what is substituted)."""

import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
TLS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
PLACEHOLDER_SHA256 = "0" * 64


class Args:
    out: str
    module: str
    listen_port: int
    admin_port: int
    ca: str
    endpoints: dict[str, int]
    policy: str | None


EXTRA: list[str] = []  # --extra: more manifests, applied beside deploy/<platform>/


def manifests(platform: str) -> list[dict]:
    folder = os.path.join(REPO, "deploy", platform)
    files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))
             if n.endswith((".yaml", ".yml"))] + EXTRA
    docs = []
    for path in files:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d is not None)
    return docs


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        sys.exit(f"generate: expected one {kind} {name or ''} in deploy/, found {len(found)}")
    return found[0]


def endpoint(args: Args, host: str) -> dict:
    """A resolved endpoint for HOST (see the module doc: DNS)."""
    if host not in args.endpoints:
        sys.exit(f"generate: no --endpoint for {host}")
    return {"endpoint": {"hostname": host, "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": args.endpoints[host]}}}}


def static_cluster(name: str, host: str, args: Args, tls: dict | None) -> dict:
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            endpoint(args, host)]}]},
    }
    if tls is not None:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls",
                                       "typed_config": dict({"@type": TLS_TYPE}, **tls)}
    return cluster


def ca_secret(name: str, args: Args) -> dict:
    return {"name": name, "validation_context": {"trusted_ca": {"filename": args.ca}}}


def bootstrap(args: Args, stats_config: dict, listener: dict, clusters: list[dict],
              secrets: list[dict]) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                  "port_value": args.admin_port}}},
        "stats_config": stats_config,
        "static_resources": {"listeners": [listener], "clusters": clusters,
                             "secrets": secrets},
    }


def listener(name: str, args: Args, hcm: dict) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": args.listen_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": dict({"@type": HCM_TYPE}, **hcm)}]}],
    }


def hcm_of(lst: dict) -> dict:
    return lst["filter_chains"][0]["filters"][0]["typed_config"]
