// Whether a role's trust policy lets a caller perform an sts action on it: the resource-
// policy half of AssumeRole authorisation. The caller's own identity policies are out of
// scope (the double treats every session as allowed to call sts:AssumeRole); only the
// trust policy decides, and anything it cannot evaluate fails closed.
import type {Statement, PolicyDocument} from '../../../src/lib/iam/document.js'
import {statementsOf} from '../../../src/lib/iam/document.js'

export interface TrustCaller {
  /** The role ARN behind the caller's session (with path): what aws:PrincipalArn holds. */
  roleArn: string
  /** The session ARN, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`. */
  sessionArn: string
  accountId: string
}

/** IAM wildcard match: `*` any run, `?` one character. */
export function wildcardMatch(pattern: string, value: string, ignoreCase: boolean): boolean {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(value)
}

function list(v: unknown): string[] {
  if (typeof v === 'string') return [v]
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string')
  return []
}

function actionApplies(st: Statement, action: string): boolean {
  // Action names are case-insensitive in IAM.
  if (st.Action !== undefined) return list(st.Action).some((p) => wildcardMatch(p, action, true))
  if (st.NotAction !== undefined) return !list(st.NotAction).some((p) => wildcardMatch(p, action, true))
  return false
}

/** Does a Principal element name the caller? Only the AWS principal type can. */
function principalNames(principal: unknown, caller: TrustCaller): boolean {
  if (principal === '*') return true
  if (principal === null || typeof principal !== 'object' || Array.isArray(principal)) return false
  const aws = list((principal as Record<string, unknown>).AWS)
  return aws.some(
    (p) =>
      p === '*' ||
      p === caller.roleArn ||
      p === caller.sessionArn ||
      p === caller.accountId ||
      p === `arn:${caller.roleArn.split(':')[1] || 'aws'}:iam::${caller.accountId}:root`,
  )
}

const CONDITION_MATCHERS: Record<string, (pattern: string, value: string) => boolean> = {
  StringEquals: (p, v) => p === v,
  StringLike: (p, v) => wildcardMatch(p, v, false),
  // ArnEquals and ArnLike behave alike in IAM: both take wildcards.
  ArnEquals: (p, v) => wildcardMatch(p, v, false),
  ArnLike: (p, v) => wildcardMatch(p, v, false),
}

/**
 * true when every condition holds, false when one does not, null when the block uses an
 * operator or key the double does not model (the caller then fails closed).
 */
function conditionsHold(st: Statement, caller: TrustCaller): boolean | null {
  const context: Record<string, string> = {'aws:principalarn': caller.roleArn}
  let holds = true
  for (const [operator, entries] of Object.entries(st.Condition ?? {})) {
    const matcher = CONDITION_MATCHERS[operator]
    if (!matcher || entries === null || typeof entries !== 'object') return null
    for (const [key, expected] of Object.entries(entries)) {
      const value = context[key.toLowerCase()]
      if (value === undefined) return null
      const patterns = (Array.isArray(expected) ? expected : [expected]).map(String)
      if (!patterns.some((p) => matcher(p, value))) holds = false
    }
  }
  return holds
}

export type TrustDecision = 'allowed' | 'explicitDeny' | 'implicitDeny'

export function evaluateTrust(trust: PolicyDocument, action: string, caller: TrustCaller): TrustDecision {
  let allowed = false
  for (const st of statementsOf(trust)) {
    if (!actionApplies(st, action)) continue
    const conditions = conditionsHold(st, caller)
    if (st.Effect === 'Deny') {
      const names =
        st.Principal !== undefined
          ? principalNames(st.Principal, caller)
          : st.NotPrincipal !== undefined && !principalNames(st.NotPrincipal, caller)
      // A Deny whose condition cannot be evaluated is taken to apply: fail closed.
      if (names && conditions !== false) return 'explicitDeny'
    } else if (st.Principal !== undefined && principalNames(st.Principal, caller) && conditions === true) {
      // An Allow with NotPrincipal is not valid in a trust policy, so it never admits.
      allowed = true
    }
  }
  return allowed ? 'allowed' : 'implicitDeny'
}
