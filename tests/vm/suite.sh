#!/usr/bin/env bash
# The sandbox suite on real kernels: builds each target's test binaries
# (static musl for the ARM guests), boots its Debian kernel under QEMU and
# runs the sandbox tests and the EdgeX bridge's container tests there as
# root, with DEDGE_REQUIRE_SANDBOX=1 so nothing skips.
#
#   tests/vm/suite.sh [GUEST ...]
#
# GUEST: amd64-v2 | arm64-v2 | arm64-v1 | armhf-v2   (default: all four)
# Fails on the first guest whose tests fail, after printing its console.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
use_cargo

guests=("$@")
[ ${#guests[@]} -gt 0 ] || guests=(amd64-v2 arm64-v2 arm64-v1 armhf-v2)

triple_of() {
    case "$1" in
        amd64) rustc -vV | sed -n 's/^host: //p' ;;
        arm64) echo aarch64-unknown-linux-musl ;;
        armhf) echo armv7-unknown-linux-musleabihf ;;
    esac
}

# Builds the sandbox and EdgeX test binaries of a target (and the simulator
# they start); prints "sandbox-binary edgex-binary".
build_tests() {
    local triple=$1 cargo=(cargo) target=(--target "$1")
    mkdir -p "$repo/target/vm"
    case "$triple" in
        armv7-*) cargo=(env RUSTC_BOOTSTRAP=1 cargo -Zbuild-std=std,panic_abort) ;;
        # The host's own build (target/debug), shared with the host tests.
        "$(rustc -vV | sed -n 's/^host: //p')") target=() ;;
    esac
    "${cargo[@]}" test --locked --no-run "${target[@]}" --test sandbox --test edgex \
        --message-format=json-render-diagnostics >"$repo/target/vm/build-$triple.json" ||
        die "building the $triple test binaries failed"
    # The simulator as the program the EdgeX tests start (`cargo test
    # --example` would build its unit-test harness instead).
    "${cargo[@]}" build --locked "${target[@]}" --example edgex-simulator >&2 ||
        die "building the $triple EdgeX simulator failed"
    python3 - "$repo/target/vm/build-$triple.json" <<'PY'
import json, sys
exe = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        exe[m["target"]["name"]] = m["executable"]
print(exe["sandbox"], exe["edgex"])
PY
}

# The EdgeX tests that run containers (the others need no kernel).
EDGEX_TESTS="a_container_reads_and_writes_through_its_bridge sandbox_run_with_grants_reaches_edgex_and_prints_the_counts"

start=$SECONDS
"$here/fetch.sh" "${guests[0]%-*}"
"$here/selftest.sh" "${guests[0]%-*}"
for g in "${guests[@]}"; do
    arch=${g%-*} cgroup=${g#*-}
    case "$g" in amd64-v2|arm64-v2|arm64-v1|armhf-v2) ;; *) die "suite.sh: unknown guest '$g'" ;; esac
    "$here/fetch.sh" "$arch"
    triple=$(triple_of "$arch")
    echo "==== vm $g: building $triple test binaries"
    bins=$(build_tests "$triple") || exit 1
    read -r sandbox edgex <<<"$bins"
    [ -x "$sandbox" ] && [ -x "$edgex" ] || die "the $triple test binaries are missing ('$bins')"
    echo "==== vm $g: the sandbox suite on a real $arch kernel with cgroup $cgroup"
    t=$SECONDS
    # The EdgeX tests are chosen by name: a renamed one would leave libtest
    # running nothing and passing, so the count is checked too.
    "$here/run.sh" --arch "$arch" --cgroup "$cgroup" --timeout 1500 -- \
        "set -e; $sandbox --test-threads=2; $edgex --test-threads=1 --exact $EDGEX_TESTS >/tmp/edgex.out 2>&1 || { cat /tmp/edgex.out; exit 1; }; cat /tmp/edgex.out; grep -q 'test result: ok. $(wc -w <<<"$EDGEX_TESTS") passed' /tmp/edgex.out"
    echo "==== vm $g: passed in $((SECONDS - t)) s"
done
echo "==== vm: ${guests[*]} passed in $((SECONDS - start)) s"
