// `resolve`: the dry run of the chain for one local user. Which chain applies and why, and for
// every method of it what it would do, read from IAM without issuing credentials (the optional
// `--issue` then issues once through the real broker). The typed result is the JSON contract.
import type {InstanceRole, RolePolicies} from '../iam/model.js'
import {applyNamePattern, MethodName} from '../config/schema.js'
import {UserError} from '../errors.js'
import {isIamName} from '../iam/names.js'
import type {LocalUser} from '../host/users.js'
import {identityAllows, trustAdmits} from '../policy/access.js'
import type {CredentialBroker} from '../methods/broker.js'
import {selectChain} from '../methods/chain.js'
import {ChainSoFar, compileFor, MethodDeps} from '../methods/methods.js'
import {describeInstanceRoleDenied, instanceRoleDenyPolicy} from '../methods/session.js'

export interface ResolveStep {
  method: MethodName
  outcome: 'issue' | 'skip' | 'error'
  reason: string
  roleArn?: string
  /** RestrictedInstanceRole: the compiler's warnings (statements left out, denied or changed). */
  warnings?: string[]
}

export interface ResolveResult {
  uid: number
  username: string
  chainSource: 'user' | 'uid' | 'default'
  chain: MethodName[]
  steps: ResolveStep[]
  result: {method: MethodName; roleArn: string} | null
  /** Only with --issue: the credentials issued once, without their secret parts. */
  issued?: {method: MethodName; accessKeyId: string; arn: string; expiration: string} | {error: string}
}

const caveat = (conditional: boolean) => (conditional ? ' (under a condition not checked here)' : '')

async function instanceRolePolicies(deps: MethodDeps, role: InstanceRole): Promise<RolePolicies> {
  const policies = await deps.source.getRolePolicies(role.name)
  if (!policies) throw new UserError('notFound', `instance role '${role.name}' not found in IAM`)
  return policies
}

/** Can the instance role call sts:AssumeRole on `targetArn`, by its own policies? */
function instanceMayAssume(policies: RolePolicies, targetArn: string) {
  const docs = [...policies.inline, ...policies.managed].map((p) => p.document)
  return identityAllows(docs, policies.permissionsBoundary?.document ?? null, 'sts:AssumeRole', targetArn)
}

type Explain = (deps: MethodDeps, user: LocalUser, role: InstanceRole, soFar: ChainSoFar) => Promise<ResolveStep & {identified?: string}>

const explain: Record<MethodName, Explain> = {
  async UserRole(deps, user, instance) {
    const name = applyNamePattern(deps.config.method_UserRole.role_name_pattern, user.name)
    if (!isIamName(name)) return {method: 'UserRole', outcome: 'skip', reason: `'${name}' cannot be an IAM role name`}
    const roleArn = `arn:${instance.arn.split(':')[1]}:iam::${instance.accountId}:role/${name}`
    const role = await deps.source.getRole(name)
    if (!role) return {method: 'UserRole', outcome: 'skip', reason: `role ${name} does not exist`, roleArn}
    const trust = trustAdmits(role.trustPolicy, instance.arn, instance.accountId)
    if (!trust.allowed) return {method: 'UserRole', outcome: 'skip', reason: `role ${name} exists but its trust policy does not admit the instance role: ${trust.how}`, roleArn: role.arn}
    const may = instanceMayAssume(await instanceRolePolicies(deps, instance), role.arn)
    if (!may.allowed) return {method: 'UserRole', outcome: 'skip', reason: `the instance role's policies do not allow sts:AssumeRole on ${role.arn}: ${may.how}`, roleArn: role.arn}
    return {method: 'UserRole', outcome: 'issue', reason: `would assume ${name}: it exists, ${trust.how}${caveat(trust.conditional)}, and the instance role may assume it${caveat(may.conditional)}`, roleArn: role.arn}
  },

  async CreateUserRole(deps, user) {
    if (!deps.syncRole) return {method: 'CreateUserRole', outcome: 'error', reason: 'roles sync is not available'}
    const plan = await deps.syncRole(user.name, {dryRun: true, source: deps.source})
    if (plan.status === 'no-iam-user') return {method: 'CreateUserRole', outcome: 'skip', reason: plan.error ?? 'no IAM user', roleArn: plan.roleArn}
    if (plan.status === 'failed') return {method: 'CreateUserRole', outcome: 'error', reason: `roles sync would fail: ${plan.error}`, roleArn: plan.roleArn}
    const what = plan.changes === 0 ? 'the role is in sync' : `roles sync would make ${plan.changes} change${plan.changes === 1 ? '' : 's'} first`
    return {method: 'CreateUserRole', outcome: 'issue', reason: `IAM user found; ${what}, then it would assume the role`, roleArn: plan.roleArn}
  },

  async RestrictedInstanceRole(deps, user, instance) {
    const pattern = deps.config.method_RestrictedInstanceRole.iam_name_pattern
    const iamName = applyNamePattern(pattern, user.name)
    const step = {method: 'RestrictedInstanceRole' as const, roleArn: instance.arn}
    if (!isIamName(iamName)) return {...step, outcome: 'skip', reason: `'${iamName}' cannot be an IAM user name`}
    const [policies, rolePolicies] = await Promise.all([deps.source.getUserPolicies(iamName), instanceRolePolicies(deps, instance)])
    if (!policies) return {...step, outcome: 'skip', reason: `no IAM user '${iamName}'`}
    const identified = `IAM user ${iamName}`
    const compiled = await compileFor(deps, user.name, policies, rolePolicies)
    const size = `${compiled.size.compressed} of ${compiled.size.limit} characters${compiled.policyArns.length ? `, ${compiled.policyArns.length} policy ARN${compiled.policyArns.length === 1 ? '' : 's'}` : ''}`
    if (!compiled.grantsAnything) return {...step, outcome: 'skip', reason: `nothing of IAM user ${iamName}'s permissions lies within the instance role`, identified}
    if (!compiled.size.fits) return {...step, outcome: 'skip', reason: `the session policy is too large: ${size}`, identified, warnings: compiled.warnings}
    const self = trustAdmits(rolePolicies.role.trustPolicy, instance.arn, instance.accountId)
    const warnings = compiled.warnings.length > 0 ? {warnings: compiled.warnings} : {}
    if (!self.allowed) return {...step, ...warnings, outcome: 'skip', reason: `the instance role does not trust itself, so it cannot assume itself with a session policy: ${self.how}`}
    return {...step, ...warnings, outcome: 'issue', reason: `would assume the instance role with IAM user ${iamName}'s session policy (${size})`}
  },

  async InstanceRole(deps, _user, instance, soFar) {
    if (soFar.identified)
      return {method: 'InstanceRole', outcome: 'skip', reason: `${soFar.identified} exists, and the instance role would grant more than it may do`, roleArn: instance.arn}
    const policy = instanceRoleDenyPolicy(deps.config)
    const what = policy ? `the instance role less ${describeInstanceRoleDenied(deps.config)}` : 'the instance role, unrestricted'
    const rolePolicies = await instanceRolePolicies(deps, instance)
    const self = trustAdmits(rolePolicies.role.trustPolicy, instance.arn, instance.accountId)
    const step = {method: 'InstanceRole' as const, roleArn: instance.arn}
    if (self.allowed) return {...step, outcome: 'issue', reason: `would assume ${what} (the instance role trusts itself${caveat(self.conditional)})`}
    if (deps.config.method_InstanceRole.fail_safe)
      return {...step, outcome: 'skip', reason: `the instance role does not trust itself (${self.how}) and fail_safe = True: no credentials`}
    return {...step, outcome: 'issue', reason: `the instance role does not trust itself; fail_safe = False, so it would hand out the instance's own, unrestricted credentials`}
  },
}

export async function resolveUser(deps: MethodDeps, user: LocalUser): Promise<ResolveResult> {
  const chain = selectChain(deps.config, user)
  const instance = await deps.source.getInstanceRole()
  const steps: ResolveStep[] = []
  const soFar: ChainSoFar = {}
  for (const method of chain.methods) {
    try {
      const {identified, ...step} = await explain[method](deps, user, instance, soFar)
      soFar.identified ??= identified
      steps.push(step)
    } catch (error) {
      steps.push({method, outcome: 'error', reason: error instanceof Error ? error.message : String(error)})
    }
  }
  // The daemon stops at the first method that issues, and at the first error (fail closed).
  const decisive = steps.find((s) => s.outcome !== 'skip')
  const result = decisive?.outcome === 'issue' && decisive.roleArn ? {method: decisive.method, roleArn: decisive.roleArn} : null
  return {uid: user.uid, username: user.name, chainSource: chain.source, chain: chain.methods, steps, result}
}

/** `resolve --issue`: one real issue through the broker, reported without secrets. */
export async function issueOnce(broker: CredentialBroker, user: LocalUser): Promise<NonNullable<ResolveResult['issued']>> {
  const outcome = await broker.credentialsFor(user)
  if (outcome.ok)
    return {method: outcome.method, accessKeyId: outcome.credentials.accessKeyId, arn: outcome.credentials.arn, expiration: outcome.credentials.expiration.toISOString()}
  const why = outcome.error ? `${outcome.error.method} failed: ${outcome.error.message}` : `no method issued (${outcome.skipped.map((s) => `${s.method}: ${s.reason}`).join('; ')})`
  return {error: why}
}
