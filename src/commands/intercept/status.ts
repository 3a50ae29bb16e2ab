import {BaseCommand} from '../../cli/base-command.js'
import {listenerFlags} from '../../cli/flags.js'
import {EXPOSED_EXIT, interceptStatus, requireRoot, StatusResult} from '../../lib/daemon/intercept.js'
import {renderStatus} from '../../lib/render/intercept.js'

export default class InterceptStatusCommand extends BaseCommand {
  static override summary = 'Show the interception per family: its rules, whether they come first, the listener, and what a request would meet now.'
  static override description =
    'Exits 7 when a non-root metadata request (or one forwarded from a container, unless forwarded_imds = passthrough) ' +
    'would reach the real IMDS now, or a user\'s process listening where the daemon should.'

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  static override flags = {...listenerFlags}

  async run(): Promise<StatusResult> {
    const {flags} = await this.parse(InterceptStatusCommand)
    const config = await this.loadConfig(flags)
    requireRoot(process.getuid!(), 'status')
    const result = await interceptStatus({config, port: flags.port, host: flags.host, daemonUid: process.getuid!()})
    if (!this.jsonEnabled()) this.log(renderStatus(result))
    if (!result.protected) process.exitCode = EXPOSED_EXIT
    return result
  }
}
