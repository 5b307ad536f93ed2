#!/usr/bin/env bash
# The marketplace demo, as far as it exists today: a local chain, the dEdge
# contracts, a gateway with its own key bound to an operator and advertised,
# and a buyer listing it. (The seller agent, the lease and the container join
# as their issues land.) Run tests/setup.sh first; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
bin=contracts/node_modules/.bin
say() { printf '\n==> %s\n' "$*"; }

say "building dedge (release)"
cargo build --release --locked -q
dedge=$PWD/target/release/dedge

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rpc="http://127.0.0.1:$port"
say "starting anvil on $rpc"
"$(contracts/tool anvil)" --port "$port" --silent &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do "$bin/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

say "deploying the contracts"
contracts/deploy.sh "$rpc"

say "a gateway board for this chain (the dev board, pointed at $rpc)"
mkdir -p "$work/boards" "$work/target/dev-gateway"
sed "s#http://127.0.0.1:8545#$rpc#" boards/dev-x86_64.toml >"$work/boards/gateway.toml"
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

say "the gateway advertises (dedge_advertise), paying the fee in EDG"
"$dedge" gateway advertise --board "$board" --ttl 7d

say "a buyer lists live gateways"
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json
"$dedge" market ls --rpc "$rpc" --deployment contracts/deployments/31337.json \
    --arch x86_64 --device Random-Integer-Device:Int8 --max-price 0.001 --json >"$work/ls.json"
node -e "const l=require('$work/ls.json'); if (l.length !== 1 || l[0].gateway.toLowerCase() !== '$gw'.toLowerCase()) { console.error('demo: the gateway is not listed'); process.exit(1) }"
say "demo done: 1 passed, 0 failed"
