#!/usr/bin/env bash
# The desktop app's cost: cold start to its first frame (the app logs it), its resident memory
# when idle with an empty library and with one running VM (the test kernel, 256 MiB, with a
# display), the VM process's resident memory beyond guest RAM, and the time from the app's
# start to the guest's first frame in its window (VM process spawn included). Runs under its
# own Xvfb; release build.
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
echo "GUI RSS with one running VM (256 MiB guest, after ${VM_SECONDS:-90} s): $(rss_kib "$pid") KiB"
vm_pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/lib/bench/.cove-run.lock")
# Guest RAM is the one mapping of the guest's size (plus at most a few guard pages); everything
# else is the VMM.
read -r vmm_kib guest_kib < <(python3 - "$vm_pid" <<'PY'
import re, sys
vmm = guest = 0
is_guest = False
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
    if m:
        size = int(m.group(2), 16) - int(m.group(1), 16)
        is_guest = 256 << 20 <= size <= (256 << 20) + (4 << 20)
    elif line.startswith("Rss:"):
        kib = int(line.split()[1])
        if is_guest:
            guest += kib
        else:
            vmm += kib
print(vmm, guest)
PY
)
echo "VM process (pid $vm_pid) RSS: $(rss_kib "$vm_pid") KiB; beyond guest RAM: $vmm_kib KiB (guest RAM touched: $guest_kib KiB)"
grep -o "first guest frame [0-9]* ms after its VM process was started" "$work/log2" | sed 's/^/app start to /' || echo "no guest frame within ${VM_SECONDS:-90} s"
kill "$pid"; wait "$pid" 2>/dev/null || true
