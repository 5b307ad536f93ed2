#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the contracts' forge
# tests, host tests, and the static ARM builds with their unit tests under qemu. Run tests/setup.sh first.
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
fi
cargo test --locked

step "the README's main job: tests/demo.sh"
tests/demo.sh

step "cross builds + unit tests under qemu"
cross/build.sh all

step "all checks passed in $((SECONDS - start)) s"
