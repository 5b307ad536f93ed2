#!/usr/bin/env bash
# The paper's story on an ARM kernel with cgroup v2 under systemd: an
# aarch64 (or ARMv7) guest boots Debian with systemd as PID 1 and runs the static
# `dedge` from the shipped units (boards/dedge-leases.service holds the
# delegated cgroup, boards/dedge-agent.service runs the agent); the chain,
# IPFS and the EdgeX simulator stay on the host, reached through forwarded
# loopback ports, and a buyer on the host takes a whole lease: create, read
# the sensor, stop paying (frozen through cgroup.freeze), pay again, restart
# the agent while the lease runs (its container survives), terminate,
# invoice. Also checked: every lease process is in the delegated subtree.
#
#   tests/vm/lease.sh [arm64|armhf]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
# shellcheck source=tests/vm/pins.sh
. "$here/pins.sh"
# shellcheck source=tests/vm/lib.sh
. "$here/lib.sh"
use_cargo
arch=${1:-arm64}
case "$arch" in
    arm64) triple=aarch64-unknown-linux-musl board_arch=aarch64 oci_arch=arm64 ;;
    armhf) triple=armv7-unknown-linux-musleabihf board_arch=armv7 oci_arch=arm ;;
    *) die "lease.sh: the lease test runs on arm64 or armhf guests, not '$arch'" ;;
esac
[ "$(id -u)" = 0 ] || die "lease.sh needs root (the VM rig's rootfs is root's)"
"$here/fetch.sh" "$arch"
t0=$SECONDS

echo "==== vm lease: building the host's dedge and simulator, and the $triple agent"
cargo build --locked -q --bin dedge --example edgex-simulator
# The binary a gateway flashes, as cross/build.sh makes it (build-std, no
# unwind tables, the size budget checked): the guest's figures are its.
cross/build.sh "$board_arch" --no-test | sed 's/^/    /'
dedge=$repo/target/debug/dedge

work=$(mktemp -d)
share=$(mkdir -p target/vm && mktemp -d "$repo/target/vm/lease-XXXXXX")
# shellcheck source=tests/lib/market.sh
. tests/lib/market.sh
vm_pid=
# Any failure (a fail, or a step under set -e) prints the guest's side.
finish() {
    local rc=$1
    touch "$share/done"
    if [ -n "$vm_pid" ]; then
        for _ in $(seq 60); do kill -0 "$vm_pid" 2>/dev/null || break; sleep 1; done
        kill "$vm_pid" 2>/dev/null
    fi
    if [ "$rc" != 0 ]; then
        echo "---- the guest's console" >&2; cat "$work/vm.log" >&2 || true
        echo "---- the units' journals" >&2; cat "$share/journal.txt" >&2 2>/dev/null || true
        echo "vm lease: FAILED" >&2
    fi
    market_stop
    rm -rf "$work" "$share"
}
trap 'finish $? || true' EXIT
fail() { echo "vm lease: $*" >&2; exit 1; }
alive() { kill -0 "$vm_pid" 2>/dev/null || fail "the guest ended early"; }

market_start_chain
market_start_edgex target/debug/examples/edgex-simulator
market_start_ipfs
market_deploy
port_of() { sed -E 's#.*:([0-9]+)/?$#\1#' <<<"$1"; }
agent_port=$(free_port)

say "a gateway board for the guest: the dev board on $board_arch with cgroup v2, its services at 10.0.2.100"
guest_url() { sed 's#127.0.0.1#10.0.2.100#' <<<"$1"; }
sed -e "s#^model = .*#model = \"QEMU virt ($board_arch), VM rig\"#" \
    -e "s#^arch = .*#arch = \"$board_arch\"#" -e 's#^cgroup = .*#cgroup = "v2"#' \
    -e 's#^memory = "4 GiB"#memory = "2 GiB"#' -e 's#^disk = .*#disk = "512 MiB"#' \
    -e 's#^key_file = .*#key_file = "/etc/dedge/key.json"#' \
    -e 's#^passphrase_file = .*#passphrase_file = "/etc/dedge/passphrase"#' \
    -e 's#^data_dir = .*#data_dir = "/var/lib/dedge"#' \
    -e 's#^listen = .*#listen = "0.0.0.0:7300"#' \
    -e "s#^public = .*#public = \"127.0.0.1:$agent_port\"\ncgroup_parent = \"/system.slice/dedge-leases.service\"#" \
    -e 's#^backends = .*#backends = "none"#' \
    -e "s#http://127.0.0.1:8545#$(guest_url "$rpc")#" -e "s#http://127.0.0.1:59881#$(guest_url "$metadata")#" \
    -e "s#http://127.0.0.1:59882#$(guest_url "$command")#" -e "s#http://127.0.0.1:59880#$(guest_url "$data")#" \
    -e "s#http://127.0.0.1:8080#$(guest_url "$ipfs")#" -e 's#^grace = .*#grace = "4s"#' \
    boards/dev-x86_64.toml >"$share/board.toml"
# The same gateway seen from the host, for the operator's registration.
sed -e 's#10.0.2.100#127.0.0.1#g' -e "s#/etc/dedge/#$share/#" "$share/board.toml" >"$work/host-board.toml"
"$dedge" board check "$share/board.toml" "$work/host-board.toml"
echo vm-gateway-pass >"$share/passphrase"
gw=$("$dedge" key new "$share/key.json" --gateway --passphrase-file "$share/passphrase")
echo "gateway address: $gw"
market_fund "$gw"
market_register "$work/host-board.toml"
cp "target/$triple/release/dedge" "$share/dedge"

say "booting the $arch guest with systemd; the gateway installs the shipped units and starts"
fwd=()
for u in "$rpc" "$metadata" "$command" "$data" "$ipfs"; do fwd+=(--guestfwd "$(port_of "$u")"); done
"$here/run.sh" --arch "$arch" --cgroup v2 --init systemd --timeout 900 "${fwd[@]}" \
    --hostfwd "$agent_port:7300" -- "sh tests/vm/guest/gateway.sh $share" >"$work/vm.log" 2>&1 &
vm_pid=$!
for _ in $(seq 600); do [ -s "$share/started" ] && break; alive; sleep 0.5; done
[ "$(cat "$share/started" 2>/dev/null)" = 0 ] || fail "the gateway did not start: $(cat "$share/board-check.txt" 2>/dev/null)"
cat "$share/board-check.txt"
grep -q '^ok ' "$share/board-check.txt" || fail "board check --host failed in the guest"
echo "guest up after $((SECONDS - t0)) s"
for _ in $(seq 240); do
    "$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json --arch "$board_arch" \
        --json 2>/dev/null | grep -qi "${gw#0x}" && break
    alive; sleep 0.5
done
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json --arch "$board_arch"
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json --arch "$board_arch" \
    --json | grep -qi "${gw#0x}" || fail "the guest's agent never advertised"

# The idle agent's memory, as the guest's kernel accounts it, against the
# same binary doing nothing (the holder): a figure, not a check.
touch "$share/measure"
for _ in $(seq 90); do [ -s "$share/rss" ] && break; alive; sleep 0.5; done
read -r agent_kib holder_kib <"$share/rss" || true
[[ ${agent_kib:-} =~ ^[0-9]+$ && ${holder_kib:-} =~ ^[0-9]+$ ]] || fail "the guest did not measure the agent's RSS: '$(cat "$share/rss" 2>/dev/null)'"
echo "    idle RSS in the $arch guest: agent $agent_kib KiB, holder (same binary, idle) $holder_kib KiB: $(awk "BEGIN {printf \"%.1f\", $agent_kib / $holder_kib}")x"
echo "    the agent's RSS 2 s apart before that, KiB: $(cat "$share/rss-series" 2>/dev/null)"
sed 's/^/      /' "$share/smaps.txt" 2>/dev/null || true

say "the operator posts a command through AgentControl; the guest's agent applies it under systemd and reports it on chain"
as_operator=(--rpc "$rpc" --deployment contracts/deployments/31337.json --operator-key "$work/operator")
t_post=$SECONDS
DEDGE_OPERATOR_PASSPHRASE=op-pass "$dedge" fleet post "${as_operator[@]}" --gateway "$gw" log-level debug
fleet_json=
for _ in $(seq 120); do
    fleet_json=$(DEDGE_OPERATOR_PASSPHRASE=op-pass "$dedge" fleet ls "${as_operator[@]}" --json)
    grep -q '"outcome":"applied"' <<<"$fleet_json" && break
    alive; sleep 0.5
done
grep -q '"outcome":"applied"' <<<"$fleet_json" || fail "the guest's agent never reported command 1: $fleet_json"
grep -q '"reported":1' <<<"$fleet_json" || fail "command 1 not counted as reported: $fleet_json"
echo "    command 1 (log-level debug) applied and reported by the $arch guest in $((SECONDS - t_post)) s"
DEDGE_OPERATOR_PASSPHRASE=op-pass "$dedge" fleet ls "${as_operator[@]}"
for _ in $(seq 20); do grep -q '"from":"command 1"' "$share/status.json" 2>/dev/null && break; alive; sleep 0.5; done
grep -q '"from":"command 1"' "$share/status.json" 2>/dev/null ||
    fail "the guest's agent status does not show the command's value: $(cat "$share/status.json" 2>/dev/null)"

market_buyer
market_image "$(rootfs_dir "$arch")/bin/busybox" "$oci_arch"
lease_state() { alive; state_from_status <"$share/status.json" 2>/dev/null || echo none; }

# pids of processes in the lease's cgroups (below the delegated unit).
lease_pids() { awk '$2 ~ "^/system.slice/dedge-leases.service/agent-[0-9a-f]+/" {print $1}' "$share/procs" | sort -n; }
# The container's init, the image's `sh -c` loop (its `sleep 1`s come and go).
lease_init() { grep -xF -f <(lease_pids) <(awk '$2 == "sh" {print $1}' "$share/comms") | head -n 1; }
check_placement() {
    local procs=$work/procs
    # "pid cgroup comm", from the guest's two snapshots.
    awk 'NR == FNR { comm[$1] = $2; next } { print $1, $2, comm[$1] }' "$share/comms" "$share/procs" >"$procs"
    [ -n "$(lease_pids)" ] || fail "no process in a lease cgroup below /system.slice/dedge-leases.service: $(cat "$procs")"
    awk '$3 == "dedge" && $2 == "/system.slice/dedge-leases.service/holder"' "$procs" | grep -q . ||
        fail "dedge agent hold-cgroups is not in its leaf: $(grep dedge "$procs")"
    awk '$3 == "dedge" && $2 == "/system.slice/dedge-agent.service"' "$procs" | grep -q . ||
        fail "the agent is not in dedge-agent.service: $(grep dedge "$procs")"
    # Nothing escaped systemd's tree: every process is in a unit or the root (kernel threads).
    local stray
    stray=$(awk '$2 != "/" && $2 !~ "^/(init.scope|system.slice/[^/]+)(/|$)"' "$procs")
    [ -z "$stray" ] || fail "processes outside systemd's units: $stray"
    echo "    placement: $(lease_pids | wc -l) lease process(es) below /system.slice/dedge-leases.service/agent-*, holder in its leaf, agent in its unit"
}
market_while_running() {
    say "while the lease runs: where its processes are, then systemctl restart dedge-agent (the container must survive)"
    check_placement
    local before logs_before
    before=$(lease_init)
    [ -n "$before" ] || fail "no container init (sh) among the lease's processes"
    logs_before=$("$dedge" lease logs "$lease" "${as_buyer[@]}" | wc -l)
    touch "$share/restart-agent"
    for _ in $(seq 120); do [ -s "$share/restarted" ] && break; alive; sleep 0.5; done
    read -r old new <"$share/restarted" || fail "the guest never restarted the agent"
    [ -n "$new" ] && [ "$new" != 0 ] && [ "$old" != "$new" ] || fail "the agent did not come back (MainPID $old -> $new)"
    echo "    agent restarted: MainPID $old -> $new"
    for _ in $(seq 120); do [ "$share/status.json" -nt "$share/restarted" ] && break; alive; sleep 0.5; done
    wait_state running || fail "the lease is not running after the agent's restart"
    sleep 3
    [ "$(lease_init)" = "$before" ] || fail "the container's init did not survive the restart: pid $before, now '$(lease_init)'"
    local logs_after
    logs_after=$("$dedge" lease logs "$lease" "${as_buyer[@]}" | wc -l)
    [ "$logs_after" -gt "$logs_before" ] || fail "no new readings after the restart ($logs_before -> $logs_after lines)"
    echo "    the container kept running (init pid $before before and after) and reading: $logs_before -> $logs_after log lines"
}
# Not `|| fail`: that would turn set -e off inside the whole story.
market_lease "$gw"

touch "$share/done"
wait "$vm_pid" || { vm_pid=; fail "the guest's gateway reported a failure"; }
vm_pid=
grep -q "219/CGROUP" "$share/journal.txt" && fail "systemd failed a unit with 219/CGROUP"
grep -q "^cycle ok" "$share/cycle" || fail "stopping and starting the units failed: $(cat "$share/cycle" 2>/dev/null)"
cat "$share/cycle"
echo "==== vm lease: a whole lease on $arch under systemd passed in $((SECONDS - t0)) s"
