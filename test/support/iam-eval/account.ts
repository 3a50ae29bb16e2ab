// The whole of one request within one account, as the IAM User Guide's "Policy evaluation logic"
// describes it, for the two principals the compiler is judged by: the IAM user, and the role
// session RestrictedInstanceRole creates. Besides identity policies and permissions boundaries
// (evaluate.ts) it models the resource-based policies that name a principal: a role's trust
// policy for sts:AssumeRole and what AssumeRole carries (sts:TagSession, sts:SetSourceIdentity),
// and any other resource policy (a bucket, queue or key policy) that names the instance role.
//
// The rules taken from the guide ("Policy evaluation logic", "Session policies", "Permissions
// boundaries", "How IAM roles differ from resource-based policies"):
// - an explicit Deny in any policy that applies wins;
// - a resource-based policy that names the principal's own ARN (or `*`) grants by itself within
//   the account; one that names the account (`123456789012`, `arn:aws:iam::123456789012:root`)
//   only lets the principal's identity policies decide;
// - role trust policies must always admit the caller (identity policies alone never suffice);
// - for a role session, the session policies limit what the role's identity policies and a
//   resource policy naming the role's ARN grant (an implicit deny in them is enough); the role's
//   permissions boundary limits both too;
// - for an IAM user, a resource policy naming the user's ARN is not limited by its boundary.
// Not modelled: resource policies naming the session's own ARN (AWS does not limit those by the
// session policy: a documented limit of RestrictedInstanceRole), SCPs and RCPs, cross-account
// evaluation (a role in another account is modelled as one whose trust names the instance role).
import type {PolicyDocument, Statement} from '../../../src/lib/iam/document.js'
import {evaluatePolicies, statementApplies, type PrincipalPolicies} from './evaluate.js'
import {PolicyEvaluationError, type Decision, type RequestContext} from './types.js'

/** Who a Principal element may name. */
export interface PrincipalRef {
  /** Every ARN that names it: the user's; for a session, the role's and the session's. */
  arns: string[]
  /** Unique ids a Principal element may show instead (AIDA..., AROA...). */
  ids: string[]
  accountId: string
}

function values(v: unknown): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v
  throw new PolicyEvaluationError(`a Principal entry must be a string or a list of strings: ${JSON.stringify(v)}`)
}

/** 'direct': it names the principal itself (or everyone); 'account': its account; null: not it. */
function principalNames(principal: unknown, who: PrincipalRef): 'direct' | 'account' | null {
  if (principal === '*') return 'direct'
  if (principal === null || typeof principal !== 'object' || Array.isArray(principal))
    throw new PolicyEvaluationError(`unreadable Principal ${JSON.stringify(principal)}`)
  let hit: 'direct' | 'account' | null = null
  for (const [type, raw] of Object.entries(principal as Record<string, unknown>)) {
    if (type !== 'AWS') continue // Service, Federated, CanonicalUser never name an IAM principal
    for (const p of values(raw)) {
      if (p === '*' || who.arns.includes(p) || who.ids.includes(p)) return 'direct'
      if (p === who.accountId || new RegExp(`^arn:aws[a-z-]*:iam::${who.accountId}:root$`).test(p)) hit = 'account'
    }
  }
  return hit
}

function statementsIn(doc: PolicyDocument): Statement[] {
  return Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
}

/** A resource-based policy for one principal: its decision, and whether an Allow named the principal itself. */
export function resourcePolicyDecision(doc: PolicyDocument, who: PrincipalRef, request: RequestContext): {decision: Decision; direct: boolean} {
  let allowed: 'direct' | 'account' | null = null
  for (const st of statementsIn(doc)) {
    let named: 'direct' | 'account' | null
    if (st.Principal !== undefined) named = principalNames(st.Principal, who)
    else if (st.NotPrincipal !== undefined) named = principalNames(st.NotPrincipal, who) === null ? 'direct' : null
    else throw new PolicyEvaluationError('a resource-based policy statement needs a Principal or NotPrincipal')
    if (named === null || !statementApplies(st, doc.Version, request)) continue
    if (st.Effect === 'Deny') return {decision: 'ExplicitDeny', direct: false}
    if (allowed !== 'direct') allowed = named
  }
  return allowed === null ? {decision: 'ImplicitDeny', direct: false} : {decision: 'Allow', direct: allowed === 'direct'}
}

/** The policy that decides for the target of a request: a role's trust policy, or another resource policy. */
export type Target = {trust: PolicyDocument | null} | {resourcePolicy: PolicyDocument} | null

export interface UserWorld extends PrincipalPolicies {
  principal: PrincipalRef
}

export interface SessionWorld {
  /** The role's own identity policies and boundary. */
  role: PrincipalPolicies
  /** The session policies (inline and by ARN); [] for a session without any. */
  sessionPolicies: PolicyDocument[]
  principal: PrincipalRef
}

/**
 * May the IAM user make the request? `target` is the role's trust policy for sts:AssumeRole
 * (null: no such role, nobody may) or the target resource's policy, if any.
 */
export function userMay(user: UserWorld, request: RequestContext, target: Target): boolean {
  const identity = evaluatePolicies(user.identity, request)
  const boundary = user.boundary ? evaluatePolicies([user.boundary], request) : 'Allow'
  const resource = target && 'trust' in target ? (target.trust ? resourcePolicyDecision(target.trust, user.principal, request) : null) : target ? resourcePolicyDecision(target.resourcePolicy, user.principal, request) : null
  if (identity === 'ExplicitDeny' || boundary === 'ExplicitDeny' || resource?.decision === 'ExplicitDeny') return false
  const byIdentity = identity === 'Allow' && boundary === 'Allow'
  if (target && 'trust' in target) return resource?.decision === 'Allow' && (resource.direct || byIdentity)
  return byIdentity || (resource?.decision === 'Allow' && resource.direct)
}

/** May the role session make the request? Same `target` as userMay. */
export function sessionMay(session: SessionWorld, request: RequestContext, target: Target): boolean {
  const identity = evaluatePolicies(session.role.identity, request)
  const boundary = session.role.boundary ? evaluatePolicies([session.role.boundary], request) : 'Allow'
  const sessionPolicy = session.sessionPolicies.length > 0 ? evaluatePolicies(session.sessionPolicies, request) : 'Allow'
  const resource = target && 'trust' in target ? (target.trust ? resourcePolicyDecision(target.trust, session.principal, request) : null) : target ? resourcePolicyDecision(target.resourcePolicy, session.principal, request) : null
  if ([identity, boundary, sessionPolicy, resource?.decision].includes('ExplicitDeny')) return false
  // The session policy and the role's boundary limit the role's grants from either side.
  if (sessionPolicy !== 'Allow' || boundary !== 'Allow') return false
  if (target && 'trust' in target) return resource?.decision === 'Allow' && (resource.direct || identity === 'Allow')
  return identity === 'Allow' || (resource?.decision === 'Allow' && resource.direct)
}
