import {Args, Flags} from '@oclif/core'

import {BaseCommand} from '../../cli/base-command.js'
import {iamFlags} from '../../cli/flags.js'
import {ExitCode, InputError} from '../../lib/errors.js'
import {
  clearProgress,
  renderProgress,
  renderRolesSync,
  renderRoleSyncWarning,
} from '../../lib/render/roles-sync.js'
import type {RoleSyncResult} from '../../lib/roles/sync.js'
import {syncRoles} from '../../lib/stages/roles-sync.js'

/** The progress bar only pays for itself past a handful of users. */
const PROGRESS_MIN_USERS = 6

export default class RolesSyncCommand extends BaseCommand {
  static override summary = 'Create and update the per-user roles of the CreateUserRole method.'
  static override description =
    'For each local user, the role [method_CreateUserRole] role_name_pattern names is made to hold what the IAM user ' +
    "iam_name_pattern names holds: its and its groups' managed policies attached (past max_attached_policies, copied inline), " +
    'their inline policies with ${aws:username} and other principal values resolved, its permissions boundary, and a trust ' +
    'policy for the instance role. Anything else on the role is removed. Roles without the ec2userkeyd:managed tag are left ' +
    'alone unless --adopt. The plan is printed; with --dry-run nothing is changed. Exits non-zero if any user failed.'

  static override usage = '<%= command.id %> [USER...] [--all | --group NAME] [--dry-run] [--adopt]'

  static override examples = [
    '<%= config.bin %> <%= command.id %> alice bob',
    '<%= config.bin %> <%= command.id %> --all --dry-run',
    '<%= config.bin %> <%= command.id %> --group data-science --json',
    '<%= config.bin %> <%= command.id %> --all --dry-run --account fixtures/account.json --config fixtures/ec2userkeyd.conf',
  ]

  static override strict = false

  static override args = {
    user: Args.string({description: 'Local user names (any number); or use --all or --group'}),
  }

  static override flags = {
    ...iamFlags,
    all: Flags.boolean({summary: 'Every IAM user whose name fits [method_CreateUserRole] iam_name_pattern.'}),
    group: Flags.string({
      summary: 'Only the members of this IAM group (alone, or with --all).',
      helpValue: 'NAME',
    }),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing.'}),
    adopt: Flags.boolean({
      summary: 'Take over a role of the same name that lacks the ec2userkeyd:managed tag.',
    }),
  }

  async run(): Promise<RoleSyncResult> {
    const {argv, flags} = await this.parse(RolesSyncCommand)
    const users = argv as string[]
    if (users.length === 0 && !flags.all && !flags.group)
      throw new InputError('name the users whose roles to sync, or use --all or --group NAME', {
        suggestion: 'see --help',
      })
    if (users.length > 0 && (flags.all || flags.group))
      throw new InputError('name users or use --all/--group, not both', {suggestion: 'see --help'})
    if (flags.account && !flags['dry-run'])
      throw new InputError('with --account, roles sync can only plan: add --dry-run', {
        suggestion: 'or drop --account to sync live',
      })

    const config = await this.loadConfig(flags)
    // Live unless --account, which needs --dry-run (above): the writes go through the source's own client
    const {source, clients} = await this.iam(flags, config)
    const iam = flags['dry-run'] ? null : clients!.iam
    const drawProgress = process.stderr.isTTY === true
    const report = await syncRoles(
      {source, iam, config},
      {users, all: flags.all, group: flags.group},
      {
        dryRun: flags['dry-run'],
        adopt: flags.adopt,
        onProgress: (done, total) => {
          if (!drawProgress || total < PROGRESS_MIN_USERS) return
          process.stderr.write(done < total ? renderProgress(done, total) : clearProgress)
        },
      },
    )

    if (!this.jsonEnabled()) {
      this.log(renderRolesSync(report.result))
      for (const w of report.warnings) this.logToStderr(renderRoleSyncWarning(w.user, w.message))
    }
    // The whole result is printed first; a failed user only sets the exit status.
    if (report.failure) process.exitCode = ExitCode[report.failure]
    return report.result
  }
}
