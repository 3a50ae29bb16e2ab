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
  }
  return owner
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
  /**
   * Open connections one uid may have (default 256; those whose owner is unknown count as one
   * uid). Past it a new connection of that uid is closed at once (the client sees a reset).
   */
  maxConnectionsPerUid?: number
  /** Open connections in all (default 16,384; the systemd unit allows 65,536 descriptors). */
  maxConnections?: number
  /** Told of every connection closed for being over its uid's cap. */
  onConnectionRefused?: (uid: number | null, open: number) => void
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
      app.handle(req, res, () => identityFor(req.socket, lookup)).catch(() => res.destroy())
    },
  )
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket ?? 1000
  server.maxConnections = limits.maxConnections ?? 16_384
  const perUid = limits.maxConnectionsPerUid ?? 256
  const open = new Map<number | null, number>()
  server.on('connection', (socket: Socket) => {
    // Looked up now, and remembered for the connection's first request.
    identityFor(socket, lookup).then(
      (identity) => {
        if (socket.destroyed) return // closed before its owner was known: it counts for nobody
        const uid = identity?.uid ?? null
        const count = (open.get(uid) ?? 0) + 1
        if (count > perUid) {
          socket.destroy()
          limits.onConnectionRefused?.(uid, count - 1)
          return
        }
        open.set(uid, count)
        socket.once('close', () => {
          const left = open.get(uid)! - 1
          if (left === 0) open.delete(uid)
          else open.set(uid, left)
        })
      },
      () => {
        // The lookup failed: the connection's requests answer 500 (handle's owner step).
      },
    )
  })
  return server
}
