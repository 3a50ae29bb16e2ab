// The HTTP listener around the application: Node's http server with IMDS-sized limits and
// timeouts, and the connection's owner looked up once per TCP connection, as soon as it is
// accepted. Connections are capped per owner: one user holding thousands of idle connections
// would otherwise use up the daemon's file descriptors and stall everyone else's requests.
// `serve` adds the address, logging and graceful close; the tests listen on a loopback port
// with a fake owner.
import {createServer, Server} from 'node:http'
import type {Socket} from 'node:net'

import type {Identity, ImdsApp} from './app.js'

/** Finds the owner of a connection (serve: the socket's 4-tuple in /proc/net/tcp, then NSS). */
export type OwnerLookup = (socket: Socket) => Promise<Identity | null>

const owners = new WeakMap<Socket, Promise<Identity | null>>()
/** The owners found, so that a connection's later requests need not wait on the promise. */
const found = new WeakMap<Socket, Identity | null>()

/**
 * The owner of `socket`, looked up on its first request and remembered for the connection's
 * life (keep-alive requests reuse it; a socket's owner cannot change). A failed lookup is
 * remembered too: the connection then answers 500 until the client reconnects.
 */
export function identityFor(socket: Socket, lookup: OwnerLookup): Promise<Identity | null> {
  let owner = owners.get(socket)
  if (!owner) {
    owner = lookup(socket)
    owners.set(socket, owner)
    owner.then(
      (identity) => found.set(socket, identity),
      () => {}, // a failed lookup stays a rejected promise: the connection answers 500
    )
  }
  return owner
}

/**
 * The owner of `socket` once it is known, else identityFor's promise. Known means the listener's
 * connection cap has counted the socket too (its callback runs in the same microtask turn).
 */
export function ownerOf(socket: Socket, lookup: OwnerLookup): Promise<Identity | null> | Identity | null {
  return found.has(socket) ? (found.get(socket) as Identity | null) : identityFor(socket, lookup)
}

export interface ImdsServerLimits {
  /** All request headers together (default 8 KiB; past it Node answers 431). */
  maxHeaderBytes?: number
  /** Time to receive a request's headers (default 5 s), and the whole request (10 s). */
  headersTimeoutMs?: number
  requestTimeoutMs?: number
  /** How long an idle kept-alive connection stays open (default 5 s). */
  keepAliveTimeoutMs?: number
  /** Requests on one connection before it is closed (default 1,000). */
  maxRequestsPerSocket?: number
  /** Open connections in all, per listener (default 16,384; the systemd unit allows 65,536 descriptors). */
  maxConnections?: number
  /**
   * The per-uid connection counts, shared by the listeners that pass the same object (serve's
   * IPv4 and IPv6 listeners); default: one of the listener's own, with default caps.
   */
  caps?: ConnectionCaps
}

/**
 * Open connections per owner. A uid may hold `perUid` (default 256); every uid without a local
 * user, and every connection whose owner could not be found, count together as one owner
 * (`null`): otherwise a user with many subordinate uids (containers) would get 256 per uid.
 * Past the cap a new connection is closed at once (the client sees a reset), before any of its
 * requests is answered.
 */
export class ConnectionCaps {
  private readonly open = new Map<number | null, number>()
  readonly perUid: number

  constructor(
    options: {perUid?: number; onRefused?: (uid: number | null, open: number) => void} = {},
  ) {
    this.perUid = options.perUid ?? 256
    this.onRefused = options.onRefused
  }

  private readonly onRefused?: (uid: number | null, open: number) => void

  /** The owner a connection counts for. */
  static ownerOf(identity: Identity | null): number | null {
    return identity && (identity.uid === 0 || identity.user) ? identity.uid : null
  }

  /** Counts `socket` for `owner` until it closes; false (and the socket destroyed) when over the cap. */
  admit(socket: Socket, owner: number | null): boolean {
    const count = (this.open.get(owner) ?? 0) + 1
    if (count > this.perUid) {
      socket.destroy()
      this.onRefused?.(owner, count - 1)
      return false
    }
    this.open.set(owner, count)
    socket.once('close', () => {
      const left = this.open.get(owner)! - 1
      if (left === 0) this.open.delete(owner)
      else this.open.set(owner, left)
    })
    return true
  }
}

export function createImdsServer(app: ImdsApp, lookup: OwnerLookup, limits: ImdsServerLimits = {}): Server {
  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes ?? 8 * 1024,
      // Node checks the two timeouts below on this interval (30 s by default): check often, so
      // that a client trickling its headers is cut off near the limit, not half a minute later.
      connectionsCheckingInterval: 1000,
      headersTimeout: limits.headersTimeoutMs ?? 5000,
      requestTimeout: limits.requestTimeoutMs ?? 10_000,
      keepAliveTimeout: limits.keepAliveTimeoutMs ?? 5000,
    },
    (req, res) => {
      // handle() answers every failure itself; this is the net for a failure while answering.
      app.handle(req, res, () => ownerOf(req.socket, lookup)).catch(() => res.destroy())
    },
  )
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket ?? 1000
  server.maxConnections = limits.maxConnections ?? 16_384
  const caps = limits.caps ?? new ConnectionCaps()
  server.on('connection', (socket: Socket) => {
    // Looked up now, and remembered for the connection's first request. The app's owner step
    // waits for the same lookup and refuses a request whose connection was closed here.
    const counted = (identity: Identity | null) => {
      if (!socket.destroyed) caps.admit(socket, ConnectionCaps.ownerOf(identity))
    }
    identityFor(socket, lookup).then(counted, () => counted(null))
  })
  return server
}
