// Shapes shared by the referee evaluator and the request generator.

/** A request context value: one string, several (a multivalued key such as aws:TagKeys), or absent. */
export type ContextValue = string | string[] | undefined
export type ContextMap = Record<string, ContextValue>

export type Decision = 'Allow' | 'ExplicitDeny' | 'ImplicitDeny'

export interface RequestContext {
  /** `service:Action`; matched case-insensitively against policy actions. */
  action: string
  /** The resource ARN; matched case-sensitively. */
  resource: string
  /** Condition keys (case-insensitive names) and their values, e.g. `aws:SourceIp`, `s3:prefix`. */
  context: ContextMap
}

/** Looks a condition key up by name, ignoring case as IAM does. */
export type ContextLookup = (key: string) => ContextValue

/** A policy the referee cannot evaluate faithfully (unknown operator, malformed value, ...). */
export class PolicyEvaluationError extends Error {}

const lookupCache = new WeakMap<ContextMap, ContextLookup>()

/** A case-insensitive view of a context map; two keys differing only in case are a caller bug. */
export function contextLookup(context: ContextMap): ContextLookup {
  const cached = lookupCache.get(context)
  if (cached) return cached
  const byLowerName = new Map<string, ContextValue>()
  for (const [key, value] of Object.entries(context)) {
    const lower = key.toLowerCase()
    if (byLowerName.has(lower))
      throw new PolicyEvaluationError(`request context names '${key}' twice (keys ignore case)`)
    byLowerName.set(lower, value)
  }
  const lookup: ContextLookup = (key) => byLowerName.get(key.toLowerCase())
  lookupCache.set(context, lookup)
  return lookup
}
