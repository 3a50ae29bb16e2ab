// Who owns a TCP connection: the uid and socket inode of the client's own socket, found in the
// kernel by its exact 4-tuple. The daemon sees the client as (remoteAddress, remotePort); the
// client's socket has as its peer either the address it dialled before iptables DNAT (the IMDS
// address) or, for a direct connection, the listener. Exactly one live socket must match, or the
// connection has no owner and gets no credentials.
//
// The kernel is asked through netlink sock_diag: one SOCK_DIAG_BY_FAMILY request for one exact
// socket id (no dump) answers in microseconds whatever the number of sockets. /proc/net/tcp{,6},
// where each read walks the whole socket hash and formats every socket (milliseconds with a few
// sockets, ~100 ms with 10,000), is only the fallback where netlink can't be opened; `via` and
// `fallbackReason` say which is in use.
//
// Which tuple it is, the daemon asks the kernel too when it has the accepted socket: conntrack
// (ctnetlink, found by the accepted socket's own tuple, conntrack's reply tuple) gives the
// connection's original tuple, the client socket's exact address, port and peer before any NAT,
// so only that one tuple is looked up. That matters when NAT had to change the client's source
// port (its reply tuple clashed with another connection's): the port the daemon sees is then
// another socket's, or nobody's. No entry: never NAT'd, the peer is the listener. Where ctnetlink
// cannot be asked (not root, no nf_conntrack_netlink; `conntrackFallbackReason` says so),
// SO_ORIGINAL_DST gives the destination dialled, paired with the port seen. Without either (bare
// endpoints, no libc), every possible peer is tried and exactly one socket must match.
import {readdirSync, readFileSync} from 'node:fs'
import {access, readFile} from 'node:fs/promises'
import {isIPv4, isIPv6} from 'node:net'
import {endianness} from 'node:os'
import {promisify} from 'node:util'

import {UserError} from '../errors.js'
import {FairLimiter} from '../fair.js'
import type {LocalUser, UserDatabase} from './users.js'

/** What the daemon knows about an accepted connection: a `net.Socket` fits as it is. */
export interface ConnectionEndpoints {
  /** The listener's address and port, as the accepted socket reports them. */
  localAddress?: string
  localPort?: number
  /** The client's own address and port. */
  remoteAddress?: string
  remotePort?: number
}

/** The kernel's answer to SO_ORIGINAL_DST: the destination dialled, or 'untracked' (never DNAT'd). */
export type OriginalDestination = Endpoint | 'untracked'

export type SocketLookupMechanism = 'netlink' | 'proc'

export interface SocketOwner {
  uid: number
  /** The client socket's inode (`socket:[N]` in /proc/PID/fd), for the audit record. */
  inode: number
  via: SocketLookupMechanism
}

export interface Endpoint {
  address: string
  port: number
}

/** One socket as the client's kernel socket sees it: local is the client, remote its peer. */
export interface ClientSocketTuple {
  family: 4 | 6
  local: Endpoint
  remote: Endpoint
}

/** Where clients dial the instance metadata service before iptables rewrites the destination. */
export const IMDS_ENDPOINTS: readonly Endpoint[] = [
  {address: '169.254.169.254', port: 80},
  {address: 'fd00:ec2::254', port: 80},
]

export interface SocketOwnerFinderOptions {
  /** 'auto' (default): netlink sock_diag, else /proc/net/tcp. 'netlink' or 'proc' insist on one. */
  mechanism?: 'auto' | SocketLookupMechanism
  /** How long a netlink request may stay unanswered before the lookup fails (default 1000). */
  timeoutMs?: number
  /** The destinations clients dial before DNAT (default IMDS_ENDPOINTS). */
  originalDestinations?: readonly Endpoint[]
  /** Where tcp and tcp6 are read by the fallback (default /proc/net). */
  procNetDir?: string
}

export interface SocketOwnerFinder {
  readonly via: SocketLookupMechanism
  /** Why netlink is not in use, when 'auto' fell back to /proc: the daemon logs it once. */
  readonly fallbackReason?: string
  /**
   * Why conntrack cannot be asked for a connection's original tuple (ctnetlink needs root and
   * nf_conntrack_netlink): lookups then rely on SO_ORIGINAL_DST, blind to a remapped source
   * port. The daemon logs it once.
   */
  readonly conntrackFallbackReason?: string
  /**
   * The owner of the client socket behind an accepted connection; null when no live socket or
   * more than one matches. Rejects (a UserError, kind 'unavailable') when the kernel could not
   * be asked: the connection then gets no credentials either.
   */
  findSocketOwner(connection: ConnectionEndpoints): Promise<SocketOwner | null>
  /** Releases the netlink socket once any lookup in flight has finished. */
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// TCP states (include/net/tcp_states.h) and the ones a client of an accepted connection can be in

const TCP_ESTABLISHED = 1
const TCP_FIN_WAIT1 = 4
const TCP_FIN_WAIT2 = 5

/**
 * The daemon accepts a connection only after the handshake, so the client's socket is
 * ESTABLISHED; a client that half-closes after sending its request (shutdown(SHUT_WR)) is in
 * FIN_WAIT1, then FIN_WAIT2, and still reads the answer. CLOSE_WAIT, LAST_ACK and CLOSING need a
 * FIN from the daemon, which it sends only after answering; TIME_WAIT and CLOSE sockets have no
 * owner; SYN_SENT and SYN_RECV are never accepted; a LISTEN socket is no client.
 */
const CLIENT_STATES = new Set([TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2])
const CLIENT_STATE_MASK = (1 << TCP_ESTABLISHED) | (1 << TCP_FIN_WAIT1) | (1 << TCP_FIN_WAIT2)

/** What the kernel says of one socket. */
interface KernelSocket {
  state: number
  uid: number
  inode: number
}

/** A socket its process still holds (an orphan, closed by its process, has inode 0). */
const isLiveClient = (s: KernelSocket) => CLIENT_STATES.has(s.state) && s.inode !== 0

/** Finds the sockets among those whose exact tuple is given: at most one per tuple. */
interface TupleLookup {
  find(tuples: readonly ClientSocketTuple[]): Promise<KernelSocket[]>
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Addresses: canonical text (dotted IPv4, RFC 5952 IPv6) so that tuples compare as strings;
// IPv4-mapped IPv6 (::ffff:a.b.c.d, a dual-stack socket's view of IPv4) folds to IPv4.

interface IpAddress {
  family: 4 | 6
  /** Network order, 4 or 16 bytes. */
  bytes: Uint8Array
}

function parseIpAddress(text: string): IpAddress | null {
  const bare = text.split('%')[0] // a zone id (fe80::1%eth0) does not take part in the tuple
  if (isIPv4(bare)) return {family: 4, bytes: Uint8Array.from(bare.split('.').map(Number))}
  if (!isIPv6(bare)) return null
  let hex = bare
  const dotted = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(bare)
  if (dotted) {
    const [a, b, c, d] = dotted.slice(2).map(Number)
    hex = `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const groupsOf = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)))
  const halves = hex.split('::')
  const head = groupsOf(halves[0])
  const tail = halves.length === 2 ? groupsOf(halves[1]) : []
  const groups =
    halves.length === 2 ? [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head
  const bytes = new Uint8Array(16)
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8
    bytes[2 * i + 1] = g & 0xff
  })
  return foldMapped({family: 6, bytes})
}

/** An address as tuples carry it, with its bytes; remembered, since the same few recur. */
interface CanonicalAddress extends IpAddress {
  text: string
}

const canonicalAddresses = new Map<string, CanonicalAddress | null>()

function canonicalAddress(text: string): CanonicalAddress | null {
  let address = canonicalAddresses.get(text)
  if (address === undefined) {
    const parsed = parseIpAddress(text)
    address = parsed && {...parsed, text: formatIpAddress(parsed)}
    if (canonicalAddresses.size >= 1024) canonicalAddresses.clear()
    canonicalAddresses.set(text, address)
  }
  return address
}

function foldMapped(address: IpAddress): IpAddress {
  const b = address.bytes
  if (address.family === 6 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff)
    return {family: 4, bytes: b.slice(12)}
  return address
}

function formatIpAddress({family, bytes}: IpAddress): string {
  if (family === 4) return Array.from(bytes).join('.')
  const groups = Array.from({length: 8}, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1])
  let best = {start: -1, length: 1} // RFC 5952: the longest run of two or more zero groups, first wins
  for (let i = 0; i < 8;) {
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > best.length) best = {start: i, length: j - i}
    i = j === i ? i + 1 : j
  }
  const hex = groups.map((g) => g.toString(16))
  if (best.start < 0) return hex.join(':')
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.length).join(':')}`
}

const tupleKey = (t: ClientSocketTuple) =>
  `${t.local.address}|${t.local.port}|${t.remote.address}|${t.remote.port}`

const isPort = (p: unknown): p is number => typeof p === 'number' && Number.isInteger(p) && p > 0 && p < 65536

/**
 * The exact tuples the client's own socket may have: its address and port, and as its peer the
 * listener (a direct connection) or one of the original destinations (DNAT'd), in the client's
 * address family. Empty when the connection's endpoints are unknown or malformed.
 */
export function clientSocketTuples(
  connection: ConnectionEndpoints,
  originalDestinations: readonly Endpoint[] = IMDS_ENDPOINTS,
): ClientSocketTuple[] {
  const {localAddress, localPort, remoteAddress, remotePort} = connection
  if (localAddress === undefined || remoteAddress === undefined || !isPort(localPort) || !isPort(remotePort))
    return []
  const client = canonicalAddress(remoteAddress)
  if (!client) return []
  const local = {address: client.text, port: remotePort}
  const tuples = new Map<string, ClientSocketTuple>()
  for (const peer of [{address: localAddress, port: localPort}, ...originalDestinations]) {
    const address = canonicalAddress(peer.address)
    if (!address || address.family !== client.family || !isPort(peer.port)) continue
    const tuple: ClientSocketTuple = {
      family: client.family,
      local,
      remote: {address: address.text, port: peer.port},
    }
    tuples.set(tupleKey(tuple), tuple)
  }
  return [...tuples.values()]
}

// ---------------------------------------------------------------------------------------------
// The finder

export async function openSocketOwnerFinder(
  options: SocketOwnerFinderOptions = {},
): Promise<SocketOwnerFinder> {
  const mechanism = options.mechanism ?? 'auto'
  const destinations = options.originalDestinations ?? IMDS_ENDPOINTS
  let lookup: TupleLookup | undefined
  let via: SocketLookupMechanism = 'netlink'
  let netlinkFailure: string | undefined
  if (mechanism !== 'proc') {
    try {
      lookup = await NetlinkSockDiag.open(options.timeoutMs ?? 1000)
    } catch (error) {
      netlinkFailure = (error as Error).message
      if (mechanism === 'netlink')
        throw new UserError(
          'unavailable',
          `cannot ask the kernel for socket owners through netlink sock_diag: ${netlinkFailure}`,
          {cause: error},
        )
    }
  }
  if (!lookup) {
    via = 'proc'
    const dir = options.procNetDir ?? '/proc/net'
    try {
      lookup = await ProcNetTcp.open(dir)
    } catch (error) {
      const failures = [netlinkFailure && `netlink sock_diag: ${netlinkFailure}`, (error as Error).message]
      throw new UserError(
        'unavailable',
        `cannot find socket owners: ${failures.filter(Boolean).join('; ')}`,
        {
          cause: error,
        },
      )
    }
  }
  const fallbackReason =
    netlinkFailure &&
    `netlink sock_diag unavailable (${netlinkFailure}); reading /proc/net/tcp instead, which slows with many open sockets`
  const tuples = lookup
  let conntrack: Ctnetlink | undefined
  let conntrackFailure: string | undefined
  try {
    conntrack = await Ctnetlink.open(options.timeoutMs ?? 1000)
  } catch (error) {
    conntrackFailure = (error as Error).message
  }
  const conntrackFallbackReason =
    conntrackFailure &&
    `conntrack cannot be asked through ctnetlink (${conntrackFailure}); a DNAT'd client is looked up by SO_ORIGINAL_DST and the port it is seen from, which names the wrong socket when NAT had to change its source port`
  const originalDestination = await originalDestinationReader()
  return {
    via,
    fallbackReason,
    conntrackFallbackReason,
    async findSocketOwner(connection) {
      if (conntrack && descriptorOf(connection) !== undefined) {
        const tuple = await conntrackClientTuple(conntrack, connection, destinations)
        if (!tuple) return null
        const live = (await tuples.find([tuple])).filter(isLiveClient)
        return live.length === 1 ? {uid: live[0].uid, inode: live[0].inode, via} : null
      }
      let candidates = clientSocketTuples(connection, destinations)
      const dialled = originalDestination?.(connection)
      if (dialled) {
        // The one peer the client's socket has: the listener when conntrack never saw the
        // connection (no DNAT without conntrack), else conntrack's original destination; it
        // must be the listener or an IMDS address, as before.
        const peer =
          dialled === 'untracked'
            ? {address: connection.localAddress ?? '', port: connection.localPort}
            : dialled
        const address = canonicalAddress(peer.address)
        candidates = candidates.filter(
          (t) => t.remote.address === address?.text && t.remote.port === peer.port,
        )
      }
      if (candidates.length === 0) return null
      const live = (await tuples.find(candidates)).filter(isLiveClient)
      return live.length === 1 ? {uid: live[0].uid, inode: live[0].inode, via} : null
    },
    async close() {
      await Promise.all([tuples.close(), conntrack?.close()])
    },
  }
}

/** The descriptor of an accepted `net.Socket`; undefined for bare endpoints. */
function descriptorOf(connection: ConnectionEndpoints): number | undefined {
  const fd = (connection as {_handle?: {fd?: unknown}})._handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : undefined
}

/**
 * The one tuple the client's socket has, from the conntrack entry of the accepted connection:
 * its reply tuple is the accepted socket's (listener → client as seen), its original tuple the
 * client's own socket (address and port before any NAT → the destination it dialled). No entry:
 * never NAT'd, so the client's peer is the listener. Null when the connection's endpoints are
 * unknown, or the client dialled neither the listener nor an original destination.
 */
async function conntrackClientTuple(
  conntrack: Ctnetlink,
  connection: ConnectionEndpoints,
  destinations: readonly Endpoint[],
): Promise<ClientSocketTuple | null> {
  const {localAddress, localPort, remoteAddress, remotePort} = connection
  if (localAddress === undefined || remoteAddress === undefined || !isPort(localPort) || !isPort(remotePort))
    return null
  const listener = canonicalAddress(localAddress)
  const client = canonicalAddress(remoteAddress)
  if (!listener || !client || listener.family !== client.family) return null
  const family = client.family
  const reply = {
    family,
    src: {address: listener.text, port: localPort},
    dst: {address: client.text, port: remotePort},
  }
  const original = await conntrack.originalTuple(reply)
  const tuple: ClientSocketTuple = original
    ? {family, local: original.src, remote: original.dst}
    : {family, local: reply.dst, remote: reply.src}
  const peers = [reply.src, ...destinations].map((peer) => ({
    address: canonicalAddress(peer.address),
    port: peer.port,
  }))
  const dialledPeer = peers.some(
    (peer) =>
      peer.address?.family === family &&
      peer.address.text === tuple.remote.address &&
      peer.port === tuple.remote.port,
  )
  return dialledPeer ? tuple : null
}

/** One lookup with a finder of its own (a command, a test); the daemon keeps one finder open. */
export async function findSocketOwner(
  connection: ConnectionEndpoints,
  options: SocketOwnerFinderOptions = {},
): Promise<SocketOwner | null> {
  const finder = await openSocketOwnerFinder(options)
  try {
    return await finder.findSocketOwner(connection)
  } finally {
    await finder.close()
  }
}

// ---------------------------------------------------------------------------------------------
// SO_ORIGINAL_DST (linux/netfilter_ipv4.h, linux/netfilter_ipv6/ip6_tables.h): the accepted
// socket's conntrack entry's original destination, through getsockopt on its descriptor.

const SOL_IP = 0
const SOL_IPV6 = 41
const SO_ORIGINAL_DST = 80 // IP6T_SO_ORIGINAL_DST is 80 too

/**
 * Reads SO_ORIGINAL_DST of an accepted `net.Socket`; undefined (try every peer) when it cannot
 * say: not a socket with a descriptor, or an error other than ENOENT (no conntrack entry).
 * Null when libc cannot be loaded.
 */
export async function originalDestinationReader(): Promise<
  ((c: ConnectionEndpoints) => OriginalDestination | undefined) | null
> {
  let getsockopt: (fd: number, level: number, name: number, value: Buffer, length: number[]) => number
  let errno: () => number
  try {
    const koffi = await import('koffi')
    const libc = koffi.load(null)
    getsockopt = libc.func(
      'int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *length)',
    )
    errno = () => koffi.errno()
  } catch {
    return null
  }
  const value = Buffer.alloc(28) // sockaddr_in6, the larger
  return (connection) => {
    const fd = (connection as {_handle?: {fd?: unknown}})._handle?.fd
    if (typeof fd !== 'number' || fd < 0 || connection.localAddress === undefined) return undefined
    const six = isIPv6(connection.localAddress) && !connection.localAddress.startsWith('::ffff:')
    const length = [value.length]
    if (getsockopt(fd, six ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, value, length) !== 0)
      return errno() === ENOENT ? 'untracked' : undefined
    // sockaddr_in / sockaddr_in6: family (host order), port (network order), then the address.
    const port = value.readUInt16BE(2)
    const address = six
      ? formatIpAddress({family: 6, bytes: value.subarray(8, 24)})
      : formatIpAddress({family: 4, bytes: value.subarray(4, 8)})
    return {address, port}
  }
}

// ---------------------------------------------------------------------------------------------
// Netlink through libc (koffi): socket, sendto, recv, poll, close

const AF_INET = 2
const AF_INET6 = 10
const AF_NETLINK = 16
const SOCK_DGRAM = 2
const SOCK_NONBLOCK = 0o4000
const SOCK_CLOEXEC = 0o2000000
const NETLINK_SOCK_DIAG = 4
const NETLINK_NETFILTER = 12
const IPPROTO_TCP = 6
const SOCK_DIAG_BY_FAMILY = 20
const NLMSG_ERROR = 2
const NLMSG_DONE = 3
const NLM_F_REQUEST = 0x1
const NLM_F_DUMP = 0x300
const MSG_DONTWAIT = 0x40
const POLLIN = 0x1
const INET_DIAG_NOCOOKIE = 0xffffffff
const EINTR = 4
const EAGAIN = 11
const ENOENT = 2

const NLMSG_HEADER = 16
/** nlmsghdr + inet_diag_req_v2 (family, protocol, ext, pad, states, inet_diag_sockid). */
const REQUEST_LENGTH = NLMSG_HEADER + 56
/** inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode. */
const DIAG_MSG_LENGTH = 72

const HOST_LE = endianness() === 'LE'

interface Libc {
  socket(domain: number, type: number, protocol: number): number
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number
  recv(fd: number, buf: Buffer, len: number, flags: number): number
  pollAsync(fds: Buffer, nfds: number, timeoutMs: number): Promise<number>
  close(fd: number): number
  errno(): number
  errnoName(errno: number): string
}

async function loadLibc(): Promise<Libc> {
  const koffi = await import('koffi')
  const libc = koffi.load(null) // the process's own libc: glibc or musl alike
  const poll = libc.func('int poll(void *fds, unsigned long nfds, int timeout)')
  const names = new Map(Object.entries(koffi.os.errno).map(([name, n]) => [n, name]))
  return {
    socket: libc.func('int socket(int domain, int type, int protocol)'),
    sendto: libc.func(
      'intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
    ),
    recv: libc.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
    pollAsync: promisify(poll.async) as (fds: Buffer, nfds: number, timeoutMs: number) => Promise<number>,
    close: libc.func('int close(int fd)'),
    errno: () => koffi.errno(),
    errnoName: (n) => names.get(n) ?? `errno ${n}`,
  }
}

const writeU16 = (b: Buffer, offset: number, v: number) =>
  HOST_LE ? b.writeUInt16LE(v, offset) : b.writeUInt16BE(v, offset)
const writeU32 = (b: Buffer, offset: number, v: number) =>
  HOST_LE ? b.writeUInt32LE(v, offset) : b.writeUInt32BE(v, offset)
const readU16 = (b: Buffer, offset: number) => (HOST_LE ? b.readUInt16LE(offset) : b.readUInt16BE(offset))
const readU32 = (b: Buffer, offset: number) => (HOST_LE ? b.readUInt32LE(offset) : b.readUInt32BE(offset))
const readI32 = (b: Buffer, offset: number) => (HOST_LE ? b.readInt32LE(offset) : b.readInt32BE(offset))

/** Writes an nlmsghdr; the body follows at NLMSG_HEADER. */
function writeNetlinkHeader(b: Buffer, length: number, type: number, flags: number, seq: number) {
  writeU32(b, 0, length)
  writeU16(b, 4, type)
  writeU16(b, 6, flags)
  writeU32(b, 8, seq)
  writeU32(b, 12, 0) // nlmsg_pid: the kernel fills in ours
}

const lookupError = (message: string) =>
  new UserError('unavailable', `socket owner lookup failed: ${message}; the connection gets no credentials`)

/**
 * One netlink socket to the kernel, one request at a time: a reply is matched by sequence
 * number, and one that comes after its request gave up is discarded before the next request.
 */
class NetlinkChannel {
  readonly reply = Buffer.alloc(16 * 1024)
  private readonly kernel = Buffer.alloc(12) // sockaddr_nl {AF_NETLINK, pad, pid 0 (the kernel), groups 0}
  private readonly pollfd = Buffer.alloc(8) // struct pollfd {fd, events, revents}
  private seq = 0
  /** A request ended without its answer (a timeout, an error): a late reply may be queued. */
  private unsettled = false
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor(
    readonly libc: Libc,
    private readonly fd: number,
    private readonly timeoutMs: number,
    /** What the kernel side is called in messages: 'sock_diag', 'ctnetlink'. */
    private readonly name: string,
  ) {
    writeU16(this.kernel, 0, AF_NETLINK)
    writeU32(this.pollfd, 0, fd)
    writeU16(this.pollfd, 4, POLLIN)
  }

  /** Throws a plain Error saying why the socket cannot be had. */
  static async open(
    protocol: number,
    protocolName: string,
    name: string,
    timeoutMs: number,
  ): Promise<NetlinkChannel> {
    let libc: Libc
    try {
      libc = await loadLibc()
    } catch (error) {
      throw new Error(`cannot load libc through koffi: ${(error as Error).message.split('\n')[0]}`)
    }
    const fd = libc.socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)
    if (fd < 0) throw new Error(`socket(AF_NETLINK, ${protocolName}) failed: ${libc.errnoName(libc.errno())}`)
    return new NetlinkChannel(libc, fd, timeoutMs, name)
  }

  nextSeq(): number {
    return (this.seq = (this.seq + 1) >>> 0)
  }

  errnoName(errno: number): string {
    return this.libc.errnoName(errno)
  }

  /** Runs fn after every earlier one: the buffers are shared. */
  serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn)
    this.queue = run.catch(() => {})
    return run
  }

  send(request: Buffer, length: number) {
    for (;;) {
      if (this.libc.sendto(this.fd, request, length, 0, this.kernel, this.kernel.length) >= 0) return
      const errno = this.libc.errno()
      if (errno !== EINTR) throw lookupError(`netlink sendto: ${this.libc.errnoName(errno)}`)
    }
  }

  /** One datagram already queued (the kernel answers a request before sendto returns): its length, or -errno. */
  receiveNow(): number {
    const n = this.libc.recv(this.fd, this.reply, this.reply.length, MSG_DONTWAIT)
    return n < 0 ? -this.libc.errno() : n
  }

  /**
   * Sends a request and waits for its answer: decode reads each
   * datagram of n bytes in `reply` and says 'not ours' for a stale one.
   */
  async exchange<T>(request: Buffer, length: number, decode: (n: number) => T | 'not ours'): Promise<T> {
    if (this.closed) throw lookupError('the socket owner finder is closed')
    if (this.unsettled) this.discardLateReplies()
    this.unsettled = true
    this.send(request, length)
    const deadline = Date.now() + this.timeoutMs
    for (;;) {
      const n = this.libc.recv(this.fd, this.reply, this.reply.length, MSG_DONTWAIT)
      if (n < 0) {
        const errno = this.libc.errno()
        if (errno === EINTR) continue
        if (errno !== EAGAIN) throw lookupError(`netlink recv: ${this.libc.errnoName(errno)}`)
        // Normally unreachable (the kernel answers within sendto); wait off the event loop.
        const remaining = deadline - Date.now()
        if (remaining <= 0 || (await this.libc.pollAsync(this.pollfd, 1, remaining)) <= 0)
          throw lookupError(`netlink ${this.name} gave no answer within ${this.timeoutMs} ms`)
        continue
      }
      const answer = decode(n)
      if (answer === 'not ours') continue
      this.unsettled = false
      return answer
    }
  }

  /** Closes the socket at once (a failed open) or once the requests in flight have finished. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.queue
    this.libc.close(this.fd)
  }

  /** A reply that came after its request timed out must not answer the next one. */
  private discardLateReplies() {
    while (this.libc.recv(this.fd, this.reply, this.reply.length, MSG_DONTWAIT) >= 0) continue
  }
}

// ---------------------------------------------------------------------------------------------
// sock_diag: one exact socket id per request

/**
 * inet_diag_req_v2 for one exact socket: ports and addresses in network order, the rest host
 * order. The kernel ignores the states mask on an exact lookup (we check the state in the
 * answer); the cookie "none" asks for whatever socket has this id.
 */
function encodeExactRequest(b: Buffer, tuple: ClientSocketTuple, seq: number, ifindex = 0) {
  b.fill(0)
  writeNetlinkHeader(b, REQUEST_LENGTH, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq)
  const body = NLMSG_HEADER
  b[body] = tuple.family === 4 ? AF_INET : AF_INET6
  b[body + 1] = IPPROTO_TCP
  writeU32(b, body + 4, CLIENT_STATE_MASK)
  const id = body + 8
  b.writeUInt16BE(tuple.local.port, id)
  b.writeUInt16BE(tuple.remote.port, id + 2)
  b.set(canonicalAddress(tuple.local.address)!.bytes, id + 4)
  b.set(canonicalAddress(tuple.remote.address)!.bytes, id + 20)
  // The interface: an exact lookup sees a socket bound to an interface (SO_BINDTODEVICE, open
  // to unprivileged users since Linux 5.7) only when asked with that interface's index.
  writeU32(b, id + 36, ifindex)
  writeU32(b, id + 40, INET_DIAG_NOCOOKIE)
  writeU32(b, id + 44, INET_DIAG_NOCOOKIE)
}

/**
 * Every interface index of this network namespace (/sys/class/net), re-read at most every few
 * seconds: users cannot create interfaces in it, but admins can.
 */
let interfaces: {indexes: number[]; at: number} | null = null
function interfaceIndexes(): number[] {
  const now = Date.now()
  if (interfaces && now - interfaces.at < 5000) return interfaces.indexes
  const indexes: number[] = []
  try {
    for (const name of readdirSync('/sys/class/net')) {
      try {
        const index = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim())
        if (Number.isInteger(index) && index > 0) indexes.push(index)
      } catch {
        // an interface that went away between the two reads
      }
    }
  } catch (error) {
    throw lookupError(`cannot list the network interfaces (/sys/class/net): ${(error as Error).message}`)
  }
  interfaces = {indexes, at: now}
  return indexes
}

/** The socket id an inet_diag_msg reports, in the canonical form of clientSocketTuples. */
function decodeSocketId(b: Buffer, msg: number): {local: Endpoint; remote: Endpoint} {
  const family = b[msg] === AF_INET ? 4 : 6
  const length = family === 4 ? 4 : 16
  const address = (offset: number) =>
    formatIpAddress(foldMapped({family, bytes: b.subarray(offset, offset + length)}))
  return {
    local: {address: address(msg + 8), port: b.readUInt16BE(msg + 4)},
    remote: {address: address(msg + 24), port: b.readUInt16BE(msg + 6)},
  }
}

class NetlinkSockDiag implements TupleLookup {
  private readonly request = Buffer.alloc(REQUEST_LENGTH)

  private constructor(private readonly channel: NetlinkChannel) {}

  static async open(timeoutMs: number): Promise<NetlinkSockDiag> {
    const channel = await NetlinkChannel.open(NETLINK_SOCK_DIAG, 'NETLINK_SOCK_DIAG', 'sock_diag', timeoutMs)
    const diag = new NetlinkSockDiag(channel)
    try {
      diag.probe()
    } catch (error) {
      await channel.close()
      throw error
    }
    return diag
  }

  /**
   * Without a TCP handler (tcp_diag not loaded and not loadable) every exact request would answer
   * ENOENT, like "no such socket", and nobody would get credentials without a word in the log.
   * A dump of no states costs the kernel nothing and tells the two apart.
   */
  private probe() {
    const {channel, request} = this
    request.fill(0)
    writeNetlinkHeader(
      request,
      REQUEST_LENGTH,
      SOCK_DIAG_BY_FAMILY,
      NLM_F_REQUEST | NLM_F_DUMP,
      channel.nextSeq(),
    )
    request[NLMSG_HEADER] = AF_INET
    request[NLMSG_HEADER + 1] = IPPROTO_TCP
    channel.send(request, REQUEST_LENGTH)
    // The kernel answers a netlink request before sendto returns.
    for (;;) {
      const n = channel.receiveNow()
      if (n < 0) throw new Error(`no answer to a sock_diag TCP request (${channel.errnoName(-n)})`)
      const b = channel.reply
      for (let at = 0; at + NLMSG_HEADER <= n;) {
        const length = readU32(b, at)
        const type = readU16(b, at + 4)
        if (type === NLMSG_DONE) return
        if (type === NLMSG_ERROR)
          throw new Error(
            `the kernel has no TCP handler for sock_diag (${channel.errnoName(-readI32(b, at + NLMSG_HEADER))})`,
          )
        if (length < NLMSG_HEADER) break
        at += (length + 3) & ~3
      }
    }
  }

  find(tuples: readonly ClientSocketTuple[]): Promise<KernelSocket[]> {
    return this.channel.serially(async () => {
      // Each tuple once unbound and once per interface: a socket bound to an interface that
      // shares the tuple must count, or "exactly one" could name another user's socket.
      const found = new Map<number, KernelSocket>()
      for (const tuple of tuples)
        for (const ifindex of [0, ...interfaceIndexes()]) {
          const seq = this.channel.nextSeq()
          encodeExactRequest(this.request, tuple, seq, ifindex)
          const socket = await this.channel.exchange(this.request, REQUEST_LENGTH, (n) =>
            this.decode(n, seq, tuple),
          )
          if (socket) found.set(socket.inode, socket)
        }
      return [...found.values()]
    })
  }

  close(): Promise<void> {
    return this.channel.close()
  }

  /** Whether the inet_diag_msg at msg reports the socket id of the request in flight. */
  private isRequestedId(msg: number, tuple: ClientSocketTuple): boolean {
    const id = NLMSG_HEADER + 8 // ports, then source and destination addresses: 36 bytes
    const reply = this.channel.reply
    if (reply[msg] === this.request[NLMSG_HEADER])
      return reply.compare(this.request, id, id + 36, msg + 4, msg + 40) === 0
    // An IPv4 client's dual-stack socket answers as AF_INET6 with IPv4-mapped addresses.
    return tupleKey({family: tuple.family, ...decodeSocketId(reply, msg)}) === tupleKey(tuple)
  }

  /** The answer to request `seq` in a datagram of n bytes, or 'not ours' for a stale reply. */
  private decode(n: number, seq: number, tuple: ClientSocketTuple): KernelSocket | null | 'not ours' {
    const b = this.channel.reply
    const reply = replyTo(b, n, seq, SOCK_DIAG_BY_FAMILY, 'sock_diag', (e) => this.channel.errnoName(e))
    if (reply === null || reply === 'not ours') return reply
    if (reply.length < NLMSG_HEADER + DIAG_MSG_LENGTH) throw lookupError('short inet_diag_msg')
    const msg = reply.at + NLMSG_HEADER
    // With no established socket of that id the kernel falls back to a listener on the port:
    // only the exact id counts.
    if (!this.isRequestedId(msg, tuple)) return null
    return {state: b[msg + 1], uid: readU32(b, msg + 64), inode: readU32(b, msg + 68)}
  }
}

// ---------------------------------------------------------------------------------------------
// ctnetlink (include/uapi/linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h): the conntrack
// entry of an accepted connection, asked for by its reply tuple, gives the client's original
// tuple, the one its own socket has, even when NAT changed its source port.

const NFNL_SUBSYS_CTNETLINK = 1
const IPCTNL_MSG_CT_NEW = 0
const IPCTNL_MSG_CT_GET = 1
const NFNETLINK_V0 = 0
const NFGENMSG_LENGTH = 4 // nfgen_family u8, version u8, res_id __be16
const CTA_TUPLE_ORIG = 1
const CTA_TUPLE_REPLY = 2
const CTA_TUPLE_IP = 1
const CTA_TUPLE_PROTO = 2
const CTA_IP_V4_SRC = 1
const CTA_IP_V4_DST = 2
const CTA_IP_V6_SRC = 3
const CTA_IP_V6_DST = 4
const CTA_PROTO_NUM = 1
const CTA_PROTO_SRC_PORT = 2
const CTA_PROTO_DST_PORT = 3
const NLA_F_NESTED = 0x8000
const NLA_F_NET_BYTEORDER = 0x4000
const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff
const NLA_HEADER = 4
const EPERM = 1

/** A conntrack tuple: the direction's source and destination. */
export interface ConntrackTuple {
  family: 4 | 6
  src: Endpoint
  dst: Endpoint
}

const align4 = (n: number) => (n + 3) & ~3

/**
 * IPCTNL_MSG_CT_GET for the entry whose reply tuple is given: nlmsghdr, nfgenmsg, then
 * CTA_TUPLE_REPLY {CTA_TUPLE_IP {src, dst}, CTA_TUPLE_PROTO {num, src port, dst port}} (zone 0).
 * Writes into b (at least 88 bytes) and returns the length.
 */
export function encodeConntrackRequest(b: Buffer, reply: ConntrackTuple, seq: number): number {
  const src = canonicalAddress(reply.src.address)
  const dst = canonicalAddress(reply.dst.address)
  if (!src || !dst || src.family !== reply.family || dst.family !== reply.family)
    throw new Error('a conntrack tuple needs two addresses of its family')
  const addressLength = reply.family === 4 ? 4 : 16
  b.fill(0)
  let at = NLMSG_HEADER
  b[at] = reply.family === 4 ? AF_INET : AF_INET6
  b[at + 1] = NFNETLINK_V0
  b.writeUInt16BE(0, at + 2) // res_id
  at += NFGENMSG_LENGTH
  const attribute = (type: number, write: () => void) => {
    const start = at
    at += NLA_HEADER
    write()
    writeU16(b, start, at - start) // nla_len: header and payload, without the final padding
    writeU16(b, start + 2, type)
    at = align4(at)
  }
  attribute(CTA_TUPLE_REPLY | NLA_F_NESTED, () => {
    attribute(CTA_TUPLE_IP | NLA_F_NESTED, () => {
      attribute(reply.family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, () => {
        b.set(src.bytes, at)
        at += addressLength
      })
      attribute(reply.family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, () => {
        b.set(dst.bytes, at)
        at += addressLength
      })
    })
    attribute(CTA_TUPLE_PROTO | NLA_F_NESTED, () => {
      attribute(CTA_PROTO_NUM, () => {
        b[at++] = IPPROTO_TCP
      })
      attribute(CTA_PROTO_SRC_PORT, () => {
        b.writeUInt16BE(reply.src.port, at)
        at += 2
      })
      attribute(CTA_PROTO_DST_PORT, () => {
        b.writeUInt16BE(reply.dst.port, at)
        at += 2
      })
    })
  })
  writeNetlinkHeader(b, at, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST, seq)
  return at
}

/** The attributes in b[start, end): type (flags masked off) → payload [offset, end). */
function attributes(b: Buffer, start: number, end: number): Map<number, {at: number; end: number}> {
  const found = new Map<number, {at: number; end: number}>()
  for (let at = start; at + NLA_HEADER <= end;) {
    const length = readU16(b, at)
    if (length < NLA_HEADER || at + length > end) throw lookupError('malformed ctnetlink attribute')
    const type = readU16(b, at + 2) & NLA_TYPE_MASK
    if (!found.has(type)) found.set(type, {at: at + NLA_HEADER, end: at + length})
    at += align4(length)
  }
  return found
}

/**
 * The answer to CT_GET `seq` in a datagram of n bytes: the entry's original tuple, null when
 * conntrack has no such entry (ENOENT), 'not ours' for a stale reply. Throws (a UserError, kind
 * 'unavailable') on any other error or a reply without a whole TCP original tuple.
 */
export function decodeConntrackReply(
  b: Buffer,
  n: number,
  seq: number,
  errnoName: (errno: number) => string = (e) => `errno ${e}`,
): ConntrackTuple | null | 'not ours' {
  const reply = replyTo(b, n, seq, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW, 'ctnetlink', errnoName)
  if (reply === null || reply === 'not ours') return reply
  if (reply.length < NLMSG_HEADER + NFGENMSG_LENGTH) throw lookupError('short ctnetlink message')
  return decodeOriginalTuple(b, reply.at + NLMSG_HEADER, reply.at + reply.length)
}

/**
 * The message of type `type` answering request `seq` in a datagram of n bytes (its offset and
 * length), null when the kernel answered ENOENT, 'not ours' when nothing in it answers `seq` (a
 * stale reply). Throws (a UserError, kind 'unavailable') on a malformed datagram or any other
 * error the kernel answered, naming `interfaceName`.
 */
function replyTo(
  b: Buffer,
  n: number,
  seq: number,
  type: number,
  interfaceName: string,
  errnoName: (errno: number) => string,
): {at: number; length: number} | null | 'not ours' {
  for (let at = 0; at + NLMSG_HEADER <= n;) {
    const length = readU32(b, at)
    if (length < NLMSG_HEADER || at + length > n) throw lookupError('malformed netlink reply')
    if (readU32(b, at + 8) === seq) {
      const answered = readU16(b, at + 4)
      if (answered === NLMSG_ERROR) {
        const errno = -readI32(b, at + NLMSG_HEADER)
        if (errno === ENOENT) return null
        throw lookupError(`${interfaceName} answered ${errnoName(errno)}`)
      }
      if (answered === type) return {at, length}
    }
    at += align4(length)
  }
  return 'not ours'
}

function decodeOriginalTuple(b: Buffer, body: number, end: number): ConntrackTuple {
  const incomplete = () => lookupError('the conntrack entry has no complete TCP original tuple')
  const family = b[body] === AF_INET ? 4 : b[body] === AF_INET6 ? 6 : 0
  if (family === 0) throw incomplete()
  const orig = attributes(b, body + NFGENMSG_LENGTH, end).get(CTA_TUPLE_ORIG)
  if (!orig) throw incomplete()
  const tuple = attributes(b, orig.at, orig.end)
  const ip = tuple.get(CTA_TUPLE_IP)
  const proto = tuple.get(CTA_TUPLE_PROTO)
  if (!ip || !proto) throw incomplete()
  const ips = attributes(b, ip.at, ip.end)
  const protos = attributes(b, proto.at, proto.end)
  const addressLength = family === 4 ? 4 : 16
  const address = (type: number) => {
    const a = ips.get(type)
    if (!a || a.end - a.at !== addressLength) throw incomplete()
    return formatIpAddress(foldMapped({family, bytes: b.subarray(a.at, a.end)}))
  }
  const port = (type: number) => {
    const p = protos.get(type)
    if (!p || p.end - p.at !== 2) throw incomplete()
    return b.readUInt16BE(p.at)
  }
  const num = protos.get(CTA_PROTO_NUM)
  if (!num || num.end - num.at !== 1 || b[num.at] !== IPPROTO_TCP) throw incomplete()
  return {
    family,
    src: {address: address(family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC), port: port(CTA_PROTO_SRC_PORT)},
    dst: {address: address(family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST), port: port(CTA_PROTO_DST_PORT)},
  }
}

class Ctnetlink {
  private readonly request = Buffer.alloc(128)

  private constructor(private readonly channel: NetlinkChannel) {}

  /** Throws a plain Error saying why conntrack cannot be asked. */
  static async open(timeoutMs: number): Promise<Ctnetlink> {
    const channel = await NetlinkChannel.open(NETLINK_NETFILTER, 'NETLINK_NETFILTER', 'ctnetlink', timeoutMs)
    const ctnetlink = new Ctnetlink(channel)
    try {
      await ctnetlink.probe()
    } catch (error) {
      await channel.close()
      throw error
    }
    return ctnetlink
  }

  /**
   * Asks for an entry no connection has (port 0): ENOENT when ctnetlink answers, else why not
   * (EPERM without CAP_NET_ADMIN, EINVAL or EOPNOTSUPP without nf_conntrack_netlink).
   */
  private async probe() {
    const none = {address: '127.0.0.1', port: 0}
    try {
      await this.originalTuple({family: 4, src: none, dst: none})
    } catch (error) {
      const message = (error as Error).message
      const errno = /ctnetlink answered (\w+)/.exec(message)?.[1]
      if (errno === this.channel.errnoName(EPERM)) throw new Error('EPERM: it needs root, CAP_NET_ADMIN')
      throw new Error(errno ? `${errno}: is nf_conntrack_netlink available?` : message)
    }
  }

  /** The original tuple of the entry with this reply tuple; null when conntrack has none. */
  originalTuple(reply: ConntrackTuple): Promise<ConntrackTuple | null> {
    return this.channel.serially(() => {
      const seq = this.channel.nextSeq()
      const length = encodeConntrackRequest(this.request, reply, seq)
      return this.channel.exchange(this.request, length, (n) =>
        decodeConntrackReply(this.channel.reply, n, seq, (e) => this.channel.errnoName(e)),
      )
    })
  }

  close(): Promise<void> {
    return this.channel.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The /proc/net/tcp{,6} fallback

/** One socket line of /proc/net/tcp or tcp6, addresses in the canonical form of clientSocketTuples. */
export interface ProcTcpEntry {
  family: 4 | 6
  local: Endpoint
  remote: Endpoint
  state: number
  uid: number
  inode: number
}

/**
 * The kernel prints each 32-bit word of an address as the hex of its in-memory value, so on a
 * little-endian host each 8-digit group is the word's bytes reversed; ports are plain hex.
 * Null for the header line or anything that is not a socket line.
 */
export function parseProcNetTcpLine(
  line: string,
  byteOrder: 'LE' | 'BE' = endianness(),
): ProcTcpEntry | null {
  //   sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt   uid  timeout inode
  const fields = line.trim().split(/\s+/)
  if (fields.length < 10 || !/^\d+:$/.test(fields[0])) return null
  const local = parseProcEndpoint(fields[1], byteOrder)
  const remote = parseProcEndpoint(fields[2], byteOrder)
  // Both in one table's form; a listener on ::ffff:a.b.c.d folds to IPv4 while its unset peer stays [::]:0
  const unsetPeer = remote?.endpoint.port === 0 && remote.endpoint.address === '::'
  if (!local || !remote || fields[1].length !== fields[2].length || (local.family !== remote.family && !unsetPeer)) return null
  if (!/^[0-9A-Fa-f]{2}$/.test(fields[3]) || !/^\d+$/.test(fields[7]) || !/^\d+$/.test(fields[9])) return null
  return {
    family: local.family,
    local: local.endpoint,
    remote: remote.endpoint,
    state: parseInt(fields[3], 16),
    uid: Number(fields[7]),
    inode: Number(fields[9]),
  }
}

function parseProcEndpoint(text: string, byteOrder: 'LE' | 'BE'): {family: 4 | 6; endpoint: Endpoint} | null {
  const match = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(text)
  if (!match) return null
  const words = match[1].match(/.{8}/g)!
  const bytes = new Uint8Array(words.length * 4)
  words.forEach((word, i) => {
    const value = parseInt(word, 16)
    for (let k = 0; k < 4; k++)
      bytes[i * 4 + k] = (value >>> (byteOrder === 'LE' ? 8 * k : 24 - 8 * k)) & 0xff
  })
  const address = foldMapped({family: words.length === 1 ? 4 : 6, bytes})
  return {family: address.family, endpoint: {address: formatIpAddress(address), port: parseInt(match[2], 16)}}
}

class ProcNetTcp implements TupleLookup {
  private constructor(private readonly dir: string) {}

  static async open(dir: string): Promise<ProcNetTcp> {
    try {
      await access(`${dir}/tcp`)
    } catch (error) {
      throw new Error(
        `${dir}/tcp cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      )
    }
    return new ProcNetTcp(dir)
  }

  async find(tuples: readonly ClientSocketTuple[]): Promise<KernelSocket[]> {
    const wanted = new Set(tuples.map(tupleKey))
    // An IPv4 client may hold a dual-stack IPv6 socket (it shows in tcp6 as ::ffff:a.b.c.d).
    const files = tuples.some((t) => t.family === 4) ? ['tcp', 'tcp6'] : ['tcp6']
    const found: KernelSocket[] = []
    for (const file of files) {
      for (const line of (await this.read(file)).split('\n')) {
        const entry = parseProcNetTcpLine(line)
        if (entry && wanted.has(tupleKey(entry)))
          found.push({state: entry.state, uid: entry.uid, inode: entry.inode})
      }
    }
    return found
  }

  async close(): Promise<void> {}

  private async read(file: string): Promise<string> {
    try {
      return await readFile(`${this.dir}/${file}`, 'utf8')
    } catch (error) {
      if (file === 'tcp6' && (error as NodeJS.ErrnoException).code === 'ENOENT') return '' // no IPv6 in this kernel
      throw lookupError(`cannot read ${this.dir}/${file}: ${(error as Error).message}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// uid → name, cached: every request asks, and NSS (LDAP, SSSD) may be slow

export interface UserNameCache {
  /** The user with this uid, or null when the database has none; a failed look-up is not kept. */
  userFor(uid: number): Promise<LocalUser | null>
}

/**
 * `db`'s users by uid, each kept `ttlMs`. At most `maxConcurrent` look-ups run at once (default 8:
 * each is a `getent` process): connections from thousands of new uids (a user's subordinate
 * uids) queue rather than fork without bound; one that waits past `maxWaitMs` (default 5 s)
 * fails, and its connection gets no answer but a 500.
 */
export function cachedUserNames(
  db: UserDatabase,
  ttlMs: number,
  options: {now?: () => number; maxEntries?: number; maxConcurrent?: number; maxWaitMs?: number} = {},
): UserNameCache {
  const now = options.now ?? Date.now
  const maxEntries = options.maxEntries ?? 10_000
  const concurrent = options.maxConcurrent ?? 8
  const limiter = new FairLimiter<'nss'>({total: concurrent, perKey: concurrent, maxWaitMs: options.maxWaitMs ?? 5000, resource: 'user-database look-up'})
  const entries = new Map<number, {expires: number; user: Promise<LocalUser | null>}>()
  return {
    userFor(uid) {
      const cached = entries.get(uid)
      if (cached && cached.expires > now()) return cached.user
      entries.delete(uid)
      const user = limiter.run('nss', () => db.find({uid}))
      const entry = {expires: now() + ttlMs, user}
      entries.set(uid, entry)
      if (entries.size > maxEntries) entries.delete(entries.keys().next().value as number) // the oldest
      user.catch(() => {
        if (entries.get(uid) === entry) entries.delete(uid)
      })
      return user
    },
  }
}
