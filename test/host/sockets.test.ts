import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {EventEmitter, once} from 'node:events'
import {mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {UserError} from '../../src/lib/errors.js'
import {
  ConnectionEndpoints,
  SocketOwnerFinder,
  cachedUserNames,
  clientSocketTuples,
  findSocketOwner,
  openSocketOwnerFinder,
  parseProcNetTcpLine,
} from '../../src/lib/host/sockets.js'
import {LocalUser, UserDatabase} from '../../src/lib/host/users.js'
import {netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'

const SOCKETS_MODULE = new URL('../../src/lib/host/sockets.ts', import.meta.url)

/** A loopback listener that keeps the sockets it accepts, by client port. */
class Listener {
  readonly accepted = new Map<number, net.Socket>()
  private readonly events = new EventEmitter()

  private constructor(readonly server: net.Server) {
    server.on('connection', (socket) => {
      this.accepted.set(socket.remotePort!, socket)
      this.events.emit('accepted')
    })
  }

  static async on(host: string, options: net.ServerOpts = {}): Promise<Listener> {
    const server = net.createServer(options)
    server.listen(0, host)
    await once(server, 'listening')
    return new Listener(server)
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port
  }

  async acceptedFrom(port: number): Promise<net.Socket> {
    while (!this.accepted.has(port)) await once(this.events, 'accepted')
    return this.accepted.get(port)!
  }

  close() {
    for (const socket of this.accepted.values()) socket.destroy()
    this.server.close()
  }
}

/** What the daemon would pass for an accepted socket (copied: a closed socket forgets it). */
const endpointsOf = ({
  localAddress,
  localPort,
  remoteAddress,
  remotePort,
}: net.Socket): ConnectionEndpoints => ({
  localAddress,
  localPort,
  remoteAddress,
  remotePort,
})

/** The inode of a socket this process holds, as /proc/self/fd names it. */
function inodeOf(socket: net.Socket): number {
  const fd = (socket as unknown as {_handle: {fd: number}})._handle.fd
  return Number(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))![1])
}

const isRoot = () => process.getuid?.() === 0

describe('host/sockets', () => {
  describe('findSocketOwner against real sockets', () => {
    let netlink: SocketOwnerFinder
    let proc: SocketOwnerFinder
    const listeners: Listener[] = []
    const clients: net.Socket[] = []

    /** Connects a client to the listener and returns both ends. */
    async function connect(listener: Listener, options: Partial<net.TcpNetConnectOpts> = {}) {
      const address = listener.server.address() as net.AddressInfo
      const client = net.connect({host: address.address, port: address.port, ...options})
      clients.push(client)
      await once(client, 'connect')
      return {client, accepted: await listener.acceptedFrom(client.localPort!)}
    }

    async function listen(host: string, options: net.ServerOpts = {}) {
      const listener = await Listener.on(host, options)
      listeners.push(listener)
      return listener
    }

    /** Both mechanisms must agree; the answer is the netlink one. */
    async function ownerOf(connection: ConnectionEndpoints) {
      const [byNetlink, byProc] = await Promise.all([
        netlink.findSocketOwner(connection),
        proc.findSocketOwner(connection),
      ])
      assert.deepEqual(byProc && {...byProc, via: 'netlink'}, byNetlink, 'netlink and /proc/net/tcp disagree')
      if (byProc) assert.equal(byProc.via, 'proc')
      return byNetlink
    }

    before(async () => {
      netlink = await openSocketOwnerFinder({mechanism: 'netlink'})
      proc = await openSocketOwnerFinder({mechanism: 'proc'})
    })

    after(async () => {
      await netlink.close()
      await proc.close()
    })

    afterEach(() => {
      for (const client of clients.splice(0)) client.destroy()
      for (const listener of listeners.splice(0)) listener.close()
    })

    it('uses netlink where it is asked for, /proc where that is asked for', () => {
      assert.equal(netlink.via, 'netlink')
      assert.equal(proc.via, 'proc')
    })

    it('finds our own uid and the client socket for an IPv4 client', async () => {
      // Given a client connected to a loopback listener
      const listener = await listen('127.0.0.1')
      const {client, accepted} = await connect(listener)
      // When the listener asks who owns the connection
      const owner = await ownerOf(endpointsOf(accepted))
      // Then it is this process's socket
      assert.deepEqual(owner, {uid: process.getuid!(), inode: inodeOf(client), via: 'netlink'})
    })

    it('finds our own uid and the client socket for an IPv6 client', async function () {
      let listener: Listener
      try {
        listener = await listen('::1')
      } catch (error) {
        console.log(`      (IPv6 test skipped: cannot listen on ::1: ${(error as Error).message})`)
        return this.skip()
      }
      const {client, accepted} = await connect(listener)
      const owner = await ownerOf(endpointsOf(accepted))
      assert.deepEqual(owner, {uid: process.getuid!(), inode: inodeOf(client), via: 'netlink'})
    })

    it('maps IPv4-mapped IPv6 addresses of a dual-stack listener to IPv4', async () => {
      // Given an IPv6 listener on ::ffff:127.0.0.1, which reports IPv4 peers as ::ffff:a.b.c.d
      const listener = await listen('::ffff:127.0.0.1')
      const {client, accepted} = await connect(listener, {host: '127.0.0.1'})
      assert.equal(accepted.remoteAddress, '::ffff:127.0.0.1')
      // Then the IPv4 client socket is found
      assert.deepEqual(await ownerOf(endpointsOf(accepted)), {
        uid: process.getuid!(),
        inode: inodeOf(client),
        via: 'netlink',
      })
    })

    it('finds a dual-stack IPv6 client socket connected to an IPv4 listener', async () => {
      // Given a client that dials the IPv4 listener through an AF_INET6 socket (as Java does)
      const listener = await listen('127.0.0.1')
      const {client, accepted} = await connect(listener, {host: '::ffff:127.0.0.1'})
      // Then the listener's IPv4 view of it finds that socket (tcp6 in /proc, AF_INET6 in netlink)
      assert.equal(accepted.remoteAddress, '127.0.0.1')
      assert.deepEqual(await ownerOf(endpointsOf(accepted)), {
        uid: process.getuid!(),
        inode: inodeOf(client),
        via: 'netlink',
      })
    })

    it('tells apart two clients that share a source port, by their destinations', async () => {
      // Given two clients bound to the same local port, each connected to a different listener
      const [a, b, elsewhere] = [
        await listen('127.0.0.1'),
        await listen('127.0.0.1'),
        await listen('127.0.0.1'),
      ]
      const probe = await listen('127.0.0.1') // a free port to share
      const port = probe.port
      probe.close()
      await once(probe.server, 'close')
      const toA = await connect(a, {localAddress: '127.0.0.1', localPort: port})
      const toB = await connect(b, {localAddress: '127.0.0.1', localPort: port})
      assert.equal(toA.client.localPort, toB.client.localPort)
      // Then each connection resolves to its own client socket
      assert.equal((await ownerOf(endpointsOf(toA.accepted)))?.inode, inodeOf(toA.client))
      assert.equal((await ownerOf(endpointsOf(toB.accepted)))?.inode, inodeOf(toB.client))
      // And the same source with a destination neither dialled finds nothing
      const wrong = {...endpointsOf(toA.accepted), localPort: elsewhere.port}
      assert.equal(await ownerOf(wrong), null)
    })

    it('finds the client behind the original destination it dialled (the DNAT case)', async () => {
      // Given a client connected to a stand-in for the IMDS address, seen by a listener elsewhere
      const imds = await listen('127.0.0.1')
      const daemon = await listen('127.0.0.1')
      const {client, accepted} = await connect(imds)
      const seenByDaemon = {...endpointsOf(accepted), localPort: daemon.port}
      // When the lookup knows that original destination
      const finder = await openSocketOwnerFinder({
        originalDestinations: [{address: '127.0.0.1', port: imds.port}],
      })
      try {
        // Then the client socket is found through it, and not without it
        assert.equal((await finder.findSocketOwner(seenByDaemon))?.inode, inodeOf(client))
        assert.equal(await netlink.findSocketOwner(seenByDaemon), null)
      } finally {
        await finder.close()
      }
    })

    it('answers nothing when a direct and a DNAT-looking socket both match', async () => {
      // Given one source port connected both to the listener and to the "original destination"
      const [daemon, imds] = [await listen('127.0.0.1'), await listen('127.0.0.1')]
      const probe = await listen('127.0.0.1')
      const port = probe.port
      probe.close()
      await once(probe.server, 'close')
      const direct = await connect(daemon, {localAddress: '127.0.0.1', localPort: port})
      await connect(imds, {localAddress: '127.0.0.1', localPort: port})
      // Then the connection is ambiguous
      const finder = await openSocketOwnerFinder({
        originalDestinations: [{address: '127.0.0.1', port: imds.port}],
      })
      try {
        assert.equal(await finder.findSocketOwner(endpointsOf(direct.accepted)), null)
      } finally {
        await finder.close()
      }
    })

    it('finds nothing once the connection is closed', async () => {
      const listener = await listen('127.0.0.1')
      const {client, accepted} = await connect(listener)
      const endpoints = endpointsOf(accepted)
      assert.notEqual(await ownerOf(endpoints), null)
      client.destroy()
      await once(accepted, 'close')
      assert.equal(await ownerOf(endpoints), null)
    })

    it('still finds a client that half-closed its side after sending its request', async () => {
      // Given a client that shut down its writing side (FIN_WAIT2) and waits for the answer
      const listener = await listen('127.0.0.1', {allowHalfOpen: true})
      const {client, accepted} = await connect(listener)
      client.end()
      await once(accepted, 'end')
      // Then it still owns the connection
      assert.equal((await ownerOf(endpointsOf(accepted)))?.inode, inodeOf(client))
    })

    it('finds nothing for a tuple no socket has', async () => {
      const listener = await listen('127.0.0.1')
      const query = {
        localAddress: '127.0.0.1',
        localPort: listener.port,
        remoteAddress: '127.0.0.1',
        remotePort: 1,
      }
      assert.equal(await ownerOf(query), null)
      assert.equal(await ownerOf({...query, remoteAddress: '127.0.0.2'}), null)
      assert.equal(await ownerOf({...query, remoteAddress: undefined}), null)
    })

    it('never answers with a listening socket', async () => {
      // Given a "client" port that is a listener's: the kernel's exact lookup falls back to it
      const listener = await listen('127.0.0.1')
      const other = await listen('127.0.0.1')
      const query = {
        localAddress: '127.0.0.1',
        localPort: other.port,
        remoteAddress: '127.0.0.1',
        remotePort: listener.port,
      }
      assert.equal(await ownerOf(query), null)
    })

    it('answers many lookups in flight at once, each with its own socket', async () => {
      const listener = await listen('127.0.0.1')
      const pairs = await Promise.all(Array.from({length: 20}, () => connect(listener)))
      const owners = await Promise.all(
        pairs.map(({accepted}) => netlink.findSocketOwner(endpointsOf(accepted))),
      )
      assert.deepEqual(
        owners.map((o) => o?.inode),
        pairs.map(({client}) => inodeOf(client)),
      )
    })

    it('finds uid 65534 for a socket held by a process running as nobody', async function () {
      if (!isRoot()) {
        console.log('      (skipped: needs root to start a process as uid 65534)')
        return this.skip()
      }
      // Given a process running as uid 65534 that connects and stays connected
      const listener = await listen('127.0.0.1')
      const code = `const s = require('net').connect(+process.argv[1], '127.0.0.1', () => console.log(s.localPort))
        process.stdin.on('end', () => s.destroy()).resume()`
      const child = spawn(process.execPath, ['-e', code, String(listener.port)], {
        uid: 65534,
        gid: 65534,
        cwd: '/',
        stdio: ['pipe', 'pipe', 'inherit'],
      })
      try {
        const [line] = (await once(child.stdout, 'data')) as [Buffer]
        const accepted = await listener.acceptedFrom(Number(line.toString().trim()))
        // Then the kernel's owner of that socket is nobody, not us
        const owner = await ownerOf(endpointsOf(accepted))
        assert.equal(owner?.uid, 65534)
      } finally {
        child.stdin.end()
        child.kill()
      }
    })

    it('finds the client behind a real iptables DNAT, in a network namespace of its own', async function () {
      this.timeout(60_000)
      const missing = netnsMissing(['unshare', 'iptables'])
      if (missing) return skipBecause(this, missing)
      // Given a private network namespace where 169.254.169.254:80 is DNAT'd to 127.0.0.1:808
      const result = runInNewNetns(DNAT_SCRIPT, [SOCKETS_MODULE.href], {tsx: true, timeoutMs: 50_000})
      if ('skipped' in result) return skipBecause(this, result.skipped)
      assert.equal(result.status, 0, result.stderr)
      const trials = JSON.parse(result.stdout) as Record<string, DnatTrial | {skipped: string}>
      for (const [family, trial] of Object.entries(trials)) {
        if ('skipped' in trial) {
          console.log(`      (${family} DNAT skipped: ${trial.skipped})`)
          continue
        }
        // Then the daemon sees the client as itself, and finds its socket through the IMDS address
        assert.equal(trial.seen.localPort, 808)
        assert.deepEqual(trial.netlink, {uid: 0, inode: trial.clientInode, via: 'netlink'}, family)
        assert.deepEqual(trial.proc, {uid: 0, inode: trial.clientInode, via: 'proc'}, family)
        // And not without knowing the original destination
        assert.equal(trial.withoutImds, null, family)
      }
      assert.ok('ipv4' in trials && !('skipped' in trials.ipv4), 'the IPv4 DNAT trial ran')
    })
  })

  describe('the finder itself', () => {
    it('asks netlink by default, and says so', async () => {
      const finder = await openSocketOwnerFinder()
      try {
        assert.equal(finder.via, 'netlink')
        assert.equal(finder.fallbackReason, undefined)
      } finally {
        await finder.close()
      }
    })

    it('answers a one-off question with a finder of its own', async () => {
      const server = net.createServer().listen(0, '127.0.0.1')
      await once(server, 'listening')
      const accepting = once(server, 'connection')
      const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
      try {
        await once(client, 'connect')
        const [accepted] = (await accepting) as [net.Socket]
        assert.equal((await findSocketOwner(accepted))?.inode, inodeOf(client))
        accepted.destroy()
      } finally {
        client.destroy()
        server.close()
      }
    })

    it('reads the tuples from /proc/net/tcp in the fallback: one live client socket or nothing', async () => {
      // Given a tcp file with a DNAT'd client of uid 1001, a listener, and a closed socket
      const dir = mkdtempSync(join(tmpdir(), 'proc-net-'))
      const line = (sl: number, local: string, remote: string, state: string, uid: number, inode: number) =>
        `  ${sl}: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${uid} 0 ${inode} 1 0000000000000000 20 4 30 10 -1`
      const header =
        '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode'
      const write = (...lines: string[]) => writeFileSync(join(dir, 'tcp'), [header, ...lines, ''].join('\n'))
      const client = line(0, '0100007F:D431', 'FEA9FEA9:0050', '01', 1001, 51234)
      const listener = line(1, '0100007F:0328', '00000000:0000', '0A', 0, 48817)
      const daemonSide = line(2, '0100007F:0328', '0100007F:D431', '01', 0, 51299)
      const seen = {localAddress: '127.0.0.1', localPort: 808, remoteAddress: '127.0.0.1', remotePort: 54321}
      write(listener, client, daemonSide)
      const finder = await openSocketOwnerFinder({mechanism: 'proc', procNetDir: dir})
      try {
        assert.deepEqual(await finder.findSocketOwner(seen), {uid: 1001, inode: 51234, via: 'proc'})
        // A second live socket from that port, connected directly to the listener: ambiguous
        write(listener, client, daemonSide, line(3, '0100007F:D431', '0100007F:0328', '01', 1002, 51300))
        assert.equal(await finder.findSocketOwner(seen), null)
        // The same client in TIME_WAIT (06), or orphaned (inode 0): nobody
        write(listener, line(0, '0100007F:D431', 'FEA9FEA9:0050', '06', 0, 0))
        assert.equal(await finder.findSocketOwner(seen), null)
        write(listener, line(0, '0100007F:D431', 'FEA9FEA9:0050', '05', 1001, 0))
        assert.equal(await finder.findSocketOwner(seen), null)
        // Half-closed by the client (FIN_WAIT2, 05) but still held: the client
        write(listener, line(0, '0100007F:D431', 'FEA9FEA9:0050', '05', 1001, 51234))
        assert.equal((await finder.findSocketOwner(seen))?.uid, 1001)
      } finally {
        await finder.close()
        rmSync(dir, {recursive: true})
      }
    })

    it('refuses to fall back when /proc/net/tcp cannot be read either', async () => {
      await assert.rejects(
        openSocketOwnerFinder({mechanism: 'proc', procNetDir: '/nonexistent'}),
        (error: UserError) =>
          error.kind === 'unavailable' && /\/nonexistent\/tcp cannot be read/.test(error.message),
      )
    })
  })

  describe('clientSocketTuples', () => {
    it('tries the listener and the IPv4 IMDS address for an IPv4 client', () => {
      const tuples = clientSocketTuples({
        localAddress: '127.0.0.1',
        localPort: 808,
        remoteAddress: '127.0.0.1',
        remotePort: 54321,
      })
      assert.deepEqual(tuples, [
        {family: 4, local: {address: '127.0.0.1', port: 54321}, remote: {address: '127.0.0.1', port: 808}},
        {
          family: 4,
          local: {address: '127.0.0.1', port: 54321},
          remote: {address: '169.254.169.254', port: 80},
        },
      ])
    })

    it('tries the listener and the IPv6 IMDS address for an IPv6 client', () => {
      const tuples = clientSocketTuples({
        localAddress: '::1',
        localPort: 808,
        remoteAddress: '0:0::1',
        remotePort: 54321,
      })
      assert.deepEqual(
        tuples.map((t) => [t.family, t.local.address, t.remote.address, t.remote.port]),
        [
          [6, '::1', '::1', 808],
          [6, '::1', 'fd00:ec2::254', 80],
        ],
      )
    })

    it('maps IPv4-mapped addresses to IPv4', () => {
      const tuples = clientSocketTuples({
        localAddress: '::ffff:127.0.0.1',
        localPort: 808,
        remoteAddress: '::FFFF:7f00:2',
        remotePort: 5,
      })
      assert.deepEqual(
        tuples.map((t) => [t.family, t.local.address, t.remote.address]),
        [
          [4, '127.0.0.2', '127.0.0.1'],
          [4, '127.0.0.2', '169.254.169.254'],
        ],
      )
    })

    it('tries a tuple once when the listener is the IMDS address itself', () => {
      const tuples = clientSocketTuples({
        localAddress: '169.254.169.254',
        localPort: 80,
        remoteAddress: '10.0.0.5',
        remotePort: 40000,
      })
      assert.equal(tuples.length, 1)
    })

    it('writes IPv6 addresses in one canonical form', () => {
      const [tuple] = clientSocketTuples(
        {
          localAddress: 'FD00:EC2:0:0:0:0:0:254',
          localPort: 80,
          remoteAddress: '2001:db8:0:0:1:0:0:1%eth0',
          remotePort: 1,
        },
        [],
      )
      assert.deepEqual(tuple.local.address, '2001:db8::1:0:0:1')
      assert.deepEqual(tuple.remote.address, 'fd00:ec2::254')
    })

    it('has nothing to try for a connection whose endpoints are unknown', () => {
      assert.deepEqual(clientSocketTuples({localAddress: '127.0.0.1', localPort: 808}), [])
      assert.deepEqual(
        clientSocketTuples({
          localAddress: '127.0.0.1',
          localPort: 808,
          remoteAddress: 'nonsense',
          remotePort: 1,
        }),
        [],
      )
      assert.deepEqual(
        clientSocketTuples({
          localAddress: '127.0.0.1',
          localPort: 808,
          remoteAddress: '127.0.0.1',
          remotePort: 0,
        }),
        [],
      )
    })
  })

  describe('parseProcNetTcpLine', () => {
    it('reads an IPv4 listener, little-endian words and hex ports', () => {
      const line =
        '   0: 0100007F:0328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 48817 1 0000000000000000 100 0 0 10 0'
      assert.deepEqual(parseProcNetTcpLine(line, 'LE'), {
        family: 4,
        local: {address: '127.0.0.1', port: 808},
        remote: {address: '0.0.0.0', port: 0},
        state: 10,
        uid: 0,
        inode: 48817,
      })
    })

    it('reads an established IPv4 client with its uid and inode', () => {
      const line =
        '  12: 0100007F:D431 FEA9FEA9:0050 01 00000000:00000000 00:00000000 00000000  1001        0 51234 1 0000000000000000 20 4 30 10 -1'
      assert.deepEqual(parseProcNetTcpLine(line, 'LE'), {
        family: 4,
        local: {address: '127.0.0.1', port: 54321},
        remote: {address: '169.254.169.254', port: 80},
        state: 1,
        uid: 1001,
        inode: 51234,
      })
    })

    it('reads an IPv6 socket word by word', () => {
      const line =
        '   3: 00000000000000000000000001000000:D431 C20E00FD000000000000000054020000:0050 01 00000000:00000000 00:00000000 00000000  1001        0 60001 1 0000000000000000 20 4 30 10 -1'
      assert.deepEqual(parseProcNetTcpLine(line, 'LE'), {
        family: 6,
        local: {address: '::1', port: 54321},
        remote: {address: 'fd00:ec2::254', port: 80},
        state: 1,
        uid: 1001,
        inode: 60001,
      })
    })

    it('reads a dual-stack socket with IPv4-mapped addresses as IPv4', () => {
      const line =
        '   4: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF0000FEA9FEA9:0050 01 00000000:00000000 00:00000000 00000000  1001        0 60002 1 0000000000000000 20 4 30 10 -1'
      const entry = parseProcNetTcpLine(line, 'LE')
      assert.equal(entry?.family, 4)
      assert.deepEqual(
        [entry?.local, entry?.remote],
        [
          {address: '127.0.0.1', port: 54321},
          {address: '169.254.169.254', port: 80},
        ],
      )
    })

    it('reads words in network order on a big-endian host', () => {
      const line =
        '   0: 7F000001:0328 A9FEA9FE:0050 01 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0'
      const entry = parseProcNetTcpLine(line, 'BE')
      assert.deepEqual([entry?.local.address, entry?.remote.address], ['127.0.0.1', '169.254.169.254'])
    })

    it('skips the header and anything that is not a socket line', () => {
      assert.equal(
        parseProcNetTcpLine(
          '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
        ),
        null,
      )
      assert.equal(parseProcNetTcpLine(''), null)
      assert.equal(parseProcNetTcpLine('   0: 0100007F:0328 00000000:0000 0A'), null)
      assert.equal(
        parseProcNetTcpLine('   0: 0100007F:0328 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 1 1'),
        null,
      )
    })

    it("parses every socket line of this machine's /proc/net/tcp and tcp6", () => {
      // The values are checked against netlink by the real-socket tests above.
      for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
        const lines = readFileSync(file, 'utf8').split('\n').slice(1).filter(Boolean)
        for (const line of lines) assert.notEqual(parseProcNetTcpLine(line), null, line)
      }
    })
  })

  describe('cachedUserNames', () => {
    const alice: LocalUser = {name: 'alice', uid: 1001}

    function countingDatabase(answer: (uid: number) => Promise<LocalUser | null>) {
      const calls: number[] = []
      const db: UserDatabase = {
        find(query) {
          assert.ok('uid' in query)
          calls.push(query.uid)
          return answer(query.uid)
        },
      }
      return {db, calls}
    }

    it('asks the database once per uid within the TTL, and again after it', async () => {
      let now = 0
      const {db, calls} = countingDatabase(async (uid) => (uid === 1001 ? alice : null))
      const names = cachedUserNames(db, 60_000, {now: () => now})
      assert.deepEqual(await names.userFor(1001), alice)
      assert.deepEqual(await names.userFor(1001), alice)
      assert.equal(await names.userFor(4242), null)
      assert.equal(await names.userFor(4242), null)
      assert.deepEqual(calls, [1001, 4242])
      now = 60_001
      await names.userFor(1001)
      assert.deepEqual(calls, [1001, 4242, 1001])
    })

    it('refuses a look-up that waits past maxWaitMs behind others, naming what it waited for', async () => {
      let release = () => {}
      const {db} = countingDatabase((uid) => (uid === 1 ? new Promise((r) => (release = () => r(alice))) : Promise.resolve(alice)))
      const names = cachedUserNames(db, 60_000, {maxConcurrent: 1, maxWaitMs: 30})
      const first = names.userFor(1)
      await assert.rejects(names.userFor(2), {message: 'no user-database look-up was free within 30 ms'})
      release()
      assert.deepEqual(await first, alice)
    })

    it('shares one look-up between concurrent requests', async () => {
      const {db, calls} = countingDatabase(async () => alice)
      const names = cachedUserNames(db, 60_000)
      await Promise.all([names.userFor(1001), names.userFor(1001), names.userFor(1001)])
      assert.deepEqual(calls, [1001])
    })

    it('runs at most maxConcurrent look-ups at once, the rest queued', async () => {
      let running = 0
      let most = 0
      const {db, calls} = countingDatabase(async (uid) => {
        most = Math.max(most, ++running)
        await new Promise((resolve) => setTimeout(resolve, 5))
        running--
        return {name: `u${uid}`, uid}
      })
      const names = cachedUserNames(db, 60_000, {maxConcurrent: 3})
      const users = await Promise.all(Array.from({length: 40}, (_, i) => names.userFor(100_000 + i)))
      assert.equal(most, 3)
      assert.equal(calls.length, 40)
      assert.deepEqual(users.map((u) => u?.uid), Array.from({length: 40}, (_, i) => 100_000 + i))
    })

    it('does not keep a failed look-up', async () => {
      let fail = true
      const {db, calls} = countingDatabase(async () => {
        if (fail) throw new UserError('unavailable', 'getent failed')
        return alice
      })
      const names = cachedUserNames(db, 60_000)
      await assert.rejects(names.userFor(1001), /getent failed/)
      fail = false
      assert.deepEqual(await names.userFor(1001), alice)
      assert.equal(calls.length, 2)
    })
  })
})

interface DnatTrial {
  seen: ConnectionEndpoints
  clientInode: number
  netlink: unknown
  proc: unknown
  withoutImds: unknown
}

/**
 * Runs inside `unshare --net` (argv[1]: the sockets module): loopback up, the IMDS addresses on
 * lo, iptables DNAT to port 808 as the daemon's rules do, one client per family through it.
 */
const DNAT_SCRIPT = `
import {execFileSync} from 'node:child_process'
import {once} from 'node:events'
import {mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
const {openSocketOwnerFinder} = await import(process.argv[1])
const run = (...command) => execFileSync(command[0], command.slice(1), {stdio: 'pipe'})
async function trial(loopback, imds) {
  const server = net.createServer().listen(808, loopback)
  await once(server, 'listening')
  const accepting = once(server, 'connection')
  const client = net.connect({host: imds, port: 80, localAddress: loopback})
  await once(client, 'connect')
  const [socket] = await accepting
  const seen = {localAddress: socket.localAddress, localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort}
  const clientInode = Number(/\\d+/.exec(readlinkSync('/proc/self/fd/' + client._handle.fd))[0])
  const result = {seen, clientInode}
  for (const mechanism of ['netlink', 'proc']) {
    const finder = await openSocketOwnerFinder({mechanism})
    result[mechanism] = await finder.findSocketOwner(seen)
    await finder.close()
  }
  const bare = await openSocketOwnerFinder({originalDestinations: []})
  result.withoutImds = await bare.findSocketOwner(seen)
  await bare.close()
  client.destroy()
  socket.destroy()
  server.close()
  return result
}
const trials = {}
run('ip', 'link', 'set', 'lo', 'up')
run('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
run('iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '169.254.169.254', '--dport', '80', '-j', 'DNAT', '--to-destination', '127.0.0.1:808')
trials.ipv4 = await trial('127.0.0.1', '169.254.169.254')
try {
  run('ip', '-6', 'addr', 'add', 'fd00:ec2::254/128', 'dev', 'lo', 'nodad')
  run('ip6tables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', 'fd00:ec2::254', '--dport', '80', '-j', 'DNAT', '--to-destination', '[::1]:808')
} catch (error) {
  trials.ipv6 = {skipped: String(error.stderr || error.message).trim().split('\\n')[0]}
}
if (!trials.ipv6) trials.ipv6 = await trial('::1', 'fd00:ec2::254')
console.log(JSON.stringify(trials))
`
