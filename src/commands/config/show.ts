import {BaseCommand} from '../../cli/base-command.js'
import type {Config} from '../../lib/config/schema.js'
import {renderConfig} from '../../lib/render/config.js'

export default class ConfigShowCommand extends BaseCommand {
  static override summary = 'Print the effective configuration (the file merged over the defaults).'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --config fixtures/ec2userkeyd.conf --json',
  ]

  async run(): Promise<Config> {
    const {flags} = await this.parse(ConfigShowCommand)
    const config = await this.loadConfig(flags)
    if (!this.jsonEnabled()) this.log(renderConfig(config))
    return config
  }
}
