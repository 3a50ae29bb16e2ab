import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {iamFlags} from '../../cli/flags.js'
import {ExitCode, InputError} from '../../lib/errors.js'
import {createActionCatalog} from '../../lib/policy/catalog.js'
import {checkPackedPolicySize, compressUserPolicy, CompressResult} from '../../lib/stages/compress.js'
import {renderCompress} from '../../lib/render/policy-compress.js'

export default class PolicyCompressCommand extends BaseCommand {
  static override summary = 'Show the session policy RestrictedInstanceRole would send for a user, and its size.'
  static override description =
    'Compiles the IAM user\'s policies and permissions boundary against the instance role into the inline Policy and ' +
    'PolicyArns of AssumeRole, measuring each compiler stage against the 2,048-character limit. Without compression ' +
    '([method_RestrictedInstanceRole] compress_user_policy = False, or --no-compress) only the correctness steps run. ' +
    'Exits 6 (after printing it) when the policy does not fit.'

  static override examples = [
    '<%= config.bin %> <%= command.id %> bob',
    '<%= config.bin %> <%= command.id %> bob --account fixtures/account.json --config fixtures/ec2userkeyd.conf',
    '<%= config.bin %> <%= command.id %> dave --account fixtures/account.json --instance-role analytics-host --compress --no-policy-arns --json',
  ]

  static override args = {user: Args.string({description: 'Local user name', required: true})}

  static override flags = {
    ...iamFlags,
    compress: Flags.boolean({allowNo: true, summary: 'Run the compression steps (default: compress_user_policy).'}),
    prune: Flags.boolean({allowNo: true, default: true, summary: 'Step c: prune against the instance role.'}),
    merge: Flags.boolean({allowNo: true, default: true, summary: 'Step d: merge statements.'}),
    wildcards: Flags.boolean({allowNo: true, default: true, summary: 'Step e: collapse actions into wildcards.'}),
    'policy-arns': Flags.boolean({allowNo: true, default: true, summary: 'Step f: pass managed policies by ARN.'}),
    'live-check': Flags.boolean({summary: 'Make one real AssumeRole with the result and report AWS\'s PackedPolicySize (live only; prints no credentials).'}),
  }

  async run(): Promise<CompressResult> {
    const {args, flags} = await this.parse(PolicyCompressCommand)
    if (flags['live-check'] && flags.account)
      throw new InputError('--live-check needs live AWS access and cannot be used with --account', {suggestion: 'drop --account'})
    const config = await this.loadConfig(flags)
    const {source, clients} = await this.iam(flags, config)
    const result = await compressUserPolicy(source, config, args.user, {
      compress: flags.compress,
      disable: {prune: !flags.prune, merge: !flags.merge, wildcards: !flags.wildcards, policyArns: !flags['policy-arns']},
      catalog: createActionCatalog(),
    })
    // --live-check is live (refused with --account above): the source's own STS client
    if (flags['live-check']) result.liveCheck = await checkPackedPolicySize(clients!.sts, result)
    if (!this.jsonEnabled()) this.log(renderCompress(result))
    // The policy is shown whole either way; the exit code says it cannot be used as it is.
    if (!result.size.fits) process.exitCode = ExitCode.tooLarge
    return result
  }
}
