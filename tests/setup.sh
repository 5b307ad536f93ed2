#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (as root or
# with sudo): Rust components, what the cross builds need, and the contracts'
# toolchain (forge, anvil, cast, solc, OpenZeppelin) from npm. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v rustup >/dev/null || { echo "setup: rustup is required (https://rustup.rs)" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: node and npm are required" >&2; exit 1; }

rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
cross/install-deps.sh
(cd contracts && npm ci --no-audit --no-fund --loglevel=error)
echo "setup: done"
