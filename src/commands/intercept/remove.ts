import {BaseCommand} from '../../cli/base-command.js'
import {removeHostInterception, requireRoot} from '../../lib/daemon/intercept.js'
import type {RemovedFamily} from '../../lib/host/iptables.js'
import {renderRemove} from '../../lib/render/intercept.js'

export default class InterceptRemoveCommand extends BaseCommand {
  static override summary = 'Remove every iptables rule and chain of ec2userkeyd (both families): the only way they go.'
  static override description =
    'After this, non-root users\' metadata requests reach the real IMDS again, and with it the instance role. ' +
    'Packages run it on uninstall; stop ec2userkeyd.service and ec2userkeyd-intercept.service first, or serve installs them again.'

  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async run(): Promise<{removed: RemovedFamily[]}> {
    const {flags} = await this.parse(InterceptRemoveCommand)
    const config = await this.loadConfig(flags)
    requireRoot(process.getuid!(), 'remove')
    const result = await removeHostInterception({config})
    if (!this.jsonEnabled()) this.log(renderRemove(result))
    return result
  }
}
