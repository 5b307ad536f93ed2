// Turns a forge broadcast of script/Deploy.s.sol into deployments/CHAINID.json:
// chain id, deployment block, each contract's address, deploy gas and ABI.
// The Rust code and the demo read this file.
//
//   node script/write-deployment.mjs BROADCAST_RUN_JSON OUT_JSON
import { readFileSync, writeFileSync } from "node:fs";

const [runPath, outPath] = process.argv.slice(2);
if (!runPath || !outPath) {
  console.error("usage: write-deployment.mjs BROADCAST_RUN_JSON OUT_JSON");
  process.exit(2);
}
const run = JSON.parse(readFileSync(runPath, "utf8"));
const names = { EDGToken: "token", Registry: "registry", Market: "market", ChannelManager: "channels", AgentControl: "control" };
// Receipts are matched by created address: forge's run file has been seen
// pairing receipts with the wrong transaction hash.
const receipts = new Map(run.receipts.map((r) => [(r.contractAddress ?? "").toLowerCase(), r]));
const out = { chainId: Number(run.chain), contracts: {} };
for (const tx of run.transactions) {
  if (tx.transactionType !== "CREATE" || !(tx.contractName in names)) continue;
  const receipt = receipts.get(tx.contractAddress.toLowerCase());
  if (!receipt || receipt.status !== "0x1") throw new Error(`${tx.contractName}: no successful receipt`);
  const artifact = JSON.parse(readFileSync(`out/${tx.contractName}.sol/${tx.contractName}.json`, "utf8"));
  out.contracts[names[tx.contractName]] = {
    name: tx.contractName,
    address: tx.contractAddress,
    deployGas: Number(BigInt(receipt.gasUsed)),
    abi: artifact.abi,
  };
  out.block ??= Number(BigInt(receipt.blockNumber));
}
const missing = Object.values(names).filter((k) => !(k in out.contracts));
if (missing.length) throw new Error(`broadcast lacks: ${missing.join(", ")}`);
writeFileSync(outPath, JSON.stringify(out, null, 2) + "\n");
for (const [key, c] of Object.entries(out.contracts)) {
  console.log(`${key.padEnd(9)} ${c.address}  deploy gas ${c.deployGas}`);
}
console.log(`wrote ${outPath}`);
