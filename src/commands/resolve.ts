import {Flags} from '@oclif/core'

import {BaseCommand} from '../cli/base-command.js'
import {iamFlags} from '../cli/flags.js'
import {InputError} from '../lib/errors.js'
import {nssUserDatabase, passwdFileDatabase, requireUser} from '../lib/host/users.js'
import {selectChain} from '../lib/methods/chain.js'
import {createEngine} from '../lib/methods/engine.js'
import {issueOnce, resolveUser, ResolveResult} from '../lib/stages/resolve.js'
import {renderResolve} from '../lib/render/resolve.js'
import {renderWarningLine} from '../lib/render/text.js'

export default class ResolveCommand extends BaseCommand {
  static override summary = 'Dry-run the credential chain for a local user: which chain applies and what each method would do.'
  static override description =
    'Looks the user up in the system user database (getent passwd, so LDAP/SSSD users work; --passwd FILE offline), picks the ' +
    'chain as serve would (per_user_credential_methods, then per_uid_credential_methods, then credential_methods) and, for every ' +
    'method of it, reads IAM to tell what it would do, without issuing credentials. --issue issues once for real.'

  static override examples = [
    '<%= config.bin %> <%= command.id %> --uid 1001',
    '<%= config.bin %> <%= command.id %> --user alice --config fixtures/ec2userkeyd.conf --account fixtures/account.json --passwd fixtures/passwd',
    '<%= config.bin %> <%= command.id %> --user bob --issue --json',
  ]

  static override flags = {
    ...iamFlags,
    uid: Flags.integer({summary: 'The local user, by uid.', exactlyOne: ['uid', 'user'], min: 0}),
    user: Flags.string({summary: 'The local user, by name.', exactlyOne: ['uid', 'user']}),
    passwd: Flags.string({summary: 'Read local users from this passwd-format file instead of the system database (offline use).', helpValue: 'FILE'}),
    issue: Flags.boolean({summary: 'Issue credentials once for real and print the access key ID, session ARN and expiration (never the secret or token; live only).'}),
  }

  async run(): Promise<ResolveResult> {
    const {flags} = await this.parse(ResolveCommand)
    if (flags.issue && flags.account) throw new InputError('--issue needs live AWS access and cannot be used with --account', {suggestion: 'drop --account'})
    const config = await this.loadConfig(flags)
    const users = flags.passwd ? await passwdFileDatabase(flags.passwd) : nssUserDatabase()
    const user = await requireUser(users, flags.uid === undefined ? {name: flags.user!} : {uid: flags.uid})
    const engine = await createEngine({
      config,
      accountFile: flags.account,
      instanceRole: flags['instance-role'],
      env: process.env,
      warn: (message) => this.logToStderr(renderWarningLine(message)),
    })
    const result = await resolveUser(engine.deps, user)
    if (flags.issue) result.issued = await issueOnce(engine.broker, user)
    if (!this.jsonEnabled()) this.log(renderResolve(result, selectChain(config, user).rule))
    return result
  }
}
