#!/usr/bin/env bash
# The marketplace demo, as far as it exists today: a local chain, the dEdge
# contracts, the EdgeX simulator standing in for the gateway's sensors, a
# gateway with its own key bound to an operator and advertising its device
# catalogue, a buyer listing it, and (as root) a real container reading a
# sensor through its EdgeX bridge. (The seller agent and the on-chain lease
# join as their issues land.) Run tests/setup.sh first; cleans up after
# itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
bin=contracts/node_modules/.bin
say() { printf '\n==> %s\n' "$*"; }

say "building dedge and the EdgeX simulator (release)"
cargo build --release --locked -q --bin dedge --example edgex-simulator
dedge=$PWD/target/release/dedge

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rpc="http://127.0.0.1:$port"
say "starting anvil on $rpc"
"$(contracts/tool anvil)" --port "$port" --silent &
anvil_pid=$!
sim_pid=
trap 'kill $anvil_pid $sim_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do "$bin/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

say "starting the EdgeX simulator (a test tool serving device-virtual's devices)"
target/release/examples/edgex-simulator >"$work/edgex.json" &
sim_pid=$!
for _ in $(seq 50); do [ -s "$work/edgex.json" ] && break; sleep 0.1; done
url() { python3 -c "import json,sys; print(json.load(open('$work/edgex.json'))[sys.argv[1]])" "$1"; }
metadata=$(url metadata) command=$(url command) data=$(url data)
echo "core-metadata $metadata, core-command $command, core-data $data"

say "deploying the contracts"
contracts/deploy.sh "$rpc"

say "a gateway board for this chain (the dev board, pointed at $rpc)"
mkdir -p "$work/boards" "$work/target/dev-gateway"
sed -e "s#http://127.0.0.1:8545#$rpc#" -e "s#http://127.0.0.1:59881#$metadata#" \
    -e "s#http://127.0.0.1:59882#$command#" -e "s#http://127.0.0.1:59880#$data#" \
    boards/dev-x86_64.toml >"$work/boards/gateway.toml"
board=$work/boards/gateway.toml
echo demo-gateway-pass >"$work/target/dev-gateway/passphrase"
"$dedge" board check "$board"

say "the gateway's key (encrypted key file; passphrase from the board's passphrase_file)"
gw=$("$dedge" key new --board "$board")
echo "gateway address: $gw"

say "funding the gateway: ETH for gas, EDG for the advert fee (from anvil's first account)"
k0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
token=$(node -e "console.log(require('./contracts/deployments/31337.json').contracts.token.address)")
"$bin/cast" send -q --rpc-url "$rpc" --private-key "$k0" "$gw" --value 1ether
"$bin/cast" send -q --rpc-url "$rpc" --private-key "$k0" "$token" 'transfer(address,uint256)' "$gw" 100ether

say "the operator (anvil's second account) binds the gateway, which signs its consent"
"$bin/cast" wallet import operator --keystore-dir "$work" --unsafe-password op-pass \
    --private-key 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d >/dev/null
DEDGE_OPERATOR_PASSPHRASE=op-pass "$dedge" gateway register --board "$board" --operator-key "$work/operator"

say "the devices the gateway sells, checked against EdgeX"
"$dedge" edgex ls --board "$board"

say "the gateway advertises (dedge_advertise) its catalogue, paying the fee in EDG"
"$dedge" gateway advertise --board "$board" --ttl 7d

say "a buyer lists live gateways"
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json \
    --arch x86_64 --device Random-Integer-Device:Int8 --max-price 0.001 --json >"$work/ls.json"
node -e "const l=require('$work/ls.json'); if (l.length !== 1 || l[0].gateway.toLowerCase() !== '$gw'.toLowerCase()) { console.error('demo: the gateway is not listed'); process.exit(1) }"

if [ "$(id -u)" = 0 ]; then
    say "a buyer's container (busybox, made by umoci) reads a leased sensor through its EdgeX bridge"
    (cd "$work" && umoci init --layout img && umoci new --image img:demo &&
        umoci unpack --image img:demo bundle >/dev/null) 2>/dev/null
    mkdir -p "$work/bundle/rootfs/bin" && cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
    ln -s busybox "$work/bundle/rootfs/bin/sh"
    (cd "$work" && umoci repack --image img:demo bundle &&
        umoci config --image img:demo --os linux --architecture amd64) >/dev/null
    "$dedge" sandbox run --board "$board" --edgex-read Random-Integer-Device:Int8 \
        "$work/img:demo" -- sh -c \
        'wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8' \
        >"$work/reading.json"
    node -e "const r=require('$work/reading.json'); console.log('the container read Int8 =', r.event.readings[0].value)"
else
    say "NOT ROOT: skipping the container step (sandboxes need root)"
fi
say "demo done: 1 passed, 0 failed"
