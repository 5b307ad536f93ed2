#!/usr/bin/env bash
# Builds static release binaries of dedge for a gateway target, checks that
# they are static and run, and runs the unit tests under qemu-user.
#
#   cross/build.sh TARGET [--no-test]     TARGET: aarch64 | armv7 | all | a full triple
#
# The result lands in target/TRIPLE/release/dedge. Linker settings live in
# .cargo/config.toml; docs/cross-build.md explains the choices.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

run_tests=1
targets=()
for arg in "$@"; do
    case "$arg" in
        --no-test) run_tests=0 ;;
        -h|--help) usage ;;
        aarch64|aarch64-unknown-linux-musl) targets+=(aarch64-unknown-linux-musl) ;;
        armv7|armv7-unknown-linux-musleabihf) targets+=(armv7-unknown-linux-musleabihf) ;;
        all) targets+=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf) ;;
        *) echo "cross/build.sh: unknown target or option '$arg'" >&2; usage ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || usage

cross/install-deps.sh

build_one() {
    local triple=$1 qemu=() cargo=(cargo)
    case "$triple" in
        aarch64-*) qemu=(qemu-aarch64-static -cpu cortex-a53) ;;
        armv7-*)
            qemu=(qemu-arm-static -cpu cortex-a8)
            # No prebuilt std for this target: build it from rust-src. Build-std
            # is unstable; RUSTC_BOOTSTRAP lets the stable toolchain use it.
            export RUSTC_BOOTSTRAP=1
            cargo=(cargo -Zbuild-std=std,panic_abort)
            ;;
    esac

    echo "== $triple: release build"
    local start=$SECONDS
    "${cargo[@]}" build --locked --release --target "$triple"
    local bin="target/$triple/release/dedge"
    echo "   built in $((SECONDS - start)) s"

    local kind
    kind=$(file -b "$bin")
    echo "   file: $kind"
    if ! grep -qE 'statically linked|static-pie linked' <<<"$kind"; then
        echo "cross/build.sh: $bin is not statically linked" >&2
        exit 1
    fi
    local bytes
    bytes=$(stat -c %s "$bin")
    echo "   size: $bytes bytes ($(( (bytes + 1023) / 1024 )) KiB)"

    local version
    version=$("${qemu[@]}" "$bin" version)
    echo "$version" | sed 's/^/   qemu: /'
    if ! grep -qx "target $triple" <<<"$version"; then
        echo "cross/build.sh: $bin does not report target $triple under qemu" >&2
        exit 1
    fi

    if [ "$run_tests" = 1 ]; then
        echo "== $triple: unit tests under ${qemu[*]}"
        # The runner in .cargo/config.toml runs each test binary under qemu.
        "${cargo[@]}" test --locked --target "$triple" --lib --bins
    fi
    unset RUSTC_BOOTSTRAP
}

for t in "${targets[@]}"; do
    build_one "$t"
done
