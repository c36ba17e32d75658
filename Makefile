# Posturio: build, lint, test and run the gateway. `make` alone lists the targets.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
WASM_TARGET := wasm32-wasip1
POSTURIO := target/release/posturio
# Every file with an embedded policy copy (`# posturio render: SOURCE` markers).
RENDERED := $(wildcard envoy/*.yaml envoy/ecds/*.yaml deploy/*/*.yaml deploy/*/native/*.yaml)
FUZZ_SECS ?= 60
# Which build `make run` serves: wasm (the module in Envoy's V8) or native (the dynamic module).
BUILD ?= wasm
ifeq ($(filter $(BUILD),wasm native),)
$(error BUILD=$(BUILD) is not a build: use BUILD=wasm (the default) or BUILD=native)
endif
# The Envoy suites that also run against the native build (POSTURIO_BUILD=native), after the
# whole suite has run against the Wasm build: in `make test`, or alone in `make test-native`
# (with tests/native.rs, which always tests the native module, so `make test` runs it once).
# The suites left out test what only the Wasm build has (OCI image, Istio, Envoy Gateway's
# generated configuration, the V8 VM, a listener delivered by LDS with the Wasm filter in it),
# or a feature the native build refuses: tests/identity.rs reads a JWT claim at a nested
# metadata path, which the dynamic module ABI cannot reach (docs/native.md).
NATIVE_SUITES := gateway inspection usage hostile answers api_keys bedrock_streams docs ecds evasion fallback prometheus \
  fallback_families families guards harness_smoke limits model_lists ratelimit sdk spend
WASM := target/$(WASM_TARGET)/release/posturio.wasm
OCI_DIR := target/oci/posturio
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
# Debian packages the OCI test needs: skopeo pushes and pulls, docker-registry is the registry.
TEST_APT_PACKAGES := skopeo docker-registry
# Prometheus for tests/prometheus.rs: Debian's package, unpacked here (not installed), as .venv is.
PROMETHEUS_DIR := .prometheus
PROMETHEUS := $(PROMETHEUS_DIR)/usr/bin/prometheus

.PHONY: help venv prometheus wasm-target build native native-probe native-floor cli install render lint modules fmt test test-native run clean bench soak fuzz oci release test-deps

help: ## List the targets
	@echo "Usage: make TARGET"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.stamp ## Create .venv with Envoy and the OpenAI/Anthropic SDKs

# Rebuilt whenever the pinned requirements change.
$(VENV)/.stamp: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -r tests/requirements.txt
	touch $@

prometheus: $(PROMETHEUS) ## Unpack Debian's prometheus package into .prometheus/ (for the dashboard test)

# `apt-get download` needs no root. When it finds no candidate (the package lists of a fresh
# machine are empty), the lists are fetched first, which does need root (sudo otherwise).
# `dpkg -x` unpacks without installing: nothing runs, nothing is registered with dpkg.
$(PROMETHEUS):
	rm -rf $(PROMETHEUS_DIR)
	mkdir -p $(PROMETHEUS_DIR)/deb
	cd $(PROMETHEUS_DIR)/deb && { apt-get download prometheus || { \
	  echo 'prometheus: not in the package lists; updating them first' >&2; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update && apt-get download prometheus; }; }
	dpkg -x $(PROMETHEUS_DIR)/deb/prometheus_*.deb $(PROMETHEUS_DIR)
	rm -rf $(PROMETHEUS_DIR)/deb
	$@ --version
	touch $@

wasm-target: ## Install the Rust wasm32-wasip1 target (no-op when present)
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

build: wasm-target ## Build the filter: target/wasm32-wasip1/release/posturio.wasm
	cargo build --lib --target $(WASM_TARGET) --release

native: ## Build the native module (an Envoy 1.40 dynamic module): target/native/libposturio.so
	cargo build -p posturio-native --profile native
	@# Replaced by a rename, never rewritten in place: a running Envoy maps the old file.
	cp target/native/libposturio_native.so target/native/libposturio.so.tmp
	mv -f target/native/libposturio.so.tmp target/native/libposturio.so

native-probe: ## The native module with its panic probe, for tests/native.rs: target/debug/libposturio_probe.so
	cargo build -p posturio-native --features panic-probe
	cp target/debug/libposturio_native.so target/debug/libposturio_probe.so.tmp
	mv -f target/debug/libposturio_probe.so.tmp target/debug/libposturio_probe.so

oci: build ## OCI image of the module for Istio and Envoy Gateway: target/oci/posturio
	$(PYTHON) packaging/oci_layout.py --wasm $(WASM) --out $(OCI_DIR) --version $(VERSION)

release: build ## Versioned module, checksum, policy JSON Schema and OCI image in target/release-artifacts/
	PYTHON=$(PYTHON) packaging/release.sh

cli: ## Build the posturio command: target/release/posturio (make install puts it on PATH)
	cargo build --release --bin posturio
	@echo 'cli: built $(POSTURIO)'

install: ## Install the posturio command in ~/.cargo/bin, which rustup puts on PATH
	cargo install --locked --path . --bin posturio

lint: wasm-target ## rustfmt, clippy (host and Wasm), no import cycle in src/policy/, no proxy_wasm in the core
	cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --target $(WASM_TARGET) -- -D warnings
	@# The policy and the pipeline must stay host-testable and adapter-neutral: no proxy_wasm.
	@if grep -rn 'proxy_wasm' src/policy/ src/pipeline/; then \
	  echo 'lint: src/policy/ and src/pipeline/ must not use proxy_wasm' >&2; exit 1; \
	fi
	$(MAKE) --no-print-directory modules

modules: ## Print the import graphs of src/policy/ and src/pipeline/; fail on a cycle or an import of a layer above
	cargo test --test module_graph -- --nocapture

fmt: ## Format the Rust code
	cargo fmt

test-deps: ## Install skopeo and docker-registry with apt when missing (for tests/oci.rs)
	@missing=; for tool in $(TEST_APT_PACKAGES); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  $$apt install -y --no-install-recommends $(TEST_APT_PACKAGES) \
	    || { $$apt update && $$apt install -y --no-install-recommends $(TEST_APT_PACKAGES); }; \
	fi

TEST_ENV := POSTURIO_ENVOY='$(CURDIR)/$(VENV)/bin/envoy' POSTURIO_PYTHON='$(CURDIR)/$(VENV)/bin/python' \
  POSTURIO_PROMETHEUS='$(CURDIR)/$(PROMETHEUS)'

test: lint venv prometheus build native native-probe oci test-deps ## Lint, build both, run every test against the Wasm build, then NATIVE_SUITES against the native one
	$(TEST_ENV) cargo test --workspace --all-targets
	$(TEST_ENV) POSTURIO_BUILD=native cargo test $(addprefix --test ,$(NATIVE_SUITES))

test-native: venv prometheus native native-probe ## Only the Envoy suites of NATIVE_SUITES, against the native build
	$(TEST_ENV) POSTURIO_BUILD=native cargo test --test native $(addprefix --test ,$(NATIVE_SUITES))

run: venv cli $(if $(filter native,$(BUILD)),native,build) ## Envoy with Posturio (BUILD=wasm|native) on 127.0.0.1:10000, mock providers behind it; envoy/policy.json applied live on save
	$(VENV)/bin/python envoy/run.py --envoy $(VENV)/bin/envoy --python $(VENV)/bin/python --posturio $(POSTURIO) \
	  --build $(BUILD)

render: cli ## Rewrite every policy copy in envoy/ and deploy/ from the policy file it names
	$(POSTURIO) render $(RENDERED)

native-floor: ## The native floor module for the benchmark: target/native/libposturio_floor.so
	cargo build --profile native -p posturio-native-floor
	@echo 'native-floor: built target/native/libposturio_floor.so'

# BENCH_QUICK=1: every script once, briefly, to check the machinery (figures mean nothing);
# the policy's native timing is left out (its checks run under `cargo test`).
BENCH_QUICK ?=
bench: venv build native native-floor ## Benchmarks: both builds and both floors vs bare Envoy (speed, memory per worker), the policy natively, the module in V8; BENCH_QUICK=1 for a short check
ifeq ($(filter-out 0,$(BENCH_QUICK)),)
	cargo bench --bench policy
endif
	@# Each script runs even when one before it found a problem (its report says which);
	@# the load benchmark last, so that its table (the targets at its end) stays on screen.
	@status=0; \
	for script in memory vm load; do \
	  echo "$(VENV)/bin/python benches/$$script.py"; \
	  $(VENV)/bin/python benches/$$script.py || status=1; \
	done; \
	exit $$status

soak: venv build ## Mixed traffic through Posturio for SOAK_SECS (600), Envoy's RSS bounded
	$(VENV)/bin/python benches/soak.py

fuzz: ## Run each fuzz target for FUZZ_SECS seconds (60); crashers go to fuzz/regressions/
	FUZZ_SECS=$(FUZZ_SECS) fuzz/run.sh

clean: ## Remove build output, .venv and .prometheus
	cargo clean
	rm -rf $(VENV) $(PROMETHEUS_DIR) tests/__pycache__
