// Whether an address answers TCP from this host: the IPv6 metadata endpoint exists only on some
// instances (Nitro, with the IPv6 endpoint turned on), and where it does and ip6tables cannot
// guard it, users reach the real IMDS over IPv6.
import {connect} from 'node:net'

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
