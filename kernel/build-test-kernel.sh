#!/usr/bin/env bash
# Build (or reuse) Cove's guest test kernel and its initramfs.
#
# Outputs, cached outside the source tree in
#   ${COVE_CACHE_DIR:-$HOME/.cache/cove}/test-kernel/<key>/
# where <key> hashes what determines the kernel (the config fragment, the
# linux-source package version, SCRIPT_VERSION). The initramfs is rebuilt in
# place, in seconds, whenever init.c or build-initramfs.sh change (its own hash
# is kept in initramfs.key), so editing /init never rebuilds the kernel:
#   vmlinux         uncompressed ELF kernel (boot this on nested/emulating KVM hosts)
#   bzImage         compressed kernel (for real hardware)
#   initramfs.cpio  uncompressed newc initramfs whose /init is kernel/init.c
#   init            that /init on its own (tests put it on disk images)
#   config, System.map, build.log
#
# The kernel is `make tinyconfig` + kernel/test-kernel.config + olddefconfig,
# built from Debian's linux-source-6.12. Progress goes to stderr; on success the
# only thing printed on stdout is the cache directory.
set -euo pipefail

# Bump to invalidate cached kernels when this script's output changes.
SCRIPT_VERSION=2

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/test-kernel.config
init_src=$here/init.c
initramfs_script=$here/build-initramfs.sh
source_pkg=linux-source-6.12
tarball=/usr/src/$source_pkg.tar.xz
packages=("$source_pkg" bc bison flex libelf-dev libssl-dev cpio xz-utils gcc make)
cache_base=${COVE_CACHE_DIR:-$HOME/.cache/cove}
cache_root=$cache_base/test-kernel
logfile=

log() {
	printf '[test-kernel] %s\n' "$*" >&2
	if [[ -n $logfile ]]; then printf '[test-kernel] %s\n' "$*" >>"$logfile"; fi
}
die() { log "error: $*"; exit 1; }

# Install whatever of $packages is missing, if this is a system with apt-get.
ensure_packages() {
	command -v dpkg-query >/dev/null || return 0
	local p missing=()
	for p in "${packages[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then return 0; fi
	command -v apt-get >/dev/null || die "missing packages: ${missing[*]}"
	local sudo=()
	((EUID == 0)) || sudo=(sudo)
	log "installing ${missing[*]}"
	"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
		{ "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

kernel_complete() { [[ -s $1/vmlinux && -s $1/bzImage ]]; }
initramfs_current() { [[ -s $1/initramfs.cpio && -s $1/init && $(cat "$1/initramfs.key" 2>/dev/null) == "$initramfs_key" ]]; }
outputs_complete() { kernel_complete "$1" && initramfs_current "$1"; }

# (Re)builds the initramfs of cache entry $1 with gen_init_cpio $2 (or the cached tool).
build_initramfs() {
	GEN_INIT_CPIO=${2:-} bash "$initramfs_script" "$1/initramfs.cpio.tmp.$$" "$1/init.tmp.$$" 2>>"${logfile:-/dev/stderr}"
	mv -f "$1/init.tmp.$$" "$1/init"
	mv -f "$1/initramfs.cpio.tmp.$$" "$1/initramfs.cpio"
	printf '%s\n' "$initramfs_key" >"$1/initramfs.key"
}

ensure_packages
[[ -r $tarball ]] || die "kernel source tarball not found: $tarball"
for f in "$fragment" "$init_src" "$initramfs_script"; do [[ -r $f ]] || die "missing $f"; done

if command -v dpkg-query >/dev/null; then
	source_version=$(dpkg-query -W -f='${Version}' "$source_pkg")
else
	source_version=$(stat -c '%s-%Y' "$tarball")
fi
key=$(
	{
		printf 'script=%s\nsource=%s\n' "$SCRIPT_VERSION" "$source_version"
		cat "$fragment"
	} | sha256sum | cut -c1-12
)
initramfs_key=$(cat "$init_src" "$initramfs_script" | sha256sum | cut -c1-12)
dir=$cache_root/$key

if outputs_complete "$dir"; then
	printf '%s\n' "$dir"
	exit 0
fi

# One build per key at a time; whoever waited finds the outputs ready.
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if outputs_complete "$dir"; then
	printf '%s\n' "$dir"
	exit 0
fi
if kernel_complete "$dir" && [[ -x $cache_base/tools/gen_init_cpio ]]; then
	log "kernel $key is cached; rebuilding its initramfs ($initramfs_key)"
	build_initramfs "$dir"
	printf '%s\n' "$dir"
	exit 0
fi

logfile=$dir/build.log
: >"$logfile"
trap 'log "FAILED; last lines of $logfile:"; tail -n 40 "$logfile" >&2' ERR
started=$SECONDS
log "building test kernel $key ($source_pkg $source_version) in $dir"

src=$dir/src
rm -rf "$src"
mkdir -p "$src"
log "extracting $tarball"
tar -xJf "$tarball" -C "$src" --strip-components=1

kmake() { nice -n 10 make -C "$src" ARCH=x86_64 "$@" >>"$logfile" 2>&1; }

log "configuring: tinyconfig + $(basename "$fragment")"
kmake tinyconfig
(cd "$src" && ./scripts/kconfig/merge_config.sh -m .config "$fragment") >>"$logfile" 2>&1
kmake olddefconfig

# Keep the fragment honest: every assignment must survive, every "is not set" must hold.
bad=()
while IFS= read -r line; do
	if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=.+$ ]]; then
		grep -qxF -- "$line" "$src/.config" ||
			bad+=("$line (got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$src/.config" || echo absent))")
	elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
		if grep -qE "^${BASH_REMATCH[1]}=" "$src/.config"; then
			bad+=("$line (got: $(grep -E "^${BASH_REMATCH[1]}=" "$src/.config"))")
		fi
	fi
done <"$fragment"
if ((${#bad[@]})); then
	log "config fragment lines that did not survive olddefconfig:"
	printf '  %s\n' "${bad[@]}" | tee -a "$logfile" >&2
	die "fix $fragment"
fi
cp "$src/.config" "$dir/config"

log "building vmlinux and bzImage with -j$(nproc) (full log: $logfile)"
kmake -j"$(nproc)" vmlinux bzImage

# Copy, then rename, so a reader never sees a half-written file.
install_file() {
	cp "$1" "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}
install_file "$src/vmlinux" "$dir/vmlinux"
install_file "$src/arch/x86/boot/bzImage" "$dir/bzImage"
install_file "$src/System.map" "$dir/System.map"

# The initramfs goes last: its presence marks the cache entry complete.
gen=$src/usr/gen_init_cpio
if [[ ! -x $gen ]]; then gcc -O2 -o "$gen" "$src/usr/gen_init_cpio.c" >>"$logfile" 2>&1; fi
# Also keep the tool for build-initramfs.sh runs that have no kernel tree at hand.
mkdir -p "$cache_base/tools"
install_file "$gen" "$cache_base/tools/gen_init_cpio"
build_initramfs "$dir" "$gen"

rm -rf "$src"
trap - ERR
log "done in $((SECONDS - started)) s: vmlinux $(stat -c %s "$dir/vmlinux") B, bzImage $(stat -c %s "$dir/bzImage") B, initramfs.cpio $(stat -c %s "$dir/initramfs.cpio") B"
printf '%s\n' "$dir"
