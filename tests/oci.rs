//! The OCI image that `make oci` writes (target/oci/posturio) is the Wasm image format Istio and
//! Envoy Gateway pull, is reproducible, and survives a push to a real registry and a pull back:
//! the module that comes out is byte for byte the one that was built.
//!
//! Needs `skopeo` and `docker-registry` (Debian packages; `make test` installs them).
// Helpers outside #[test] functions fail loudly: a missing tool or broken setup is a failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where `make oci` writes the image layout, relative to the repository.
const LAYOUT: &str = "target/oci/posturio";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REGISTRY_READY_DEADLINE: Duration = Duration::from_secs(15);

/// The tag `make oci` gives the image: the crate's version.
fn tag() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A program on the PATH, or a failure saying how to install it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed, and this test needs it. `make test` installs it \
             (its `test-deps` step runs `apt-get install -y skopeo docker-registry`); or run \
             `apt-get install skopeo docker-registry` yourself"
        )
    })
}

fn run(program: &Path, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {} failed ({}):\n{}\n{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn skopeo(args: &[&str]) -> Output {
    // --insecure-policy: no dependence on the machine's /etc/containers/policy.json.
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run(&tool("skopeo"), &all)
}

/// An OCI image layout on disk.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn at(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        self.dir.join("blobs/sha256").join(hex)
    }

    /// A blob's bytes, checked against its digest.
    fn blob(&self, digest: &str) -> Vec<u8> {
        let path = self.blob_path(digest);
        let hex = digest.trim_start_matches("sha256:");
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        assert_eq!(
            sha256_hex(&bytes),
            hex,
            "{} does not hash to its name",
            path.display()
        );
        bytes
    }

    fn json(&self, relative: &str) -> Value {
        let path = self.dir.join(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; `make oci` (or `make test`) writes the image",
                path.display()
            )
        });
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The digest of the manifest tagged `tag` in index.json.
    fn manifest_digest(&self, tag: &str) -> String {
        let index = self.json("index.json");
        let found: Vec<&Value> = index["manifests"]
            .as_array()
            .expect("index.json has no manifests")
            .iter()
            .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "index.json: tag {tag} not found once: {index}"
        );
        assert_eq!(found[0]["mediaType"], MANIFEST_TYPE);
        found[0]["digest"].as_str().unwrap().to_string()
    }

    fn manifest(&self, tag: &str) -> Value {
        serde_json::from_slice(&self.blob(&self.manifest_digest(tag))).unwrap()
    }

    /// The one layer's digest.
    fn layer_digest(&self, tag: &str) -> String {
        let manifest = self.manifest(tag);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "expected exactly one layer: {manifest}");
        layers[0]["digest"].as_str().unwrap().to_string()
    }

    /// The `plugin.wasm` inside the layer, as Istio and Envoy Gateway extract it.
    fn plugin_wasm(&self, tag: &str) -> Vec<u8> {
        let digest = self.layer_digest(tag);
        self.blob(&digest);
        let blob = self.blob_path(&digest);
        let listing = run(Path::new("tar"), &["-tzf", blob.to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&listing.stdout),
            "plugin.wasm\n",
            "the layer must hold exactly plugin.wasm"
        );
        run(
            Path::new("tar"),
            &["-xzOf", blob.to_str().unwrap(), "plugin.wasm"],
        )
        .stdout
    }
}

/// The layout `make oci` wrote, checked to hold the module as it is built now.
fn built_layout() -> (Layout, Vec<u8>) {
    let module = std::fs::read(common::envoy::module_path()).unwrap();
    let layout = Layout::at(common::repo_path(LAYOUT));
    let inside = layout.plugin_wasm(tag());
    assert!(
        inside == module,
        "{LAYOUT} holds a different module (sha256 {}) from {} (sha256 {}): run `make oci`",
        sha256_hex(&inside),
        common::envoy::MODULE,
        sha256_hex(&module)
    );
    (layout, module)
}

/// A distribution (docker-registry) on a free 127.0.0.1 port with its own storage; killed
/// on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let binary = tool("docker-registry");
        let mut last_log = String::new();
        // A port found free can be taken before the registry binds it: try a few.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("posturio-registry-")
                .tempdir()
                .unwrap();
            let port = TcpListener::bind(("127.0.0.1", 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let log = File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut registry = Registry { child, port, dir };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(log) => last_log = log,
            }
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// Ok once `GET /v2/` answers 200; Err(log) if the registry exits or the deadline passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REGISTRY_READY_DEADLINE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status}):\n{}", self.log()));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let response = common::http::try_send_raw(
                    self.port,
                    b"GET /v2/ HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
                );
                if response.is_ok_and(|r| r.status == 200) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "not ready within {REGISTRY_READY_DEADLINE:?}:\n{}",
            self.log()
        ))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `docker://127.0.0.1:PORT/posturio:TAG`
    fn reference(&self, tag: &str) -> String {
        format!("docker://127.0.0.1:{}/posturio:{tag}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- docker-registry log ----\n{}", self.log());
        }
    }
}

#[test]
fn image_has_the_wasm_image_format_istio_and_envoy_gateway_pull() {
    let (layout, _) = built_layout();
    assert_eq!(
        layout.json("oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let manifest = layout.manifest(tag());
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
    assert_eq!(manifest["config"]["mediaType"], CONFIG_TYPE);
    assert_eq!(manifest["layers"][0]["mediaType"], LAYER_TYPE);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"], "compat",
        "the Wasm image spec's compat variant with an OCI layer must say so"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        tag()
    );
    // The config's diff_id is the digest of the uncompressed layer.
    let config: Value =
        serde_json::from_slice(&layout.blob(manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    layout.blob(layer_digest);
    let layer_path = layout.blob_path(layer_digest);
    let tar = run(Path::new("gzip"), &["-dc", layer_path.to_str().unwrap()]).stdout;
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar))])
    );
    assert_eq!(config["architecture"], "wasm");
}

#[test]
fn image_is_reproducible() {
    let (layout, _) = built_layout();
    let dir = tempfile::tempdir().unwrap();
    let script = common::repo_path("packaging/oci_layout.py");
    let module = common::envoy::module_path();
    let mut digests = Vec::new();
    let mut archives = Vec::new();
    for attempt in ["a", "b"] {
        let out = dir.path().join(attempt);
        let archive = dir.path().join(format!("{attempt}.tar"));
        run(
            &common::mock::python(),
            &[
                script.to_str().unwrap(),
                "--wasm",
                module.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--version",
                tag(),
                "--archive",
                archive.to_str().unwrap(),
            ],
        );
        digests.push(Layout::at(&out).manifest_digest(tag()));
        archives.push(std::fs::read(&archive).unwrap());
        // Files written with a later date must not change a byte either.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(digests[0], digests[1], "two builds gave different images");
    assert!(archives[0] == archives[1], "two builds gave different tars");
    assert_eq!(
        digests[0],
        layout.manifest_digest(tag()),
        "the same module built again gives a different image from `make oci`'s"
    );
}

#[test]
fn image_round_trips_through_a_registry() {
    let (layout, module) = built_layout();
    let manifest_digest = layout.manifest_digest(tag());
    let registry = Registry::start();
    let remote = registry.reference(tag());

    let source = format!("oci:{}:{}", layout.dir.display(), tag());
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &source,
        &remote,
    ]);

    // The registry serves the very manifest that was built: the digest a WasmPlugin's
    // `sha256` or a `@sha256:` reference pins.
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &remote]).stdout;
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        manifest_digest,
        "the registry's manifest differs from the built one"
    );

    let pulled_dir = tempfile::tempdir().unwrap();
    let pulled = Layout::at(pulled_dir.path().join("posturio"));
    let destination = format!("oci:{}:{}", pulled.dir.display(), tag());
    skopeo(&["copy", "--src-tls-verify=false", &remote, &destination]);

    assert_eq!(pulled.manifest_digest(tag()), manifest_digest);
    assert_eq!(pulled.layer_digest(tag()), layout.layer_digest(tag()));
    let wasm = pulled.plugin_wasm(tag());
    assert_eq!(
        sha256_hex(&wasm),
        sha256_hex(&module),
        "the module pulled back from the registry is not the one built"
    );
}
