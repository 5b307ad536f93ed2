#!/usr/bin/env bash
# The sandbox benchmark (benches/sandbox.rs) inside a guest, where the kernel
# accounts memory and time for real (a figure from qemu-user is not one):
# container start-to-exit with limits, dedge against the guest's Debian crun,
# in one run. Not part of CI (figures, not checks).
#
#   tests/vm/bench.sh [amd64|arm64|armhf] [RUNS]      (default: arm64, 30 runs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
use_cargo
arch=${1:-arm64} runs=${2:-30}
cargo=(cargo) target=()
case "$arch" in
    amd64) ;;
    arm64) target=(--target aarch64-unknown-linux-musl) ;;
    armhf) target=(--target armv7-unknown-linux-musleabihf); cargo=(env RUSTC_BOOTSTRAP=1 cargo -Zbuild-std=std,panic_abort) ;;
    *) die "bench.sh: unknown architecture '$arch'" ;;
esac
"$here/fetch.sh" "$arch"
bin=$("${cargo[@]}" bench --locked --no-run "${target[@]}" --bench sandbox --message-format=json-render-diagnostics |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="sandbox" and m.get("executable"): print(m["executable"])')
[ -n "$bin" ] || die "bench.sh: the sandbox benchmark did not build"
"$here/run.sh" --arch "$arch" --cgroup v2 --timeout 3000 -- "DEDGE_BENCH_RUNS=$runs $bin"
