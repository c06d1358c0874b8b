#!/usr/bin/env bash
# virtio-blk 4 KiB random-read IOPS through the CPU-less device harness (queue depth 1 and 32,
# interrupt-driven and polling waits) against plain pread of the same offsets.
# BENCH_SECONDS (default 3) is the length of each measurement. See emu/benches/blk_iops.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench -p emu --features harness --bench blk_iops "$@"
