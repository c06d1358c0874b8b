#!/usr/bin/env bash
# The desktop app's cost: cold start to its first frame (the app logs it), and its resident
# memory when idle with an empty library and with one running VM (the test kernel, 256 MiB,
# with a display). Runs under its own Xvfb; release build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"
cargo build --release -p cove >&2
cove="$PWD/target/release/cove"
kernel_dir="${COVE_TEST_KERNEL_DIR:-$(bash kernel/build-test-kernel.sh)}"
work="$(mktemp -d)"
trap 'kill "${xvfb:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
display=:77
Xvfb "$display" -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
sleep 1
export DISPLAY="$display"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "cold start to first frame (ms), $runs runs:"
for i in $(seq "$runs"); do
  rm -rf "$work/empty"
  "$cove" --data-dir "$work/empty" >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q "first frame after" "$work/log" && break; sleep 0.1; done
  grep -o "first frame after [0-9]* ms" "$work/log" | awk '{print "  " $4}'
  if [ "$i" = "$runs" ]; then
    sleep 5
    echo "idle RSS, empty library: $(rss_kib "$pid") KiB"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

"$cove" --data-dir "$work/lib" create --name bench --kernel "$kernel_dir/vmlinux" \
  --initrd "$kernel_dir/initramfs.cpio" --append "console=tty0 console=ttyS0 COVE_INIT=spin" \
  --memory 256M --display >/dev/null
"$cove" --data-dir "$work/lib" --open bench >"$work/log2" 2>&1 &
pid=$!
sleep "${VM_SECONDS:-90}"
echo "RSS with one running VM (256 MiB guest, after ${VM_SECONDS:-90} s): $(rss_kib "$pid") KiB"
kill "$pid"; wait "$pid" 2>/dev/null || true
