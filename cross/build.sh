#!/usr/bin/env bash
# Builds static release binaries of dedge for a gateway target, checks that
# they are static and run, and runs the unit tests under qemu-user.
#
#   cross/build.sh TARGET [--no-test]     TARGET: aarch64 | armv7 | all | a full triple
#
# x86_64 (x86_64-unknown-linux-musl) builds the same static binary for this
# machine, for benchmarks of the agent a gateway runs (benches/lease.rs,
# DEDGE_BENCH_AGENT); it is not a gateway target and has no size budget.
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
        x86_64|x86_64-unknown-linux-musl) targets+=(x86_64-unknown-linux-musl) ;;
        *) echo "cross/build.sh: unknown target or option '$arg'" >&2; usage ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || usage

cross/install-deps.sh

# The most a gateway binary may weigh (issue 13: 3.0 MiB with everything).
# Release builds are reproducible byte for byte, so this is a hard line, not
# a tolerance; the build says how far under it is.
SIZE_BUDGET=3145728

build_one() {
    local triple=$1 qemu=() cargo=(cargo) flags=()
    # std is built from rust-src for both targets (build-std is unstable;
    # RUSTC_BOOTSTRAP lets the stable toolchain use it): armv7 has no
    # prebuilt musl std here, and for both it lets the release binary leave
    # out unwind tables. The release profile aborts on panic, so nothing
    # unwinds; a panic still prints its message. 0.6 MiB less on aarch64.
    # RUSTFLAGS replaces a target's rustflags from .cargo/config.toml, so
    # armv7's link flag is repeated here. std without its default
    # `backtrace` feature: no symbolizer (addr2line, gimli, object,
    # miniz_oxide) in the binary, 112 KB less on aarch64; a panic still
    # prints its message, and RUST_BACKTRACE=1 prints addresses without
    # names (tests keep the symbolizer: they are not flashed). And std's
    # `optimize_for_size`: its smaller sort and formatting code, 42 KB less
    # on aarch64; the agent's hot path is the curve and hash crates (built
    # for speed above std) and sled, not std's sort.
    local release=(cargo -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
    case "$triple" in
        aarch64-*)
            qemu=(qemu-aarch64-static -cpu cortex-a53)
            flags=(-C force-unwind-tables=no)
            ;;
        x86_64-*)
            rustup target list --installed | grep -qx "$triple" || rustup target add "$triple"
            flags=(-C force-unwind-tables=no)
            ;;
        armv7-*)
            qemu=(qemu-arm-static -cpu cortex-a8)
            flags=(-C link-self-contained=no -C force-unwind-tables=no)
            # The tests need a std too, and unwinding (the test harness
            # catches panics): built from rust-src, with unwind tables.
            cargo=(cargo -Zbuild-std=std,panic_abort)
            ;;
    esac
    export RUSTC_BOOTSTRAP=1

    echo "== $triple: release build"
    local start=$SECONDS
    RUSTFLAGS="${flags[*]}" "${release[@]}" build --locked --release --target "$triple"
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
    if [[ $triple == x86_64-* ]]; then
        echo "   size: $bytes bytes ($(( (bytes + 1023) / 1024 )) KiB), not a gateway target: no budget"
    else
        echo "   size: $bytes bytes ($(( (bytes + 1023) / 1024 )) KiB), budget $SIZE_BUDGET, $(( SIZE_BUDGET - bytes )) bytes under"
    fi
    if [[ $triple != x86_64-* ]] && [ "$bytes" -gt "$SIZE_BUDGET" ]; then
        echo "cross/build.sh: $bin is $bytes bytes, over the $SIZE_BUDGET-byte budget by $(( bytes - SIZE_BUDGET ))" >&2
        exit 1
    fi

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
