#!/usr/bin/env python3
"""How the schemas in this folder were made (not run by the tests).

    vendor.py RELEASE_DIR CRD.yaml [CRD.yaml ...]

Reads CustomResourceDefinitions (YAML, several per file allowed) and writes, for every version
each one serves, its `openAPIV3Schema` with the `description` texts removed (they are most of
the bytes and validate nothing) to RELEASE_DIR/<group>_<kind>_<version>.json. SOURCES.md says
which upstream files and releases the folders come from, and their licence.
"""

import json
import os
import sys

import yaml


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def main() -> int:
    out, files = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    for path in files:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if not version.get("served", False):
                        continue
                    schema = strip(version["schema"]["openAPIV3Schema"])
                    name = f"{group}_{kind}_{version['name']}.json"
                    with open(os.path.join(out, name), "w") as f_out:
                        json.dump(schema, f_out, separators=(",", ":"), sort_keys=True)
                        f_out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
