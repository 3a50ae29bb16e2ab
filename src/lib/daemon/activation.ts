// The listening sockets systemd hands `serve` (socket activation, sd_listen_fds(3)): with
// ec2userkeyd.socket, systemd holds 127.0.0.1:808, [::1]:808 and the admin socket while the daemon
// restarts, so connections queue instead of failing and no user can bind the ports meanwhile.
// Each socket is adopted as a plain listener and sorted by what it is bound to: the metadata
// listeners (their port is the daemon's) and the admin listener (a unix socket, or its address).
// A name from FileDescriptorName= ("imds", "admin") wins over the address.
import {createServer, Server, type AddressInfo} from 'node:net'
import {readFile} from 'node:fs/promises'

import {UserError} from '../errors.js'

/** The first descriptor systemd passes (SD_LISTEN_FDS_START). */
const FIRST_FD = 3

export interface PassedSocket {
  fd: number
  /** Its FileDescriptorName=, or the socket unit's name when none was given. */
  name: string
}

/**
 * The sockets passed to this process: LISTEN_FDS of them from fd 3, when LISTEN_PID is this
 * process (an inherited environment meant for another process passes nothing). Empty without.
 */
export function passedSockets(env: Record<string, string | undefined>, pid: number): PassedSocket[] {
  if (env.LISTEN_PID === undefined || env.LISTEN_FDS === undefined) return []
  if (Number(env.LISTEN_PID) !== pid) return []
  const count = Number(env.LISTEN_FDS)
  if (!Number.isInteger(count) || count < 0 || count > 64) throw new UserError('usage', `LISTEN_FDS=${env.LISTEN_FDS} is not a number of sockets`)
  const names = (env.LISTEN_FDNAMES ?? '').split(':')
  return Array.from({length: count}, (_, i) => ({fd: FIRST_FD + i, name: names[i] || 'unknown'}))
}

export interface AdoptedSocket extends PassedSocket {
  /** A listener on the descriptor; its connections are handed to whichever server takes them. */
  listener: Server
  /** What it is bound to: a TCP address, or a unix socket's path. */
  address: AddressInfo | string
}

/** Starts listening on each passed descriptor (they are bound and listening already). */
export async function adoptSockets(passed: readonly PassedSocket[]): Promise<AdoptedSocket[]> {
  const adopted: AdoptedSocket[] = []
  for (const socket of passed) {
    const listener = createServer()
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (error) => reject(new UserError('unavailable', `cannot use the socket systemd passed as fd ${socket.fd} (${socket.name}): ${error.message}`)))
      listener.listen({fd: socket.fd}, resolve)
    })
    // Node tells a TCP socket's address; of a unix socket adopted by descriptor it knows no path.
    const address = listener.address() ?? `a unix socket (fd ${socket.fd})`
    adopted.push({...socket, listener, address})
  }
  return adopted
}

/** What a passed socket is for. */
export function roleOfSocket(socket: AdoptedSocket, expect: {imdsPort: number; admin: string | null}): 'imds' | 'admin' | null {
  if (socket.name === 'imds' || socket.name === 'admin') return socket.name
  if (typeof socket.address === 'string') return expect.admin !== null && expect.admin.startsWith('/') ? 'admin' : null
  if (socket.address.port === expect.imdsPort) return 'imds'
  const admin = expect.admin !== null && !expect.admin.startsWith('/') ? /:(\d+)$/.exec(expect.admin) : null
  return admin && Number(admin[1]) === socket.address.port ? 'admin' : null
}

/**
 * The lowest port a user may bind (net.ipv4.ip_unprivileged_port_start, 1024 unless lowered):
 * a listener at or above it can be taken by any user while the daemon is down.
 */
export async function unprivilegedPortStart(path = '/proc/sys/net/ipv4/ip_unprivileged_port_start'): Promise<number> {
  try {
    const value = Number((await readFile(path, 'utf8')).trim())
    return Number.isInteger(value) ? value : 1024
  } catch {
    return 1024
  }
}
