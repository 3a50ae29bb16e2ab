// Policy variables (${key}, ${key, 'default'}, ${*} ${?} ${$}) as the IAM User Guide describes them
// in "IAM policy elements: Variables and tags":
// - only Version 2012-10-17 has variables; otherwise `${aws:username}` is literal text;
// - key names ignore case; only single-valued keys can be variables;
// - a key with no value and no default makes the value "effectively null": it equals and is like
//   nothing, so a Resource/NotResource entry holding it matches no resource, a StringEquals value
//   holding it matches nothing, and the negated operators (StringNotEquals...) match;
// - ${*}, ${?}, ${$} are the literal characters (a `*` from ${*} is not a wildcard).
// Text substituted from the request is literal too (IAM user names and tag values cannot hold
// `*` or `?`, so AWS never has to say what a wildcard inside a substituted value would mean).
import type {Part} from './glob.js'
import {type ContextLookup, PolicyEvaluationError} from './types.js'

export const VARIABLES_VERSION = '2012-10-17'

const VARIABLE_BODY = /^([^\s,']+)\s*(?:,\s*'(.*)')?$/s

/** Whether the text holds a `${...}` that a 2012-10-17 policy would substitute. */
export function hasVariable(text: string): boolean {
  return /\$\{[^}]*\}/.test(text)
}

/**
 * The value of one `${...}` body: a string, or null when the key has no value and no default.
 * Throws on a body IAM would reject, so a broken policy fails the test instead of matching nothing.
 */
function resolveVariable(body: string, lookup: ContextLookup): string | null {
  const trimmed = body.trim()
  if (trimmed === '*' || trimmed === '?' || trimmed === '$') return trimmed
  const m = VARIABLE_BODY.exec(trimmed)
  if (!m) throw new PolicyEvaluationError(`malformed policy variable '\${${body}}'`)
  const value = lookup(m[1])
  if (typeof value === 'string') return value
  // Absent, or multivalued (which the docs say cannot be used as a variable): the default if any.
  return m[2] ?? null
}

/**
 * Expands the policy variables in `text`. Returns the parts of the resulting pattern (policy text
 * keeps its wildcards, substituted text does not), or null when a variable has no value.
 * With `enabled` false (Version 2008-10-17 or no Version) the text is taken literally.
 */
export function expandVariables(text: string, lookup: ContextLookup, enabled: boolean): Part[] | null {
  if (!enabled || !text.includes('${')) return [{text, wild: true}]
  const parts: Part[] = []
  let pending = ''
  let i = 0
  while (i < text.length) {
    const start = text.indexOf('${', i)
    if (start < 0) break
    const end = text.indexOf('}', start + 2)
    if (end < 0) break // an unterminated `${` is just text
    pending += text.slice(i, start)
    const value = resolveVariable(text.slice(start + 2, end), lookup)
    if (value === null) return null
    if (pending) parts.push({text: pending, wild: true})
    parts.push({text: value, wild: false})
    pending = ''
    i = end + 1
  }
  pending += text.slice(i)
  if (pending) parts.push({text: pending, wild: true})
  return parts
}
