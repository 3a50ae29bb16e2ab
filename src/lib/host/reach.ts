// Whether an address answers TCP from this host: the IPv6 metadata endpoint exists only on some
// instances (Nitro, with the IPv6 endpoint turned on), and where it does and ip6tables cannot
// guard it, users reach the real IMDS over IPv6.
import {readFile} from 'node:fs/promises'
import {connect, isIPv4} from 'node:net'

import {parseProcNetTcpLine} from './sockets.js'

/** Connects to host:port (as the calling process: root passes the rules) and reports whether it was accepted within `timeoutMs`. */
export function tcpAnswers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({host, port})
    const done = (answered: boolean) => {
      socket.destroy()
      resolve(answered)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

const TCP_LISTEN = 0x0a

/**
 * The uid of the socket listening where a connection to host:port would land, from
 * /proc/net/tcp{,6}; null when none listens. The kernel prefers a socket bound to the address
 * (an IPv6 socket's ::ffff:a.b.c.d folds to a.b.c.d) over one bound to its family's wildcard,
 * and an IPv4 connection also lands on a dual-stack [::] socket when no IPv4 one is there. A
 * listener not root's (nor the daemon's) is a user answering for the daemon: one who could bind
 * the port while the daemon was down.
 */
export async function listenerOwner(host: string, port: number, procNetDir = '/proc/net'): Promise<number | null> {
  const family = isIPv4(host) ? 4 : 6
  // Higher wins: bound to the address, then the family's own wildcard, then [::] for IPv4.
  const rank = (address: string) =>
    address === host ? 3 : address === (family === 4 ? '0.0.0.0' : '::') ? 2 : family === 4 && address === '::' ? 1 : 0
  let best: {rank: number; uid: number} | null = null
  for (const file of family === 4 ? ['tcp', 'tcp6'] : ['tcp6']) {
    let text: string
    try {
      text = await readFile(`${procNetDir}/${file}`, 'utf8')
    } catch {
      continue // no IPv6 in this kernel, or no /proc: nobody found
    }
    for (const line of text.split('\n')) {
      const entry = parseProcNetTcpLine(line)
      if (!entry || entry.state !== TCP_LISTEN || entry.local.port !== port) continue
      const r = rank(entry.local.address)
      if (r > 0 && (best === null || r > best.rank)) best = {rank: r, uid: entry.uid}
    }
  }
  return best?.uid ?? null
}
