// `serve`'s life around the daemon: the logger and its sinks, start-up (the listeners' ports
// checked, the interception installed, then the daemon), systemd's notifications and sockets,
// /healthz's interception and config checks, and the signals. SIGHUP reloads the configuration, one reload at a time: SIGHUPs that come during a
// reload make exactly one more once it is done, which reads the file again, so the newest file
// wins. A SIGHUP during start-up is remembered and done once the daemon serves (Node's default
// for SIGHUP would end the process). SIGTERM and SIGINT stop accepting, finish what is in flight
// and return, leaving the rules in place (unless keep_rules_on_exit = False). The command parses flags and calls
// runDaemon; nothing here reads process.env or exits.
import {takeEarlySighup} from './early-sighup.js'
import type {Config, LogLevel} from '../config/schema.js'
import {
  installInterception,
  InstalledFamily,
  InterceptionPlan,
  planInterception,
  redirectAddress,
  removeInterception,
  RunCommand,
} from '../host/iptables.js'
import {UserError} from '../errors.js'
import {IMDS_ADDRESS} from '../host/iptables.js'
import {tcpAnswers} from '../host/reach.js'
import {groupId} from '../host/users.js'
import {resolveRegion} from '../aws/region.js'
import {PassedSocket, unprivilegedPortStart} from './activation.js'
import {Daemon, DaemonOptions, startDaemon} from './daemon.js'
import {checkInterception, Health, HealthCheck} from './health.js'
import {createLogger, Logger, LogSink} from './log.js'
import {createMetrics, DaemonMetrics} from './metrics.js'
import {monotonicUsec, Notifier, openNotifier} from './notify.js'

/** The listener's default address; with it the daemon also listens on [::1]. */
export const DEFAULT_HOST = '127.0.0.1'

/** What signals come from: `process` (tests pass an EventEmitter). */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown
  off(signal: NodeJS.Signals, listener: () => void): unknown
}

/** The sinks the log can write to; which are used follows log_console and log_syslog, reload after reload. */
export interface LogOutputs {
  /** Standard error: log_console, --log-console, and where the log goes when syslog is unavailable. */
  console: LogSink
  /** Opens syslog; throws where it cannot be reached. */
  syslog: () => Promise<LogSink>
}

export interface RunDaemonOptions {
  /** The configuration read at start. */
  config: Config
  /** Reads the configuration file again (SIGHUP). */
  loadConfig: () => Promise<Config>
  host: string
  /** --port; else [general] daemon_port. */
  port?: number
  upstream: string
  instanceRole?: string
  /** --log-level and --log-console: they win over the file's log_level and log_console, on reload too. */
  logLevel?: LogLevel
  logConsole?: boolean
  /** Install the interception (--iptables); false: --no-iptables. */
  interception: boolean
  /** The uid the daemon runs as (its own IMDS requests pass the rules). */
  daemonUid: number
  /** The process's environment: the AWS SDK's settings, and NOTIFY_SOCKET. */
  env: Record<string, string | undefined>
  signals: SignalSource
  outputs: LogOutputs
  metrics?: DaemonMetrics
  /** Sockets systemd passed (LISTEN_FDS): listened on instead of binding the ports. */
  sockets?: PassedSocket[]
  /** --allow-unprivileged-port: listen on a port a user could bind (tests). */
  allowUnprivilegedPort?: boolean
  /** How often the rules are checked, and put back when they are not in place (default INTERCEPTION_CHECK_MS). */
  interceptionCheckMs?: number
  /** How often net.ipv4.ip_unprivileged_port_start is read again (default PORTS_CHECK_MS). */
  portsCheckMs?: number
  /** Tests: the daemon itself, how iptables is run, whether the IPv6 metadata endpoint answers, the unprivileged port start. */
  startDaemon?: (options: DaemonOptions) => Promise<Daemon>
  runCommand?: RunCommand
  probeIpv6Imds?: () => Promise<boolean>
  unprivilegedPortStart?: () => Promise<number>
}

/** Runs the daemon until SIGTERM or SIGINT; rejects when it cannot start. */
export async function runDaemon(options: RunDaemonOptions): Promise<void> {
  const {signals} = options
  let config = options.config
  const levelOf = (c: Config) => options.logLevel ?? c.general.log_level
  const logger = createLogger({level: levelOf(config), sinks: []})
  const outputs = new SinkSet(options.outputs)
  let phase: 'starting' | 'serving' | 'stopping' = 'starting'
  let hupWhileStarting = false
  let reloads: ReloadQueue | null = null

  // Signals first: start-up can take long (AWS, iptables), and Node's default for SIGHUP ends
  // the process.
  const onHangup = () => {
    if (phase === 'starting') hupWhileStarting = true
    else if (phase === 'serving') reloads?.request()
  }
  signals.on('SIGHUP', onHangup)
  // One that came while the command was still loading (bin/run.js held it).
  if (signals === process && takeEarlySighup()) hupWhileStarting = true
  let notifier: Notifier | null = null
  let watch: InterceptionWatch | null = null
  let stopPortWatch: (() => Promise<void>) | null = null
  const metrics = options.metrics ?? createMetrics()
  const stopSignals: Array<[NodeJS.Signals, () => void]> = []
  try {
    logger.reconfigure({sinks: await outputs.select(config, options.logConsole)})
    logger.info('starting', {file: config.file})
    // At ERROR: a Type=notify unit that never hears READY=1 is stopped at its start timeout, and
    // the default log_level must show why.
    notifier = await openNotifier(options.env.NOTIFY_SOCKET, (message) => logger.error(message))
    const notify = notifier

    // SIGTERM and SIGINT from here on: a stop during start-up waits for the start to end (the
    // interception is in by then, and stays), and the daemon then stops at once.
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        // A second signal gets Node's default: the admin insists.
        for (const [name, listener] of stopSignals) signals.off(name, listener)
        phase = 'stopping'
        notify.notify({STOPPING: 1, STATUS: `stopping (${signal})`})
        logger.info('stopping', {signal})
        resolve()
      }
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const listener = () => stop(signal)
        stopSignals.push([signal, listener])
        signals.on(signal, listener)
      }
    })

    const port = options.port ?? config.general.daemon_port
    // The sockets systemd holds for us, if it passed any (the daemon accepts on them once it
    // serves: until then connections wait in their queue); else the daemon listens itself, and
    // then only where no user can bind the port while it is down.
    const sockets = options.sockets ?? []
    const ownPorts = sockets.length === 0 && !options.allowUnprivilegedPort
    if (ownPorts) await refuseSquattablePorts(config, port, options)

    // The interception before anything else (before any AWS call): from here on a user's
    // metadata request meets the daemon, or a refused connection while there is none, never the
    // real IMDS. It stays when serve exits, however it exits (keep_rules_on_exit = False aside).
    const plan = options.interception
      ? await planInterception({
          iptables: config.general.iptables,
          listenPort: port,
          daemonUid: options.daemonUid,
          listenAddress: redirectAddress(options.host),
          forwarded: config.general.forwarded_imds,
          run: options.runCommand,
        })
      : null
    for (const note of plan?.notes ?? []) logger.warn(note)
    if (plan && !config.general.keep_rules_on_exit)
      logger.warn('keep_rules_on_exit = False: when serve stops, non-root users reach the real IMDS (and the instance role) until it serves again')
    const health = new Health()
    let configCheck: HealthCheck = {ok: true, detail: loadedDetail(config)}
    health.set('config', () => configCheck)
    if (plan) {
      const installed = await intercept(plan, logger, options.runCommand)
      const watching = new InterceptionWatch(plan, installed, logger, options.runCommand, options.interceptionCheckMs ?? INTERCEPTION_CHECK_MS, metrics)
      watch = watching
      health.set('interception', () => watching.current)
      const exposed = plan.ipv6Problem !== undefined && (await (options.probeIpv6Imds ?? (() => tcpAnswers(IMDS_ADDRESS[6], 80)))())
      if (exposed) {
        const detail = ipv6Exposed(plan.ipv6Problem!)
        logger.error(detail)
        health.set('ipv6', () => ({ok: false, detail}))
      }
    }

    // The instance's own region from its IMDS, unless AWS_REGION says: STS's regional endpoint.
    const region = await resolveRegion({env: options.env, imds: options.upstream})
    logger.info('region', {...region})
    let daemon: Daemon
    try {
      daemon = await (options.startDaemon ?? startDaemon)({
        region: region.region,
        config,
        host: options.host,
        port,
        ipv6Loopback: options.host === DEFAULT_HOST || plan?.families.some((f) => f.family === 6 && f.redirect),
        upstream: options.upstream,
        instanceRole: options.instanceRole,
        env: options.env,
        logger,
        metrics,
        health,
        requireConntrack: plan !== null,
        sockets,
        adminGid: await adminGroupId(config),
      })
    } catch (error) {
      // Never removed here, whatever keep_rules_on_exit says: a start that failed (AWS not yet
      // reachable) is retried, and users meet refused connections meanwhile, not the real IMDS.
      if (plan) logger.info('interception kept (the daemon did not start): non-root users\' metadata requests are refused until it serves')
      throw error
    }

    if (ownPorts)
      stopPortWatch = watchPorts(() => config, port, health, logger, options.unprivilegedPortStart ?? unprivilegedPortStart, options.portsCheckMs ?? PORTS_CHECK_MS)
    const serving = plan ? 'serving; interception installed' : 'serving; no interception (--no-iptables)'
    if (phase === 'starting') {
      phase = 'serving'
      notify.notify({READY: 1, STATUS: serving})
    }

    reloads = new ReloadQueue(async () => {
      notify.notify({RELOADING: 1, MONOTONIC_USEC: monotonicUsec(), STATUS: 'reloading the configuration'})
      let status = serving
      try {
        const next = await options.loadConfig()
        // A file that vanished (e.g. mid-replace) must not silently turn into all defaults.
        if (config.file !== null && next.file === null) throw new Error(`${config.file} is missing`)
        // The new log settings first, so that the reload's own lines follow them; back if it is refused.
        logger.reconfigure({level: levelOf(next), sinks: await outputs.select(next, options.logConsole)})
        try {
          await daemon.reload(next)
        } catch (error) {
          logger.reconfigure({
            level: levelOf(config),
            sinks: await outputs.select(config, options.logConsole),
          })
          throw error
        }
        config = next
        configCheck = {ok: true, detail: loadedDetail(next)}
      } catch (error) {
        const reason = (error as Error).message
        logger.error('reload refused: the running configuration stays', {error: reason})
        // /healthz and systemd's STATUS (which any local user can read) say that, not why: the
        // reason may quote the file's values. The log has it.
        const refused = `reload refused at ${new Date().toISOString()}, the previous configuration is running (the log says why)`
        configCheck = {ok: false, detail: refused}
        status = `${serving}; ${refused}`
      }
      // systemd waits for READY=1 to end the reload, refused or not; after STOPPING=1 it waits for nothing.
      if (phase === 'serving') notify.notify({READY: 1, STATUS: status})
    })
    if (hupWhileStarting && phase === 'serving') {
      logger.info('SIGHUP came during start-up: reloading the configuration now')
      reloads.request()
    }

    await stopped
    await watch?.stop()
    await stopPortWatch?.()
    try {
      await daemon.close()
    } catch (error) {
      logger.error('error while stopping', {error: (error as Error).message})
    }
    if (plan) await release(plan, logger, config.general.keep_rules_on_exit, options.runCommand, 'serve stopped')
  } finally {
    phase = 'stopping'
    await watch?.stop()
    await stopPortWatch?.()
    signals.off('SIGHUP', onHangup)
    for (const [name, listener] of stopSignals) signals.off(name, listener)
    notifier?.close()
    outputs.close()
  }
}

function loadedDetail(config: Config): string {
  return `${config.file ?? 'no configuration file: the defaults'} in force since ${new Date().toISOString()}`
}

/**
 * Runs `task` for each request, one run at a time: requests made while it runs are coalesced
 * into exactly one more run after it.
 */
class ReloadQueue {
  private running: Promise<void> | null = null
  private again = false

  constructor(private readonly task: () => Promise<void>) {}

  request(): void {
    if (this.running) {
      this.again = true
      return
    }
    this.running = (async () => {
      do {
        this.again = false
        await this.task().catch(() => {}) // the task reports its own failures
      } while (this.again)
      this.running = null
    })()
  }
}

/** Opens the log's sinks as the configuration asks, reusing what is open, closing what is dropped. */
class SinkSet {
  private syslog: LogSink | null = null

  constructor(private readonly outputs: LogOutputs) {}

  async select(config: Config, consoleFlag = false): Promise<LogSink[]> {
    const sinks: LogSink[] = []
    if (config.general.log_console || consoleFlag) sinks.push(this.outputs.console)
    if (config.general.log_syslog) {
      try {
        this.syslog ??= await this.outputs.syslog()
        sinks.push(this.syslog)
      } catch (error) {
        if (!sinks.includes(this.outputs.console)) sinks.push(this.outputs.console)
        this.outputs.console.write(
          'WARNING',
          `syslog is not available (${(error as Error).message}); logging to standard error`,
        )
      }
    } else if (this.syslog) {
      this.syslog.close?.()
      this.syslog = null
    }
    return sinks
  }

  close(): void {
    this.syslog?.close?.()
    this.syslog = null
    this.outputs.console.close?.()
  }
}

/** Installs the rules, before the daemon starts; a failure stops serve (whatever went in stays: it only refuses). */
async function intercept(plan: InterceptionPlan, logger: Logger, run: RunCommand | undefined): Promise<InstalledFamily[]> {
  try {
    const {families, connections} = await installInterception(plan, {run})
    logger.info('interception installed', {families, connections})
    if ('skipped' in connections)
      logger.warn(`connections to IMDS opened before the rules are cut by the filter rules instead: ${connections.skipped}`)
    return families
  } catch (error) {
    logger.error('cannot install the interception', {error: (error as Error).message})
    throw error
  }
}

/** How often serve checks that its rules are still in place. */
export const INTERCEPTION_CHECK_MS = 2000

/**
 * The interception kept in place while serve runs: every few seconds each family's tables are
 * listed (a few `iptables -S`, ~2 ms each) and compared with what was installed. Whatever took
 * rules away or put one that may let connections past ahead of a jump (a firewall reload, `nft
 * flush ruleset`, `iptables -F`, an `iptables-restore`) is logged at ERROR and the interception
 * installed again at once (connections opened meanwhile are cut). /healthz's `interception` is
 * the last result.
 */
class InterceptionWatch {
  current: HealthCheck
  readonly stop: () => Promise<void>
  private stopped = false

  constructor(
    private readonly plan: InterceptionPlan,
    private installed: InstalledFamily[],
    private readonly logger: Logger,
    private readonly run: RunCommand | undefined,
    intervalMs: number,
    private readonly metrics: DaemonMetrics,
  ) {
    this.current = {ok: true, detail: `${installed.map((f) => `IPv${f.family}`).join(' and ')} installed at ${new Date().toISOString()}`}
    const stopTicks = every(intervalMs, () => this.tick(), (error) => logger.error('cannot check the interception', {error: error.message}))
    this.stop = () => {
      this.stopped = true
      return stopTicks()
    }
  }

  private async tick(): Promise<void> {
    const found = await checkInterception(this.installed, this.plan, this.run)
    if (this.stopped) return
    if (found.ok) {
      this.current = this.current.ok ? found : {ok: true, detail: found.detail}
      return
    }
    this.logger.error('the interception is not as installed: installing it again', {problem: found.detail})
    try {
      const {families, connections} = await installInterception(this.plan, {run: this.run})
      if (this.stopped) return
      this.installed = families
      this.metrics.interceptionReinstalled()
      const after = await checkInterception(families, this.plan, this.run)
      this.current = after.ok ? {ok: true, detail: `${after.detail}; installed again at ${new Date().toISOString()} (it was: ${found.detail})`} : after
      this.logger.warn('interception installed again', {families, connections})
    } catch (error) {
      const reason = (error as Error).message
      this.current = {ok: false, detail: `${found.detail}; installing it again failed: ${reason}`}
      this.logger.error('cannot install the interception again', {error: reason})
    }
  }
}

/** Runs `task` every `ms`, never two runs at once, until the returned stop, which waits for a run in progress. */
function every(ms: number, task: () => Promise<void>, onError: (error: Error) => void): () => Promise<void> {
  let running: Promise<void> | null = null
  const timer = setInterval(() => {
    running ??= task()
      .catch((error) => onError(error as Error))
      .finally(() => (running = null))
  }, ms)
  timer.unref()
  return async () => {
    clearInterval(timer)
    await running
  }
}

/** Leaves the rules in place to fail closed, or removes them where keep_rules_on_exit = False. */
async function release(plan: InterceptionPlan, logger: Logger, keep: boolean, run: RunCommand | undefined, why: string): Promise<void> {
  if (keep) return logger.info(`interception kept (${why}): non-root users' metadata requests are refused until the daemon serves again; \`ec2userkeyd intercept remove\` takes it out`)
  try {
    logger.info('interception removed (keep_rules_on_exit = False)', {families: await removeInterception({iptables: plan.families[0].binary, run})})
  } catch (error) {
    logger.error('cannot remove the interception', {error: (error as Error).message})
  }
}

/** What /healthz and the log say when IPv6 metadata requests reach the real IMDS. */
export function ipv6Exposed(problem: string): string {
  return (
    `the IPv6 metadata endpoint [${IMDS_ADDRESS[6]}]:80 answers and cannot be intercepted (${problem}): non-root users reach the real IMDS over IPv6; ` +
    'install ip6tables, or turn the instance\'s IPv6 metadata endpoint off (aws ec2 modify-instance-metadata-options --http-protocol-ipv6 disabled)'
  )
}

/**
 * The metadata listener, and a TCP admin listener, must be on ports no user can bind (below
 * net.ipv4.ip_unprivileged_port_start): while the daemon is down, a user holding the port would
 * answer everyone's metadata requests, or make the next start fail.
 */
async function refuseSquattablePorts(config: Config, port: number, options: RunDaemonOptions): Promise<void> {
  const start = await (options.unprivilegedPortStart ?? unprivilegedPortStart)()
  const [squattable] = squattablePorts(config, port, start)
  if (squattable)
    throw new UserError('usage', `${squattable.what} would be on port ${squattable.port}, which any user can bind (ports from ${start} are unprivileged here) and so answer for the daemon while it is down`, {
      suggestion: start > 0
        ? `use a port below ${start} (daemon_port's default is 808), a unix socket for admin_listen, or systemd's ec2userkeyd.socket; tests: --allow-unprivileged-port`
        : `set net.ipv4.ip_unprivileged_port_start back above ${squattable.port} (the default is 1024), or use systemd's ec2userkeyd.socket, which holds the ports; tests: --allow-unprivileged-port`,
    })
}

/** The listeners (metadata, TCP admin) on a port from `start`, which any user may bind. */
function squattablePorts(config: Config, port: number, start: number): Array<{what: string; port: number}> {
  const admin = config.general.admin_listen
  const adminPort = admin && !admin.startsWith('/') ? Number(/:(\d+)$/.exec(admin)?.[1]) : null
  return [
    {what: 'the metadata listener', port},
    {what: 'the admin listener (admin_listen)', port: adminPort},
  ].filter((l): l is {what: string; port: number} => l.port !== null && l.port >= start)
}

/** How often serve reads net.ipv4.ip_unprivileged_port_start again, when it holds its ports itself. */
export const PORTS_CHECK_MS = 10_000

/**
 * The same while the daemon runs: an admin who lowers net.ipv4.ip_unprivileged_port_start
 * (rootless containers' guides do) lets any user take the ports the next time the daemon is down,
 * and answer everyone's metadata requests. Logged at ERROR once, and /healthz's `ports` fails.
 */
function watchPorts(config: () => Config, port: number, health: Health, logger: Logger, read: () => Promise<number>, intervalMs: number): () => Promise<void> {
  let said = ''
  health.set('ports', () => ({ok: true, detail: `port ${port} is below net.ipv4.ip_unprivileged_port_start`}))
  return every(
    intervalMs,
    async () => {
      const start = await read()
      const open = squattablePorts(config(), port, start)
      if (open.length === 0) {
        said = ''
        return health.set('ports', () => ({ok: true, detail: `every listener's port is below net.ipv4.ip_unprivileged_port_start (${start})`}))
      }
      const detail =
        `${open.map((l) => `${l.what}'s port ${l.port}`).join(' and ')} can now be bound by any user (net.ipv4.ip_unprivileged_port_start is ${start}): ` +
        'while the daemon is down (a crash, a restart), a user could take it and answer everyone\'s metadata requests; set it back, or run under systemd\'s ec2userkeyd.socket'
      if (detail !== said) logger.error(detail)
      said = detail
      health.set('ports', () => ({ok: false, detail}))
    },
    (error) => logger.error('cannot read net.ipv4.ip_unprivileged_port_start', {error: error.message}),
  )
}

async function adminGroupId(config: Config): Promise<number | null> {
  const name = config.general.admin_group
  if (name === null) return null
  const gid = await groupId(name)
  if (gid === null) throw new UserError('usage', `admin_group '${name}' is not a group on this host`, {suggestion: 'give a group getent group knows, or leave admin_group unset'})
  return gid
}
