// What differs between the IAM user and the role session that acts for it. AWS fills some keys
// of every request context from the principal and its credentials: a role session has no
// aws:username, its own aws:userid, aws:PrincipalArn (the role's), aws:PrincipalType
// (AssumedRole) and tags, a SourceIdentity, and temporary credentials without MFA; the IAM user
// has long-term keys, or a session token, or MFA. Conditions on those keys, and policy
// variables that read them, must be decided at compile time for the user, never left for AWS to
// judge against the session. A key is decided in every policy Version: the Version changes only
// whether `${...}` is substituted, never whether a condition is evaluated.
// (IAM User Guide, "AWS global condition context keys" and "IAM policy elements: Variables and tags".)
import type {ConditionBlock} from '../iam/document.js'

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

/**
 * A `${...}` body as this compiler reads it: `key` or `key, 'default'`. The key is everything
 * before a comma (so a tag key with a space is one key, and a principal key); null for the
 * escapes `*`, `?`, `$`. `malformed`: the body has no single reading (a default that is not one
 * quoted string, a key with spaces, whose substitution AWS does not document): what AWS makes
 * of it is not known, so a principal variable there can be resolved for nobody.
 */
function parseVariable(inner: string): {key: string; fallback?: string; malformed: boolean} | null {
  const body = inner.trim()
  if (body === '*' || body === '?' || body === '$') return null
  const comma = body.indexOf(',')
  const key = (comma < 0 ? body : body.slice(0, comma)).trim()
  if (comma < 0) return {key, malformed: key === '' || /\s/.test(key)}
  const m = /^'([^']*)'$/.exec(body.slice(comma + 1).trim())
  return {key, ...(m ? {fallback: m[1]} : {}), malformed: !m || key === '' || /\s/.test(key)}
}

/** The principal keys of the variables in a text (lower case). */
export const principalVariableKeys = (text: string): string[] =>
  [...text.matchAll(VARIABLE)].map((m) => parseVariable(m[1])?.key.toLowerCase() ?? '').filter((k) => k !== '' && isPrincipalKey(k))

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

/** A principal variable that has no value on any of the user's sides, and no default: "effectively null". */
export const NO_VALUE: unique symbol = Symbol('no value for the principal')
/** A principal variable whose value depends on how the user signs, or that cannot be read. */
export const NO_SINGLE_VALUE: unique symbol = Symbol('no single value for the principal')

/**
 * Replaces the principal variables of one Resource or condition value with the IAM user's
 * values. Other variables (request keys such as ${aws:SourceIp}) and the escapes ${*} ${?} ${$}
 * stay. NO_VALUE when a principal variable has no value on any side and no default (AWS then
 * matches nothing there); NO_SINGLE_VALUE when its value depends on the credentials the user
 * signs with, or its body has no single reading (the caller must then stay on the safe side).
 */
export function resolvePrincipalVariables(text: string, sides: Side[]): string | typeof NO_VALUE | typeof NO_SINGLE_VALUE {
  let outcome: string | typeof NO_VALUE | typeof NO_SINGLE_VALUE = ''
  const out = text.replace(VARIABLE, (whole, inner: string) => {
    const variable = parseVariable(inner)
    if (!variable || !isPrincipalKey(variable.key)) return whole
    if (variable.malformed) {
      outcome = NO_SINGLE_VALUE
      return whole
    }
    const common = commonValue(sides, variable.key)
    if (common === null) {
      outcome = NO_SINGLE_VALUE
      return whole
    }
    const value = common ?? variable.fallback
    if (value === undefined) {
      if (outcome !== NO_SINGLE_VALUE) outcome = NO_VALUE
      return whole
    }
    // A substituted value is literal: keep IAM from reading wildcards or variables in it.
    return value.replace(/\$/g, '${$}').replace(/\*/g, '${*}').replace(/\?/g, '${?}')
  })
  return outcome === '' ? out : outcome
}

/** The text with each principal variable replaced by `*`: a pattern that matches whatever its value is. */
export function widenPrincipalVariables(text: string): string {
  return text.replace(VARIABLE, (whole, inner: string) => {
    const variable = parseVariable(inner)
    return variable && isPrincipalKey(variable.key) ? '*' : whole
  })
}

/** Text from a document without Version 2012-10-17, where `${` is literal: keep it literal. */
export function escapeLiteralVariables(text: string): string {
  return text.replace(/\$\{/g, '${$}{')
}

export const hasPrincipalVariable = (text: string): boolean => principalVariableKeys(text).length > 0

// ------------------------------------------------------------------ judging one condition entry

export type Verdict = boolean | 'unknown'

/**
 * A policy value read for one side: what it equals (literal), and its pattern for the Like and
 * Arn operators, where a wildcard of the policy text stays `*`/`?` and a literal `*`/`?` (from
 * ${*}, ${?} or a substituted value) is written U+E000/U+E001.
 */
type Value = {literal: string; pattern: string} | null | typeof UNKNOWN

const STAR = '\uE000'
const QUESTION = '\uE001'
const literalWildcards = (s: string) => s.replace(/\*/g, STAR).replace(/\?/g, QUESTION)

/**
 * One condition value as AWS reads it for a principal: `*` and `?` are wildcards of the Like
 * and Arn operators only; in 2012-10-17 `${...}` is substituted (its text literal), a principal
 * variable without value and default makes the value "effectively null" (null: it equals and is
 * like nothing), and any other variable depends on the request (UNKNOWN here).
 */
function readValue(text: string, variables: boolean, sideOf: Side): Value {
  if (!variables || !text.includes('${')) return {literal: text, pattern: text}
  let literal = ''
  let pattern = ''
  let i = 0
  while (i < text.length) {
    const start = text.indexOf('${', i)
    const end = start < 0 ? -1 : text.indexOf('}', start + 2)
    if (start < 0 || end < 0) break
    literal += text.slice(i, start)
    pattern += text.slice(i, start)
    const inner = text.slice(start + 2, end)
    let value: string
    const variable = parseVariable(inner)
    if (variable === null) value = inner.trim()
    else {
      if (variable.malformed || !isPrincipalKey(variable.key)) return UNKNOWN
      const v = sideOf.value(variable.key)
      if (v === UNKNOWN) return UNKNOWN
      if (v === undefined && variable.fallback === undefined) return null
      value = v ?? variable.fallback!
    }
    literal += value
    pattern += literalWildcards(value)
    i = end + 1
  }
  literal += text.slice(i)
  pattern += text.slice(i)
  return {literal, pattern}
}

/** A pattern as written by readValue, as a RegExp over the whole value (code points: `u`). */
function patternRegExp(pattern: string): RegExp {
  const body = [...pattern]
    .map((c) => (c === '*' ? '[\\s\\S]*' : c === '?' ? '[\\s\\S]' : c === STAR ? '\\*' : c === QUESTION ? '\\?' : c.replace(/[.+^${}()|[\]\\/]/g, '\\$&')))
    .join('')
  return new RegExp(`^${body}$`, 'u')
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
  return p.every((part, i) => patternRegExp(part).test(v[i]))
}

const STRING_TESTS: Record<string, (value: string, v: {literal: string; pattern: string}) => Verdict> = {
  stringequals: (value, v) => v.literal === value,
  stringequalsignorecase: (value, v) => v.literal.toLowerCase() === value.toLowerCase(),
  stringlike: (value, v) => patternRegExp(v.pattern).test(value),
  arnequals: (value, v) => arnMatches(v.pattern, value),
  arnlike: (value, v) => arnMatches(v.pattern, value),
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
  // "If the key values in the request resolve to an empty data set (for example, an empty
  // string), ForAllValues returns true and ForAnyValue false" (IAM User Guide, "Condition
  // operators for multivalued context keys"): an empty tag value is no value for them.
  if (value === '' && qualifier === 'forallvalues:') return true
  if (value === '' && qualifier === 'foranyvalue:') return false
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
