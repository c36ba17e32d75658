#!/usr/bin/env python3
"""The Envoy configuration Istio or Envoy Gateway generates for the manifests in deploy/.

    generate.py istio|istio-wasmplugin|istio-sidecar|envoy-gateway --out DIR --module FILE \
        --listen-port N --admin-port N --ca FILE --endpoint HOST=PORT [--endpoint HOST=PORT ...] \
        [--extra FILE ...] [--policy FILE]

`istio`: the ingress gateway with envoyfilter.yaml; `istio-wasmplugin`: the same with
wasmplugin.yaml instead; `istio-sidecar`: a workload's sidecar with egress.yaml;
`envoy-gateway`: the Gateway's proxy. `--policy` (istio): the policy rendered into Posturio's
listener filter instead of the EnvoyFilter's own, as for deploy/istio/fallback/.

Reads deploy/<platform>/*.yaml and builds, by the control plane's own rules, the listener,
routes, clusters and bootstrap that its Envoy would run, then applies our patches to them with
code that implements the platform's patch semantics (Istio's EnvoyFilter INSERT_BEFORE and
MERGE, Envoy Gateway's EnvoyPatchPolicy JSONPatch with its JSONPath extension, Envoy Gateway's
bootstrap JSONPatch). Each rule in istio.py and envoy_gateway.py names the upstream file and
release it follows; jsonpath.py holds the JSONPath extension. Writes
DIR/envoy.json and prints one JSON line: {"config": path, "args": [extra Envoy arguments]}.

What the output does NOT take from the control plane, and why (the only substitutions):
- Resources a control plane serves over ADS/SDS are written inline (static listeners,
  clusters, route configurations and secrets under the same names); one served by ECDS is a
  watched file (path_config_source) holding the same TypedExtensionConfig.
- Addresses: the listener binds 127.0.0.1:--listen-port instead of 0.0.0.0 and the gateway
  port; admin listens on --admin-port.
- DNS: a provider's cluster is STATIC at 127.0.0.1:PORT given by --endpoint HOST=PORT, with the
  endpoint's hostname kept as HOST (what a DNS answer for HOST would give Envoy).
- The system CA bundle is --ca, the throwaway CA that signed the mock provider's certificate.
- Proxy-only extensions (Istio's istio.stats, istio.alpn, metadata exchange) are not in
  upstream Envoy and are left out; they sit around, not inside, the filters under test.
- Envoy Gateway serves a Wasm module from its own cache over HTTP; here the filter loads the
  module from --module. Istio's EnvoyFilter fetches it from the artifact URL in the manifest,
  served by the mock, with the manifest's placeholder digest replaced by the module's own.
"""

import argparse
import json
import os
import sys

import common
from envoy_gateway import envoy_gateway
from istio import istio, istio_sidecar


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("platform", choices=["istio", "istio-wasmplugin", "istio-sidecar",
                                             "envoy-gateway"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--admin-port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--endpoint", action="append", default=[], metavar="HOST=PORT")
    parser.add_argument("--extra", action="append", default=[], metavar="FILE",
                        help="more manifests, as if applied beside deploy/<platform>/")
    parser.add_argument("--policy", metavar="FILE",
                        help="istio: the policy rendered into the EnvoyFilter instead of its own")
    ns = parser.parse_args()
    common.EXTRA.extend(ns.extra)
    args = common.Args()
    args.out, args.module, args.ca = ns.out, ns.module, ns.ca
    args.listen_port, args.admin_port = ns.listen_port, ns.admin_port
    args.policy = ns.policy
    args.endpoints = {}
    for item in ns.endpoint:
        host, _, port = item.partition("=")
        args.endpoints[host] = int(port)
    build = {"istio": istio, "istio-sidecar": istio_sidecar,
             "istio-wasmplugin": lambda a: istio(a, "wasmplugin"),
             "envoy-gateway": envoy_gateway}[ns.platform]
    config, extra = build(args)
    # JSON (Envoy reads it by the file's extension), so that tests can read it too.
    path = os.path.join(ns.out, "envoy.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    print(json.dumps({"config": path, "args": extra}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
