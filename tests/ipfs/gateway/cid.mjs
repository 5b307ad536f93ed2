// Helia's UnixFS importer as a CID oracle for the tests: prints the CID of
// each FILE as Kubo's `ipfs add` builds it (Helia's `unixfs-v0-2015`
// profile: 256 KiB chunks, balanced layout, 174 links, links first), with
// CIDv1 and raw leaves under --cid-version 1, as `ipfs add --cid-version=1`.
//
//     node cid.mjs [--cid-version 1] FILE...

import { createReadStream } from 'node:fs'
import { MemoryBlockstore } from 'blockstore-core'
import { importer } from 'ipfs-unixfs-importer'

const args = process.argv.slice(2)
let v1 = false
if (args[0] === '--cid-version') {
  v1 = args[1] === '1'
  args.splice(0, 2)
}
const options = { profile: 'unixfs-v0-2015', cidVersion: v1 ? 1 : 0, rawLeaves: v1 }
for (const path of args) {
  let last
  for await (const entry of importer([{ content: createReadStream(path) }], new MemoryBlockstore(), options)) {
    last = entry
  }
  process.stdout.write(`${last.cid}\n`)
}
