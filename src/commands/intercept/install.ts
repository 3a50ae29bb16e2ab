import {BaseCommand} from '../../cli/base-command.js'
import {loadConfigLeniently} from '../../lib/config/load.js'
import {ExitCode} from '../../lib/errors.js'
import {renderErrorLine} from '../../lib/render/text.js'
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
    // A file that does not load still gets the host its interception (with the defaults of
    // what is wrong), then exits 2 saying why: at boot, a typo must not leave users the real IMDS.
    const {config, problems} = await loadConfigLeniently({path: flags.config})
    requireRoot(process.getuid!(), 'install')
    const result = await installHostInterception({config, port: flags.port, host: flags.host, daemonUid: process.getuid!(), configProblems: problems})
    if (!this.jsonEnabled()) this.log(renderInstall(result))
    if (result.configProblems.length > 0) {
      process.exitCode = ExitCode.usage
      // On standard error with --json too (oclif's logToStderr is silent then): the journal keeps it.
      process.stderr.write(
        renderErrorLine(`the configuration does not load (${result.configProblems.join('; ')}): the interception is installed, with the defaults for what is wrong`, 'fix the file, then run this again (`ec2userkeyd config show` checks it)') + '\n',
      )
    }
    return result
  }
}
