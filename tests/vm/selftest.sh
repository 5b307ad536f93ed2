#!/usr/bin/env bash
# The rig's own failure paths, so a broken harness cannot pass a suite: a
# guest command's exit status comes back as it was, a guest that overruns
# its deadline fails (no hang), the guest has no network interface but
# loopback unless a run forwards ports, and with forwards it reaches the
# forwarded host port, once per connection, and nothing else (restrict=on).
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
# A server on the host's loopback; the guest must reach it through the
# forward, and not through slirp's gateway address 10.0.2.2 (which maps to
# the host's loopback when restrict is off), nor the world.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ready=$(mktemp -u)
python3 - "$port" "$ready" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(2); s.settimeout(240)
open(sys.argv[2], "w").close()
for _ in range(3):  # the forward twice, then (if restrict failed) the gateway address
    c, _ = s.accept(); c.sendall(b"pong\n"); c.close()
PY
server=$!
for _ in $(seq 100); do [ -e "$ready" ] && break; sleep 0.1; done
[ -e "$ready" ] || die "selftest: the host-side test server did not start"
rm -f "$ready"
set +e
out=$("$here/run.sh" --arch "$arch" --timeout 150 --guestfwd "$port" -- \
    "for i in 1 2; do busybox timeout 20 busybox nc 10.0.2.100 $port </dev/null; done; echo step1; \
     busybox timeout 5 busybox nc 10.0.2.2 $port </dev/null | grep -q pong && echo REACHED-HOST; \
     busybox timeout 5 busybox nc 1.1.1.1 80 </dev/null && echo REACHED-WORLD; exit 0" 2>&1 | tr -d '\r')
rc=$?
set -e
kill "$server" 2>/dev/null || true
[ $rc = 0 ] || die "selftest: the forwarding run failed ($rc): $out"
[ "$(grep -cx pong <<<"$out")" = 2 ] || die "selftest: the guest did not reach the forwarded host port twice (one connection each): $out"
! grep -q REACHED <<<"$out" || die "selftest: the guest reached more than its forward: $out"
echo "vm selftest: exit status kept, deadline enforced, no network, forwards only ($arch)"
