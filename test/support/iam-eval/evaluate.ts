// The referee: an IAM policy evaluator written from the AWS documentation alone, sharing no
// matching code with src/, so a test can check the session-policy compiler against it.
//
// Within one set of policies ("Policy evaluation logic"): a matching Deny statement is an explicit
// deny; otherwise a matching Allow allows; otherwise the request is implicitly denied. Across sets,
// an identity-based policy and a permissions boundary (and, for a role session, the session
// policies) must each allow, and an explicit deny in any of them wins.
//
// A statement matches when its Action (or NotAction), its Resource (or NotResource) and its
// Condition all match. Actions compare case-insensitively, resources case-sensitively; `*` and `?`
// are the only wildcards and `*` crosses `:` and `/`. See conditions.ts and variables.ts for the
// rest. Anything the referee cannot read faithfully throws PolicyEvaluationError.
import type {PolicyDocument, Statement} from '../../../src/lib/iam/document.js'
import {
  evaluateCondition,
  parseCidr,
  parseDate,
  parseNumber,
  parseOperator,
  policyValues,
} from './conditions.js'
import {matchGlob, matchParts} from './glob.js'
import {
  contextLookup,
  type ContextLookup,
  type Decision,
  PolicyEvaluationError,
  type RequestContext,
} from './types.js'
import {expandVariables, VARIABLES_VERSION} from './variables.js'

export {PolicyEvaluationError} from './types.js'
export type {ContextMap, ContextValue, Decision, RequestContext} from './types.js'

const KNOWN_VERSIONS = new Set([undefined, '2008-10-17', VARIABLES_VERSION])

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

function statementsIn(doc: PolicyDocument): Statement[] {
  return Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
}

const validated = new WeakSet<PolicyDocument>()

/**
 * Rejects what IAM would reject for identity-based, boundary and session policies, and anything
 * this referee does not model, before any request is looked at — so a bad policy fails loudly
 * rather than quietly matching nothing.
 */
export function validatePolicy(doc: PolicyDocument): void {
  if (validated.has(doc)) return
  if (!KNOWN_VERSIONS.has(doc.Version))
    throw new PolicyEvaluationError(`unknown policy Version ${JSON.stringify(doc.Version)}`)
  statementsIn(doc).forEach((st, i) => {
    const where = `statement ${st.Sid ? `'${st.Sid}'` : i + 1}`
    if (st.Effect !== 'Allow' && st.Effect !== 'Deny')
      throw new PolicyEvaluationError(`${where} has Effect ${JSON.stringify(st.Effect)}`)
    if ((st.Action === undefined) === (st.NotAction === undefined))
      throw new PolicyEvaluationError(`${where} needs exactly one of Action and NotAction`)
    if ((st.Resource === undefined) === (st.NotResource === undefined))
      throw new PolicyEvaluationError(`${where} needs exactly one of Resource and NotResource`)
    if (st.Principal !== undefined || st.NotPrincipal !== undefined)
      throw new PolicyEvaluationError(
        `${where} names a Principal, which identity and session policies cannot`,
      )
    for (const [operator, keys] of Object.entries(st.Condition ?? {})) {
      const op = parseOperator(operator)
      if (keys === null || typeof keys !== 'object' || Array.isArray(keys))
        throw new PolicyEvaluationError(`${where}: condition operator '${operator}' must map keys to values`)
      for (const raw of Object.values(keys)) {
        for (const value of policyValues(raw)) {
          const bad =
            (op.family === 'Numeric' && parseNumber(value) === undefined) ||
            (op.family === 'Date' && parseDate(value) === undefined) ||
            (op.family === 'Ip' && parseCidr(value) === undefined) ||
            ((op.family === 'Bool' || op.family === 'Null') && !/^(true|false)$/i.test(value))
          if (bad)
            throw new PolicyEvaluationError(
              `${where}: ${operator} value ${JSON.stringify(value)} is malformed`,
            )
        }
      }
    }
  })
  validated.add(doc)
}

function actionMatches(patterns: string[], action: string): boolean {
  return patterns.some((p) => matchGlob(p, action, true))
}

function resourceMatches(
  patterns: string[],
  resource: string,
  lookup: ContextLookup,
  variables: boolean,
): boolean {
  return patterns.some((p) => {
    const parts = expandVariables(p, lookup, variables)
    // "the resource that includes a policy variable with no value will not match any resource"
    return parts !== null && matchParts(parts, resource)
  })
}

/** Whether one statement applies to the request (its Effect is the caller's business). */
export function statementApplies(
  st: Statement,
  version: string | undefined,
  request: RequestContext,
): boolean {
  const lookup = contextLookup(request.context)
  const variables = version === VARIABLES_VERSION
  const actionHit =
    st.Action !== undefined
      ? actionMatches(list(st.Action), request.action)
      : !actionMatches(list(st.NotAction), request.action)
  if (!actionHit) return false
  const resourceHit =
    st.Resource !== undefined
      ? resourceMatches(list(st.Resource), request.resource, lookup, variables)
      : !resourceMatches(list(st.NotResource), request.resource, lookup, variables)
  if (!resourceHit) return false
  return evaluateCondition(st.Condition, lookup, variables)
}

/** One policy set: any matching Deny → ExplicitDeny; else any matching Allow → Allow; else ImplicitDeny. */
export function evaluatePolicies(policies: readonly PolicyDocument[], request: RequestContext): Decision {
  policies.forEach(validatePolicy)
  let allowed = false
  for (const doc of policies) {
    for (const st of statementsIn(doc)) {
      if (st.Effect === 'Allow' && allowed) continue // only a Deny can still change the answer
      if (!statementApplies(st, doc.Version, request)) continue
      if (st.Effect === 'Deny') return 'ExplicitDeny'
      allowed = true
    }
  }
  return allowed ? 'Allow' : 'ImplicitDeny'
}

/** An IAM principal's own policies: identity-based policies and an optional permissions boundary. */
export interface PrincipalPolicies {
  identity: PolicyDocument[]
  boundary?: PolicyDocument
}

function allAllow(decisions: Decision[]): boolean {
  return !decisions.includes('ExplicitDeny') && decisions.every((d) => d === 'Allow')
}

/**
 * What an IAM user may do (same account, no resource policy or SCP in play): some identity policy
 * allows, the boundary (if any) allows, and neither holds a matching Deny.
 */
export function userAllows(user: PrincipalPolicies, request: RequestContext): boolean {
  const decisions = [evaluatePolicies(user.identity, request)]
  if (user.boundary) decisions.push(evaluatePolicies([user.boundary], request))
  return allAllow(decisions)
}

/**
 * What a role session may do: the role's identity policies allow, its boundary (if any) allows,
 * the session policies allow, and none of them holds a matching Deny. The session policies (inline
 * plus managed-by-ARN) count as one set, so any one of them allowing is enough; a session without
 * session policies has the role's permissions.
 */
export function sessionAllows(
  role: PrincipalPolicies,
  session: readonly PolicyDocument[],
  request: RequestContext,
): boolean {
  const decisions = [evaluatePolicies(role.identity, request)]
  if (role.boundary) decisions.push(evaluatePolicies([role.boundary], request))
  if (session.length > 0) decisions.push(evaluatePolicies(session, request))
  return allAllow(decisions)
}
