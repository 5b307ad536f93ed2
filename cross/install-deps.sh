#!/usr/bin/env bash
# Installs what cross builds need, on Debian as root (or with sudo):
# rustup's aarch64 musl target and rust-src (for build-std: the release binaries of both targets), Debian's
# cross gcc, qemu-user-static and file, and zig from PyPI. Idempotent: quick
# when everything is already there.
set -euo pipefail

# 0.15.2, not newer: zig 0.17.1 links its own malloc in place of musl's
# (0.16 unchecked), and its calloc writes zeros over every page it hands out; sled's
# 10 MiB of zeroed metrics counters then became resident (15.6 MiB idle
# RSS on armhf against 3.8 MiB on aarch64, whose musl is rustup's).
ZIGLANG_VERSION=0.15.2

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_apt=()
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
# The cross gcc only recommends its C library headers; without them C code
# (ring) fails on `bits/libc-header-start.h`, so ask for them by name.
[ -f /usr/aarch64-linux-gnu/include/stdio.h ] || need_apt+=(libc6-dev-arm64-cross)
command -v file >/dev/null || need_apt+=(file)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "cross: installing ${need_apt[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

installed_targets=$(rustup target list --installed)
grep -qx aarch64-unknown-linux-musl <<<"$installed_targets" || rustup target add aarch64-unknown-linux-musl
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src

if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
    echo "cross: installing ziglang==$ZIGLANG_VERSION from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "ziglang==$ZIGLANG_VERSION"
fi
