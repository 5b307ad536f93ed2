#!/usr/bin/env bash
# The rig's own failure paths, so a broken harness cannot pass a suite: a
# guest command's exit status comes back as it was, a guest that overruns
# its deadline fails (no hang), and the guest has no network interface but
# loopback unless a run forwards ports.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
arch=${1:-amd64}

set +e
out=$("$here/run.sh" --arch "$arch" --timeout 300 -- \
    'ls /sys/class/net | tr "\n" " "; echo; exit 7' 2>&1 | tr -d "\r")
rc=$?
set -e
[ $rc = 7 ] || die "selftest: a guest command's exit status 7 came back as $rc: $out"
grep -qx 'lo ' <<<"$out" || die "selftest: the guest has network interfaces besides lo: $out"

set +e
out=$("$here/run.sh" --arch "$arch" --timeout 45 -- 'sleep 600' 2>&1)
rc=$?
set -e
[ $rc != 0 ] || die "selftest: a guest that never ends passed"
grep -q 'overran its 45 s deadline' <<<"$out" || die "selftest: an overrun was not reported as one: $out"
echo "vm selftest: exit status kept, deadline enforced, no network ($arch)"
