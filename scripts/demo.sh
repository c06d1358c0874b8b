#!/usr/bin/env bash
# The main job on a fresh machine: set up, build Cove, build the guest test kernel (cached
# outside the tree), and boot it headless with the guest console on this terminal.
# Ctrl-A X quits; the guest powers off or reboots by itself at the end of its boot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p cove
kdir=$(bash kernel/build-test-kernel.sh)
kernel="$kdir/bzImage"
# Nested KVM without hardware virtualization cannot run the bzImage's decompressor: use the ELF.
[ -d /sys/module/kvm_pvm ] && kernel="$kdir/vmlinux"
exec target/release/cove run --kernel "$kernel" --initrd "$kdir/initramfs.cpio" \
  --append "console=ttyS0 panic=-1" --cpus 2 --memory 512M --no-reboot --stats "$@"
