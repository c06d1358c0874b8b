#!/usr/bin/env bash
# Creates (once) a Python virtual environment with the stock `qemu.qmp` client, for the QMP
# tests, and prints its python interpreter. Cached outside the tree; rebuilt when
# requirements.txt changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
venv="${COVE_QMP_VENV:-$HOME/.cache/cove/qmp-venv/$key}"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import qemu.qmp' 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
fi
echo "$venv/bin/python"
