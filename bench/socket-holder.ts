// bench/socket-holder: the other sockets of bench/serve's step 2, held by a process of their own,
// as on a host, where they belong to other processes: in the bench's own process their objects
// would sit in the daemon's heap and lengthen its garbage collections, which a daemon never
// sees. Opens `count / 2` loopback connections to a listener of its own (both ends: `count`
// sockets), prints `{"sockets": N}` once they are open (fewer when the fd limit stops it), and
// exits when its standard input closes.
//
//   node --import tsx bench/socket-holder.ts COUNT
import {once} from 'node:events'
import net from 'node:net'

const count = Number(process.argv[2])
const listener = net.createServer().listen(0, '127.0.0.1')
await once(listener, 'listening')
const {port} = listener.address() as net.AddressInfo
const accepted: net.Socket[] = []
listener.on('connection', (socket) => accepted.push(socket))
const held: net.Socket[] = []
opening: while (held.length < Math.ceil(count / 2)) {
  const batch = Array.from({length: Math.min(200, Math.ceil(count / 2) - held.length)}, () => {
    const client = net.connect(port, '127.0.0.1')
    held.push(client)
    return once(client, 'connect').then(
      () => true,
      () => false,
    )
  })
  if (!(await Promise.all(batch)).every(Boolean)) break opening
}
const open = held.filter((socket) => !socket.destroyed && socket.readyState === 'open').length
while (accepted.length < open) await new Promise((resolve) => setTimeout(resolve, 10))
process.stdout.write(`${JSON.stringify({sockets: open + accepted.length})}\n`)
process.stdin.on('end', () => process.exit(0)).resume()
