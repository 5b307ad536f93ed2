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
forge script script/Deploy.s.sol:Deploy --rpc-url "$rpc" --broadcast --silent >/dev/null
mkdir -p deployments
node script/write-deployment.mjs "broadcast/Deploy.s.sol/$chain_id/run-latest.json" "deployments/$chain_id.json"
