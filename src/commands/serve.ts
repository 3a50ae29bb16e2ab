import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {LOG_LEVELS, LogLevel} from '../lib/config/schema.js'
import {startDaemon} from '../lib/daemon/daemon.js'
import {createLogger, LogSink, streamSink} from '../lib/daemon/log.js'
import {createMetrics} from '../lib/daemon/metrics.js'
import {syslogSink} from '../lib/daemon/syslog.js'
import {DEFAULT_UPSTREAM} from '../lib/imds/upstream.js'

export default class ServeCommand extends BaseCommand {
  static override enableJsonFlag = false
  static override summary = 'Run the per-user IMDS daemon: each UNIX user gets their own credentials from the metadata service.'
  static override description =
    'Answers instance-metadata requests on 127.0.0.1:[general] daemon_port: credential requests with credentials for the UNIX ' +
    'user who owns the connection (through the credential chain), everything else from the real IMDS. SIGHUP reloads the ' +
    'configuration (a bad one is refused and the running one stays); SIGTERM and SIGINT finish what is in flight and exit 0. ' +
    "The Python tool's `ec2userkeyd [-f FILE] [-d] [-v] daemon` runs this command."

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --config /etc/ec2userkeyd.conf --log-console --log-level INFO',
  ]

  static override flags = {
    port: Flags.integer({summary: 'Listen on this port (default: [general] daemon_port).', min: 1, max: 65535}),
    host: Flags.string({summary: 'Listen on this address.', default: '127.0.0.1'}),
    upstream: Flags.string({summary: 'The real instance metadata service, for everything that is not a credential request.', default: DEFAULT_UPSTREAM, helpValue: 'URL'}),
    'instance-role': Flags.string({summary: 'The instance role, by name or ARN (wins over [general] instance_role and discovery).', helpValue: 'NAME|ARN'}),
    'log-level': Flags.string({summary: 'Log level (default: [general] log_level).', options: [...LOG_LEVELS]}),
    'log-console': Flags.boolean({summary: 'Log to standard error (as [general] log_console = True).'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServeCommand)
    const config = await this.loadConfig(flags)
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
    const daemon = await startDaemon({
      config,
      host: flags.host,
      port: flags.port ?? config.general.daemon_port,
      upstream: flags.upstream,
      instanceRole: flags['instance-role'],
      env: process.env,
      logger,
      metrics: createMetrics(),
    })

    process.on('SIGHUP', async () => {
      try {
        await daemon.reload(await this.loadConfig(flags))
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
    for (const sink of sinks) sink.close?.()
  }
}
