// Role chaining, judged as AWS judges it. A RestrictedInstanceRole session is a session of the
// instance role: a trust policy that admits the instance role (the instance role's own, which
// must admit itself; every UserRole and CreateUserRole role's) admits the session, whose session
// policy is the IAM user's policies. The IAM user is not admitted by those trust policies. So the
// session may assume a role only where its trust policy would admit the IAM user alike; every
// other role, and every role this compiler cannot read (other accounts, roles made later), is
// denied to the session.
//
// A trust policy is a resource-based policy: in one account a statement naming the principal's
// own ARN grants the request by itself, one naming the account leaves it to the principal's
// identity policies, and an explicit Deny in either wins (IAM User Guide, "Policy evaluation
// logic" and "Session policies": permissions a resource-based policy grants to the role's ARN
// are limited by the session policy; the session policy here allows what the user's policies do).
import type {PolicyDocument, Statement} from '../iam/document.js'
import {statementsOf} from '../iam/document.js'
import {actionMatches, list} from './access.js'
import {conditionEntries, isPrincipalKey, judgePrincipalCondition, principalVariableKeys, Side, Verdict} from './principal.js'
import {canonicalJson, POLICY_VERSION} from './statement.js'

/**
 * Role chaining: sts:AssumeRole, and what AssumeRole may carry with it, each authorised by the
 * target's trust policy on its own: session tags, a SourceIdentity, provided contexts (trusted
 * identity propagation).
 */
export const CHAINING_ACTIONS = ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'sts:SetContext']

/** A principal as a trust policy sees it. */
export interface TrustedPrincipal {
  /** The IAM user's ARN; for the session, the role's ARN (what aws:PrincipalArn holds). */
  arn: string
  /** The unique id a Principal element shows for it (AIDA..., AROA...). */
  id: string
  /** The session only: `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`. */
  sessionArn?: string
  accountId: string
  /** Every way it can sign requests (the user's credentials; the session's one). */
  sides: Side[]
}

/**
 * Does a Principal element name this principal: 'direct' (its own ARN or id, or everyone: that
 * grants by itself), 'account' (its account: its identity policies decide), false, or 'unknown'.
 */
function names(principal: unknown, who: TrustedPrincipal): 'direct' | 'account' | false | 'unknown' {
  if (principal === '*') return 'direct'
  if (principal === null || typeof principal !== 'object' || Array.isArray(principal)) return 'unknown'
  const partition = who.arn.split(':')[1]
  let named: 'account' | false = false
  for (const p of list((principal as Record<string, unknown>).AWS)) {
    if (p === '*' || p === who.arn || p === who.id || (who.sessionArn !== undefined && p === who.sessionArn)) return 'direct'
    if (p === who.accountId || p === `arn:${partition}:iam::${who.accountId}:root`) named = 'account'
  }
  return named
}

/**
 * How one statement reads for one principal signing one way: 'void' (it does not apply),
 * 'opaque' (this compiler cannot say), or what it still depends on: the canonical JSON of its
 * conditions on request keys, which are the same whoever asks ('{}': it applies as it is).
 */
type View = 'void' | 'opaque' | string

function view(s: Statement, variables: boolean, who: TrustedPrincipal, side: Side): View {
  const named: Verdict = s.Principal !== undefined ? toVerdict(names(s.Principal, who)) : s.NotPrincipal !== undefined ? negate(toVerdict(names(s.NotPrincipal, who))) : 'unknown'
  if (named === false) return 'void'
  let opaque = named === 'unknown'
  const rest: Record<string, Record<string, unknown>> = {}
  for (const {operator, key, values} of conditionEntries(s.Condition ?? {})) {
    if (isPrincipalKey(key)) {
      const verdict = judgePrincipalCondition(operator, key, values, side, variables)
      if (verdict === false) return 'void'
      if (verdict === 'unknown') opaque = true
      continue
    }
    // A request key compared with a principal's value reads differently for each principal.
    if (variables && list(values).some((v) => principalVariableKeys(v).length > 0)) opaque = true
    ;(rest[operator.toLowerCase()] ??= {})[key.toLowerCase()] = values
  }
  return opaque ? 'opaque' : canonicalJson(rest)
}

const negate = (v: Verdict): Verdict => (v === 'unknown' ? 'unknown' : !v)
const toVerdict = (n: ReturnType<typeof names>): Verdict => (n === 'unknown' ? 'unknown' : n !== false)

export interface TrustReading {
  /** Some Allow of the trust policy may admit the session. */
  sessionMay: boolean
  /** Some Allow may admit the IAM user (with some of its credentials). */
  userMay: boolean
  /** Some Allow that may admit the IAM user names it directly (its ARN, or everyone): no identity policy needed. */
  userDirect: boolean
  /**
   * Whenever the trust policy admits the session, it admits the IAM user too, whatever
   * credentials the user signs with: each Allow that may admit the session admits the user on
   * the same request keys (or on any), and each Deny that may stop the user stops the session
   * on the same request keys (or on any). A sufficient test, not a complete one: where it
   * cannot show this it says false, and the session is denied the role.
   */
  alike: boolean
}

/** Reads a role's trust policy for `action` (sts:AssumeRole, sts:TagSession, ...). */
export function readTrust(trust: PolicyDocument, action: string, session: TrustedPrincipal, user: TrustedPrincipal): TrustReading {
  const variables = trust.Version === POLICY_VERSION
  let sessionMay = false
  let userMay = false
  let userDirect = false
  let alike = true
  for (const s of statementsOf(trust)) {
    if (!actionMatches(s, action)) continue
    const forUser = user.sides.map((side) => view(s, variables, user, side))
    // The session may sign more than one way too (with its SourceIdentity, or without it where a
    // role refuses it): each must be as admitted as the user.
    for (const sessionSide of session.sides) {
      const forSession = view(s, variables, session, sessionSide)
      if (s.Effect === 'Allow') {
        if (forSession === 'void') continue
        sessionMay = true
        if (!forUser.every((u) => u === '{}' || (forSession !== 'opaque' && u === forSession))) alike = false
      } else {
        for (const u of forUser) {
          if (u === 'void') continue
          if (!(forSession === '{}' || (u !== 'opaque' && forSession === u))) alike = false
        }
      }
    }
    if (s.Effect === 'Allow' && forUser.some((v) => v !== 'void')) {
      userMay = true
      if (s.Principal !== undefined && names(s.Principal, user) === 'direct') userDirect = true
    }
  }
  return {sessionMay, userMay, userDirect, alike: alike && sessionMay}
}
