// The Condition element, after the IAM User Guide ("Condition operators", "Conditions with
// multiple context keys or values", "Single-valued vs. multivalued context keys", "Variables and
// tags"):
// - operators in a block are ANDed, keys under one operator are ANDed, values for one key are
//   ORed — and for a negated operator (StringNotEquals, NotIpAddress, ...) NORed: "none of them";
// - a key absent from the request makes a plain operator false and a negated one true; ...IfExists
//   makes any operator true when the key is absent; Null tests presence alone;
// - ForAllValues is true when every request value matches some policy value, and true for an
//   empty or absent key; ForAnyValue is true when some request value matches, false when empty or
//   absent. With a negated operator each request value must match none of the policy values.
// - policy variables work in the String and Arn families only.
import {isIP, BlockList} from 'node:net'

import type {ConditionBlock} from '../../../src/lib/iam/document.js'
import {matchParts, partsText, splitAtColons, splitPartsAtColons, type Part} from './glob.js'
import {type ContextLookup, type ContextValue, PolicyEvaluationError} from './types.js'
import {expandVariables} from './variables.js'

export type OperatorFamily =
  | 'String'
  | 'StringIgnoreCase'
  | 'StringLike'
  | 'Numeric'
  | 'Date'
  | 'Bool'
  | 'Binary'
  | 'Ip'
  | 'Arn'
  | 'Null'
type Comparison = 'eq' | 'lt' | 'le' | 'gt' | 'ge'

interface OperatorSpec {
  family: OperatorFamily
  negated: boolean
  comparison: Comparison
}

const OPERATORS: Record<string, OperatorSpec> = {}
function define(name: string, family: OperatorFamily, negated = false, comparison: Comparison = 'eq'): void {
  OPERATORS[name.toLowerCase()] = {family, negated, comparison}
}
define('StringEquals', 'String')
define('StringNotEquals', 'String', true)
define('StringEqualsIgnoreCase', 'StringIgnoreCase')
define('StringNotEqualsIgnoreCase', 'StringIgnoreCase', true)
define('StringLike', 'StringLike')
define('StringNotLike', 'StringLike', true)
for (const family of ['Numeric', 'Date'] as const) {
  define(`${family}Equals`, family)
  define(`${family}NotEquals`, family, true)
  define(`${family}LessThan`, family, false, 'lt')
  define(`${family}LessThanEquals`, family, false, 'le')
  define(`${family}GreaterThan`, family, false, 'gt')
  define(`${family}GreaterThanEquals`, family, false, 'ge')
}
define('Bool', 'Bool')
define('BinaryEquals', 'Binary')
define('IpAddress', 'Ip')
define('NotIpAddress', 'Ip', true)
// "ArnEquals, ArnLike: Case-sensitive matching of the ARN. Each of the six colon-delimited
// components of the ARN is checked separately and each can include ... wildcards" — both of them.
define('ArnEquals', 'Arn')
define('ArnLike', 'Arn')
define('ArnNotEquals', 'Arn', true)
define('ArnNotLike', 'Arn', true)
define('Null', 'Null')

export interface ParsedOperator {
  /** As written in the policy. */
  name: string
  family: OperatorFamily
  negated: boolean
  comparison: Comparison
  set?: 'ForAllValues' | 'ForAnyValue'
  ifExists: boolean
}

const OPERATOR_SYNTAX = /^(?:(ForAllValues|ForAnyValue):)?(.+?)(IfExists)?$/i

/** Reads an operator name such as `ForAnyValue:StringNotLikeIfExists`; throws on anything unknown. */
export function parseOperator(name: string): ParsedOperator {
  const m = OPERATOR_SYNTAX.exec(name)
  const spec = m ? OPERATORS[m[2].toLowerCase()] : undefined
  if (!m || !spec) throw new PolicyEvaluationError(`unknown condition operator '${name}'`)
  const set = m[1] ? (m[1].toLowerCase() === 'forallvalues' ? 'ForAllValues' : 'ForAnyValue') : undefined
  const ifExists = Boolean(m[3])
  if (spec.family === 'Null' && (set || ifExists))
    throw new PolicyEvaluationError(`'${name}' is not a valid operator (Null takes no qualifier)`)
  return {name, ...spec, set, ifExists}
}

/** Policy condition values as strings (JSON booleans and numbers are written as IAM shows them). */
export function policyValues(raw: unknown): string[] {
  const list = Array.isArray(raw) ? raw : [raw]
  return list.map((v) => {
    if (typeof v === 'string') return v
    if (typeof v === 'boolean' || typeof v === 'number') return String(v)
    throw new PolicyEvaluationError(`condition value ${JSON.stringify(v)} is not a string, number or boolean`)
  })
}

// ---- value parsing ----------------------------------------------------------------------------

export function parseNumber(text: string): number | undefined {
  const t = text.trim()
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t)) return undefined
  return Number(t)
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/i

/** Milliseconds since the epoch, from ISO 8601 (zone-less times are UTC) or epoch seconds. */
export function parseDate(text: string): number | undefined {
  const t = text.trim()
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000
  const m = ISO_DATE.exec(t)
  if (!m) return undefined
  const withZone = t.includes('T') && !m[1] ? `${t}Z` : t
  const ms = Date.parse(withZone)
  return Number.isNaN(ms) ? undefined : ms
}

interface Cidr {
  family: 'ipv4' | 'ipv6'
  list: BlockList
}
const cidrCache = new Map<string, Cidr>()

export function parseCidr(text: string): Cidr | undefined {
  const cached = cidrCache.get(text)
  if (cached) return cached
  const [address, prefixText, extra] = text.trim().split('/')
  const version = isIP(address)
  if (version === 0 || extra !== undefined) return undefined
  const max = version === 4 ? 32 : 128
  const prefix = prefixText === undefined ? max : /^\d+$/.test(prefixText) ? Number(prefixText) : NaN
  if (!(prefix >= 0 && prefix <= max)) return undefined
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const list = new BlockList()
  list.addSubnet(address, prefix, family)
  const cidr = {family, list} as const
  cidrCache.set(text, cidr)
  return cidr
}

function compare(comparison: Comparison, a: number, b: number): boolean {
  switch (comparison) {
    case 'eq':
      return a === b
    case 'lt':
      return a < b
    case 'le':
      return a <= b
    case 'gt':
      return a > b
    case 'ge':
      return a >= b
  }
}

function malformed(op: ParsedOperator, value: string, what: string): never {
  throw new PolicyEvaluationError(`${op.name} value ${JSON.stringify(value)} is not ${what}`)
}

// ---- one request value against one policy value ---------------------------------------------

function arnMatches(op: ParsedOperator, pattern: Part[], arn: string): boolean {
  const patternComponents = splitPartsAtColons(pattern, 5)
  // The docs only describe six-component values; what AWS does with e.g. a bare "*" is not
  // documented, so the referee refuses to guess.
  if (!patternComponents) malformed(op, partsText(pattern), 'an ARN with six colon-separated components')
  const arnComponents = splitAtColons(arn, 5)
  if (!arnComponents) return false
  return patternComponents.every((component, i) => matchParts(component, arnComponents[i]))
}

/** Whether `requestValue` matches `policyValue` under the operator's positive (un-negated) sense. */
function valueMatches(
  op: ParsedOperator,
  requestValue: string,
  policyValue: string,
  lookup: ContextLookup,
  variables: boolean,
): boolean {
  switch (op.family) {
    case 'String':
    case 'StringIgnoreCase':
    case 'StringLike':
    case 'Arn': {
      const parts = expandVariables(policyValue, lookup, variables)
      if (parts === null) return false // "effectively null": equal to and like nothing
      if (op.family === 'String') return partsText(parts) === requestValue
      if (op.family === 'StringIgnoreCase')
        return partsText(parts).toLowerCase() === requestValue.toLowerCase()
      if (op.family === 'StringLike') return matchParts(parts, requestValue)
      return arnMatches(op, parts, requestValue)
    }
    case 'Numeric': {
      const p = parseNumber(policyValue) ?? malformed(op, policyValue, 'a number')
      const r = parseNumber(requestValue)
      return r !== undefined && compare(op.comparison, r, p)
    }
    case 'Date': {
      const p = parseDate(policyValue) ?? malformed(op, policyValue, 'an ISO 8601 date or epoch time')
      const r = parseDate(requestValue)
      return r !== undefined && compare(op.comparison, r, p)
    }
    case 'Bool': {
      const p = policyValue.toLowerCase()
      if (p !== 'true' && p !== 'false') malformed(op, policyValue, 'true or false')
      return requestValue.toLowerCase() === p
    }
    case 'Binary':
      return Buffer.from(requestValue, 'base64').equals(Buffer.from(policyValue, 'base64'))
    case 'Ip': {
      const cidr = parseCidr(policyValue) ?? malformed(op, policyValue, 'an IP address or CIDR range')
      const version = isIP(requestValue.trim())
      // Only like with like: BlockList would otherwise let ::/0 swallow IPv4 addresses.
      if (version === 0 || (version === 4) !== (cidr.family === 'ipv4')) return false
      return cidr.list.check(requestValue.trim(), cidr.family)
    }
    case 'Null':
      throw new PolicyEvaluationError('Null is evaluated on presence, not values')
  }
}

/** Whether one request value satisfies the operator against the policy's list of values. */
function requestValueSatisfies(
  op: ParsedOperator,
  requestValue: string,
  values: string[],
  lookup: ContextLookup,
  variables: boolean,
): boolean {
  const any = values.some((v) => valueMatches(op, requestValue, v, lookup, variables))
  return op.negated ? !any : any
}

function isPresent(value: ContextValue): value is string | string[] {
  return value !== undefined && !(Array.isArray(value) && value.length === 0)
}

/**
 * One `operator: {key: values}` entry of a Condition block against the request.
 * `variables` is whether the policy's Version enables policy variables.
 */
export function evaluateConditionEntry(
  operator: string,
  key: string,
  rawValues: unknown,
  lookup: ContextLookup,
  variables: boolean,
): boolean {
  const op = parseOperator(operator)
  const values = policyValues(rawValues)
  const requestValue = lookup(key)

  if (op.family === 'Null') {
    // "true": the key is absent (null); "false": it is present. Values for one key are ORed.
    return values.some((v) => {
      const wanted = v.toLowerCase()
      if (wanted !== 'true' && wanted !== 'false') malformed(op, v, 'true or false')
      return (wanted === 'true') !== isPresent(requestValue)
    })
  }

  if (op.set) {
    if (op.ifExists && requestValue === undefined) return true
    // "If the key values in the request resolve to an empty data set (for example, an empty
    // string), ForAllValues returns true, and ForAnyValue returns false."
    const set =
      requestValue === undefined
        ? []
        : Array.isArray(requestValue)
          ? requestValue
          : requestValue === ''
            ? []
            : [requestValue]
    if (set.length === 0) return op.set === 'ForAllValues'
    const test = (v: string): boolean => requestValueSatisfies(op, v, values, lookup, variables)
    return op.set === 'ForAllValues' ? set.every(test) : set.some(test)
  }

  if (!isPresent(requestValue)) return op.ifExists || op.negated
  // A multivalued request value under a plain operator is not documented; we read it as "some
  // request value matches" and negate that as a whole, which agrees with AWS for one value.
  const requestValues = Array.isArray(requestValue) ? requestValue : [requestValue]
  const any = requestValues.some((r) => values.some((v) => valueMatches(op, r, v, lookup, variables)))
  return op.negated ? !any : any
}

/** A whole Condition block: every operator, and every key under it, must hold. */
export function evaluateCondition(
  block: ConditionBlock | undefined,
  lookup: ContextLookup,
  variables: boolean,
): boolean {
  if (block === undefined) return true
  for (const [operator, keys] of Object.entries(block)) {
    if (keys === null || typeof keys !== 'object' || Array.isArray(keys))
      throw new PolicyEvaluationError(`condition operator '${operator}' must map keys to values`)
    for (const [key, values] of Object.entries(keys)) {
      if (!evaluateConditionEntry(operator, key, values, lookup, variables)) return false
    }
  }
  return true
}
