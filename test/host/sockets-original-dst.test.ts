// SO_ORIGINAL_DST: the socket owner lookup asks the kernel which destination a DNAT'd client
// dialled, and looks up only that one tuple. In a private network namespace (unshare --net):
// 169.254.169.254 on lo, a DNAT rule sending it to a listener on 127.0.0.1, and clients as root
// and as nobody, through the rule and directly.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {pathToFileURL} from 'node:url'

import {repoRoot} from '../support/cli.js'

const isRoot = process.getuid?.() === 0

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
const HOLD = "const s = require('net').connect({host: process.argv[1], port: Number(process.argv[2])}); s.on('connect', () => console.log('up')); process.stdin.on('end', () => s.destroy()); process.stdin.resume()"
const asNobody = async (host, p) => {
  const child = spawn(process.execPath, ['-e', HOLD, host, String(p)], {uid: 65534, gid: 65534, stdio: ['pipe', 'pipe', 'inherit']})
  await once(child.stdout, 'data')
  return child
}
const read = await originalDestinationReader()
const finder = await openSocketOwnerFinder({mechanism: 'netlink'})
const r = {}
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
nobody.stdin.end(); nobodyDirect.stdin.end(); rootDnat.destroy(); rootDirect.destroy()
await finder.close()
console.log(JSON.stringify({port, ...r}))
process.exit(0)
`

describe('socket owners behind DNAT (SO_ORIGINAL_DST)', () => {
  it('reads the destination a client dialled before DNAT, and finds each client by that one tuple', async function () {
    this.timeout(60_000)
    const tools = ['unshare', 'ip', 'iptables'].every(
      (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0,
    )
    if (!isRoot || !tools) {
      console.log('      (skipped: needs root, unshare, ip and iptables)')
      return this.skip()
    }
    const iptables = spawnSync('sh', ['-c', 'command -v iptables'], {encoding: 'utf8'}).stdout.trim()
    const module = pathToFileURL(`${repoRoot}/src/lib/host/sockets.ts`).href
    const result = spawnSync(
      'unshare',
      [
        '--net',
        '--',
        process.execPath,
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        SCRIPT,
        module,
        iptables,
      ],
      {cwd: repoRoot, encoding: 'utf8', timeout: 50_000},
    )
    if (result.status !== 0 && /unshare: /.test(result.stderr)) {
      console.log(`      (skipped: ${result.stderr.trim().split('\n')[0]})`)
      return this.skip()
    }
    assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
    const r = JSON.parse(result.stdout) as Record<string, {dst: unknown; owner: number | null}> & {
      port: number
    }
    const imds = {address: '169.254.169.254', port: 80}
    // Direct connections: conntrack's original destination is the listener itself (the nat
    // table makes the namespace track connections).
    const listener = {address: '127.0.0.1', port: r.port}
    assert.deepEqual(r.rootDnat, {dst: imds, owner: 0})
    assert.deepEqual(r.rootDirect, {dst: listener, owner: 0})
    assert.deepEqual(r.nobodyDnat, {dst: imds, owner: 65534})
    assert.deepEqual(r.nobodyDirect, {dst: listener, owner: 65534})
    assert.equal(r.endpointsOnly, null)
  })
})
