#!/usr/bin/env bash
# Installs what Cove needs to build, test and boot its guest test kernel on Debian 12.
# Idempotent: packages already present are not reinstalled.
set -euo pipefail

packages=(
  # build
  build-essential pkg-config
  # guest test kernel (kernel/build-test-kernel.sh)
  linux-source-6.12 bc bison flex libelf-dev libssl-dev cpio xz-utils zstd
  # tests: disk images and their checks, namespaces and user switching
  e2fsprogs fdisk util-linux qemu-utils qemu-system-x86 python3 python3-venv xorriso
  # OS detection of installer ISOs (cove detect-os, the wizard)
  osinfo-db
  # display: wgpu on Mesa (lavapipe Vulkan, llvmpipe GL), X11 for the window, Xvfb and
  # xdotool for the end-to-end window tests
  mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libx11-xcb1
  libxcursor1 libxrandr2 libxi6 xvfb xdotool x11-utils x11-apps
)

missing_packages() {
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
}
# Two rounds: installing Debian 12's qemu-system-x86 removes a newer qemu-utils from backports
# (the machine image has one), so the second round installs Debian 12's qemu-utils beside it.
for round in 1 2; do
  missing_packages
  ((${#missing[@]})) || break
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  [ "$round" = 2 ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
done
missing_packages
if ((${#missing[@]})); then
  echo "setup: still missing after installing: ${missing[*]}" >&2
  exit 1
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust 1.95 or newer (https://rustup.rs)" >&2
  exit 1
fi
