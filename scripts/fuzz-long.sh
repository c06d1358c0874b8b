#!/usr/bin/env bash
# A long fuzzing run (not in CI): every target in scripts/fuzz-smoke.sh for SECONDS_EACH
# seconds (default 600), from the committed seeds and the local corpus, then one line per
# target with its executions, coverage and corpus size. Stops at the first crash, leaving the
# input in emu/fuzz/artifacts/<target>/. Stable toolchain only, as the smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
each=${SECONDS_EACH:-${1:-600}}
# The target list is the smoke's, so a new target is fuzzed by both.
targets_line=$(grep -E '^targets=\(' scripts/fuzz-smoke.sh)
eval "$targets_line"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
cd emu/fuzz
flags=(--sanitizer none -O -a)
summary=()
for target in "${targets[@]}"; do
  cargo fuzz build "${flags[@]}" "$target"
  mkdir -p "corpus/$target"
  log=$(mktemp)
  echo "fuzz-long: $target for ${each}s" >&2
  if ! cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$each" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>"$log"; then
    tail -n 40 "$log" >&2
    echo "fuzz-long: $target crashed; the input is in emu/fuzz/artifacts/$target/" >&2
    exit 1
  fi
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
  summary+=("$(printf '%-18s %s' "$target" "$done_line")")
  rm -f "$log"
done
echo "fuzz-long: ${each}s per target, no crash"
printf '%s\n' "${summary[@]}"
