#!/usr/bin/env bash
# Fuzz smoke test: checks the seed corpus, builds each fuzz target (virtio_blk_queue,
# qmp_session, vm_config, pci_config_msix, emulation_decode, virtio_gpu_queues,
# virtio_input_queues, settings_toml, link_messages) with cargo-fuzz and runs
# libFuzzer on each for an equal share of FUZZ_SECONDS (FUZZ_SECONDS
# defaults to 60; 0 replays the seeds only), starting from the committed seeds in
# emu/fuzz/seeds/<target>/. Fails on a crash, a timeout or an out-of-memory; the input that did
# it is left in emu/fuzz/artifacts/<target>/.
#
# Stable toolchain only: `--sanitizer none` keeps cargo-fuzz from passing -Zsanitizer, so no
# nightly is needed (the coverage instrumentation, -Cpasses=sancov-module, is stable). Safe
# Rust's own checks stand in for AddressSanitizer; -a keeps debug assertions and overflow
# checks on in the optimized build.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
# One line: scripts/fuzz-long.sh reads this list with grep.
targets=(virtio_blk_queue qmp_session vm_config pci_config_msix emulation_decode virtio_gpu_queues virtio_input_queues settings_toml link_messages)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cd emu/fuzz
# The seeds are the generators' current output and still run to the results they expect.
cargo test --quiet

flags=(--sanitizer none -O -a)
each=$((seconds / ${#targets[@]}))
if [ "$seconds" != 0 ] && [ "$each" = 0 ]; then
  each=1
fi
for target in "${targets[@]}"; do
  cargo fuzz build "${flags[@]}" "$target"
  # New inputs go to corpus/ (ignored by git), so local runs build on earlier ones.
  mkdir -p "corpus/$target"
  if [ "$each" = 0 ]; then
    limit=(-runs=0)
  else
    limit=(-max_total_time="$each")
  fi
  echo "fuzz-smoke: fuzzing $target for ${each}s" >&2
  if ! cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    echo "fuzz-smoke: $target failed; reproduce with:" >&2
    echo "  cd emu/fuzz && cargo fuzz run ${flags[*]} $target artifacts/$target/<crash file>" >&2
    exit 1
  fi
done
