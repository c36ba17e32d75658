#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECS seconds each (default 60), on the nightly toolchain.
#
#   fuzz/run.sh                          # all targets, 60 s each (what `make fuzz` runs)
#   FUZZ_SECS=20 fuzz/run.sh             # a short pass
#   FUZZ_TARGETS="request" fuzz/run.sh   # one target
#
# Each run starts from the generated seeds (make_seeds.py) plus what earlier runs found
# (fuzz/corpus/, not committed) and replays every saved crasher (fuzz/regressions/<target>/,
# committed). A new crash is copied into fuzz/regressions/<target>/ and the script fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

secs=${FUZZ_SECS:-60}
targets=${FUZZ_TARGETS:-config request strict_json usage eventstream redact pool fold answer_stream}

if ! rustup toolchain list | grep -q '^nightly'; then
  echo 'fuzz: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly' >&2
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

python3 make_seeds.py

failed=()
for target in $targets; do
  mkdir -p "corpus/$target" "regressions/$target" "artifacts/$target" logs
  echo "== fuzz $target for ${secs}s"
  if ! cargo +nightly fuzz run "$target" "corpus/$target" "regressions/$target" -- \
      -max_total_time="$secs" -dict="dicts/$target.dict" -max_len=16384 \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tee "logs/$target.log"; then
    failed+=("$target")
    for artifact in "artifacts/$target"/*; do
      [[ -f $artifact ]] || continue
      cp "$artifact" "regressions/$target/"
    done
  fi
done

# The fuzzers' progress is long; what failed is repeated here, at the end, where a log's tail
# shows it.
for target in "${failed[@]}"; do
  echo
  echo "fuzz: $target failed; what it printed about the failure (the whole run: fuzz/logs/$target.log):"
  grep -E -A 3 'panicked at' "logs/$target.log" | head -n 12 || true
  grep -E -A 14 '==[0-9]+==ERROR: [A-Za-z]+Sanitizer|ALARM: working|out-of-memory' \
    "logs/$target.log" | head -n 30 || true
  grep -E '^SUMMARY|^error' "logs/$target.log" | head -n 5 || true
  for artifact in "artifacts/$target"/*; do
    [[ -f $artifact ]] || continue
    echo "fuzz: its input is saved as regressions/$target/$(basename "$artifact"), base64: $(base64 -w0 "$artifact" | head -c 2000)"
    echo "      reproduce: cd fuzz && cargo +nightly fuzz run $target regressions/$target/$(basename "$artifact")"
  done
done
[[ ${#failed[@]} -eq 0 ]]
