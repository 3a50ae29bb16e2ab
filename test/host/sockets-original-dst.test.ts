// The socket owner lookup asks conntrack (ctnetlink) for the original tuple of a DNAT'd
// connection, and looks up only that one client socket; SO_ORIGINAL_DST is read too. In a private
// network namespace (unshare --net): 169.254.169.254 on lo, a DNAT rule sending it to a listener
// on 127.0.0.1, and clients as root and as nobody, through the rule and directly, and a client
// whose source port NAT had to change. The ctnetlink messages are checked byte by byte below.
import assert from 'node:assert/strict'
import {pathToFileURL} from 'node:url'

import {decodeConntrackReply, encodeConntrackRequest} from '../../src/lib/host/sockets.js'
import {repoRoot} from '../support/cli.js'
import {commandPath, netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'

const SCRIPT = `
import {execFileSync, spawn} from 'node:child_process'
import {once} from 'node:events'
import net from 'node:net'
const {openSocketOwnerFinder, originalDestinationReader} = await import(process.argv[1])
const iptables = process.argv[2]
const sh = (...c) => execFileSync(c[0], c.slice(1), {encoding: 'utf8', stdio: 'pipe'})
sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
const accepted = []
const daemon = net.createServer((s) => accepted.push(s)).listen(0, '127.0.0.1')
await once(daemon, 'listening')
const port = daemon.address().port
sh(iptables, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '169.254.169.254', '--dport', '80', '-j', 'DNAT', '--to-destination', '127.0.0.1:' + port)
const next = async () => { while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5)); return accepted.shift() }
// A client as nobody, holding its connection open until stdin closes.
// (From a given source port when a third argument says which.)
const HOLD = "const [host, p, from] = process.argv.slice(1); const s = require('net').connect({host, port: Number(p), ...(from ? {localAddress: '127.0.0.1', localPort: Number(from)} : {})}); s.on('connect', () => console.log('up')); s.on('error', (e) => console.log(e.message)); process.stdin.on('end', () => s.destroy()); process.stdin.resume()"
const asUser = async (uid, host, p, from) => {
  const child = spawn(process.execPath, ['-e', HOLD, host, String(p), ...(from ? [String(from)] : [])], {uid, gid: uid, stdio: ['pipe', 'pipe', 'inherit']})
  const [line] = await once(child.stdout, 'data')
  if (String(line).trim() !== 'up') throw new Error('client as ' + uid + ': ' + line)
  return child
}
const asNobody = (host, p) => asUser(65534, host, p)
const read = await originalDestinationReader()
const finder = await openSocketOwnerFinder({mechanism: 'netlink'})
const r = {conntrackFallbackReason: finder.conntrackFallbackReason ?? null}
const rootDnat = net.connect({host: '169.254.169.254', port: 80}); await once(rootDnat, 'connect')
let seen = await next()
r.rootDnat = {dst: read(seen), owner: (await finder.findSocketOwner(seen))?.uid ?? null}
const rootDirect = net.connect({host: '127.0.0.1', port}); await once(rootDirect, 'connect')
seen = await next()
r.rootDirect = {dst: read(seen), owner: (await finder.findSocketOwner(seen))?.uid ?? null}
const nobody = await asNobody('169.254.169.254', 80)
seen = await next()
r.nobodyDnat = {dst: read(seen), owner: (await finder.findSocketOwner(seen))?.uid ?? null}
const nobodyDirect = await asNobody('127.0.0.1', port)
seen = await next()
r.nobodyDirect = {dst: read(seen), owner: (await finder.findSocketOwner(seen))?.uid ?? null}
// Endpoints alone (no descriptor): no answer from SO_ORIGINAL_DST, every peer is tried.
r.endpointsOnly = read({localAddress: seen.localAddress, localPort: seen.localPort, remoteAddress: seen.remoteAddress, remotePort: seen.remotePort}) ?? null
// A NAT clash: uid 65533 holds a direct connection from 127.0.0.1:40000; uid 65532 then dials
// the IMDS address from that same port, whose DNAT'd reply tuple would clash, so conntrack
// changes its source port. The daemon sees the changed port; the client's socket has 40000.
const held = await asUser(65533, '127.0.0.1', port, 40000)
seen = await next()
r.heldDirect = {seenPort: seen.remotePort, owner: (await finder.findSocketOwner(seen))?.uid ?? null}
const remapped = await asUser(65532, '169.254.169.254', 80, 40000)
seen = await next()
r.remapped = {seenPort: seen.remotePort, owner: (await finder.findSocketOwner(seen))?.uid ?? null}
nobody.stdin.end(); nobodyDirect.stdin.end(); held.stdin.end(); remapped.stdin.end(); rootDnat.destroy(); rootDirect.destroy()
await finder.close()
console.log(JSON.stringify({port, ...r}))
process.exit(0)
`

describe('socket owners behind DNAT (SO_ORIGINAL_DST)', () => {
  it('finds each client by its one original tuple, also when NAT changed its source port', async function () {
    this.timeout(60_000)
    const missing = netnsMissing(['unshare', 'ip', 'iptables'])
    if (missing) return skipBecause(this, missing)
    const iptables = commandPath('iptables')
    const module = pathToFileURL(`${repoRoot}/src/lib/host/sockets.ts`).href
    const result = runInNewNetns(SCRIPT, [module, iptables], {tsx: true, timeoutMs: 50_000})
    if ('skipped' in result) return skipBecause(this, result.skipped)
    assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
    const r = JSON.parse(result.stdout) as Record<string, {dst: unknown; owner: number | null}> & {
      port: number
      conntrackFallbackReason: string | null
      heldDirect: {seenPort: number; owner: number | null}
      remapped: {seenPort: number; owner: number | null}
    }
    assert.equal(r.conntrackFallbackReason, null, 'ctnetlink answers root in the namespace')
    const imds = {address: '169.254.169.254', port: 80}
    // Direct connections: conntrack's original destination is the listener itself (the nat
    // table makes the namespace track connections).
    const listener = {address: '127.0.0.1', port: r.port}
    assert.deepEqual(r.rootDnat, {dst: imds, owner: 0})
    assert.deepEqual(r.rootDirect, {dst: listener, owner: 0})
    assert.deepEqual(r.nobodyDnat, {dst: imds, owner: 65534})
    assert.deepEqual(r.nobodyDirect, {dst: listener, owner: 65534})
    assert.equal(r.endpointsOnly, null)
    // The clash: the direct connection keeps its port, the DNAT'd one is seen from another, and
    // each is its own client's (the seen port alone would name nobody, or another user's socket).
    assert.deepEqual(r.heldDirect, {seenPort: 40000, owner: 65533})
    assert.notEqual(r.remapped.seenPort, 40000, 'conntrack changed the source port (else the setup is wrong)')
    assert.equal(r.remapped.owner, 65532)
  })
})

describe('ctnetlink messages', () => {
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1
  const u16 = (v: number) => (le ? [v & 0xff, v >> 8] : [v >> 8, v & 0xff])
  const u32 = (v: number) => {
    const b = Buffer.alloc(4)
    if (le) b.writeUInt32LE(v >>> 0)
    else b.writeUInt32BE(v >>> 0)
    return [...b]
  }
  const be16 = (v: number) => [v >> 8, v & 0xff]
  /** One netlink attribute: length, type, payload, padding to 4 bytes. */
  const nla = (type: number, payload: number[]) => [
    ...u16(4 + payload.length),
    ...u16(type),
    ...payload,
    ...Array<number>((4 - (payload.length % 4)) % 4).fill(0),
  ]
  const NESTED = 0x8000
  const message = (type: number, flags: number, seq: number, body: number[]) =>
    Buffer.from([...u32(16 + body.length), ...u16(type), ...u16(flags), ...u32(seq), ...u32(0), ...body])
  const tcpTuple = (ip: number[][], ports: [number, number], v6 = false) => [
    ...nla(1 | NESTED, [...nla(v6 ? 3 : 1, ip[0]), ...nla(v6 ? 4 : 2, ip[1])]),
    ...nla(2 | NESTED, [...nla(1, [6]), ...nla(2, be16(ports[0])), ...nla(3, be16(ports[1]))]),
  ]

  it('asks IPCTNL_MSG_CT_GET for the entry with the reply tuple', () => {
    const b = Buffer.alloc(128)
    const reply = {
      family: 4 as const,
      src: {address: '127.0.0.1', port: 808},
      dst: {address: '10.0.0.5', port: 52650},
    }
    const length = encodeConntrackRequest(b, reply, 7)
    // nlmsghdr {len, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST, seq, pid 0},
    // nfgenmsg {AF_INET, NFNETLINK_V0, res_id 0}, CTA_TUPLE_REPLY {CTA_TUPLE_IP, CTA_TUPLE_PROTO}
    const expected = message(0x0101, 1, 7, [
      2,
      0,
      0,
      0,
      ...nla(
        2 | NESTED,
        tcpTuple(
          [
            [127, 0, 0, 1],
            [10, 0, 0, 5],
          ],
          [808, 52650],
        ),
      ),
    ])
    assert.equal(length, expected.length)
    assert.deepEqual(b.subarray(0, length), expected)
    const six = {family: 6 as const, src: {address: '::1', port: 808}, dst: {address: 'fd00::5', port: 4000}}
    const v6 = encodeConntrackRequest(b, six, 8)
    const loopback = [...Array<number>(15).fill(0), 1]
    const fd00 = [0xfd, ...Array<number>(14).fill(0), 5]
    assert.deepEqual(
      b.subarray(0, v6),
      message(0x0101, 1, 8, [10, 0, 0, 0, ...nla(2 | NESTED, tcpTuple([loopback, fd00], [808, 4000], true))]),
    )
  })

  it('reads the original tuple from the entry, ENOENT as no entry, and skips stale replies', () => {
    // The kernel's IPCTNL_MSG_CT_NEW: nfgenmsg, CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, ...
    const entry = (seq: number) =>
      message(0x0100, 0, seq, [
        2,
        0,
        0,
        0,
        ...nla(
          1 | NESTED,
          tcpTuple(
            [
              [10, 0, 0, 5],
              [169, 254, 169, 254],
            ],
            [40000, 80],
          ),
        ),
        ...nla(
          2 | NESTED,
          tcpTuple(
            [
              [127, 0, 0, 1],
              [10, 0, 0, 5],
            ],
            [808, 52650],
          ),
        ),
        ...nla(3, be16(0).concat(be16(0x18e))),
        ...nla(4 | NESTED, [...nla(1 | NESTED, [...nla(1, [3]), ...nla(2, [7])])]),
      ])
    const original = {
      family: 4,
      src: {address: '10.0.0.5', port: 40000},
      dst: {address: '169.254.169.254', port: 80},
    }
    const one = entry(9)
    assert.deepEqual(decodeConntrackReply(one, one.length, 9), original)
    // A late answer to an earlier request first, then ours, in one datagram
    const two = Buffer.concat([entry(8), one])
    assert.deepEqual(decodeConntrackReply(two, two.length, 9), original)
    assert.equal(decodeConntrackReply(one, one.length, 10), 'not ours')
    // NLMSG_ERROR: -ENOENT is no entry, anything else fails the lookup
    const error = (errno: number, seq: number) =>
      message(2, 0, seq, [...u32(-errno), ...Array<number>(16).fill(0)])
    const enoent = error(2, 9)
    assert.equal(decodeConntrackReply(enoent, enoent.length, 9), null)
    const eperm = error(1, 9)
    assert.throws(() => decodeConntrackReply(eperm, eperm.length, 9), /ctnetlink answered errno 1/)
    // An entry without a whole TCP original tuple is no answer either
    const bare = message(0x0100, 0, 9, [
      2,
      0,
      0,
      0,
      ...nla(
        2 | NESTED,
        tcpTuple(
          [
            [1, 1, 1, 1],
            [2, 2, 2, 2],
          ],
          [1, 2],
        ),
      ),
    ])
    assert.throws(() => decodeConntrackReply(bare, bare.length, 9), /no complete TCP original tuple/)
    // IPv6: CTA_IP_V6_SRC and CTA_IP_V6_DST, 16 bytes each
    const v6 = message(0x0100, 0, 3, [
      10,
      0,
      0,
      0,
      ...nla(
        1 | NESTED,
        tcpTuple(
          [
            [0xfd, ...Array<number>(14).fill(0), 5],
            [0xfd, 0, 0x0e, 0xc2, ...Array<number>(10).fill(0), 2, 0x54],
          ],
          [40000, 80],
          true,
        ),
      ),
    ])
    assert.deepEqual(decodeConntrackReply(v6, v6.length, 3), {
      family: 6,
      src: {address: 'fd00::5', port: 40000},
      dst: {address: 'fd00:ec2::254', port: 80},
    })
  })
})
