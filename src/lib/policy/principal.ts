// What differs between the IAM user and the role session that acts for it. AWS fills some keys
// of every request context from the principal and its credentials: a role session has no
// aws:username, its own aws:userid, aws:PrincipalArn (the role's), aws:PrincipalType
// (AssumedRole) and tags, a SourceIdentity, and temporary credentials without MFA; the IAM user
// has long-term keys, or a session token, or MFA. Conditions on those keys, and policy
// variables that read them, must be decided at compile time for the user, never left for AWS to
// judge against the session. A key is decided in every policy Version: the Version changes only
// whether `${...}` is substituted, never whether a condition is evaluated.
// (IAM User Guide, "AWS global condition context keys" and "IAM policy elements: Variables and tags".)
import type {ConditionBlock} from './document.js'
import {globMatches} from './glob.js'

/** The IAM user, as the principal-side keys see it. */
export interface PrincipalContext {
  username: string
  userid: string
  arn: string
  tags: Record<string, string>
}

/** The role session RestrictedInstanceRole creates for the user. */
export interface SessionContext {
  roleArn: string
  roleId: string
  sessionName: string
  roleTags: Record<string, string>
  /** The SourceIdentity the daemon sets ([general] source_identity), or null. */
  sourceIdentity: string | null
}

const PRINCIPAL_KEYS = new Set(['aws:username', 'aws:userid', 'aws:principalarn', 'aws:principaltype', 'aws:sourceidentity'])
/** Keys of the credentials the request is signed with: long-term keys, a session token, MFA. */
const CREDENTIAL_KEYS = new Set(['aws:multifactorauthpresent', 'aws:multifactorauthage', 'aws:tokenissuetime', 'aws:federatedprovider', 'aws:assumedroot'])

/**
 * Keys whose value AWS takes from the principal or its credentials, and which differ (or may
 * differ) between the IAM user and the session. aws:PrincipalAccount, aws:PrincipalOrgID and
 * aws:PrincipalIsAWSService are the same for both and are left to AWS; so are request keys such
 * as aws:ViaAWSService and aws:CalledVia, which depend on the request, not on who signs it.
 */
export function isPrincipalKey(key: string): boolean {
  const k = key.toLowerCase()
  return PRINCIPAL_KEYS.has(k) || CREDENTIAL_KEYS.has(k) || k.startsWith('aws:principaltag/')
}

/** A key present with a value this compiler cannot know (a token's issue time, an MFA age). */
export const UNKNOWN: unique symbol = Symbol('a value not known in advance')
/** A principal-side key's value: a string, absent (undefined), or present but unknown. */
export type KeyValue = string | undefined | typeof UNKNOWN

/** One way a principal can sign requests, with the values of the principal-side keys it gives. */
export interface Side {
  /** "long-term keys", "a session token", "MFA", "the session". */
  label: string
  value(key: string): KeyValue
}

function tagValue(tags: Record<string, string>, key: string): string | undefined {
  const hit = Object.keys(tags).find((t) => t.toLowerCase() === key)
  return hit === undefined ? undefined : tags[hit]
}

function side(label: string, values: Record<string, KeyValue>, tags: Record<string, string>): Side {
  return {
    label,
    value(key) {
      const k = key.toLowerCase()
      if (k.startsWith('aws:principaltag/')) return tagValue(tags, k.slice('aws:principaltag/'.length))
      return values[k]
    },
  }
}

/**
 * The IAM user's sides: its long-term access keys (no MFA or token keys at all), a session token
 * from GetSessionToken without MFA, and one with MFA. The session must never do what the user
 * could not do with any of them, so a statement is kept for the session only as the strictest
 * of the three reads it.
 */
export function userSides(ctx: PrincipalContext): Side[] {
  const principal = {'aws:username': ctx.username, 'aws:userid': ctx.userid, 'aws:principalarn': ctx.arn, 'aws:principaltype': 'User'}
  return [
    side('long-term keys', principal, ctx.tags),
    side('a session token', {...principal, 'aws:multifactorauthpresent': 'false', 'aws:tokenissuetime': UNKNOWN}, ctx.tags),
    side('MFA', {...principal, 'aws:multifactorauthpresent': 'true', 'aws:multifactorauthage': UNKNOWN, 'aws:tokenissuetime': UNKNOWN}, ctx.tags),
  ]
}

/** The session's side: an AssumeRole session of the instance role, temporary credentials, no MFA. */
export function sessionSide(s: SessionContext): Side {
  return side(
    'the session',
    {
      'aws:userid': `${s.roleId}:${s.sessionName}`,
      'aws:principalarn': s.roleArn,
      'aws:principaltype': 'AssumedRole',
      'aws:sourceidentity': s.sourceIdentity ?? undefined,
      'aws:multifactorauthpresent': 'false',
      'aws:tokenissuetime': UNKNOWN,
    },
    s.roleTags,
  )
}

/** The value a key has on every one of the sides, or null when the sides differ (or it is unknown). */
function commonValue(sides: Side[], key: string): string | undefined | null {
  const values = sides.map((s) => s.value(key))
  if (values.some((v) => v === UNKNOWN || v !== values[0])) return null
  return values[0] as string | undefined
}

const VARIABLE = /\$\{([^}]*)\}/g
const VARIABLE_BODY = /^\s*([^,\s']+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?$/

/** The principal keys of the variables in a text (lower case). */
export const principalVariableKeys = (text: string): string[] =>
  [...text.matchAll(VARIABLE)].map((m) => /^\s*([^,\s]+)/.exec(m[1])?.[1]?.toLowerCase() ?? '').filter((k) => k !== '' && isPrincipalKey(k))

/**
 * Whether a principal key has the same value for the IAM user and for a session of a role with
 * these tags (and no session tags): then AWS judges it alike for both. Only principal tags can
 * be alike (both absent, or equal); the user name, id, ARN, type and credential keys differ.
 */
export function sameForSession(key: string, ctx: PrincipalContext, roleTags: Record<string, string>): boolean {
  const k = key.toLowerCase()
  if (!k.startsWith('aws:principaltag/')) return false
  const wanted = k.slice('aws:principaltag/'.length)
  return tagValue(ctx.tags, wanted) === tagValue(roleTags, wanted)
}

/**
 * A Resource entry no role session can match: it holds `${aws:username}` without a default,
 * and sessions have no aws:username. A managed policy with such entries may still go by ARN:
 * in the session those entries grant (or deny) nothing, and the compiler sends their resolved
 * copies inline.
 */
export const inertInSession = (text: string): boolean => [...text.matchAll(VARIABLE)].some((m) => /^\s*aws:username\s*$/i.test(m[1]))

/**
 * Replaces the principal variables of one Resource or condition value with the IAM user's
 * values. Other variables (request keys such as ${aws:SourceIp}) and the escapes ${*} ${?} ${$}
 * stay. Returns null when a principal variable has no single value for the user (none and no
 * default, or one that depends on the credentials used): AWS then matches nothing there (or
 * voids the statement), or the compiler cannot say what it would match.
 */
export function resolvePrincipalVariables(text: string, sides: Side[]): string | null {
  let unresolved = false
  const out = text.replace(VARIABLE, (whole, inner: string) => {
    if (inner === '*' || inner === '?' || inner === '$') return whole
    const m = VARIABLE_BODY.exec(inner)
    if (!m || !isPrincipalKey(m[1])) return whole
    const common = commonValue(sides, m[1])
    const value = common === null ? undefined : (common ?? (m[2] !== undefined ? m[2].replace(/''/g, "'") : undefined))
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

// ------------------------------------------------------------------ judging one condition entry

export type Verdict = boolean | 'unknown'

/** A policy value read for one side: what it equals (literal) and what it is like (a RegExp). */
type Value = {literal: string; like: RegExp} | null | typeof UNKNOWN

const escapeRegExp = (s: string) => s.replace(/[.+^${}()|[\]\\*?]/g, '\\$&')
const globPart = (s: string) => s.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]')

/**
 * One condition value as AWS reads it for a principal: `*` and `?` are wildcards of the Like
 * operators only; in 2012-10-17 `${...}` is substituted (its text literal), a principal variable
 * without value and default makes the value "effectively null" (null: it equals and is like
 * nothing), and any other variable depends on the request (UNKNOWN here).
 */
function readValue(text: string, variables: boolean, sideOf: Side): Value {
  if (!variables || !text.includes('${')) return {literal: text, like: new RegExp(`^${globPart(text)}$`)}
  let literal = ''
  let like = ''
  let i = 0
  while (i < text.length) {
    const start = text.indexOf('${', i)
    const end = start < 0 ? -1 : text.indexOf('}', start + 2)
    if (start < 0 || end < 0) break
    literal += text.slice(i, start)
    like += globPart(text.slice(i, start))
    const inner = text.slice(start + 2, end)
    let value: string
    if (inner === '*' || inner === '?' || inner === '$') value = inner
    else {
      const m = VARIABLE_BODY.exec(inner)
      if (!m || !isPrincipalKey(m[1])) return UNKNOWN
      const v = sideOf.value(m[1])
      if (v === UNKNOWN) return UNKNOWN
      if (v === undefined && m[2] === undefined) return null
      value = v ?? m[2]!.replace(/''/g, "'")
    }
    literal += value
    like += escapeRegExp(value)
    i = end + 1
  }
  literal += text.slice(i)
  like += globPart(text.slice(i))
  return {literal, like: new RegExp(`^${like}$`)}
}

/** ArnLike/ArnEquals: each of the six colon-separated components matched on its own. */
function arnMatches(pattern: string, value: string): Verdict {
  const split = (s: string) => {
    const parts = s.split(':')
    return parts.length < 6 ? null : [...parts.slice(0, 5), parts.slice(5).join(':')]
  }
  const p = split(pattern)
  const v = split(value)
  if (!p) return 'unknown'
  if (!v) return false
  return p.every((part, i) => globMatches(part, v[i]))
}

const STRING_TESTS: Record<string, (value: string, v: {literal: string; like: RegExp}) => Verdict> = {
  stringequals: (value, v) => v.literal === value,
  stringequalsignorecase: (value, v) => v.literal.toLowerCase() === value.toLowerCase(),
  stringlike: (value, v) => v.like.test(value),
  arnequals: (value, v) => arnMatches(v.literal, value),
  arnlike: (value, v) => arnMatches(v.literal, value),
  bool: (value, v) => (/^(true|false)$/i.test(v.literal) ? v.literal.toLowerCase() === value.toLowerCase() : 'unknown'),
}
const NEGATED: Record<string, string> = {
  stringnotequals: 'stringequals',
  stringnotequalsignorecase: 'stringequalsignorecase',
  stringnotlike: 'stringlike',
  arnnotequals: 'arnequals',
  arnnotlike: 'arnlike',
}
const OTHER_OPERATORS = new Set([
  'numericequals', 'numericnotequals', 'numericlessthan', 'numericlessthanequals', 'numericgreaterthan', 'numericgreaterthanequals',
  'dateequals', 'datenotequals', 'datelessthan', 'datelessthanequals', 'dategreaterthan', 'dategreaterthanequals',
  'binaryequals', 'ipaddress', 'notipaddress',
])
const NEGATIVE_OTHERS = new Set(['numericnotequals', 'datenotequals', 'notipaddress'])

/** Three-valued OR. */
const anyOf = (verdicts: Verdict[]): Verdict => (verdicts.includes(true) ? true : verdicts.includes('unknown') ? 'unknown' : false)

/**
 * Judges one condition entry (operator, key, values) on a principal-side key for one side, as
 * AWS would (IAM User Guide, "Condition operators": a missing key makes plain operators false,
 * negated ones true, `...IfExists` true, ForAllValues true and ForAnyValue false; Null tests
 * presence). 'unknown' where the side's value is not known or the operator is not modelled;
 * callers then stay on the safe side. `variables`: the document is Version 2012-10-17.
 */
export function judgePrincipalCondition(operator: string, key: string, rawValues: unknown, sideOf: Side, variables = true): Verdict {
  const m = /^(ForAnyValue:|ForAllValues:)?([A-Za-z]+?)(IfExists)?$/i.exec(operator)
  if (!m) return 'unknown'
  const qualifier = m[1]?.toLowerCase()
  const base = m[2].toLowerCase()
  const ifExists = m[3] !== undefined
  const texts = (Array.isArray(rawValues) ? rawValues : [rawValues]).map((v) => String(v))
  const value = sideOf.value(key)

  if (base === 'null') {
    if (ifExists || qualifier) return 'unknown'
    const wanted = texts.map((t) => (/^(true|false)$/i.test(t) ? t.toLowerCase() === 'true' : undefined))
    if (wanted.some((w) => w === undefined)) return 'unknown'
    return wanted.some((w) => w === (value === undefined))
  }
  const positive = STRING_TESTS[base] ?? (NEGATED[base] ? STRING_TESTS[NEGATED[base]] : undefined)
  if (!positive && !OTHER_OPERATORS.has(base)) return 'unknown'
  const negated = NEGATED[base] !== undefined || NEGATIVE_OTHERS.has(base)

  if (value === undefined) {
    if (ifExists || qualifier === 'forallvalues:') return true
    if (qualifier === 'foranyvalue:') return false
    return negated
  }
  if (value === UNKNOWN || !positive) return 'unknown'
  // Values OR; a negated operator holds when none of them matches. A value that is effectively
  // null matches nothing.
  const matches = anyOf(
    texts.map((t) => {
      const v = readValue(t, variables, sideOf)
      return v === null ? false : v === UNKNOWN ? 'unknown' : positive(value, v)
    }),
  )
  if (!negated) return matches
  return matches === 'unknown' ? 'unknown' : !matches
}

/** Conditions split into their entries. */
export function* conditionEntries(condition: ConditionBlock): Generator<{operator: string; key: string; values: unknown}> {
  for (const [operator, byKey] of Object.entries(condition)) for (const [key, values] of Object.entries(byKey)) yield {operator, key, values}
}

/** Three-valued AND. */
export const allOf = (verdicts: Verdict[]): Verdict => (verdicts.includes(false) ? false : verdicts.includes('unknown') ? 'unknown' : true)
