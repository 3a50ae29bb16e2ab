import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {LOG_LEVELS, LogLevel} from '../lib/config/schema.js'
import {passedSockets} from '../lib/daemon/activation.js'
import {DEFAULT_HOST, runDaemon} from '../lib/daemon/lifecycle.js'
import {streamSink} from '../lib/daemon/log.js'
import {syslogSink} from '../lib/daemon/syslog.js'
import {InputError, UserError} from '../lib/errors.js'
import {loadConfigLeniently} from '../lib/config/load.js'
import {installHostInterception} from '../lib/daemon/intercept.js'
import {commandLine, interceptionRules, ip6tablesFor, redirectAddress} from '../lib/host/iptables.js'
import {DEFAULT_UPSTREAM} from '../lib/imds/upstream.js'

export default class ServeCommand extends BaseCommand {
  static override enableJsonFlag = false
  static override summary = 'Run the per-user IMDS daemon: each UNIX user gets their own credentials from the metadata service.'
  static override description =
    'Answers instance-metadata requests on 127.0.0.1:[general] daemon_port: credential requests with credentials for the UNIX ' +
    'user who owns the connection (through the credential chain), everything else from the real IMDS. SIGHUP reloads the ' +
    'configuration (a bad one is refused and the running one stays); SIGTERM and SIGINT finish what is in flight and exit 0. ' +
    'Before anything else it installs the iptables rules (chain EC2USERKEYD in the nat and filter tables, EC2USERKEYD-FWD for ' +
    'forwarded traffic, the same with ip6tables where the host has IPv6) that send every non-root connection to ' +
    '169.254.169.254:80 to it, and leaves them when it exits, cleanly, by a crash or after a failed start (unless [general] ' +
    'keep_rules_on_exit = False): while no daemon listens, users are refused, never passed to the real IMDS. It listens on the ' +
    'sockets systemd passes (ec2userkeyd.socket), or itself on ports no user can bind. Under systemd (NOTIFY_SOCKET) it says ' +
    'READY=1 once it serves. ' +
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
    'allow-unprivileged-port': Flags.boolean({
      summary: 'Listen on a port any user could bind (tests only).',
      description: 'Without it, a listener on a port from net.ipv4.ip_unprivileged_port_start (1024) up is refused: a user holding it while the daemon is down would answer for it.',
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServeCommand)
    let config
    try {
      config = await this.loadConfig(flags)
    } catch (error) {
      // The interception before anything else, even from a file that does not load (with the
      // defaults for what is wrong): the exit that follows must leave users refused, not the real IMDS.
      if (error instanceof InputError && flags.iptables && !flags['print-rules'] && process.getuid?.() === 0) await this.interceptAnyway(flags)
      throw error
    }
    if (flags['print-rules']) {
      const rules = {listenPort: flags.port ?? config.general.daemon_port, daemonUid: process.getuid!(), listenAddress: redirectAddress(flags.host), forwarded: config.general.forwarded_imds}
      const {iptables} = config.general
      for (const [family, binary] of [[4, iptables], [6, ip6tablesFor(iptables)]] as const)
        for (const args of interceptionRules({...rules, family})) this.log(commandLine(binary, args))
      return
    }
    if (flags.iptables && process.getuid?.() !== 0) throw new UserError('usage', 'serve installs iptables rules and needs root; run as root or pass --no-iptables')
    await runDaemon({
      config,
      loadConfig: () => this.loadConfig(flags),
      host: flags.host,
      port: flags.port,
      upstream: flags.upstream,
      instanceRole: flags['instance-role'],
      logLevel: flags['log-level'] as LogLevel | undefined,
      logConsole: flags['log-console'],
      interception: flags.iptables,
      daemonUid: process.getuid!(),
      env: process.env,
      signals: process,
      outputs: {console: streamSink(process.stderr), syslog: () => syslogSink()},
      sockets: passedSockets(process.env, process.pid),
      allowUnprivilegedPort: flags['allow-unprivileged-port'],
    })
  }

  private async interceptAnyway(flags: {config?: string; port?: number; host: string}): Promise<void> {
    try {
      const {config, problems} = await loadConfigLeniently({path: flags.config})
      await installHostInterception({config, port: flags.port, host: flags.host, daemonUid: 0, configProblems: problems})
      this.logToStderr('the interception is installed (with the defaults for what the file gets wrong): users are refused until serve starts')
    } catch (error) {
      this.logToStderr(`the interception could not be installed either: ${(error as Error).message}`)
    }
  }
}
