import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {LOG_LEVELS, LogLevel} from '../lib/config/schema.js'
import {Daemon, startDaemon} from '../lib/daemon/daemon.js'
import {createLogger, Logger, LogSink, streamSink} from '../lib/daemon/log.js'
import {createMetrics} from '../lib/daemon/metrics.js'
import {syslogSink} from '../lib/daemon/syslog.js'
import {UserError} from '../lib/errors.js'
import {
  commandLine,
  installInterception,
  interceptionRules,
  InterceptionPlan,
  ip6tablesFor,
  planInterception,
  redirectAddress,
  removeInterception,
} from '../lib/host/iptables.js'
import {DEFAULT_UPSTREAM} from '../lib/imds/upstream.js'

const DEFAULT_HOST = '127.0.0.1'

export default class ServeCommand extends BaseCommand {
  static override enableJsonFlag = false
  static override summary = 'Run the per-user IMDS daemon: each UNIX user gets their own credentials from the metadata service.'
  static override description =
    'Answers instance-metadata requests on 127.0.0.1:[general] daemon_port: credential requests with credentials for the UNIX ' +
    'user who owns the connection (through the credential chain), everything else from the real IMDS. SIGHUP reloads the ' +
    'configuration (a bad one is refused and the running one stays); SIGTERM and SIGINT finish what is in flight and exit 0. ' +
    'Once listening, it installs the iptables rules (chain EC2USERKEYD in the nat and filter tables, and the same with ip6tables ' +
    'where the host has IPv6) that send every non-root connection to 169.254.169.254:80 to it, and removes them on SIGTERM and ' +
    'SIGINT unless [general] keep_rules_on_exit = True. ' +
    "The Python tool's `ec2userkeyd [-f FILE] [-d] [-v] daemon` runs this command."

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --config /etc/ec2userkeyd.conf --log-console --log-level INFO',
    '<%= config.bin %> <%= command.id %> --print-rules',
    '<%= config.bin %> <%= command.id %> --no-iptables --port 8080',
  ]

  static override flags = {
    port: Flags.integer({summary: 'Listen on this port (default: [general] daemon_port).', min: 1, max: 65535}),
    host: Flags.string({summary: 'Listen on this address (the default also listens on [::1], for IPv6 metadata requests).', default: DEFAULT_HOST}),
    upstream: Flags.string({summary: 'The real instance metadata service, for everything that is not a credential request.', default: DEFAULT_UPSTREAM, helpValue: 'URL'}),
    'instance-role': Flags.string({summary: 'The instance role, by name or ARN (wins over [general] instance_role and discovery).', helpValue: 'NAME|ARN'}),
    'log-level': Flags.string({summary: 'Log level (default: [general] log_level).', options: [...LOG_LEVELS]}),
    'log-console': Flags.boolean({summary: 'Log to standard error (as [general] log_console = True).'}),
    iptables: Flags.boolean({
      summary: "Install the iptables rules that send non-root users' metadata requests to the daemon (needs root).",
      description: '--no-iptables leaves iptables alone: only clients that connect to the listener reach the daemon.',
      default: true,
      allowNo: true,
    }),
    'print-rules': Flags.boolean({summary: 'Print the iptables and ip6tables commands that install the rules, and exit.'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServeCommand)
    let config = await this.loadConfig(flags)
    const port = flags.port ?? config.general.daemon_port
    const rules = () => ({listenPort: port, daemonUid: process.getuid!(), listenAddress: redirectAddress(flags.host)})
    if (flags['print-rules']) {
      const {iptables} = config.general
      for (const [family, binary] of [[4, iptables], [6, ip6tablesFor(iptables)]] as const)
        for (const args of interceptionRules({...rules(), family})) this.log(commandLine(binary, args))
      return
    }
    if (flags.iptables && process.getuid?.() !== 0) throw new UserError('usage', 'serve installs iptables rules and needs root; run as root or pass --no-iptables')
    const plan = flags.iptables ? await planInterception({iptables: config.general.iptables, ...rules()}) : null

    const sinks: LogSink[] = []
    if (config.general.log_console || flags['log-console']) sinks.push(streamSink(process.stderr))
    if (config.general.log_syslog)
      try {
        sinks.push(await syslogSink())
      } catch (error) {
        sinks.push(streamSink(process.stderr))
        process.stderr.write(`syslog is not available (${(error as Error).message}); logging to standard error\n`)
      }
    const logger = createLogger({level: (flags['log-level'] as LogLevel | undefined) ?? config.general.log_level, sinks})
    for (const note of plan?.notes ?? []) logger.warn(note)
    const daemon = await startDaemon({
      config,
      host: flags.host,
      port,
      ipv6Loopback: flags.host === DEFAULT_HOST || plan?.families.some((f) => f.family === 6 && f.redirect),
      upstream: flags.upstream,
      instanceRole: flags['instance-role'],
      env: process.env,
      logger,
      metrics: createMetrics(),
    })
    if (plan) await intercept(plan, daemon, logger, config.general.keep_rules_on_exit)

    process.on('SIGHUP', async () => {
      try {
        const next = await this.loadConfig(flags)
        // A file that vanished (e.g. mid-replace) must not silently turn into all defaults.
        if (config.file !== null && next.file === null) throw new Error(`${config.file} is missing`)
        await daemon.reload(next)
        config = next
      } catch (error) {
        logger.error('reload refused: the running configuration stays', {error: (error as Error).message})
      }
    })
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info('stopping', {signal})
        daemon.close().then(resolve, (error) => {
          logger.error('error while stopping', {error: (error as Error).message})
          resolve()
        })
      }
      process.once('SIGTERM', () => stop('SIGTERM'))
      process.once('SIGINT', () => stop('SIGINT'))
    })
    try {
      if (plan) await release(plan, logger, config.general.keep_rules_on_exit)
    } finally {
      for (const sink of sinks) sink.close?.()
    }
  }
}

/** Installs the rules now that the daemon accepts connections; a failure stops the daemon. */
async function intercept(plan: InterceptionPlan, daemon: Daemon, logger: Logger, keep: boolean): Promise<void> {
  try {
    const {families, connections} = await installInterception(plan, {ipv6Listener: daemon.ipv6Address !== null})
    logger.info('interception installed', {families, connections})
    if ('skipped' in connections)
      logger.warn(`connections to IMDS opened before the rules are cut by the filter rules instead: ${connections.skipped}`)
  } catch (error) {
    logger.error('cannot install the interception', {error: (error as Error).message})
    await daemon.close()
    await release(plan, logger, keep).catch((e) => logger.error('cannot remove the interception', {error: (e as Error).message}))
    throw error
  }
}

/** Removes the rules at exit, unless they stay to fail closed. */
async function release(plan: InterceptionPlan, logger: Logger, keep: boolean): Promise<void> {
  if (keep) return logger.info('interception kept (keep_rules_on_exit): non-root users get no metadata until the daemon is back')
  logger.info('interception removed', {families: await removeInterception({iptables: plan.families[0].binary})})
}
