// The plan of a role sync: the changes that take a role from what it is (or its absence) to
// what the IAM user says it should be, in the order they are applied. Permissions go before
// they come: trust and boundary first, then removals, then additions, the tags that mark the
// role as ours last. Comparisons are semantic, so a second run right after a first plans nothing.
import type {RolePolicies} from '../iam/model.js'
import {PolicyDocument, statementsOf} from '../iam/document.js'
import {canonicalJson} from '../policy/statement.js'
import {DesiredRole, MANAGED_TAG, MANAGED_TAG_VALUE} from './desired.js'

export type RoleChangeOp =
  | 'create-role'
  | 'update-trust'
  | 'attach-policy'
  | 'detach-policy'
  | 'put-inline'
  | 'delete-inline'
  | 'set-boundary'
  | 'delete-boundary'
  | 'tag-role'

/**
 * One change. target: the role name (create-role), the trusted principal (update-trust), a
 * policy ARN (attach-policy, detach-policy, set-boundary, delete-boundary), an inline policy
 * name (put-inline, delete-inline), or `KEY=VALUE` (tag-role).
 */
export interface RoleChange {
  op: RoleChangeOp
  target: string
}

export interface RolePlan {
  role: string
  roleArn: string
  /** Whether the role existed when the plan was made. */
  exists: boolean
  changes: RoleChange[]
  /** Why nothing of this role may be changed (one line); null when the plan can be applied. */
  error: string | null
}

export interface PlanOptions {
  /** Take over a role of that name that lacks the ec2userkeyd tag. */
  adopt?: boolean
}

// ------------------------------------------------------------------ semantic comparison

const sortedSet = (values: string[]): string[] => [...new Set(values)].sort()
const asList = (v: unknown): string[] => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String))

function normalisePrincipal(p: unknown): unknown {
  if (p === undefined || typeof p === 'string') return p
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return p
  return Object.fromEntries(
    Object.entries(p as Record<string, unknown>).map(([type, v]) => [type, sortedSet(asList(v))]),
  )
}

function normaliseCondition(c: unknown): unknown {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return c
  const out: Record<string, Record<string, string[]>> = {}
  for (const [operator, byKey] of Object.entries(c as Record<string, unknown>)) {
    if (byKey === null || typeof byKey !== 'object' || Array.isArray(byKey)) return c
    // Condition keys are case-insensitive in IAM; their values are not.
    for (const [key, values] of Object.entries(byKey as Record<string, unknown>))
      (out[operator] ??= {})[key.toLowerCase()] = sortedSet(asList(values))
  }
  return Object.keys(out).length > 0 ? out : undefined
}

/**
 * A policy as IAM judges it: Sids dropped, single strings and one-element lists alike, lists and
 * statements as sets, key order and the case of action names and condition keys ignored.
 */
export function normalisePolicy(doc: PolicyDocument): string {
  const statements = statementsOf(doc).map((s) =>
    canonicalJson({
      Effect: s.Effect,
      Principal: normalisePrincipal(s.Principal),
      NotPrincipal: normalisePrincipal(s.NotPrincipal),
      Action: s.Action === undefined ? undefined : sortedSet(asList(s.Action).map((a) => a.toLowerCase())),
      NotAction:
        s.NotAction === undefined ? undefined : sortedSet(asList(s.NotAction).map((a) => a.toLowerCase())),
      Resource: s.Resource === undefined ? undefined : sortedSet(asList(s.Resource)),
      NotResource: s.NotResource === undefined ? undefined : sortedSet(asList(s.NotResource)),
      Condition: normaliseCondition(s.Condition),
    }),
  )
  // Without a Version, IAM reads the 2008-10-17 grammar (no policy variables).
  return canonicalJson({Version: doc.Version ?? '2008-10-17', Statement: sortedSet(statements)})
}

export const samePolicy = (a: PolicyDocument, b: PolicyDocument): boolean =>
  normalisePolicy(a) === normalisePolicy(b)

// ------------------------------------------------------------------ the plan

export function isManagedRole(role: RolePolicies['role']): boolean {
  return role.tags[MANAGED_TAG]?.toLowerCase() === MANAGED_TAG_VALUE
}

const tagChanges = (desired: DesiredRole, current: Record<string, string>): RoleChange[] =>
  Object.entries(desired.tags)
    .filter(([key, value]) => current[key] !== value)
    .map(([key, value]) => ({op: 'tag-role', target: `${key}=${value}`}))

export function planRoleSync(
  desired: DesiredRole,
  current: RolePolicies | null,
  options: PlanOptions = {},
): RolePlan {
  const base = {role: desired.name, roleArn: current?.role.arn ?? desired.arn, exists: current !== null}
  if (desired.problems.length > 0) return {...base, changes: [], error: desired.problems.join('; ')}

  if (current === null) {
    // CreateRole sets trust, boundary and tags in one call; the plan still shows each.
    const changes: RoleChange[] = [{op: 'create-role', target: desired.name}]
    if (desired.permissionsBoundaryArn)
      changes.push({op: 'set-boundary', target: desired.permissionsBoundaryArn})
    for (const p of desired.attached) changes.push({op: 'attach-policy', target: p.arn})
    for (const p of desired.inline) changes.push({op: 'put-inline', target: p.name})
    changes.push(...tagChanges(desired, {}))
    return {...base, changes, error: null}
  }

  const role = current.role
  if (!isManagedRole(role) && !options.adopt)
    return {
      ...base,
      changes: [],
      error:
        `role ${role.name} (for IAM user ${desired.iamUser}) exists but is not managed by ec2userkeyd (no tag ${MANAGED_TAG}=${MANAGED_TAG_VALUE}), so it is left alone: ` +
        'take it over with --adopt, or choose another [method_CreateUserRole] role_name_pattern',
    }

  const changes: RoleChange[] = []
  if (!samePolicy(role.trustPolicy, desired.trustPolicy))
    changes.push({op: 'update-trust', target: desired.trusted})
  const boundary = desired.permissionsBoundaryArn
  if (boundary && role.permissionsBoundaryArn !== boundary)
    changes.push({op: 'set-boundary', target: boundary})

  const wantedArns = new Set(desired.attached.map((p) => p.arn))
  for (const p of current.managed)
    if (!wantedArns.has(p.arn)) changes.push({op: 'detach-policy', target: p.arn})
  const wantedNames = new Set(desired.inline.map((p) => p.name))
  for (const p of current.inline)
    if (!wantedNames.has(p.name)) changes.push({op: 'delete-inline', target: p.name})

  // Inline policies that shrink go before those that grow, so the role's running total never
  // passes the larger of its old and new totals (AWS checks the quota on every put).
  const existing = new Map(current.inline.map((p) => [p.name, p.document]))
  const puts = desired.inline.filter((p) => {
    const now = existing.get(p.name)
    return now === undefined || !samePolicy(now, p.document)
  })
  const sizeNow = (name: string) => {
    const doc = existing.get(name)
    return doc === undefined ? 0 : JSON.stringify(doc).length
  }
  const growth = (p: (typeof puts)[number]) => p.text.length - sizeNow(p.name)
  for (const p of [...puts.filter((p) => growth(p) <= 0), ...puts.filter((p) => growth(p) > 0)])
    changes.push({op: 'put-inline', target: p.name})

  const attachedArns = new Set(current.managed.map((p) => p.arn))
  for (const p of desired.attached)
    if (!attachedArns.has(p.arn)) changes.push({op: 'attach-policy', target: p.arn})
  if (!boundary && role.permissionsBoundaryArn)
    changes.push({op: 'delete-boundary', target: role.permissionsBoundaryArn})
  changes.push(...tagChanges(desired, role.tags))
  return {...base, changes, error: null}
}
