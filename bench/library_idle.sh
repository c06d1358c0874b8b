#!/usr/bin/env bash
# The library's idle cost: the desktop app open on a library of 20 VMs (5 of them booting from
# installer ISOs), for SECONDS_IDLE (default 20) per phase, under its own Xvfb. Prints the
# file opens and read calls per second over the whole process (strace -f -c), and the same for
# the UI thread alone (with its CPU time), first idle, then with the pointer moving over the
# window (repaints). COVE=PATH measures another build (an older commit, for comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_IDLE:-20}"
if [ -z "${COVE:-}" ]; then
  cargo build -p cove >&2
  COVE="$PWD/target/debug/cove"
fi
command -v strace >/dev/null || { echo "library_idle: needs strace (apt-get install strace)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill "${main_pid:-0}" "${xvfb:-0}" "${app:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
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
main_pid=$(head -1 "$work/trace" | awk '{print $1}')
# The UI thread's CPU time in clock ticks (utime + stime of the main thread).
ui_ticks() { awk '{print $14 + $15}' "/proc/$main_pid/task/$main_pid/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
phase() { # NAME: measures the next $seconds, while "$@" runs (if given)
  local name=$1; shift
  local lines ticks
  lines=$(wc -l <"$work/trace")
  ticks=$(ui_ticks)
  if (($#)); then "$@" & mover=$!; fi
  sleep "$seconds"
  if (($#)); then kill "$mover" 2>/dev/null; wait "$mover" 2>/dev/null || true; fi
  local ticks_after
  ticks_after=$(ui_ticks)
  tail -n +"$((lines + 1))" "$work/trace" >"$work/$name"
  local opens reads ui_opens ui_reads vm_opens
  opens=$(grep -c ' openat(' "$work/$name" || true)
  reads=$(grep -c ' read(' "$work/$name" || true)
  ui_opens=$(grep "^$main_pid " "$work/$name" | grep -c ' openat(' || true)
  ui_reads=$(grep "^$main_pid " "$work/$name" | grep -c ' read(' || true)
  vm_opens=$(grep -c 'vm.toml' "$work/$name" || true)
  awk -v n="$name" -v o="$opens" -v r="$reads" -v uo="$ui_opens" -v ur="$ui_reads" -v v="$vm_opens" \
    -v s="$seconds" -v t="$((ticks_after - ticks))" -v hz="$hz" 'BEGIN {
    printf "%s, %ds:\n", n, s
    printf "  whole process: %.1f opens/s, %.1f read calls/s (vm.toml opens: %.1f/s)\n", o/s, r/s, v/s
    printf "  UI thread:     %.1f opens/s, %.1f read calls/s, CPU %.0f ms per second\n", uo/s, ur/s, 1000*t/hz/s }'
}
# Moves the pointer over the window in a loop, about 60 moves a second, so egui repaints.
wiggle() {
  local x=100
  while :; do
    x=$(((x + 37) % 900 + 100))
    xdotool mousemove "$x" 400 2>/dev/null
    sleep 0.016
  done
}
echo "library_idle: 20 VMs (5 from ISOs), $COVE"
phase idle
phase pointer-moving wiggle
kill "$main_pid" 2>/dev/null || true # strace ends with it
wait "$app" 2>/dev/null || true
