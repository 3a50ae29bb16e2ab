// Static answers to the two questions `resolve` asks of IAM documents: does a role's trust
// policy admit a principal, and do identity policies allow one action on one resource. They
// report, they do not decide: conditions are not evaluated but flagged, and AWS has the last
// word when the daemon actually calls AssumeRole.
import {PolicyDocument, Statement, statementsOf} from '../iam/document.js'
import {globMatches} from './glob.js'

export interface AccessAnswer {
  allowed: boolean
  /** An Allow that would apply carries a Condition the check did not evaluate. */
  conditional: boolean
  /** How it was allowed or why not, for a human. */
  how: string
}

/** A policy element's values: a string or a list of strings. */
export const list = (v: unknown): string[] => (typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])

/** Does the statement's Action (or NotAction) cover the action. */
export function actionMatches(s: Statement, action: string): boolean {
  const a = action.toLowerCase()
  if (s.Action !== undefined) return list(s.Action).some((p) => globMatches(p.toLowerCase(), a))
  if (s.NotAction !== undefined) return !list(s.NotAction).some((p) => globMatches(p.toLowerCase(), a))
  return false
}

function resourceMatches(s: Statement, resource: string): boolean {
  if (s.Resource !== undefined) return list(s.Resource).some((p) => globMatches(p, resource))
  if (s.NotResource !== undefined) return !list(s.NotResource).some((p) => globMatches(p, resource))
  return false
}

/** Which entry of a trust statement's Principal names the role (by ARN, account, or anyone). */
function principalNames(principal: unknown, roleArn: string, accountId: string): string | null {
  if (principal === '*') return '"*"'
  if (principal === null || typeof principal !== 'object') return null
  for (const p of list((principal as Record<string, unknown>).AWS)) {
    if (p === roleArn) return 'the role ARN'
    if (p === '*') return '"*"'
    if (p === accountId || p === `arn:${roleArn.split(':')[1]}:iam::${accountId}:root`) return 'the account root'
  }
  return null
}

/** Does the trust policy let `roleArn` (of `accountId`) perform `action` on the role? */
export function trustAdmits(trust: PolicyDocument, roleArn: string, accountId: string, action = 'sts:AssumeRole'): AccessAnswer {
  let allow: AccessAnswer | null = null
  for (const s of statementsOf(trust)) {
    if (!actionMatches(s, action)) continue
    const named = principalNames(s.Principal, roleArn, accountId)
    if (s.Effect === 'Deny' && (named || s.NotPrincipal !== undefined)) return {allowed: false, conditional: s.Condition !== undefined, how: `denied by a Deny statement for ${action}`}
    if (s.Effect === 'Allow' && named && (!allow || allow.conditional)) allow = {allowed: true, conditional: s.Condition !== undefined, how: `trusted through ${named}`}
  }
  return allow ?? {allowed: false, conditional: false, how: `no statement admits ${roleArn} for ${action}`}
}

/** Do the identity policies (and a permissions boundary, if any) allow `action` on `resource`? */
export function identityAllows(docs: PolicyDocument[], boundary: PolicyDocument | null, action: string, resource: string): AccessAnswer {
  const verdict = (ds: PolicyDocument[]): AccessAnswer => {
    let allow: AccessAnswer | null = null
    for (const s of ds.flatMap(statementsOf)) {
      if (!actionMatches(s, action) || !resourceMatches(s, resource)) continue
      if (s.Effect === 'Deny' && s.Condition === undefined) return {allowed: false, conditional: false, how: `denied by a Deny statement for ${action}`}
      if (s.Effect === 'Allow' && (!allow || allow.conditional)) allow = {allowed: true, conditional: s.Condition !== undefined, how: `allowed`}
    }
    return allow ?? {allowed: false, conditional: false, how: `no statement allows ${action} on ${resource}`}
  }
  const own = verdict(docs)
  if (!own.allowed || !boundary) return own
  const bounded = verdict([boundary])
  return bounded.allowed ? {...own, conditional: own.conditional || bounded.conditional} : {...bounded, how: `the permissions boundary: ${bounded.how}`}
}
