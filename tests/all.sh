#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the contracts' forge
# tests, host tests, the static ARM builds with their unit tests under qemu,
# and the sandbox suite on real x86_64, aarch64 and ARMv7 kernels under QEMU
# (tests/vm/, cgroup v2 and v1), and a whole lease on aarch64 and ARMv7
# gateways under systemd (tests/vm/lease.sh). Run tests/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

step() { printf '\n==== %s\n' "$*"; }
start=$SECONDS

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "contracts: forge build + unit, fuzz and invariant tests"
(cd contracts && npm test)

step "host tests"
if [ "$(id -u)" != 0 ]; then
    echo "NOTE: not root; tests that need root or cgroups will say SKIP"
else
    # As root a sandbox test has what it needs: a skip would hide a failure.
    export DEDGE_REQUIRE_SANDBOX=1
fi
cargo test --locked

step "the README's main job: tests/demo.sh"
tests/demo.sh

step "cross builds + unit tests under qemu"
cross/build.sh all

step "the sandbox suite on real kernels (tests/vm/suite.sh)"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: THE VM SUITE NEEDS ROOT (it builds guest rootfs and runs the sandbox as root in them)"
else
    tests/vm/suite.sh
fi

step "a whole lease on aarch64 and ARMv7 under systemd with cgroup v2 (tests/vm/lease.sh)"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: THE VM LEASE TEST NEEDS ROOT"
else
    tests/vm/lease.sh arm64
    tests/vm/lease.sh armhf
fi

step "all checks passed in $((SECONDS - start)) s"
