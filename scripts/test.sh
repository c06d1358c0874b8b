#!/usr/bin/env bash
# The whole test suite: set up, check formatting and lints, build the guest test kernel
# (cached outside the tree), then every test in the workspace, then a short fuzzing run
# (scripts/fuzz-smoke.sh, FUZZ_SECONDS).
# KVM tests need /dev/kvm; under CI=true its absence is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The lint gate first: a formatting or clippy finding fails the run before any test.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
COVE_TEST_KERNEL_DIR=$(bash kernel/build-test-kernel.sh)
COVE_STOCK_KERNEL_DIR=$(bash kernel/fetch-stock-kernel.sh)
export COVE_STOCK_KERNEL_DIR
export COVE_TEST_KERNEL_DIR
# The stock QMP client (qemu.qmp from PyPI) the control-plane tests drive Cove with.
bash tests/qmp/ensure-venv.sh >/dev/null
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=2
bash scripts/fuzz-smoke.sh
