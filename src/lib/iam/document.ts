// The IAM policy grammar as this project reads it, and decoding of documents as the AWS CLI
// (JSON objects) and the raw API (URL-encoded strings) deliver them.

export type Effect = 'Allow' | 'Deny'
export type StringOrList = string | string[]
export type ConditionBlock = Record<string, Record<string, StringOrList | boolean | number>>

export interface Statement {
  Sid?: string
  Effect: Effect
  Action?: StringOrList
  NotAction?: StringOrList
  Resource?: StringOrList
  NotResource?: StringOrList
  Principal?: unknown
  NotPrincipal?: unknown
  Condition?: ConditionBlock
}

export interface PolicyDocument {
  Version?: string
  Id?: string
  Statement: Statement | Statement[]
}

/** Why a document could not be read; the caller adds which policy it was. */
export class DocumentError extends Error {}

/**
 * Decodes a policy document given as an object, a JSON string, or a URL-encoded JSON string
 * (what GetUserPolicy, GetPolicyVersion and friends return over the wire).
 */
export function decodePolicyDocument(raw: unknown): PolicyDocument {
  let value = raw
  if (typeof value === 'string') {
    const text = value.trim()
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      if (!text.includes('%')) throw new DocumentError('is neither JSON nor URL-encoded JSON')
      let decoded: string
      try {
        decoded = decodeURIComponent(text)
      } catch {
        throw new DocumentError('is neither JSON nor URL-encoded JSON')
      }
      try {
        parsed = JSON.parse(decoded)
      } catch (error) {
        throw new DocumentError(`is URL-encoded but not valid JSON (${(error as Error).message})`)
      }
    }
    value = parsed
  }
  return validatePolicyDocument(value)
}

function isStringOrList(v: unknown): boolean {
  return typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
}

export function validatePolicyDocument(value: unknown): PolicyDocument {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new DocumentError('is not a JSON object')
  const doc = value as Record<string, unknown>
  if (!('Statement' in doc)) throw new DocumentError('has no Statement')
  const statements = Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
  statements.forEach((s, i) => {
    if (s === null || typeof s !== 'object' || Array.isArray(s)) throw new DocumentError(`statement ${i + 1} is not an object`)
    const st = s as Record<string, unknown>
    if (st.Effect !== 'Allow' && st.Effect !== 'Deny') throw new DocumentError(`statement ${i + 1} has Effect ${JSON.stringify(st.Effect)} (Allow or Deny expected)`)
    for (const key of ['Action', 'NotAction', 'Resource', 'NotResource'] as const)
      if (key in st && !isStringOrList(st[key])) throw new DocumentError(`statement ${i + 1} has a malformed ${key}`)
    if ('Condition' in st && (st.Condition === null || typeof st.Condition !== 'object' || Array.isArray(st.Condition)))
      throw new DocumentError(`statement ${i + 1} has a malformed Condition`)
  })
  return doc as unknown as PolicyDocument
}

/**
 * What IAM refuses in an identity-based policy (a user, group or role policy, a managed policy,
 * a permissions boundary, a session policy), or null: every statement needs exactly one of
 * Action and NotAction and exactly one of Resource and NotResource, and none may name a
 * Principal. IAM rejects such a document when it is written; reading one in the wider way
 * (NotAction over Action, say) could only grant more, so it is refused here too.
 */
export function identityPolicyProblem(doc: PolicyDocument): string | null {
  const statements = statementsOf(doc)
  for (let i = 0; i < statements.length; i++) {
    const s = statements[i]
    const which = `statement ${i + 1}${typeof s.Sid === 'string' && s.Sid !== '' ? ` (Sid '${s.Sid}')` : ''}`
    if (s.Action !== undefined && s.NotAction !== undefined) return `${which} has both Action and NotAction`
    if (s.Action === undefined && s.NotAction === undefined) return `${which} has neither Action nor NotAction`
    if (s.Resource !== undefined && s.NotResource !== undefined) return `${which} has both Resource and NotResource`
    if (s.Resource === undefined && s.NotResource === undefined) return `${which} has neither Resource nor NotResource`
    if (s.Principal !== undefined || s.NotPrincipal !== undefined) return `${which} names a ${s.Principal !== undefined ? 'Principal' : 'NotPrincipal'}, which only resource-based policies can`
  }
  return null
}

export function statementsOf(doc: PolicyDocument): Statement[] {
  return Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
}
