#!/usr/bin/env python3
"""Writes the Posturio Wasm module as an OCI image layout, without Docker.

The image is the Wasm image specification's *compat* variant with standard OCI media types,
the format that Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull:

- an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) annotated
  `module.wasm.image/variant: compat`;
- an OCI image config (`application/vnd.oci.image.config.v1+json`), platform wasip1/wasm;
- exactly one layer, `application/vnd.oci.image.layer.v1.tar+gzip`, a tar holding the module
  as `plugin.wasm`.

The output is reproducible: the tar entry has a fixed owner, mode and timestamp (the epoch),
the gzip header has no name and no timestamp, and every JSON document is written with sorted
keys and no whitespace. The same .wasm therefore always gives the same manifest digest.

    oci_layout.py --wasm posturio.wasm --out target/oci/posturio --tag 0.1.0 [--archive x.tar]

With --archive, the layout directory is also written as one tar file (reproducible too).
Python standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The file name Istio and Envoy Gateway look for inside the layer.
PLUGIN_NAME = "plugin.wasm"
WASM_MAGIC = b"\0asm"
EPOCH = 0


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def layer_tar(wasm):
    """The uncompressed layer: one regular file, plugin.wasm, with fixed metadata."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_NAME)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = EPOCH
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data):
    """gzip with no file name and a zero timestamp in the header."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=EPOCH) as gz:
        gz.write(data)
    return buf.getvalue()


def descriptor(media_type, data, annotations=None):
    desc = {"mediaType": media_type, "digest": "sha256:" + sha256(data), "size": len(data)}
    if annotations:
        desc["annotations"] = annotations
    return desc


def build(wasm, version, tags):
    """Returns (blobs, index, manifest digest): blobs maps hex digest to bytes."""
    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {
                "Labels": {
                    "org.opencontainers.image.title": "posturio",
                    "org.opencontainers.image.version": version,
                }
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(tar)]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, config),
            "layers": [descriptor(LAYER_TYPE, layer)],
            "annotations": {
                "module.wasm.image/variant": "compat",
                "org.opencontainers.image.title": "posturio",
                "org.opencontainers.image.version": version,
            },
        }
    )
    manifest_desc = descriptor(MANIFEST_TYPE, manifest)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                dict(manifest_desc, annotations={"org.opencontainers.image.ref.name": tag})
                for tag in tags
            ],
        }
    )
    blobs = {sha256(b): b for b in (layer, config, manifest)}
    return blobs, index, manifest_desc["digest"]


def layout_files(blobs, index):
    """The layout as (relative path, bytes), in a fixed order."""
    files = [("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))]
    files.append(("index.json", index))
    for digest in sorted(blobs):
        files.append(("blobs/sha256/" + digest, blobs[digest]))
    return files


def write_layout(out, files):
    """Replaces `out` with a fresh layout (stale blobs from an older module are dropped)."""
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files:
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def write_archive(path, files):
    """The layout as one uncompressed tar, entries sorted, with fixed metadata."""
    dirs = sorted({"blobs", "blobs/sha256"})
    tmp = path + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)
        for rel, data in sorted(files):
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, help="the built module")
    parser.add_argument("--out", required=True, help="the OCI layout directory to write")
    parser.add_argument("--version", required=True, help="the image version (Cargo.toml's)")
    parser.add_argument(
        "--tag", action="append", help="a tag in index.json (repeatable; default: --version)"
    )
    parser.add_argument("--archive", help="also write the layout as this tar file")
    args = parser.parse_args()

    try:
        with open(args.wasm, "rb") as f:
            wasm = f.read()
    except OSError as e:
        sys.exit(f"oci: cannot read the module: {e} (run `make build`)")
    if not wasm.startswith(WASM_MAGIC):
        sys.exit(f"oci: {args.wasm} is not a Wasm module (no \\0asm header)")

    tags = args.tag or [args.version]
    blobs, index, manifest_digest = build(wasm, args.version, tags)
    files = layout_files(blobs, index)
    write_layout(args.out, files)
    if args.archive:
        write_archive(args.archive, files)
    print(f"{args.out}: {', '.join(tags)} -> {manifest_digest} (plugin.wasm sha256:{sha256(wasm)})")


if __name__ == "__main__":
    main()
