import {Args} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {iamFlags} from '../../cli/flags.js'
import {dumpUserPolicies, PolicyDump} from '../../lib/stages/dump.js'
import {renderPolicyDump} from '../../lib/render/policy-dump.js'

export default class PolicyDumpCommand extends BaseCommand {
  static override summary = "List every policy that applies to a user's IAM user."
  static override description =
    'USER is the local (UNIX) user name; the IAM user is [method_RestrictedInstanceRole] iam_name_pattern applied to it. ' +
    'Shows user inline and managed policies, group inline and managed policies (with the group), and the permissions boundary, ' +
    'managed policies at their default version.'

  static override examples = [
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> alice --account fixtures/account.json --config fixtures/ec2userkeyd.conf',
    '<%= config.bin %> <%= command.id %> alice --json',
  ]

  static override args = {
    user: Args.string({description: 'Local user name', required: true}),
  }

  static override flags = {...iamFlags}

  async run(): Promise<PolicyDump> {
    const {args, flags} = await this.parse(PolicyDumpCommand)
    const config = await this.loadConfig(flags)
    const {source} = await this.iam(flags, config)
    const dump = await dumpUserPolicies(source, config, args.user)
    if (!this.jsonEnabled()) this.log(renderPolicyDump(dump))
    return dump
  }
}
