// `serve` wired: the credential engine, the IMDS application and its listener, the socket-owner
// lookup, the admin listener (metrics, health), and reload and close. lifecycle.ts adds the
// interception, signals, systemd's notifications and the logging sinks.
import {createServer, Server} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {chmod, chown, mkdir, rm} from 'node:fs/promises'
import {dirname} from 'node:path'

import type {Config, MethodName} from '../config/schema.js'
import {UserError} from '../errors.js'
import {cachedUserNames, Endpoint, openSocketOwnerFinder, SocketOwnerFinder} from '../host/sockets.js'
import {nssUserDatabase, UserDatabase} from '../host/users.js'
import {createImdsApp, ImdsApp, RequestRecord} from '../imds/app.js'
import {ConnectionCaps, createImdsServer} from '../imds/server.js'
import {TokenStore} from '../imds/tokens.js'
import {ImdsUpstream} from '../imds/upstream.js'
import {createEngine, Engine} from '../methods/engine.js'
import {AdoptedSocket, adoptSockets, PassedSocket, roleOfSocket} from './activation.js'
import {Health, throttledProbe, upstreamProbe} from './health.js'
import type {Logger} from './log.js'
import type {DaemonMetrics} from './metrics.js'
import {optionLabel, planReload} from './reload.js'

export interface DaemonOptions {
  config: Config
  host: string
  port: number
  /** Also listen on [::1] at the same port, where ip6tables sends [fd00:ec2::254]:80 (skipped, with a warning, where ::1 can't be had). */
  ipv6Loopback?: boolean
  /** The real IMDS (http://169.254.169.254; tests point elsewhere). */
  upstream: string
  /** --instance-role, else [general] instance_role, else discovery. */
  instanceRole?: string
  /** The AWS region (resolveRegion's, at start). */
  region?: string
  env: Record<string, string | undefined>
  /** Its level may change while the daemon runs (reload): the access log follows it. */
  logger: Logger
  metrics: DaemonMetrics
  /** The checks /healthz reports; the daemon adds `listener` and `upstream`, its caller the others. */
  health?: Health
  /** Tests: the socket lookup mechanism and the destinations clients dialled before DNAT. */
  ownerLookup?: {mechanism?: 'auto' | 'netlink' | 'proc'; originalDestinations?: readonly Endpoint[]}
  users?: UserDatabase
  /**
   * Connections will be DNAT'd (serve installs the interception): refuse to start unless
   * conntrack's original tuples can be read (ctnetlink), since without them a client whose source
   * port NAT changed can be taken for another socket's owner.
   */
  requireConntrack?: boolean
  /** The sockets systemd passed (socket activation): the daemon then accepts on these, not on its own. */
  sockets?: PassedSocket[]
  /** admin_group's gid, for the admin socket's group (mode 0660). */
  adminGid?: number | null
}

export interface Daemon {
  /** Where the IMDS listener listens. */
  readonly address: AddressInfo
  /** Where the [::1] listener listens, if it was asked for and could be opened. */
  readonly ipv6Address: AddressInfo | null
  /** Where the admin listener listens (a path or host:port), if configured. */
  readonly adminAddress: string | null
  /** /healthz's checks. */
  readonly health: Health
  /**
   * Swaps in a new, already validated configuration. The credential and IAM read caches stay
   * when nothing that decides credentials changed (reload.ts); a failure leaves the running
   * configuration in place and rejects.
   */
  reload(config: Config): Promise<void>
  /** Stops accepting, answers what is in flight, closes everything. */
  close(): Promise<void>
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const {logger, metrics} = options
  const upstream = new ImdsUpstream({baseUrl: options.upstream})
  const tokens = new TokenStore()

  const health = options.health ?? new Health()

  const buildEngine = async (config: Config, reuse?: Engine): Promise<Engine> => {
    const engine = await createEngine({
      config,
      instanceRole: options.instanceRole,
      env: options.env,
      region: options.region,
      warn: (message) => logger.warn(message),
      instanceCredentials: () => upstream.instanceCredentials(),
      onAwsCall: (call) => {
        metrics.awsCall(call)
        logger.debug('aws call', {...call})
      },
      iamSource: reuse?.source,
    })
    // The instance role is needed for every answer: find it now, or do not start (or reload).
    const role = await engine.source.getInstanceRole()
    logger.info('instance role', {roleArn: role.arn, source: role.source})
    if (!config.method_InstanceRole.fail_safe && chainsOf(config).some((chain) => chain.includes('InstanceRole')))
      logger.warn(
        "fail_safe = False: when the instance role refuses to assume itself, InstanceRole hands out the instance's own, unrestricted credentials (the Python tool's behaviour)",
      )
    return engine
  }
  // Request records are built only when they will be written; a getter, so that the access log
  // follows the logger's level as it is now, not as it was when the application was built.
  const requestLog = (record: RequestRecord) => logger.debug('request', {...record})
  const buildApp = (config: Config, engine: Engine): ImdsApp =>
    createImdsApp({
      broker: engine.broker,
      instanceRoleName: async () => (await engine.source.getInstanceRole()).name,
      upstream,
      tokens,
      config,
      audit: (record) => logger.credentialRequest(record),
      audited: (record) => metrics.credentialRequest(record.outcome, record.method, record.latencyMs / 1000),
      get log() {
        return logger.level === 'DEBUG' ? requestLog : undefined
      },
      warn: (message) => logger.error(message),
    })
  const build = async (config: Config, reuse?: Engine): Promise<Running> => {
    const engine = await buildEngine(config, reuse)
    return {config, engine, app: buildApp(config, engine)}
  }

  // The owner lookup first: without a safe one there is nothing to build for.
  const finder: SocketOwnerFinder = await openSocketOwnerFinder(options.ownerLookup ?? {})
  if (finder.fallbackReason) logger.warn(`socket owners are looked up in /proc/net/tcp (slow with many sockets): ${finder.fallbackReason}`)
  else logger.info('socket owners are looked up with netlink sock_diag', {via: finder.via})
  if (finder.conntrackFallbackReason && options.requireConntrack) {
    await finder.close()
    throw new UserError('unavailable', `cannot intercept safely: ${finder.conntrackFallbackReason}`, {
      suggestion: 'load nf_conntrack_netlink (modprobe nf_conntrack_netlink) and run serve as root, or pass --no-iptables',
    })
  }
  if (finder.conntrackFallbackReason) logger.warn(`socket owners are found without conntrack's original tuples: ${finder.conntrackFallbackReason}`)
  let current: Running
  try {
    current = await build(options.config)
  } catch (error) {
    await finder.close()
    throw error
  }
  metrics.watchCache(() => current.engine.broker.cache.stats)
  const names = cachedUserNames(options.users ?? nssUserDatabase(), 60_000)

  // The listener's handler always reaches the current application, so a reload swaps it whole.
  const app = {handle: ((...args) => current.app.handle(...args)) as ImdsApp['handle']} as ImdsApp
  const lookup = async (socket: Socket) => {
    const owner = await finder.findSocketOwner(socket)
    if (!owner) return null
    return {uid: owner.uid, user: await names.userFor(owner.uid)}
  }
  // One warning per uid and minute for connections over its cap (a flood would flood the log too).
  const refusedWarned = new Map<number | null, number>()
  // One count for both listeners (IPv4 and IPv6).
  const limits = {
    caps: new ConnectionCaps({
      onRefused: (uid, open) => {
        const last = refusedWarned.get(uid)
        if (last !== undefined && Date.now() - last < 60_000) return
        if (refusedWarned.size > 10_000) refusedWarned.clear()
        refusedWarned.set(uid, Date.now())
        logger.warn(
          `${uid === null ? 'connections of uids without a local user (or of no known owner)' : `uid ${uid}`} hold ${open} connections to the daemon, the limit: new ones are closed at once (said once a minute)`,
        )
      },
    }),
  }
  // Accepted on only now: until the daemon can answer, connections wait in the sockets' queues.
  const passed = await adoptSockets(options.sockets ?? [])
  const roles = passed.map((socket) => ({socket, role: roleOfSocket(socket, {imdsPort: options.port, admin: options.config.general.admin_listen})}))
  for (const {socket, role} of roles)
    if (role === null) {
      logger.warn(`ignoring the socket systemd passed as fd ${socket.fd} (${socket.name}, ${describeAddress(socket.address)}): it is neither the metadata listener nor admin_listen`)
      socket.listener.close()
    }
  const passedImds = roles.filter((r) => r.role === 'imds').map((r) => r.socket)
  /** Each listener: the HTTP server that answers, and what accepts for it (itself, or a passed socket). */
  const listeners: Array<{http: Server; accepting: {listening: boolean; address(): AddressInfo | string | null; close(cb: () => void): unknown}}> = []
  let address: AddressInfo
  let ipv6Address: AddressInfo | null = null
  if (passedImds.length > 0) {
    // systemd holds these: connections queued while the daemon restarted are answered now.
    for (const socket of passedImds) {
      const http = createImdsServer(app, lookup, limits)
      socket.listener.maxConnections = http.maxConnections
      socket.listener.on('connection', (connection) => http.emit('connection', connection))
      listeners.push({http, accepting: socket.listener})
      logger.info('listening', {address: describeAddress(socket.address), from: 'systemd', fd: socket.fd})
    }
    const tcp = passedImds.map((s) => s.address).filter((a): a is AddressInfo => typeof a !== 'string')
    address = tcp.find((a) => a.family === 'IPv4') ?? tcp[0]
    ipv6Address = tcp.find((a) => a.family === 'IPv6' && a !== address) ?? null
  } else {
    const server = createImdsServer(app, lookup, limits)
    await listen(server, options.port, options.host)
    address = server.address() as AddressInfo
    listeners.push({http: server, accepting: server})
    logger.info('listening', {address: address.address, port: address.port, upstream: options.upstream})
    if (options.ipv6Loopback) {
      const server6 = createImdsServer(app, lookup, limits)
      try {
        await listen(server6, address.port, '::1')
        ipv6Address = server6.address() as AddressInfo
        listeners.push({http: server6, accepting: server6})
        logger.info('listening', {address: ipv6Address.address, port: ipv6Address.port})
      } catch (error) {
        logger.warn(`not listening on [::1]:${address.port}, so IPv6 metadata requests are not answered: ${(error as Error).message}`)
      }
    }
  }
  health.set('listener', () => {
    const down = listeners.filter((l) => !l.accepting.listening)
    const where = listeners.map((l) => describeAddress(l.accepting.address()))
    return down.length === 0
      ? {ok: true, detail: `listening on ${where.join(', ')}`}
      : {ok: false, detail: `not listening: ${down.map((l) => describeAddress(l.accepting.address())).join(', ') || 'closed'}`}
  })
  health.set('upstream', throttledProbe(upstreamProbe(upstream)))

  // Users whose SDKs asked within two session lifetimes find fresh credentials when they come back.
  const refresher = setInterval(() => {
    const active = 2 * current.engine.deps.config.general.session_duration * 1000
    const started = current.engine.broker.cache.refreshActive(active)
    if (started > 0) logger.debug('background refresh', {started})
  }, 30_000)
  refresher.unref()

  // The admin listener never stops the metadata listener: when it cannot listen, the daemon says
  // so and serves without it.
  const adminWhere = options.config.general.admin_listen
  const passedAdmin = roles.find((r) => r.role === 'admin')?.socket
  let admin: {where: string; close(): Promise<void>} | null = null
  if (adminWhere !== null || passedAdmin)
    try {
      admin = await startAdmin(passedAdmin ?? adminWhere!, metrics, health, options.adminGid ?? null)
      logger.info('admin listener', {address: admin.where, ...(passedAdmin ? {from: 'systemd'} : {})})
    } catch (error) {
      logger.error(`no admin listener (/metrics, /healthz): ${(error as Error).message}`)
    }

  return {
    address,
    ipv6Address,
    adminAddress: admin?.where ?? null,
    health,
    async reload(config) {
      const plan = planReload({started: options.config, running: current.config, next: config})
      if (plan.restartOnly.length > 0)
        logger.warn(`${plan.restartOnly.map(optionLabel).join(', ')} changed: ${plan.restartOnly.length === 1 ? 'it takes' : 'they take'} effect at the next start, not on reload`)
      if (plan.keep === 'engine') {
        // Nothing that decides credentials changed: the same engine, caches and all, and the same
        // application unless an option it reads changed (OPTIONS_OUTSIDE_APPLICATION).
        current = {config, engine: current.engine, app: plan.keepApplication ? current.app : buildApp(config, current.engine)}
      } else {
        current = await build(config, plan.keep === 'iam-reads' ? current.engine : undefined)
        logger.info('credential cache dropped: options that decide credentials changed', {
          options: plan.credentialOptions.map(optionLabel),
          iamReadCache: plan.keep === 'iam-reads' ? 'kept' : 'dropped',
        })
      }
      logger.info('configuration reloaded', {file: config.file})
    },
    async close() {
      clearInterval(refresher)
      const closed = listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            l.accepting.close(() => resolve())
            if (l.accepting !== l.http) l.http.close()
          }),
      )
      // A kept-alive connection whose request was in flight goes idle once answered: close it
      // then, rather than wait for the client (or the keep-alive timeout) to close it.
      const sweep = () => listeners.forEach((l) => l.http.closeIdleConnections())
      sweep()
      const sweeper = setInterval(sweep, 50)
      await Promise.all(closed).finally(() => clearInterval(sweeper))
      await admin?.close()
      await finder.close()
      upstream.close()
      logger.info('stopped')
    },
  }
}

/** The configuration in force, and the engine and application built from it. */
interface Running {
  config: Config
  engine: Engine
  app: ImdsApp
}

function describeAddress(address: AddressInfo | string | null): string {
  if (address === null) return 'closed'
  if (typeof address === 'string') return address
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`
}

/** Every chain the configuration can select. */
function chainsOf(config: Config): MethodName[][] {
  const g = config.general
  return [g.credential_methods, ...Object.values(g.per_user_credential_methods), ...g.per_uid_credential_methods.map((r) => r.methods)]
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) =>
      reject(
        new UserError('unavailable', `cannot listen on ${host}:${port}: ${error.code ?? error.message}`, {
          suggestion: error.code === 'EACCES' ? 'ports below 1024 need root (or CAP_NET_BIND_SERVICE)' : 'is another daemon running? (--port, [general] daemon_port)',
        }),
      )
    server.once('error', failed)
    server.listen(port, host, () => {
      server.off('error', failed)
      resolve()
    })
  })
}

/**
 * /metrics and /healthz, on a unix socket (mode 0600, or 0660 with admin_group's group), a
 * loopback port, or a socket systemd passed; nothing else, and at most 16 connections at once.
 * /healthz is 200 with {"status":"ok","checks":{...}} when every check is ok, else 503 with
 * "failing".
 */
async function startAdmin(
  where: string | AdoptedSocket,
  metrics: DaemonMetrics,
  health: Health,
  gid: number | null,
): Promise<{where: string; close(): Promise<void>}> {
  const server = createServer(async (req, res) => {
    if (req.method !== 'GET') return void res.writeHead(405).end()
    if (req.url === '/healthz') {
      const report = await health.report()
      return void res.writeHead(report.status === 'ok' ? 200 : 503, {'content-type': 'application/json'}).end(`${JSON.stringify(report)}\n`)
    }
    if (req.url === '/metrics') {
      const body = await metrics.registry.metrics()
      return void res.writeHead(200, {'content-type': metrics.registry.contentType}).end(body)
    }
    res.writeHead(404).end()
  })
  server.maxConnections = 16
  server.headersTimeout = 5000
  server.requestTimeout = 10_000
  if (typeof where !== 'string') {
    where.listener.maxConnections = 16
    where.listener.on('connection', (connection) => server.emit('connection', connection))
    const label = describeAddress(where.address)
    return {where: label, close: () => new Promise((resolve) => where.listener.close(() => (server.close(), resolve())))}
  }
  if (where.startsWith('/')) {
    await mkdir(dirname(where), {recursive: true, mode: 0o755})
    await rm(where, {force: true}) // a socket left by a crashed daemon
    // Made with no access for anyone, then opened to root (and the group) only.
    const umask = process.umask(0o177)
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(where, resolve))
    } finally {
      process.umask(umask)
    }
    if (gid !== null) {
      await chown(where, 0, gid)
      await chmod(where, 0o660)
    } else await chmod(where, 0o600)
  } else {
    const m = /^(.*):(\d+)$/.exec(where)!
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(Number(m[2]), m[1].replace(/^\[|\]$/g, ''), resolve))
  }
  return {where, close: () => new Promise((resolve) => server.close(() => resolve()))}
}
