// Step a of the compiler: what differs between the IAM user and the role session that will act
// for it. A role session has no aws:username, its own aws:userid, aws:PrincipalArn,
// aws:PrincipalType and tags, so policy variables and conditions on those keys must be decided
// for the user at compile time, never left for AWS to judge against the session.
import type {ConditionBlock} from './document.js'
import {globMatches} from './glob.js'

export interface PrincipalContext {
  username: string
  userid: string
  arn: string
  tags: Record<string, string>
}

/** Keys whose value AWS takes from the principal, which is different in the session. */
export function isPrincipalKey(key: string): boolean {
  const k = key.toLowerCase()
  return ['aws:username', 'aws:userid', 'aws:principalarn', 'aws:principaltype', 'aws:sourceidentity'].includes(k) || k.startsWith('aws:principaltag/')
}

/** The IAM user's value of a principal key; undefined when the user's requests lack it. */
export function principalValue(ctx: PrincipalContext, key: string): string | undefined {
  const k = key.toLowerCase()
  if (k === 'aws:username') return ctx.username
  if (k === 'aws:userid') return ctx.userid
  if (k === 'aws:principalarn') return ctx.arn
  if (k === 'aws:principaltype') return 'User'
  if (k === 'aws:sourceidentity') return undefined
  if (k.startsWith('aws:principaltag/')) {
    const wanted = k.slice('aws:principaltag/'.length)
    const hit = Object.keys(ctx.tags).find((t) => t.toLowerCase() === wanted)
    return hit === undefined ? undefined : ctx.tags[hit]
  }
  return undefined
}

const VARIABLE = /\$\{([^}]*)\}/g

/** The principal keys of the variables in a text (lower case). */
export const principalVariableKeys = (text: string): string[] =>
  [...text.matchAll(VARIABLE)].map((m) => /^\s*([^,\s]+)/.exec(m[1])?.[1]?.toLowerCase() ?? '').filter((k) => k !== '' && isPrincipalKey(k))

/**
 * Whether a principal key has the same value for the IAM user and for a session of a role with
 * these tags (and no session tags): then AWS judges it alike for both. Only principal tags can
 * be alike (both absent, or equal); the user name, id, ARN and type always differ.
 */
export function sameForSession(key: string, ctx: PrincipalContext, roleTags: Record<string, string>): boolean {
  const k = key.toLowerCase()
  if (!k.startsWith('aws:principaltag/')) return false
  const wanted = k.slice('aws:principaltag/'.length)
  const hit = Object.keys(roleTags).find((t) => t.toLowerCase() === wanted)
  return principalValue(ctx, k) === (hit === undefined ? undefined : roleTags[hit])
}

/**
 * A Resource entry no role session can match: it holds `${aws:username}` without a default,
 * and sessions have no aws:username. A managed policy with such entries may still go by ARN:
 * in the session those entries grant (or deny) nothing, and the compiler sends their resolved
 * copies inline.
 */
export const inertInSession = (text: string): boolean => [...text.matchAll(VARIABLE)].some((m) => /^\s*aws:username\s*$/i.test(m[1]))

/**
 * Replaces the principal variables of one Resource or condition value with the user's values.
 * Other variables (request keys such as ${aws:SourceIp}) and the escapes ${*} ${?} ${$} stay.
 * Returns null when a principal variable has no value for the user and no default: AWS then
 * matches nothing there (or voids the statement).
 */
export function resolvePrincipalVariables(text: string, ctx: PrincipalContext): string | null {
  let unresolved = false
  const out = text.replace(VARIABLE, (whole, inner: string) => {
    if (inner === '*' || inner === '?' || inner === '$') return whole
    const m = /^\s*([^,\s]+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?$/.exec(inner)
    if (!m || !isPrincipalKey(m[1])) return whole
    const value = principalValue(ctx, m[1]) ?? (m[2] !== undefined ? m[2].replace(/''/g, "'") : undefined)
    if (value === undefined) {
      unresolved = true
      return whole
    }
    // A substituted value is literal: keep IAM from reading wildcards or variables in it.
    return value.replace(/\$/g, '${$}').replace(/\*/g, '${*}').replace(/\?/g, '${?}')
  })
  return unresolved ? null : out
}

/** Text from a document without Version 2012-10-17, where `${` is literal: keep it literal. */
export function escapeLiteralVariables(text: string): string {
  return text.replace(/\$\{/g, '${$}{')
}

export const hasPrincipalVariable = (text: string): boolean =>
  [...text.matchAll(VARIABLE)].some((m) => {
    const key = /^\s*([^,\s]+)/.exec(m[1])?.[1]
    return key !== undefined && isPrincipalKey(key)
  })

/** Undo the escapes of a resolved value to compare it as AWS would (literal characters). */
function unescape(text: string): string {
  return text.replace(/\$\{\$\}/g, '$').replace(/\$\{\*\}/g, '\uE000STAR').replace(/\$\{\?\}/g, '\uE000QM')
}

/** Glob match where ${*} and ${?} in the pattern are literal characters. */
function likeMatches(pattern: string, value: string): boolean {
  const p = unescape(pattern)
  const parts = p.split(/(\uE000STAR|\uE000QM)/)
  if (parts.length === 1) return globMatches(p, value)
  // Rebuild as a RegExp with the escaped characters literal.
  const body = parts
    .map((part) =>
      part === '\uE000STAR' ? '\\*' : part === '\uE000QM' ? '\\?' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]'),
    )
    .join('')
  return new RegExp(`^${body}$`).test(value)
}

const literal = (s: string) => unescape(s).replace(/\uE000STAR/g, '*').replace(/\uE000QM/g, '?')

/**
 * Judges one condition entry (operator, key, values) on a principal key for the IAM user.
 * 'unknown' for operators it does not model; callers then stay on the safe side.
 */
export function judgePrincipalCondition(
  operator: string,
  key: string,
  rawValues: unknown,
  ctx: PrincipalContext,
): boolean | 'unknown' {
  const m = /^(ForAnyValue:|ForAllValues:)?([A-Za-z]+?)(IfExists)?$/.exec(operator)
  if (!m) return 'unknown'
  const [, qualifier, base, ifExists] = m
  const values = (Array.isArray(rawValues) ? rawValues : [rawValues]).map((v) => String(v))
  const resolved = values.map((v) => resolvePrincipalVariables(v, ctx))
  if (resolved.some((v) => v === null)) return 'unknown'
  const vals = resolved as string[]
  const value = principalValue(ctx, key)

  if (base === 'Null') {
    if (vals.length !== 1 || !['true', 'false'].includes(vals[0].toLowerCase())) return 'unknown'
    return (value === undefined) === (vals[0].toLowerCase() === 'true')
  }
  const tests: Record<string, (v: string) => boolean> = {
    StringEquals: (v) => vals.some((x) => literal(x) === v),
    StringEqualsIgnoreCase: (v) => vals.some((x) => literal(x).toLowerCase() === v.toLowerCase()),
    StringLike: (v) => vals.some((x) => likeMatches(x, v)),
    ArnEquals: (v) => vals.some((x) => likeMatches(x, v)),
    ArnLike: (v) => vals.some((x) => likeMatches(x, v)),
  }
  const negated: Record<string, string> = {
    StringNotEquals: 'StringEquals',
    StringNotEqualsIgnoreCase: 'StringEqualsIgnoreCase',
    StringNotLike: 'StringLike',
    ArnNotEquals: 'ArnEquals',
    ArnNotLike: 'ArnLike',
  }
  const positive = tests[base]
  const negative = negated[base] ? tests[negated[base]] : undefined
  if (!positive && !negative) return 'unknown'

  if (value === undefined) {
    if (ifExists) return true
    if (qualifier === 'ForAllValues:') return true
    if (qualifier === 'ForAnyValue:') return false
    return negative !== undefined
  }
  return positive ? positive(value) : !negative!(value)
}

/** Conditions split into the entries on principal keys and the rest. */
export function* conditionEntries(condition: ConditionBlock): Generator<{operator: string; key: string; values: unknown}> {
  for (const [operator, byKey] of Object.entries(condition)) for (const [key, values] of Object.entries(byKey)) yield {operator, key, values}
}
