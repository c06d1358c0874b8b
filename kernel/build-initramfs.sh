#!/usr/bin/env bash
# Build the guest test initramfs: an UNCOMPRESSED newc cpio holding /dev/console,
# /proc, /sys, /root and /init (kernel/init.c). It is uncompressed on purpose:
# gunzipping even 1 MB costs ~100 s of emulated guest time on nested-KVM hosts.
#
# Usage: build-initramfs.sh OUTPUT [INIT_OUTPUT]
#
# With INIT_OUTPUT, the /init binary is also written there on its own: tests put
# it on disk images as /sbin/init (tests/src/disk_images.rs).
#
# The archive is made with the kernel's own usr/gen_init_cpio from a list file,
# so no root and no mknod are needed. The tool comes from $GEN_INIT_CPIO if set
# (build-test-kernel.sh passes the one from its kernel tree), else from
# $COVE_CACHE_DIR/tools, else it is compiled from usr/gen_init_cpio.c taken out
# of the linux-source tarball (and kept in the cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build-initramfs.sh OUTPUT [INIT_OUTPUT]}
init_out=${2:-}
cache=${COVE_CACHE_DIR:-$HOME/.cache/cove}
tarball=${LINUX_SOURCE_TARBALL:-/usr/src/linux-source-6.12.tar.xz}

log() { printf '[initramfs] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Locate (or build and cache) gen_init_cpio.
gen=${GEN_INIT_CPIO:-}
if [[ -z $gen ]]; then
	gen=$cache/tools/gen_init_cpio
	if [[ ! -x $gen ]]; then
		[[ -r $tarball ]] || die "no $tarball to take usr/gen_init_cpio.c from (apt-get install linux-source-6.12)"
		log "building gen_init_cpio from $tarball"
		tar -xJf "$tarball" -O --wildcards '*/usr/gen_init_cpio.c' >"$tmp/gen_init_cpio.c"
		[[ -s $tmp/gen_init_cpio.c ]] || die "usr/gen_init_cpio.c not found in $tarball"
		mkdir -p "$cache/tools"
		gcc -O2 -o "$tmp/gen_init_cpio" "$tmp/gen_init_cpio.c"
		mv -f "$tmp/gen_init_cpio" "$gen"
	fi
fi
[[ -x $gen ]] || die "gen_init_cpio not executable: $gen"

# /init: freestanding, static, raw syscalls only.
gcc -static -nostdlib -Os -fno-asynchronous-unwind-tables \
	-ffreestanding -fno-stack-protector -fno-pie -no-pie -s -Wl,--build-id=none \
	-o "$tmp/init" "$here/init.c"

cat >"$tmp/list" <<EOF
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
dir /proc 755 0 0
dir /sys 755 0 0
dir /root 700 0 0
file /init $tmp/init 755 0 0
EOF

# -t 0: fixed mtimes, so the archive is reproducible.
"$gen" -t 0 "$tmp/list" >"$tmp/initramfs.cpio"
[[ $(head -c 6 "$tmp/initramfs.cpio") == 070701 ]] || die "gen_init_cpio did not write a newc archive"

mkdir -p "$(dirname "$out")"
mv -f "$tmp/initramfs.cpio" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
log "wrote $out ($(stat -c %s "$out") bytes)"

if [[ -n $init_out ]]; then
	mkdir -p "$(dirname "$init_out")"
	cp "$tmp/init" "$init_out.tmp.$$"
	mv -f "$init_out.tmp.$$" "$init_out"
	log "wrote $init_out ($(stat -c %s "$init_out") bytes)"
fi
