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
targets=${FUZZ_TARGETS:-config request strict_json usage redact}

if ! rustup toolchain list | grep -q '^nightly'; then
  echo 'fuzz: cargo-fuzz needs the nightly toolchain: rustup toolchain install nightly' >&2
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked
fi

python3 make_seeds.py

status=0
for target in $targets; do
  mkdir -p "corpus/$target" "regressions/$target" "artifacts/$target"
  echo "== fuzz $target for ${secs}s"
  if ! cargo +nightly fuzz run "$target" "corpus/$target" "regressions/$target" -- \
      -max_total_time="$secs" -dict="dicts/$target.dict" -max_len=16384 \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    status=1
    for artifact in "artifacts/$target"/*; do
      [[ -f $artifact ]] || continue
      cp "$artifact" "regressions/$target/"
      echo "fuzz: $target failed; its input is saved as regressions/$target/$(basename "$artifact")" >&2
      echo "      reproduce: cd fuzz && cargo +nightly fuzz run $target regressions/$target/$(basename "$artifact")" >&2
    done
  fi
done
exit "$status"
