// Regression (found in review): netlink's exact lookup misses a socket bound to an interface
// (SO_BINDTODEVICE, allowed to unprivileged users since Linux 5.7) unless asked with that
// interface's index. A user could then share another socket's source address and port, bind
// its own socket to lo, and be taken for that socket's owner (root, or another user).
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import net from 'node:net'

import {openSocketOwnerFinder} from '../../src/lib/host/sockets.js'

// Python's socket module sets SO_BINDTODEVICE and IP_BIND_ADDRESS_NO_PORT without an FFI.
const ATTACKER = `
import socket, sys, time
want, port = int(sys.argv[1]), int(sys.argv[2])
for i in range(300000):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    s.bind(("127.0.0.1", 0)); s.connect(("127.0.0.1", port))
    if s.getsockname()[1] == want: break
    s.close()
else:
    sys.exit(3)
print("ok", flush=True); time.sleep(30)`

describe('socket owners and interface-bound sockets', () => {
  it("never takes a user's interface-bound socket for another socket sharing its address and port", async function () {
    this.timeout(120_000)
    if (process.getuid?.() !== 0) return this.skip()
    if (spawnSync('python3', ['-c', 'import socket; socket.SO_BINDTODEVICE']).status !== 0) {
      console.log('      (skipped: needs python3 to bind a socket to an interface)')
      return this.skip()
    }
    // Given root's connection 127.0.0.1:P -> 127.0.0.2:M (standing for a DNAT'd IMDS connection)
    const imds = net.createServer().listen(0, '127.0.0.2')
    const daemon = net.createServer().listen(0, '127.0.0.1')
    await Promise.all([once(imds, 'listening'), once(daemon, 'listening')])
    const imdsPort = (imds.address() as net.AddressInfo).port
    const daemonPort = (daemon.address() as net.AddressInfo).port
    const victim = net.connect({host: '127.0.0.2', port: imdsPort})
    await once(victim, 'connect')
    const shared = victim.localPort!
    const accepted = new Promise<net.Socket>((resolve) =>
      daemon.on('connection', (s) => s.remotePort === shared && resolve(s)),
    )
    // When uid 65534 connects to the daemon from the same address and port, its socket bound to lo
    const attacker = spawn('python3', ['-c', ATTACKER, String(shared), String(daemonPort)], {
      uid: 65534,
      gid: 65534,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    try {
      const [ready] = await Promise.race([
        once(attacker.stdout!, 'data'),
        once(attacker, 'exit').then(() => [null]),
      ])
      if (!ready) return this.skip() // the port never came up (a busy host)
      const seen = await accepted
      // Then neither lookup takes it for root's: asked by the connection's endpoints alone, two
      // sockets share the address and port (no owner); asked with the accepted socket, whose
      // SO_ORIGINAL_DST says it dialled the daemon itself, the one socket is the attacker's.
      const endpoints = {
        localAddress: seen.localAddress,
        localPort: seen.localPort,
        remoteAddress: seen.remoteAddress,
        remotePort: seen.remotePort,
      }
      for (const mechanism of ['netlink', 'proc'] as const) {
        const finder = await openSocketOwnerFinder({
          mechanism,
          originalDestinations: [{address: '127.0.0.2', port: imdsPort}],
        })
        try {
          assert.equal(await finder.findSocketOwner(endpoints), null, mechanism)
          const owner = await finder.findSocketOwner(seen)
          assert.ok(owner === null || owner.uid === 65534, `${mechanism}: ${JSON.stringify(owner)}`)
        } finally {
          await finder.close()
        }
      }
      seen.destroy()
    } finally {
      attacker.kill()
      victim.destroy()
      imds.close()
      daemon.close()
    }
  })
})
