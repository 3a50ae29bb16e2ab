// The four credential methods. Each turns a local user into the AssumeRole request it would
// make, or says the method is not for this user (NotForUser: the chain goes on), or fails
// (any other error: the chain stops and the user gets nothing).
import type {STSClient} from '@aws-sdk/client-sts'

import type {IamSource, RolePolicies, RoleTrust, UserPolicies} from '../iam/model.js'
import {applyNamePattern, Config, MethodName} from '../config/schema.js'
import {UserError} from '../errors.js'
import type {LocalUser} from '../host/users.js'
import type {ActionCatalog} from '../policy/catalog.js'
import {compileSessionPolicy, CompileResult} from '../policy/compiler.js'
import {isIamName} from '../iam/names.js'
import {AssumeRequest, Credentials, NotForUser} from './credentials.js'
import {instanceRoleDenyPolicy, sessionNameFor} from './session.js'

/** What roles sync did for one user, as CreateUserRole needs it. */
export interface RoleSyncOutcome {
  status: 'ok' | 'no-iam-user' | 'failed'
  roleArn: string
  /** How many changes were (or, planning, would be) made. */
  changes: number
  error: string | null
}

export interface MethodDeps {
  config: Config
  source: IamSource
  /** null offline: nothing can be issued, only explained. */
  sts: STSClient | null
  catalog: ActionCatalog
  /**
   * Brings the user's CreateUserRole role in line (apply), or plans it (dryRun), reading IAM
   * through `source` (the caller's: the broker follows what a request read).
   */
  syncRole?: (localUser: string, options: {dryRun: boolean; source: IamSource}) => Promise<RoleSyncOutcome>
  /** The instance's own credentials from the upstream IMDS (InstanceRole with fail_safe = False). */
  instanceCredentials?: () => Promise<Credentials>
  warn: (message: string) => void
}

export interface Prepared {
  request: AssumeRequest
  /** For RestrictedInstanceRole: the compile result behind the request. */
  compiled?: CompileResult
  /** For CreateUserRole: the role was just created or changed (IAM takes a moment to see it). */
  roleChanged?: boolean
  /** The user's IAM identity the request stands for, if any (see NotForUser.identified). */
  identity?: string
}

function request(deps: MethodDeps, user: LocalUser, roleArn: string, policy: string | null = null, policyArns: string[] = []): AssumeRequest {
  return {
    roleArn,
    sessionName: sessionNameFor(user.name),
    policy,
    policyArns,
    durationSeconds: deps.config.general.session_duration,
    sourceIdentity: deps.config.general.source_identity,
  }
}

async function instanceRole(deps: MethodDeps) {
  return deps.source.getInstanceRole()
}

/** A user or role name IAM could hold; anything else cannot exist, so the method is not for this user. */
export function requireIamName(name: string, what: string): string {
  if (!isIamName(name)) throw new NotForUser(`'${name}' cannot be an IAM ${what} name (characters [\\w+=,.@-], at most 64)`)
  return name
}

/** arn:PARTITION:iam::ACCOUNT:role/NAME for a role named by pattern (the Python tool's rule). */
async function patternRoleArn(deps: MethodDeps, pattern: string, user: LocalUser): Promise<{name: string; arn: string}> {
  const role = await instanceRole(deps)
  const partition = role.arn.split(':')[1] ?? 'aws'
  const name = requireIamName(applyNamePattern(pattern, user.name), 'role')
  return {name, arn: `arn:${partition}:iam::${role.accountId}:role/${name}`}
}

/**
 * The account's trust policies, or null when they cannot be read (the compiler then denies the
 * session every role: fail closed, with a warning).
 */
async function accountRoles(deps: MethodDeps): Promise<RoleTrust[] | null> {
  try {
    return await deps.source.listRoles()
  } catch (error) {
    deps.warn(`iam:ListRoles failed (${error instanceof Error ? error.message : String(error)}): RestrictedInstanceRole sessions may assume no role until it succeeds`)
    return null
  }
}

// Compiling costs milliseconds; the IAM reads it starts from are cached objects, so the result
// is cached against their identity and goes when they do.
const compiled = new WeakMap<UserPolicies, WeakMap<RolePolicies, WeakMap<object, Map<string, Promise<CompileResult>>>>>()
const NO_ROLES = {}

/** RestrictedInstanceRole's session policy for a local user with these IAM reads. */
export async function compileFor(deps: MethodDeps, localUser: string, user: UserPolicies, role: RolePolicies): Promise<CompileResult> {
  const roles = await accountRoles(deps)
  const session = {name: sessionNameFor(localUser), sourceIdentity: deps.config.general.source_identity ? sessionNameFor(localUser) : null}
  let byRole = compiled.get(user)
  if (!byRole) compiled.set(user, (byRole = new WeakMap()))
  let byRoles = byRole.get(role)
  if (!byRoles) byRole.set(role, (byRoles = new WeakMap()))
  let bySession = byRoles.get(roles ?? NO_ROLES)
  if (!bySession) byRoles.set(roles ?? NO_ROLES, (bySession = new Map()))
  const key = JSON.stringify(session)
  let result = bySession.get(key)
  if (!result) {
    const accountId = role.role.arn.split(':')[4]
    result = compileSessionPolicy(user, role, {compress: deps.config.method_RestrictedInstanceRole.compress_user_policy, accountId, catalog: deps.catalog, roles, session})
    bySession.set(key, result)
  }
  return result
}

/** An earlier method of the chain found the user's IAM identity and could not serve it. */
export interface ChainSoFar {
  identified?: string
}

/** InstanceRole is for users without an IAM identity of their own. */
export function refuseIdentified(soFar: ChainSoFar): void {
  if (soFar.identified)
    throw new NotForUser(`${soFar.identified} exists, and the instance role would grant more than it may do`, undefined, soFar.identified)
}

export const prepare: Record<MethodName, (deps: MethodDeps, user: LocalUser, soFar: ChainSoFar) => Promise<Prepared>> = {
  async UserRole(deps, user) {
    const role = await patternRoleArn(deps, deps.config.method_UserRole.role_name_pattern, user)
    return {request: request(deps, user, role.arn)}
  },

  async CreateUserRole(deps, user) {
    if (!deps.syncRole) throw new UserError('unexpected', 'CreateUserRole is not available here (no roles sync)')
    const outcome = await deps.syncRole(user.name, {dryRun: false, source: deps.source})
    if (outcome.status === 'no-iam-user') throw new NotForUser(outcome.error ?? `no IAM user for ${user.name}`)
    if (outcome.status === 'failed') throw new UserError('unexpected', `roles sync for ${user.name} failed: ${outcome.error}`)
    return {request: request(deps, user, outcome.roleArn), roleChanged: outcome.changes > 0, identity: `the IAM user of ${user.name}`}
  },

  async RestrictedInstanceRole(deps, user) {
    const pattern = deps.config.method_RestrictedInstanceRole.iam_name_pattern
    const iamName = requireIamName(applyNamePattern(pattern, user.name), 'user')
    const role = await instanceRole(deps)
    const [policies, rolePolicies] = await Promise.all([deps.source.getUserPolicies(iamName), deps.source.getRolePolicies(role.name)])
    if (!policies) throw new NotForUser(`no IAM user '${iamName}'`)
    if (!rolePolicies) throw new UserError('notFound', `instance role '${role.name}' not found in IAM`)
    const result = await compileFor(deps, user.name, policies, rolePolicies)
    const identity = `IAM user ${iamName}`
    if (!result.grantsAnything) throw new NotForUser(`nothing of ${identity}'s permissions lies within the instance role`, undefined, identity)
    if (!result.size.fits) {
      const warning = `the session policy for ${user.name} is ${result.size.compressed} characters, over AWS's limit of ${result.size.limit}`
      throw new NotForUser(warning, warning, identity)
    }
    // Never the bare instance role: no restriction to send means no credentials.
    if (!result.policy && result.policyArns.length === 0) throw new UserError('unexpected', `the compiled session policy for ${user.name} is empty`)
    return {request: request(deps, user, role.arn, result.policy, result.policyArns), compiled: result, identity}
  },

  async InstanceRole(deps, user, soFar) {
    refuseIdentified(soFar)
    const role = await instanceRole(deps)
    return {request: request(deps, user, role.arn, instanceRoleDenyPolicy(deps.config))}
  },
}
