#!/usr/bin/env bash
# The library's idle cost: the desktop app open on a library of 20 VMs (5 of them booting from
# installer ISOs), nobody touching it, for SECONDS (default 20) under its own Xvfb. Prints the
# file opens and read calls per second over the whole process (strace -f -c), and the same for
# the UI thread alone. COVE=PATH measures another build (an older commit, for comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_IDLE:-20}"
if [ -z "${COVE:-}" ]; then
  cargo build -p cove >&2
  COVE="$PWD/target/debug/cove"
fi
command -v strace >/dev/null || { echo "library_idle: needs strace (apt-get install strace)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${xvfb:-0}" "${app:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
display=:78
Xvfb "$display" -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
sleep 1
export DISPLAY="$display"

mkdir -p "$work/vms" "$work/iso"
echo readme >"$work/iso/README"
xorriso -as mkisofs -quiet -V "Debian 11.8.0 amd64 n" -o "$work/installer.iso" "$work/iso" 2>/dev/null
for i in $(seq 1 20); do
  mkdir -p "$work/vms/vm$i"
  if [ "$i" -le 5 ]; then
    boot="[boot]
kind = \"firmware\"
cdrom = \"$work/installer.iso\""
  else
    boot="[boot]
kind = \"kernel\"
kernel = \"/boot/vmlinux\""
  fi
  printf 'name = "vm%s"\n%s\n' "$i" "$boot" >"$work/vms/vm$i/vm.toml"
done

strace -f -qq -e trace=openat,read -o "$work/trace" "$COVE" --data-dir "$work/vms" &
app=$!
sleep 8 # start-up: fonts, GPU, the first scan
start_lines=$(wc -l <"$work/trace")
sleep "$seconds"
kill "$app" 2>/dev/null || true
wait "$app" 2>/dev/null || true
tail -n +"$((start_lines + 1))" "$work/trace" >"$work/idle"
main_pid=$(head -1 "$work/trace" | awk '{print $1}')
count() { grep -c "$1" "$2" || true; }
opens=$(count ' openat(' "$work/idle")
reads=$(count ' read(' "$work/idle")
ui_opens=$(grep "^$main_pid " "$work/idle" | grep -c ' openat(' || true)
ui_reads=$(grep "^$main_pid " "$work/idle" | grep -c ' read(' || true)
vm_opens=$(grep -c 'vm.toml' "$work/idle" || true)
echo "library_idle: 20 VMs (5 from ISOs), idle ${seconds}s"
awk -v o="$opens" -v r="$reads" -v uo="$ui_opens" -v ur="$ui_reads" -v v="$vm_opens" -v s="$seconds" 'BEGIN {
  printf "  whole process: %.1f opens/s, %.1f read calls/s (vm.toml opens: %.1f/s)\n", o/s, r/s, v/s
  printf "  UI thread:     %.1f opens/s, %.1f read calls/s\n", uo/s, ur/s }'
