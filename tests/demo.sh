#!/usr/bin/env bash
# The marketplace demo, the whole paper on one machine: a local chain with
# the dEdge contracts, the EdgeX simulator standing in for the gateway's
# sensors, an IPFS node, and a seller agent (`dedge agent`) on a gateway
# that advertises itself; a buyer leases it for a busybox image that reads
# a leased sensor, pays through a payment channel, stops paying (the
# container is frozen), pays again (it thaws), ends the lease and reads the
# invoice. Run tests/setup.sh first; the lease needs root (namespaces,
# cgroups). Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
# shellcheck source=tests/lib/market.sh
. tests/lib/market.sh
t0=$(date +%s)

say "building dedge and the EdgeX simulator (release)"
cargo build --release --locked -q --bin dedge --example edgex-simulator
dedge=$PWD/target/release/dedge
started=$(date +%s)
echo "built in $((started - t0)) s"

work=$(mktemp -d)
agent_pid=
cleanup() {
    # The agent first: it stops its containers on SIGTERM.
    if [ -n "$agent_pid" ]; then
        kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
    fi
    market_stop
    rm -rf "$work"
}
trap 'cleanup || true' EXIT
market_start_chain
market_start_edgex target/release/examples/edgex-simulator
market_start_ipfs
market_deploy

agent_port=$(free_port)
say "a gateway board for this chain (the dev board, pointed at $rpc; a 4 s payment grace so the story is short)"
mkdir -p "$work/boards" "$work/target/dev-gateway"
sed -e "s#http://127.0.0.1:8545#$rpc#" -e "s#http://127.0.0.1:59881#$metadata#" \
    -e "s#http://127.0.0.1:59882#$command#" -e "s#http://127.0.0.1:59880#$data#" \
    -e "s#http://127.0.0.1:8080#$ipfs#" -e "s#127.0.0.1:7300#127.0.0.1:$agent_port#g" \
    -e 's#^grace = .*#grace = "4s"#' boards/dev-x86_64.toml >"$work/boards/gateway.toml"
board=$work/boards/gateway.toml
echo demo-gateway-pass >"$work/target/dev-gateway/passphrase"
"$dedge" board check "$board"

say "the gateway's key (encrypted key file; passphrase from the board's passphrase_file)"
gw=$("$dedge" key new --board "$board")
echo "gateway address: $gw"

say "funding the gateway: ETH for gas, EDG for the advert fee (from anvil's first account)"
market_fund "$gw"
market_register "$board"

say "the devices the gateway sells, checked against EdgeX"
"$dedge" edgex ls --board "$board"

if [ "$(id -u)" != 0 ]; then
    say "NOT ROOT: stopping here; the seller agent runs containers with namespaces and cgroups, which needs root"
    say "demo done (partial): 1 passed, 0 failed"
    exit 0
fi

say "the seller agent starts on the gateway (dedge agent): it advertises itself, then serves buyers"
DEDGE_LOG=info "$dedge" agent --board "$board" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do grep -q "advertised at" "$work/agent.log" && break; sleep 0.2; done
sed 's/^/    agent: /' "$work/agent.log"

say "a buyer lists live gateways that sell the sensor it wants"
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json \
    --device Random-Integer-Device:Int8
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json \
    --arch x86_64 --device Random-Integer-Device:Int8 --max-price 0.001 --json >"$work/ls.json"
node -e "const l=require('$work/ls.json'); if (l.length !== 1 || l[0].gateway.toLowerCase() !== '$gw'.toLowerCase()) { console.error('demo: the gateway is not listed'); process.exit(1) }"

market_buyer
market_image /bin/busybox amd64
lease_state() { "$dedge" agent status --board "$board" --json | state_from_status; }
market_while_running() { "$dedge" agent status --board "$board"; }
market_lease "$gw"
say "demo done in $(( $(date +%s) - started )) s after the build: 1 passed, 0 failed"
