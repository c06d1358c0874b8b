#!/usr/bin/env bash
# Wall and CPU time per guest frame, guest memory to GPU texture: a full 1920x1080 frame and
# a 64x64 dirty rectangle (virtio-gpu through the device harness, wgpu on whatever adapter
# Mesa offers; lavapipe here).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p display --bench frame_cost
