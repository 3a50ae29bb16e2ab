// The HTTP listener around the application: Node's http server with IMDS-sized limits and
// timeouts, and the connection's owner looked up once per TCP connection. `serve` adds the
// address, logging and graceful close; the tests listen on a loopback port with a fake owner.
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
  return server
}
