#!/usr/bin/env bash
# Checks deploy.sh end to end: a fresh anvil on a free loopback port, the
# deployment, and the JSON it writes (every contract has code at its address,
# an ABI with the functions the Rust side calls, the token's fixed supply).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PWD/node_modules/.bin:$PATH"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rpc="http://127.0.0.1:$port"
"$(./tool anvil)" --port "$port" --silent &
anvil_pid=$!
trap 'kill $anvil_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do cast chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done

./deploy.sh "$rpc"
json=deployments/31337.json
node - "$json" <<'JS'
const d = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const want = {
  token: ["permit", "transfer", "balanceOf"],
  registry: ["registerGateway", "advertise", "liveAdverts", "operatorOf"],
  market: ["proposeOffer", "acceptOffer", "depositFee", "terminate", "leaseOf"],
  channels: ["openWithPermit", "claim", "close", "startClose", "settle", "balanceProofDigest"],
  control: ["post", "sequence"],
};
for (const [k, fns] of Object.entries(want)) {
  const c = d.contracts[k];
  if (!c || !/^0x[0-9a-fA-F]{40}$/.test(c.address)) throw new Error(`${k}: no address`);
  const names = new Set(c.abi.filter((e) => e.type === "function").map((e) => e.name));
  for (const f of fns) if (!names.has(f)) throw new Error(`${k}: ABI lacks ${f}`);
  if (!(c.deployGas > 0)) throw new Error(`${k}: no deploy gas`);
}
if (d.chainId !== 31337) throw new Error(`chain id ${d.chainId}`);
JS
for k in token registry market channels control; do
    addr=$(node -e "console.log(require('./$json').contracts.$k.address)")
    [ "$(cast code "$addr" --rpc-url "$rpc")" != "0x" ] || { echo "test-deploy: no code for $k at $addr" >&2; exit 1; }
done
token=$(node -e "console.log(require('./$json').contracts.token.address)")
supply=$(cast call "$token" 'totalSupply()(uint256)' --rpc-url "$rpc" | awk '{print $1}')
[ "$supply" = "1000000000000000000000000000" ] || { echo "test-deploy: token supply $supply" >&2; exit 1; }
echo "test-deploy: 1 passed, 0 failed"
