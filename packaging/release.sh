#!/usr/bin/env bash
# Writes the versioned release artifacts into target/release-artifacts/:
#
#   posturio-<version>.wasm            the filter module
#   posturio-<version>.wasm.sha256     its checksum, in `sha256sum` format
#   posturio-<version>.schema.json     the JSON Schema of the policy (`posturio schema`)
#   posturio-<version>.oci.tar         the OCI image layout (target/oci/posturio) as one tar
#
# <version> is Cargo.toml's. Run through `make release`, which builds the module first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
WASM=target/wasm32-wasip1/release/posturio.wasm
OUT=target/release-artifacts
OCI_DIR=target/oci/posturio

die() {
  echo "release: $*" >&2
  exit 1
}

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
[[ -n $version ]] || die 'no version = "…" line found in Cargo.toml'
[[ -s $WASM ]] || die "$WASM is missing: run \`make build\` (\`make release\` builds it)"

name=posturio-$version
# Written aside and moved into place at the end: a failed release leaves no partial set.
FINAL=$OUT
OUT=$OUT.tmp
rm -rf "$OUT"
mkdir -p "$OUT"

install -m 0644 "$WASM" "$OUT/$name.wasm"
(cd "$OUT" && sha256sum "$name.wasm" >"$name.wasm.sha256")

# The policy's JSON Schema, from the CLI that checks policies with the same code as the filter.
schema_err=$(mktemp)
trap 'rm -f "$schema_err"' EXIT
if ! cargo run --quiet --release --bin posturio -- schema >"$OUT/$name.schema.json" 2>"$schema_err"; then
  cat "$schema_err" >&2
  rm -f "$OUT/$name.schema.json"
  die "\`posturio schema\` failed (see above): the release needs the CLI's \`schema\` command, which prints the policy's JSON Schema"
fi
"$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' "$OUT/$name.schema.json" \
  || die "\`posturio schema\` did not print JSON"

# The OCI layout again (same bytes as `make oci`), also archived as one tar.
"$PYTHON" packaging/oci_layout.py --wasm "$WASM" --out "$OCI_DIR" --version "$version" \
  --archive "$OUT/$name.oci.tar"

rm -rf "$FINAL"
mv "$OUT" "$FINAL"
echo
echo "release $version in $FINAL/:"
(cd "$FINAL" && ls -l)
echo "module sha256: $(cut -d' ' -f1 "$FINAL/$name.wasm.sha256")"
echo "image digest (for oci:// references and WasmPlugin sha256): $("$PYTHON" -c \
  'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$OCI_DIR/index.json")"
