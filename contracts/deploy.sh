#!/usr/bin/env bash
# Deploys the dEdge contracts to an Ethereum node and writes
# deployments/CHAINID.json (addresses, deploy gas, ABIs).
#
#   contracts/deploy.sh [RPC_URL]        default http://127.0.0.1:8545 (anvil)
#
# Script/Deploy.s.sol lists the environment it reads (DEPLOYER_KEY, TREASURY,
# OWNER, fees, CHALLENGE_PERIOD); the default key is anvil's first account.
set -euo pipefail
cd "$(dirname "$0")"
rpc=${1:-http://127.0.0.1:8545}
export PATH="$PWD/node_modules/.bin:$PATH"

chain_id=$(cast chain-id --rpc-url "$rpc")
# One deploy at a time per checkout (parallel tests share out/, cache/ and
# broadcast/); --slow waits for each receipt before the next transaction:
# forge's parallel receipt wait has hung against anvil now and then (seen in
# CI here; foundry-rs/foundry#10630 reports the same), and a deadline turns
# any remaining hang into a failure that names forge.
exec 9>"$PWD/.deploy.lock"
flock 9
timeout 120 forge script script/Deploy.s.sol:Deploy --rpc-url "$rpc" --broadcast --slow --silent >/dev/null 9>&- ||
    { echo "deploy.sh: forge script failed or ran over 120 s against $rpc" >&2; exit 1; }
mkdir -p deployments
node script/write-deployment.mjs "broadcast/Deploy.s.sol/$chain_id/run-latest.json" "deployments/$chain_id.json"
