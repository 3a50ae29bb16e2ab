// The compiler's working form of a policy statement: lists always lists, the Not* variants as
// flags, and where it came from (for warnings and for passing managed policies by ARN).
import type {ConditionBlock, Effect, PolicyDocument, Statement} from '../iam/document.js'
import {statementsOf} from '../iam/document.js'
import {escapeForSending} from './size.js'

export interface Origin {
  /** e.g. "user inline policy home-prefix", "group data-science managed policy X" */
  label: string
  /** Set for managed policies: the ARN that could be passed instead of the statements. */
  managedArn?: string
}

export interface Stmt {
  sid?: string
  effect: Effect
  /** Action list, or the NotAction list when notAction is true. */
  actions: string[]
  notAction: boolean
  /** Resource list, or the NotResource list when notResource is true. */
  resources: string[]
  notResource: boolean
  condition?: ConditionBlock
  origin: Origin
  /** A Resource entry held `${aws:username}` (resolved by step a): it stays inline even when its managed policy goes by ARN. */
  resolvedPrincipal?: boolean
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? [...v] : [v])

/**
 * Normalises a document's statements. The document must be a valid identity policy (see
 * identityPolicyProblem): the caller refuses the others.
 */
export function toStmts(doc: PolicyDocument, origin: Origin): Stmt[] {
  return statementsOf(doc).map((s) => {
    const notAction = s.NotAction !== undefined
    const notResource = s.NotResource !== undefined
    return {
      ...(s.Sid !== undefined ? {sid: s.Sid} : {}),
      effect: s.Effect,
      actions: list(notAction ? s.NotAction : s.Action),
      notAction,
      resources: list(notResource ? s.NotResource : s.Resource),
      notResource,
      ...(s.Condition && Object.keys(s.Condition).length > 0 ? {condition: structuredClone(s.Condition)} : {}),
      origin,
    }
  })
}

const one = (v: string[]): string | string[] => (v.length === 1 ? v[0] : v)

/** The statement as it is sent: single-element lists as strings, Sid only when asked for. */
export function toStatement(s: Stmt, options: {sid?: boolean} = {}): Statement {
  const out: Statement = options.sid && s.sid !== undefined ? {Sid: s.sid, Effect: s.effect} : {Effect: s.effect}
  if (s.notAction) out.NotAction = one(s.actions)
  else out.Action = one(s.actions)
  if (s.notResource) out.NotResource = one(s.resources)
  else out.Resource = one(s.resources)
  if (s.condition) out.Condition = s.condition
  return out
}

export const POLICY_VERSION = '2012-10-17'

/** The minified policy document for a statement list, exactly as it is sent (see escapeForSending). */
export function renderPolicy(stmts: Stmt[], options: {sid?: boolean} = {}): string {
  return escapeForSending(JSON.stringify({Version: POLICY_VERSION, Statement: stmts.map((s) => toStatement(s, options))}))
}

export const sameCondition = (a?: ConditionBlock, b?: ConditionBlock): boolean => canonicalJson(a ?? {}) === canonicalJson(b ?? {})

/** JSON with object keys sorted, so equal conditions compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`
  return JSON.stringify(value)
}
