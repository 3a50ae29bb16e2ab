// Who listens where the rules send users' metadata requests: a user who took the daemon's port
// (ip_unprivileged_port_start lowered, or daemon_port >= 1024, while the daemon was down) answers
// everyone's requests, and intercept status must say so instead of calling her the daemon.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {defaultConfig} from '../../src/lib/config/schema.js'
import {installHostInterception, interceptStatus} from '../../src/lib/daemon/intercept.js'
import {listenerOwner} from '../../src/lib/host/reach.js'
import {fakeHost} from '../support/fake-iptables.js'

/** A /proc/net/tcp{,6} line (little-endian words, as on x86 and arm64) of a socket. */
function line(local: string, port: number, state: number, uid: number): string {
  const port4 = port.toString(16).toUpperCase().padStart(4, '0')
  return `   0: ${local}:${port4} ${local.replace(/./g, '0')}:0000 ${state.toString(16).toUpperCase().padStart(2, '0')} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 4242 1 0000000000000000 100 0 0 10 0`
}
const LISTEN = 0x0a
const ESTABLISHED = 0x01
const V4 = {loopback: '0100007F', any: '00000000', other: '0200007F'}
const V6 = {loopback: '00000000000000000000000001000000', any: '0'.repeat(32), mapped: '0000000000000000FFFF00000100007F'}

describe('listenerOwner: whose socket a connection to the daemon’s address lands on', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-reach-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))
  const tables = (tcp: string[], tcp6: string[] | null) => {
    writeFileSync(join(dir, 'tcp'), ['  sl  local_address rem_address   st ...', ...tcp].join('\n') + '\n')
    if (tcp6) writeFileSync(join(dir, 'tcp6'), ['  sl  local_address ...', ...tcp6].join('\n') + '\n')
    else rmSync(join(dir, 'tcp6'), {force: true})
  }

  it('prefers the socket bound to the address over the wildcard, and ignores other ports, addresses and states', async () => {
    tables([line(V4.any, 808, LISTEN, 1000), line(V4.loopback, 808, LISTEN, 0), line(V4.loopback, 809, LISTEN, 7), line(V4.loopback, 808, ESTABLISHED, 8)], [])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), 0)
    tables([line(V4.loopback, 808, ESTABLISHED, 8), line(V4.other, 808, LISTEN, 9), line(V4.any, 808, LISTEN, 1000)], [])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), 1000)
    tables([line(V4.other, 808, LISTEN, 9)], [])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), null)
  })

  it('finds an IPv4 connection’s listener among the IPv6 sockets: [::ffff:127.0.0.1] and a dual-stack [::]', async () => {
    tables([], [line(V6.mapped, 808, LISTEN, 1001)])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), 1001)
    tables([], [line(V6.any, 808, LISTEN, 1002)])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), 1002)
    // An IPv4 wildcard wins over [::] (which is then IPV6_V6ONLY, or it could not have been bound)
    tables([line(V4.any, 808, LISTEN, 0)], [line(V6.any, 808, LISTEN, 1002)])
    assert.equal(await listenerOwner('127.0.0.1', 808, dir), 0)
  })

  it('looks at IPv6 sockets only for the IPv6 listener, and finds nobody without /proc', async () => {
    tables([line(V4.any, 808, LISTEN, 1000)], [line(V6.any, 808, LISTEN, 1003), line(V6.loopback, 808, LISTEN, 0)])
    assert.equal(await listenerOwner('::1', 808, dir), 0)
    tables([line(V4.any, 808, LISTEN, 1000)], [line(V6.any, 808, LISTEN, 1003)])
    assert.equal(await listenerOwner('::1', 808, dir), 1003)
    tables([line(V4.any, 808, LISTEN, 1000)], null)
    assert.equal(await listenerOwner('::1', 808, dir), null)
    assert.equal(await listenerOwner('127.0.0.1', 808, join(dir, 'nowhere')), null)
  })

  it('reads this host’s own tables: a socket this process listens on is root’s (this test runs as its owner)', async function () {
    const {createServer} = await import('node:net')
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const {port} = server.address() as {port: number}
      assert.equal(await listenerOwner('127.0.0.1', port), process.getuid!())
    } finally {
      server.close()
    }
  })
})

describe('intercept status: a listener that is not the daemon’s', () => {
  async function status(owner: number | null, answers = true) {
    const host = fakeHost({ip6tables: 'missing'})
    const config = defaultConfig()
    const options = {config, daemonUid: 0, run: host.run, ipv6Proc: '/nonexistent', answers: async () => answers, owner: async () => owner}
    await installHostInterception(options)
    return interceptStatus(options)
  }

  it('names the uid that answers users’ requests and says the host is not protected', async () => {
    const r = await status(1000)
    assert.equal(r.protected, false)
    assert.deepEqual(r.families[0].listener, {address: '127.0.0.1:808', answers: true, owner: 1000})
    assert.match(r.families[0].meets, /^uid 1000's process listening on 127\.0\.0\.1:808, not the daemon/)
  })

  it('calls root’s listener (or the daemon’s uid’s) the daemon, and nobody’s a refused connection', async () => {
    const root = await status(0)
    assert.equal(root.protected, true)
    assert.equal(root.families[0].meets, 'the daemon (127.0.0.1:808)')
    const nobody = await status(null, false)
    assert.equal(nobody.protected, true)
    assert.match(nobody.families[0].meets, /^a refused connection/)
  })
})
