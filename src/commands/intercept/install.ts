import {BaseCommand} from '../../cli/base-command.js'
import {listenerFlags} from '../../cli/flags.js'
import {installHostInterception, InstallResult, requireRoot} from '../../lib/daemon/intercept.js'
import {renderInstall} from '../../lib/render/intercept.js'

export default class InterceptInstallCommand extends BaseCommand {
  static override summary = 'Install the iptables rules that send non-root metadata requests to the daemon, without starting it.'
  static override description =
    'Idempotent, and without a gap: an earlier installation is replaced rule by rule. While no daemon listens, a user\'s ' +
    'metadata request is refused, never passed to the real IMDS. The rules stay until `ec2userkeyd intercept remove`. ' +
    'The systemd unit ec2userkeyd-intercept.service runs this at boot, before user sessions.'

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --config /etc/ec2userkeyd.conf --json']

  static override flags = {...listenerFlags}

  async run(): Promise<InstallResult> {
    const {flags} = await this.parse(InterceptInstallCommand)
    const config = await this.loadConfig(flags)
    requireRoot(process.getuid!(), 'install')
    const result = await installHostInterception({config, port: flags.port, host: flags.host, daemonUid: process.getuid!()})
    if (!this.jsonEnabled()) this.log(renderInstall(result))
    return result
  }
}
