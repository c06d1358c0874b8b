#!/usr/bin/env bash
# Fetch (or reuse) Debian's stock 6.12 amd64 kernel for guest tests.
#
# Outputs, cached outside the source tree in
#   ${COVE_CACHE_DIR:-$HOME/.cache/cove}/stock-kernel/<kernel release>/
#   vmlinuz         the packaged (compressed, zstd) kernel image
#   vmlinux         uncompressed ELF, made with the kernel's scripts/extract-vmlinux
#                   (the zstd decompressor in vmlinuz needs BMI2, which the nested
#                   KVM instruction emulator lacks)
#   config, package (the .deb's name and version; Debian's System.map is a stub)
#   initramfs.cpio  the same tiny uncompressed initramfs as the test kernel's
#
# The package is the versioned one that linux-image-6.12-amd64 depends on
# (bookworm-security). Progress goes to stderr; on success the only thing
# printed on stdout is the cache directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
meta_pkg=linux-image-6.12-amd64
source_pkg=linux-source-6.12
tarball=/usr/src/$source_pkg.tar.xz
cache_base=${COVE_CACHE_DIR:-$HOME/.cache/cove}

log() { printf '[stock-kernel] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v apt-get >/dev/null || die "needs apt-get (a Debian/Ubuntu host)"
sudo=()
((EUID == 0)) || sudo=(sudo)

# Install the given commands' packages if missing: "command:package ...".
ensure_tools() {
	local pair missing=()
	for pair in "$@"; do
		if [[ ${pair%%:*} == /* ]]; then
			[[ -e ${pair%%:*} ]] || missing+=("${pair#*:}")
		else
			command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
		fi
	done
	if ((${#missing[@]} == 0)); then return 0; fi
	log "installing ${missing[*]}"
	"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
		{ "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# The versioned image package, e.g. linux-image-6.12.117+deb12-amd64(-unsigned).
image_pkg() {
	apt-cache depends "$meta_pkg" 2>/dev/null |
		awk '!found && $1 ~ /Depends:$/ && $2 ~ /^linux-image-6\.12\..*-amd64(-unsigned)?$/ { print $2; found = 1 }'
}

pkg=$(image_pkg)
if [[ -z $pkg ]]; then
	log "no $meta_pkg in the apt lists; running apt-get update"
	"${sudo[@]}" apt-get update >&2
	pkg=$(image_pkg)
fi
[[ -n $pkg ]] || die "cannot find the image package $meta_pkg depends on (is bookworm-security in sources.list?)"
release=${pkg#linux-image-}
release=${release%-unsigned}
dir=$cache_base/stock-kernel/$release

outputs_complete() { [[ -s $dir/vmlinux && -s $dir/vmlinuz && -s $dir/initramfs.cpio ]]; }
if outputs_complete; then
	printf '%s\n' "$dir"
	exit 0
fi

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if outputs_complete; then
	printf '%s\n' "$dir"
	exit 0
fi

ensure_tools "$tarball:$source_pkg" zstd:zstd file:file dpkg-deb:dpkg readelf:binutils gcc:gcc

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "downloading $pkg"
# apt-get download writes into the current directory. As root it warns that the
# download is unsandboxed because _apt cannot write there; that is harmless.
if ! (cd "$tmp" && apt-get download "$pkg") >&2; then
	log "download failed; running apt-get update and retrying"
	"${sudo[@]}" apt-get update >&2
	(cd "$tmp" && apt-get download "$pkg") >&2
fi
deb=$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)
[[ -n $deb ]] || die "apt-get download produced no .deb"
printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >"$tmp/package"

log "unpacking $(basename "$deb")"
dpkg-deb -x "$deb" "$tmp/root"
vmlinuz=$tmp/root/boot/vmlinuz-$release
[[ -s $vmlinuz ]] || die "no /boot/vmlinuz-$release in $deb"

# scripts/extract-vmlinux from the matching kernel source, cached with the other tools.
extract=$cache_base/tools/extract-vmlinux
if [[ ! -x $extract ]]; then
	log "taking scripts/extract-vmlinux from $tarball"
	mkdir -p "$cache_base/tools"
	tar -xJf "$tarball" -O --wildcards '*/scripts/extract-vmlinux' >"$tmp/extract-vmlinux"
	[[ -s $tmp/extract-vmlinux ]] || die "scripts/extract-vmlinux not found in $tarball"
	chmod +x "$tmp/extract-vmlinux"
	mv -f "$tmp/extract-vmlinux" "$extract"
fi

log "extracting the ELF vmlinux"
"$extract" "$vmlinuz" >"$tmp/vmlinux"
[[ $(head -c 4 "$tmp/vmlinux" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] ||
	die "extract-vmlinux did not produce an ELF file"
kind=$(file -b "$tmp/vmlinux")
[[ $kind == "ELF 64-bit"*x86-64* ]] || die "vmlinux is not an x86-64 ELF: $kind"

bash "$here/build-initramfs.sh" "$tmp/initramfs.cpio"

# Move the outputs in; the initramfs goes last, as it marks the entry complete.
cp "$tmp/root/boot/config-$release" "$dir/config"
mv -f "$tmp/package" "$dir/package"
mv -f "$vmlinuz" "$dir/vmlinuz"
mv -f "$tmp/vmlinux" "$dir/vmlinux"
mv -f "$tmp/initramfs.cpio" "$dir/initramfs.cpio"
log "done: $(cat "$dir/package"); vmlinux $(stat -c %s "$dir/vmlinux") B"
printf '%s\n' "$dir"
