import {BaseCommand} from '../../cli/base-command.js'
import {RegionChoice, resolveRegion} from '../../lib/aws/region.js'
import type {Config} from '../../lib/config/schema.js'
import {renderConfig} from '../../lib/render/config.js'

export type ConfigShowResult = Pick<Config, 'file'> & {region: RegionChoice} & Omit<Config, 'file'>

export default class ConfigShowCommand extends BaseCommand {
  static override summary = 'Print the effective configuration (the file merged over the defaults), and the AWS region in use.'
  static override description =
    'The region is AWS_REGION or AWS_DEFAULT_REGION when set, else the instance\'s own (placement/region from the instance ' +
    'metadata service), else us-east-1; its partition follows from it.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --config fixtures/ec2userkeyd.conf --json',
  ]

  async run(): Promise<ConfigShowResult> {
    const {flags} = await this.parse(ConfigShowCommand)
    const config = await this.loadConfig(flags)
    const region = await resolveRegion({env: process.env})
    if (!this.jsonEnabled()) this.log(renderConfig(config, region))
    const {file, ...sections} = config
    return {file, region, ...sections}
  }
}
