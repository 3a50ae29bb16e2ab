// bench/sockets: what one socket-owner lookup costs through netlink sock_diag and through
// /proc/net/tcp, side by side, with 100 and with 10,000 other TCP sockets open on loopback
// (each connection is two sockets, both ends held here). Lookups alternate between the two
// mechanisms so both see the same machine.
//   node --import tsx bench/sockets.ts [--sizes 100,10000] [--netlink-samples 5000] [--proc-samples 200]
import {once} from 'node:events'
import {readFileSync} from 'node:fs'
import net from 'node:net'

import {ConnectionEndpoints, SocketOwnerFinder, openSocketOwnerFinder} from '../src/lib/host/sockets.js'
import {raiseFdLimit} from './fd-limit.js'

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : fallback
}
const SIZES = arg('sizes', '100,10000').split(',').map(Number)
const NETLINK_SAMPLES = Number(arg('netlink-samples', '5000'))
const PROC_SAMPLES = Number(arg('proc-samples', '200'))


const socketLines = () =>
  ['/proc/net/tcp', '/proc/net/tcp6'].reduce(
    (n, file) => n + readFileSync(file, 'utf8').split('\n').length - 2,
    0,
  )

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

async function sample(finder: SocketOwnerFinder, query: ConnectionEndpoints): Promise<number> {
  const start = process.hrtime.bigint()
  const owner = await finder.findSocketOwner(query)
  const micros = Number(process.hrtime.bigint() - start) / 1000
  if (!owner) throw new Error(`the ${finder.via} lookup lost the bench's own connection`)
  return micros
}

const fdLimit = raiseFdLimit()
const netlink = await openSocketOwnerFinder({mechanism: 'netlink'})
const proc = await openSocketOwnerFinder({mechanism: 'proc'})

const server = net.createServer().listen(0, '127.0.0.1')
await once(server, 'listening')
const port = (server.address() as net.AddressInfo).port
const accepted: net.Socket[] = []
server.on('connection', (socket) => accepted.push(socket))
const clients: net.Socket[] = []

// The connection whose owner every lookup asks for.
const target = net.connect(port, '127.0.0.1')
await once(target, 'connect')
while (!accepted.some((s) => s.remotePort === target.localPort)) await new Promise((r) => setImmediate(r))
const query = accepted.find((s) => s.remotePort === target.localPort)!
const endpoints: ConnectionEndpoints = {
  localAddress: query.localAddress,
  localPort: query.localPort,
  remoteAddress: query.remoteAddress,
  remotePort: query.remotePort,
}

/** Opens connections until `sockets` other sockets (both ends) are open, or the fds run out. */
async function growTo(sockets: number) {
  const wanted = Math.ceil(sockets / 2)
  while (clients.length < wanted) {
    const batch = Array.from({length: Math.min(200, wanted - clients.length)}, () => {
      const client = net.connect(port, '127.0.0.1')
      clients.push(client)
      return once(client, 'connect').then(
        () => true,
        () => false,
      )
    })
    if (!(await Promise.all(batch)).every(Boolean)) {
      console.log(`could only open ${clients.length} connections (fd limit ${fdLimit}); going on with those`)
      break
    }
  }
  while (accepted.length < clients.length + 1) await new Promise((r) => setTimeout(r, 10))
}

console.log(
  `fd limit ${fdLimit}; ${NETLINK_SAMPLES} netlink and ${PROC_SAMPLES} /proc lookups per size, interleaved\n`,
)
const rows: string[][] = [
  [
    'other sockets',
    'lines in /proc/net/tcp{,6}',
    'netlink p50',
    'netlink p99',
    '/proc p50',
    '/proc p99',
    'p50 ratio',
    'p99 ratio',
  ],
]
for (const size of SIZES) {
  await growTo(size)
  for (let i = 0; i < 50; i++) await sample(netlink, endpoints) // warm-up
  for (let i = 0; i < 5; i++) await sample(proc, endpoints)
  const byNetlink: number[] = []
  const byProc: number[] = []
  const every = Math.max(1, Math.floor(NETLINK_SAMPLES / PROC_SAMPLES))
  for (let i = 0; i < NETLINK_SAMPLES; i++) {
    byNetlink.push(await sample(netlink, endpoints))
    if (i % every === 0 && byProc.length < PROC_SAMPLES) byProc.push(await sample(proc, endpoints))
  }
  byNetlink.sort((a, b) => a - b)
  byProc.sort((a, b) => a - b)
  const [n50, n99, p50, p99] = [
    percentile(byNetlink, 50),
    percentile(byNetlink, 99),
    percentile(byProc, 50),
    percentile(byProc, 99),
  ]
  const us = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(1)} ms` : `${v.toFixed(1)} µs`)
  rows.push([
    String(2 * clients.length),
    String(socketLines()),
    us(n50),
    us(n99),
    us(p50),
    us(p99),
    `${(p50 / n50).toFixed(0)}×`,
    `${(p99 / n99).toFixed(0)}×`,
  ])
}

const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
for (const row of rows) console.log(row.map((cell, c) => cell.padStart(widths[c])).join('  '))

for (const client of clients) client.destroy()
target.destroy()
for (const socket of accepted) socket.destroy()
server.close()
await netlink.close()
await proc.close()
