// The session-policy compiler: from an IAM user's policies (and permissions boundary), the
// instance role's policies and the account's trust policies to the inline policy and policy ARNs
// that RestrictedInstanceRole passes to AssumeRole. The guarantee: the session can do nothing
// the IAM user could not, under AWS's whole evaluation logic (identity policies, the boundary,
// trust policies, resource-based policies that name the instance role, and the context keys that
// differ in a role session), and within the instance role it allows what the user is allowed.
// Every step is exact, or errs towards granting less and says so in a warning.
//
//   a. variables      principal variables and principal-side conditions decided for the user
//   b. boundary       the user's permissions boundary folded in
//   c. chaining       every role the session could assume but the user could not, denied
//   d. prune          Allows the instance role's own policies never allow, left out
//   e. merge          statements combined, duplicates and subsumed statements dropped
//   f. wildcards      action lists collapsed with the action catalog
//   g. policy-arns    managed policies passed by ARN where shorter and safe
//   h. minify         minified JSON, Sids dropped
// Without compression only a, b, c and h run: they are correctness, not size.
//
// A resource-based policy that names the instance role (a bucket, queue or key policy; a trust
// policy) grants the role's sessions whatever the session policy allows, whether the role's own
// policies allow it or not. So the instance role's policies may be used only to leave Allows out
// (an under-grant, warned), never to drop a Deny or to widen an Allow: the session policy alone
// must allow nothing the user may not do. (IAM User Guide, "Session policies".)
import type {IamUser, ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../iam/model.js'
import {InputError} from '../errors.js'
import type {ActionCatalog} from './catalog.js'
import type {ConditionBlock, PolicyDocument} from '../iam/document.js'
import {identityPolicyProblem, statementsOf} from '../iam/document.js'
import {globCovers, globIntersects, globMatches, hasWildcard} from './glob.js'
import {
  allOf,
  conditionEntries,
  escapeLiteralVariables,
  inertInSession,
  NO_SINGLE_VALUE,
  widenPrincipalVariables,
  isPrincipalKey,
  judgePrincipalCondition,
  PrincipalContext,
  principalVariableKeys,
  resolvePrincipalVariables,
  sameForSession,
  sessionSide,
  Side,
  userSides,
  Verdict,
} from './principal.js'
import {SESSION_POLICY_LIMIT, sessionPolicySize} from './size.js'
import {canonicalJson, Origin, POLICY_VERSION, renderPolicy, sameCondition, Stmt, toStatement, toStmts} from './statement.js'
import {CHAINING_ACTIONS, readTrust, TrustedPrincipal} from './trust.js'

export type StepName = 'prune' | 'merge' | 'wildcards' | 'policyArns'

export interface CompileOptions {
  /** [method_RestrictedInstanceRole] compress_user_policy: run steps d to g. */
  compress: boolean
  /** Switch single compression steps off (to see what each buys). */
  disable?: Partial<Record<StepName, boolean>>
  /** Needed for step f; without it the step is skipped. */
  catalog?: ActionCatalog
  /** The account of the instance role: only its managed policies (and AWS's) go by ARN. */
  accountId: string
  /** The account's roles with their trust policies (iam:ListRoles); null when they could not be read. */
  roles: RoleTrust[] | null
  /** The session as the daemon asks for it: its RoleSessionName and SourceIdentity (null: none). */
  session: {name: string; sourceIdentity: string | null}
}

export interface CompileResult {
  /** The exact string to send as Policy; null when there is no inline statement. */
  policy: string | null
  policyArns: string[]
  size: {naive: number; compressed: number; limit: number; fits: boolean}
  stages: Array<{name: string; chars: number}>
  warnings: string[]
  /** False when nothing of the user's permissions remains within the role. */
  grantsAnything: boolean
  /** The roles the session may still assume: those whose trust policies admit the IAM user alike. */
  assumableRoles: string[]
}

interface Work {
  stmts: Stmt[]
  warnings: string[]
  /** Managed policies whose statements could go by ARN: false once the boundary forbids it. */
  arnsAllowed: boolean
}

// ------------------------------------------------------------------ step a

function principalContext(user: UserPolicies): PrincipalContext {
  return {username: user.user.name, userid: user.user.id, arn: user.user.arn, tags: user.user.tags}
}

/** Refuses what IAM would: a statement read the wide way could only grant more. */
function requireIdentityPolicy(doc: PolicyDocument, label: string): void {
  const problem = identityPolicyProblem(doc)
  if (problem)
    throw new InputError(`${label}: ${problem}, which IAM refuses in an identity-based policy`, {
      suggestion: 'fix the policy document; nothing was compiled for this user',
    })
}

const statementName = (s: Stmt) => (s.sid ? `statement '${s.sid}' of ${s.origin.label}` : `a statement of ${s.origin.label}`)
const sideNames = (sides: Side[]) => sides.map((x) => x.label).join(' or ')

/**
 * Step a for one statement: null when it can never apply to the user (or must go). Conditions
 * on principal-side keys are decided for each of the user's sides (long-term keys, a session
 * token, MFA) in every Version; the session keeps an Allow only if it applies to the user
 * however he signs, and a Deny if it applies to him any way he signs (the strictest reading).
 */
function resolveStatement(s: Stmt, version: string | undefined, sides: Side[], warnings: string[]): Stmt | null {
  const where = statementName(s)
  const variablesLive = version === POLICY_VERSION
  const resolve = (text: string) => (variablesLive ? resolvePrincipalVariables(text, sides) : escapeLiteralVariables(text))
  const field = s.notResource ? 'NotResource' : 'Resource'

  // An entry with no value on any side matches nothing, for the user as for AWS: it goes. One
  // whose value depends on how the user signs (or cannot be read) is read as broadly as it must
  // be: a Deny's Resource matches every value (${...} → *), and so does an Allow's NotResource;
  // a Deny's NotResource entry, an Allow's Resource entry go.
  const resources: string[] = []
  for (const r of s.resources) {
    const v = resolve(r)
    if (typeof v === 'string') resources.push(v)
    else if (v === NO_SINGLE_VALUE) {
      const widen = (s.effect === 'Deny') !== s.notResource
      if (widen) resources.push(widenPrincipalVariables(r))
      warnings.push(`${s.effect === 'Allow' ? 'narrowed' : 'widened'} ${where}: its ${field} '${r}' uses a principal variable without a single value for the IAM user`)
    }
  }
  let out: Stmt = {...s, resources}
  if (resources.length === 0) {
    if (!s.notResource) return null // matches no resource at all
    out = {...out, notResource: false, resources: ['*']}
  }
  if (!s.condition) return out

  const condition: ConditionBlock = {}
  let perSide: Verdict[] = sides.map(() => true)
  const decided: string[] = []
  for (const {operator, key, values} of conditionEntries(s.condition)) {
    if (isPrincipalKey(key)) {
      perSide = sides.map((side, i) => allOf([perSide[i], judgePrincipalCondition(operator, key, values, side, variablesLive)]))
      decided.push(`${operator} ${key}`)
      continue
    }
    const list = Array.isArray(values) ? values : [values]
    // AWS substitutes variables only in the String and Arn operators' values (IAM User Guide,
    // "Variables and tags"); elsewhere `${` is text, for the user and the session alike.
    const substitutes = /^(ForAnyValue:|ForAllValues:)?(String|Arn)/i.test(operator)
    const resolved = list.map((v) => (typeof v === 'string' && substitutes ? resolve(v) : v))
    if (resolved.some((v) => typeof v === 'symbol')) {
      if (s.effect === 'Allow') {
        warnings.push(`dropped ${where}: its condition ${operator} ${key} uses a principal variable the IAM user has no single value for`)
        return null
      }
      warnings.push(`widened ${where}: dropped its condition ${operator} ${key} (a principal variable without a single value)`)
      continue
    }
    condition[operator] ??= {}
    condition[operator][key] = (Array.isArray(values) ? resolved : resolved[0]) as string | string[]
  }
  const applies = sides.filter((_, i) => perSide[i] === true)
  const may = sides.filter((_, i) => perSide[i] !== false)
  const what = decided.join(', ')
  if (s.effect === 'Allow') {
    if (applies.length < sides.length) {
      if (may.length === sides.length) warnings.push(`dropped ${where}: cannot decide its condition ${what} for the IAM user`)
      else if (may.length > 0) warnings.push(`dropped ${where}: it allows the IAM user only when signing with ${sideNames(may)} (${what}), which the session does not`)
      return null
    }
  } else if (may.length === 0) return null
  else if (applies.length < sides.length)
    warnings.push(
      may.length === sides.length
        ? `${where} denies the IAM user under a condition that cannot be decided for it (${what}); the session is always denied it`
        : `${where} denies the IAM user only when signing with ${sideNames(may)} (${what}); the session is always denied it`,
    )
  return Object.keys(condition).length > 0 ? {...out, condition} : {...out, condition: undefined}
}

function collectUserStatements(user: UserPolicies, sides: Side[], warnings: string[]): Stmt[] {
  const docs: Array<{doc: PolicyDocument; origin: Origin}> = [
    ...user.inline.map((p) => ({doc: p.document, origin: {label: `user inline policy ${p.name}`}})),
    ...user.managed.map((p) => ({doc: p.document, origin: {label: `managed policy ${p.name}`, managedArn: p.arn}})),
  ]
  for (const g of user.groups) {
    docs.push(...g.inline.map((p) => ({doc: p.document, origin: {label: `group ${g.name} inline policy ${p.name}`}})))
    docs.push(...g.managed.map((p) => ({doc: p.document, origin: {label: `group ${g.name} managed policy ${p.name}`, managedArn: p.arn}})))
  }
  const out: Stmt[] = []
  for (const {doc, origin} of docs) {
    requireIdentityPolicy(doc, origin.label)
    for (const s of toStmts(doc, origin)) {
      const r = resolveStatement(s, doc.Version, sides, warnings)
      if (r) out.push(doc.Version === POLICY_VERSION && !s.notResource && s.resources.some(inertInSession) ? {...r, resolvedPrincipal: true} : r)
    }
  }
  return out
}

/**
 * Step a on its own, for copying a user's policy into a role (roles sync): principal variables
 * resolved for the IAM user, principal-side conditions decided for it. Sids are kept. The
 * document is null when no statement of it can ever apply to the user.
 */
export function resolvePolicyForUser(document: PolicyDocument, user: IamUser, label: string): {document: PolicyDocument | null; warnings: string[]} {
  const warnings: string[] = []
  const sides = userSides({username: user.name, userid: user.id, arn: user.arn, tags: user.tags})
  requireIdentityPolicy(document, label)
  const kept = toStmts(document, {label})
    .map((s) => resolveStatement(s, document.Version, sides, warnings))
    .filter((s): s is Stmt => s !== null)
  if (kept.length === 0) return {document: null, warnings}
  // Always 2012-10-17: step a escapes the literal `${` of older documents for that version.
  return {document: {Version: POLICY_VERSION, Statement: kept.map((s) => toStatement(s, {sid: true}))}, warnings}
}

// ------------------------------------------------------------------ set helpers

type Dim = 'action' | 'resource'
const norm = (dim: Dim, p: string) => (dim === 'action' ? p.toLowerCase() : p)
const list = (s: Stmt, dim: Dim) => (dim === 'action' ? s.actions : s.resources)
const isNot = (s: Stmt, dim: Dim) => (dim === 'action' ? s.notAction : s.notResource)

/** A pattern with a variable we cannot judge statically is treated as matching anything. */
const judgeable = (p: string) => (p.includes('${') ? '*' : p)

function covers(dim: Dim, outer: string, inner: string): boolean {
  if (outer.includes('${') || inner.includes('${')) return outer === inner || outer === '*'
  return globCovers(norm(dim, outer), norm(dim, inner))
}
function intersects(dim: Dim, a: string, b: string): boolean {
  return globIntersects(norm(dim, judgeable(a)), norm(dim, judgeable(b)))
}

/** Can the two statements' sets in one dimension share an element? (true when unsure) */
function dimIntersects(dim: Dim, a: Stmt, b: Stmt): boolean {
  const la = list(a, dim)
  const lb = list(b, dim)
  if (!isNot(a, dim) && !isNot(b, dim)) return la.some((x) => lb.some((y) => intersects(dim, x, y)))
  if (isNot(a, dim) && isNot(b, dim)) return true
  const [pos, neg] = isNot(a, dim) ? [lb, la] : [la, lb]
  // Disjoint only when every positive pattern lies inside the excluded set.
  return !pos.every((p) => neg.some((n) => covers(dim, n, p)))
}

/** Does `outer`'s set in one dimension contain all of `inner`'s? (false when unsure) */
function dimCovers(dim: Dim, outer: Stmt, inner: Stmt): boolean {
  const lo = list(outer, dim)
  const li = list(inner, dim)
  if (!isNot(outer, dim) && !isNot(inner, dim)) return li.every((i) => lo.some((o) => covers(dim, o, i)))
  if (isNot(outer, dim) && !isNot(inner, dim)) return li.every((i) => lo.every((n) => !intersects(dim, n, i)))
  if (isNot(outer, dim) && isNot(inner, dim)) return lo.every((o) => li.some((i) => covers(dim, i, o)))
  return lo.some((o) => o === '*')
}

const disjoint = (a: Stmt, b: Stmt) => !dimIntersects('action', a, b) || !dimIntersects('resource', a, b)
const stmtCovers = (outer: Stmt, inner: Stmt) =>
  (!outer.condition || sameCondition(outer.condition, inner.condition)) && dimCovers('action', outer, inner) && dimCovers('resource', outer, inner)

// ------------------------------------------------------------------ step b

/** Intersection of two pattern lists in one dimension; undefined when not expressible. */
function intersectDim(dim: Dim, a: Stmt, b: Stmt): {list: string[]; not: boolean} | undefined {
  const la = list(a, dim)
  const lb = list(b, dim)
  if (isNot(a, dim) && isNot(b, dim)) return {list: dedupe([...la, ...lb]), not: true}
  if (!isNot(a, dim) && !isNot(b, dim)) {
    const out: string[] = []
    for (const x of la)
      for (const y of lb) {
        if (covers(dim, y, x)) out.push(x)
        else if (covers(dim, x, y)) out.push(y)
        else if (intersects(dim, x, y)) return undefined
      }
    return {list: dedupe(out), not: false}
  }
  const [pos, neg] = isNot(a, dim) ? [lb, la] : [la, lb]
  const out: string[] = []
  for (const p of pos) {
    if (neg.some((n) => covers(dim, n, p))) continue
    if (neg.some((n) => intersects(dim, n, p))) return undefined
    out.push(p)
  }
  return {list: out, not: false}
}

function mergeConditions(a?: ConditionBlock, b?: ConditionBlock): ConditionBlock | undefined | null {
  if (!a) return b
  if (!b) return a
  const out: ConditionBlock = structuredClone(a)
  for (const {operator, key, values} of conditionEntries(b)) {
    // Operators and keys compare case-insensitively: one block may name each only once.
    const op = Object.keys(out).find((o) => o.toLowerCase() === operator.toLowerCase()) ?? operator
    const k = Object.keys(out[op] ?? {}).find((x) => x.toLowerCase() === key.toLowerCase()) ?? key
    const existing = out[op]?.[k]
    if (existing !== undefined && canonicalJson(existing) !== canonicalJson(values)) return null // AND of two value sets: not expressible
    out[op] ??= {}
    out[op][k] = values as string | string[]
  }
  return out
}

function intersectStatements(u: Stmt, b: Stmt): Stmt | null | undefined {
  const actions = intersectDim('action', u, b)
  const resources = intersectDim('resource', u, b)
  const condition = mergeConditions(u.condition, b.condition)
  if (!actions || !resources || condition === null) return undefined
  if ((!actions.not && actions.list.length === 0) || (!resources.not && resources.list.length === 0)) return null
  return {...u, actions: actions.list, notAction: actions.not, resources: resources.list, notResource: resources.not, condition}
}

function foldBoundary(work: Work, boundary: ManagedPolicy | null, sides: Side[]): void {
  if (!boundary) return
  const origin: Origin = {label: `permissions boundary ${boundary.name}`}
  requireIdentityPolicy(boundary.document, origin.label)
  const stmts = toStmts(boundary.document, origin)
    .map((s) => resolveStatement(s, boundary.document.Version, sides, work.warnings))
    .filter((s): s is Stmt => s !== null)
  const denies = stmts.filter((s) => s.effect === 'Deny')
  const allows = stmts.filter((s) => s.effect === 'Allow')
  const userDenies = work.stmts.filter((s) => s.effect === 'Deny')
  const userAllows = work.stmts.filter((s) => s.effect === 'Allow')

  if (allows.length === 0) {
    work.warnings.push(`the permissions boundary ${boundary.name} allows nothing for this user, so the IAM user has no permissions`)
    work.stmts = [...userDenies, ...denies]
    // Managed policies passed by ARN would bring their Allows back past the boundary.
    work.arnsAllowed = false
    return
  }
  const simple = allows.every((s) => !s.condition && !s.notAction && !s.notResource && s.resources.includes('*'))
  if (simple) {
    const actions = dedupe(allows.flatMap((s) => s.actions))
    const extra: Stmt[] = actions.includes('*') ? [] : [{effect: 'Deny', notAction: true, actions, notResource: false, resources: ['*'], origin}]
    work.stmts = [...userAllows, ...userDenies, ...denies, ...extra]
    return
  }
  // The boundary cannot be expressed as Denies: intersect every user Allow with it. The
  // session then no longer equals "user policies ∪ …", so nothing may go by ARN.
  work.arnsAllowed = false
  const intersected: Stmt[] = []
  for (const u of userAllows)
    for (const b of allows) {
      const i = intersectStatements(u, b)
      if (i === undefined)
        work.warnings.push(
          `dropped part of ${u.origin.label}: its intersection with the permissions boundary ${boundary.name} cannot be written as one statement`,
        )
      else if (i) intersected.push(i)
    }
  work.stmts = [...intersected, ...userDenies, ...denies]
}

// ------------------------------------------------------------------ step c

/** A pattern that holds a variable may match anything, and may match nothing. */
const mayMatch = (pattern: string, value: string) => pattern.includes('${') || globMatches(pattern, value)
const surelyMatches = (pattern: string, value: string) => !pattern.includes('${') && globMatches(pattern, value)

/** Could this statement apply to `action` (lower case), whatever the resource and conditions? */
function mayApplyTo(s: Stmt, action: string): boolean {
  return s.notAction ? !s.actions.some((p) => surelyMatches(p.toLowerCase(), action)) : s.actions.some((p) => mayMatch(p.toLowerCase(), action))
}

/** Could this statement apply to `action` (lower case) on the concrete `resource` (conditions assumed to hold)? */
function mayApplyOn(s: Stmt, action: string, resource: string): boolean {
  if (!mayApplyTo(s, action)) return false
  return s.notResource ? !s.resources.some((p) => surelyMatches(p, resource)) : s.resources.some((p) => mayMatch(p, resource))
}

/**
 * Step c: the session is a session of the instance role, so every trust policy that admits the
 * instance role admits it: the instance role's own (which trusts itself), every UserRole and
 * CreateUserRole role's. The session may assume only the roles its policy allows whose trust
 * policy admits the IAM user alike (trust.ts); one Deny of the chaining actions on every other
 * resource covers the rest, roles in other accounts and roles made after this read included.
 * Without the account's trust policies, the session may assume no role at all (fail closed).
 */
function closeRoleChaining(
  allows: Stmt[],
  roles: RoleTrust[] | null,
  principals: {session: TrustedPrincipal; user: TrustedPrincipal},
  where: {accountId: string; partition: string; iamUser: string; sourceIdentity: boolean},
): {deny: Stmt; assumable: string[]; warnings: string[]} {
  const origin: Origin = {label: 'role chaining (step c)'}
  const denyAll = (assumable: string[]): Stmt =>
    assumable.length === 0
      ? {effect: 'Deny', actions: [...CHAINING_ACTIONS], notAction: false, resources: ['*'], notResource: false, origin}
      : {effect: 'Deny', actions: [...CHAINING_ACTIONS], notAction: false, resources: assumable, notResource: true, origin}
  const chaining = CHAINING_ACTIONS.map((a) => a.toLowerCase())
  const mayChain = allows.filter((s) => chaining.some((a) => mayApplyTo(s, a)))
  const warnings: string[] = []
  if (roles === null) {
    warnings.push(`the account's trust policies could not be read (iam:ListRoles), so the session may assume no role`)
    return {deny: denyAll([]), assumable: [], warnings}
  }
  const assumable: string[] = []
  const refused: string[] = []
  const lacksSourceIdentity: string[] = []
  const [ASSUME, , SET_SOURCE_IDENTITY] = [0, 1, 2]
  for (const role of roles) {
    // Per action: whether the session's policy may allow it on the role, and how the trust reads it.
    const per = chaining.map((a, i) => ({
      allowed: mayChain.some((s) => mayApplyOn(s, a, role.arn)),
      reading: readTrust(role.trustPolicy, CHAINING_ACTIONS[i], principals.session, principals.user),
    }))
    // A session with a SourceIdentity passes it on: AWS then requires sts:SetSourceIdentity in its
    // policy and in the target's trust for every role it assumes (IAM User Guide, "Permissions
    // required to set source identity": role chaining).
    const ssi = per[SET_SOURCE_IDENTITY]
    const sourceIdentityBlocks = where.sourceIdentity && !(ssi.allowed && ssi.reading.sessionMay)
    // Exempt from the Deny only when AssumeRole is judged alike, and every other action the
    // session may ask for is too (or its trust admits no session for it).
    const exempt =
      per[ASSUME].allowed && per[ASSUME].reading.alike && !sourceIdentityBlocks && per.every(({allowed, reading}) => !allowed || !reading.sessionMay || reading.alike)
    // The user may and the session may not: the trust names the user directly (he needs no
    // identity policy, the session needs its session policy's Allow), or it is not alike.
    const userOnly = per.some(({allowed, reading}) => reading.sessionMay && (reading.userDirect || (allowed && !exempt && reading.userMay)))
    if (exempt) assumable.push(role.arn)
    if (userOnly) refused.push(role.name)
    if (sourceIdentityBlocks && per[ASSUME].allowed && per[ASSUME].reading.sessionMay) lacksSourceIdentity.push(role.name)
  }
  if (lacksSourceIdentity.length > 0)
    warnings.push(
      `the session carries a SourceIdentity, so AWS lets it assume a role only where its policy and the role's trust allow sts:SetSourceIdentity: ${lacksSourceIdentity.slice(0, 3).join(', ')}${lacksSourceIdentity.length > 3 ? ` and ${lacksSourceIdentity.length - 3} more` : ''} ${lacksSourceIdentity.length === 1 ? 'does' : 'do'} not ([general] source_identity = False lifts this)`,
    )
  if (refused.length > 0)
    warnings.push(
      `the session may not assume role${refused.length === 1 ? '' : 's'} ${refused.slice(0, 3).join(', ')}${refused.length > 3 ? ` and ${refused.length - 3} more` : ''}, which IAM user ${where.iamUser} may: ${refused.length === 1 ? 'its trust policy admits' : 'their trust policies admit'} the instance role's session differently`,
    )
  const ownRoles = `arn:${where.partition}:iam::${where.accountId}:role/*`
  const elsewhere = mayChain.some((s) => s.notResource || s.resources.some((p) => globIntersects(judgeable(p), 'arn:*:iam::*:role/*') && !globCovers(ownRoles, judgeable(p))))
  if (elsewhere)
    warnings.push(`IAM user ${where.iamUser}'s policies allow assuming roles in other accounts; the session may not (their trust policies cannot be read here)`)
  assumable.sort()
  return {deny: denyAll(assumable), assumable, warnings}
}

// ------------------------------------------------------------------ step d

interface RoleView {
  allows: Stmt[]
}

function roleView(role: RolePolicies): RoleView {
  const stmts: Stmt[] = []
  const policies = [...role.inline.map((p) => ({p, label: `role ${role.role.name} inline policy ${p.name}`})), ...role.managed.map((p) => ({p, label: `role ${role.role.name} managed policy ${p.name}`}))]
  for (const {p, label} of policies) {
    requireIdentityPolicy(p.document, label)
    stmts.push(...toStmts(p.document, {label}))
  }
  return {allows: stmts.filter((s) => s.effect === 'Allow')}
}

/** Some Allow overlaps what the role's own policies allow and is not wholly inside an unconditional Deny. */
function grantsWithinRole(stmts: Stmt[], role: RoleView): boolean {
  const denies = stmts.filter((s) => s.effect === 'Deny' && !s.condition)
  return stmts.some(
    (s) =>
      s.effect === 'Allow' &&
      !role.allows.every((r) => disjoint(s, r)) &&
      !denies.some((d) => dimCovers('action', d, s) && dimCovers('resource', d, s)),
  )
}

/**
 * Step d: Allows (or parts of them) that the role's own policies never allow are left out.
 * Only Allows: a resource-based policy naming the role may grant what its own policies do not,
 * so a user Deny stays whatever the role allows or denies (the role may change while the
 * session lives, too). Returns how many Allows it left out or narrowed.
 */
function prune(work: Work, role: RoleView): number {
  let leftOut = 0
  const out: Stmt[] = []
  for (const s of work.stmts) {
    if (s.effect === 'Deny') out.push(s)
    else if (role.allows.every((r) => disjoint(s, r))) leftOut++
    else {
      const narrowed = narrow(s, role)
      if (narrowed !== s) leftOut++
      out.push(narrowed)
    }
  }
  work.stmts = out
  return leftOut
}

const jsonLength = (v: string[]) => JSON.stringify(v.length === 1 ? v[0] : v).length

/** Replace an Allow's patterns by the role's patterns inside them, where that is shorter. */
function narrow(s: Stmt, role: RoleView): Stmt {
  let out = s
  for (const dim of ['action', 'resource'] as Dim[]) {
    if (isNot(out, dim)) continue
    const relevant = role.allows.filter((r) => !disjoint(out, r))
    if (relevant.some((r) => isNot(r, dim))) continue
    const rolePatterns = dedupe(relevant.flatMap((r) => list(r, dim)))
    const next: string[] = []
    for (const p of list(out, dim)) {
      const hits = rolePatterns.filter((r) => intersects(dim, p, r))
      if (hits.length === 0) continue // nothing of the role lies there
      if (!p.includes('${') && hits.every((h) => !h.includes('${') && covers(dim, p, h)) && jsonLength(hits) < jsonLength([p]) - 2) next.push(...hits)
      else next.push(p)
    }
    const merged = dedupe(next)
    if (merged.length === 0) return out // kept: the statement-level check said it intersects
    if (jsonLength(merged) < jsonLength(list(out, dim)))
      out = dim === 'action' ? {...out, actions: merged} : {...out, resources: merged}
  }
  return out
}

// ------------------------------------------------------------------ step e

function dedupe(values: string[]): string[] {
  return [...new Set(values)]
}

/** Drop patterns another pattern of the same list already covers. */
function minimalPatterns(dim: Dim, values: string[]): string[] {
  const unique = dedupe(values)
  return unique.filter((v, i) => !unique.some((w, j) => j !== i && covers(dim, w, v) && !(covers(dim, v, w) && j > i)))
}

async function merge(work: Work): Promise<void> {
  let stmts = work.stmts.map((s) => ({
    ...s,
    actions: minimalPatterns('action', s.actions),
    resources: minimalPatterns('resource', s.resources),
  }))
  const sameSet = (dim: Dim, a: Stmt, b: Stmt) => dimCovers(dim, a, b) && dimCovers(dim, b, a) && isNot(a, dim) === isNot(b, dim)
  const mergedPair = (a: Stmt, b: Stmt): Stmt | undefined => {
    if (stmtCovers(a, b)) return a
    if (stmtCovers(b, a)) return b
    if (!a.notResource && !b.notResource && sameSet('action', a, b)) return {...a, resources: minimalPatterns('resource', [...a.resources, ...b.resources]), origin: combine(a, b)}
    if (!a.notAction && !b.notAction && sameSet('resource', a, b)) return {...a, actions: minimalPatterns('action', [...a.actions, ...b.actions]), origin: combine(a, b)}
    return undefined
  }
  // Only statements of one effect and one condition merge: each such group on its own, each
  // statement against the rest until nothing merges (a merged statement is checked again
  // against all after it). Work grows with the groups' sizes, not with the whole policy's.
  const groups = new Map<string, Stmt[]>()
  for (const st of stmts) {
    const key = `${st.effect}\n${canonicalJson(st.condition ?? {})}`
    groups.set(key, [...(groups.get(key) ?? []), st])
  }
  stmts = []
  let pairs = 0
  for (const group of groups.values()) {
    let changed = true
    while (changed) {
      changed = false
      for (let i = 0; i < group.length; i++)
        for (let j = i + 1; j < group.length; ) {
          // A large policy set takes a while: let the daemon answer other users meanwhile.
          if (++pairs % 2000 === 0) await new Promise((resolve) => setImmediate(resolve))
          const merged = mergedPair(group[i], group[j])
          if (!merged) {
            j++
            continue
          }
          group[i] = {...merged, sid: undefined}
          group.splice(j, 1)
          changed = true
          j = i + 1
        }
    }
    stmts.push(...group)
  }
  // An Allow wholly inside an unconditional Deny grants nothing: the Deny covers the session.
  const denies = stmts.filter((s) => s.effect === 'Deny' && !s.condition)
  work.stmts = stmts.filter((s) => s.effect === 'Deny' || !denies.some((d) => dimCovers('action', d, s) && dimCovers('resource', d, s)))
}

function combine(a: Stmt, b: Stmt): Origin {
  return {label: a.origin.label === b.origin.label ? a.origin.label : `${a.origin.label} + ${b.origin.label}`}
}

// ------------------------------------------------------------------ step f

async function collapseWildcards(work: Work, catalog: ActionCatalog): Promise<void> {
  const out: Stmt[] = []
  for (const s of work.stmts) {
    if (s.notAction) {
      out.push(s)
      continue
    }
    const byService = new Map<string, string[]>()
    const kept: string[] = []
    for (const a of s.actions) {
      const service = a.split(':')[0].toLowerCase()
      if (hasWildcard(a) || !a.includes(':')) kept.push(a)
      else byService.set(service, [...(byService.get(service) ?? []), a])
    }
    for (const [service, actions] of byService) {
      const known = await catalog.actions(service)
      if (!known || actions.length < 2) {
        kept.push(...actions)
        continue
      }
      kept.push(...collapseService(service, actions, known))
    }
    out.push({...s, actions: kept})
  }
  work.stmts = out
}

/**
 * Shortest prefixes `service:Prefix*` whose every catalog action is already in the statement,
 * so the wildcard matches no catalogued action the statement did not name. What the role grants
 * does not count: a resource-based policy naming the role may grant it anything.
 */
function collapseService(service: string, actions: string[], known: string[]): string[] {
  const mine = new Set(actions.map((a) => a.toLowerCase()))
  // The catalog's names sorted, with a running count of those not in the statement: a prefix
  // is safe when its range of names holds none of them.
  const names = known.map((k) => k.toLowerCase()).sort()
  const missingBefore = new Uint32Array(names.length + 1)
  names.forEach((n, i) => (missingBefore[i + 1] = missingBefore[i] + (mine.has(n) ? 0 : 1)))
  const lowerBound = (key: string) => {
    let lo = 0
    let hi = names.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (names[mid] < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }
  const result: string[] = []
  const remaining = new Set(mine)
  const prefixOf = (a: string) => a.slice(service.length + 1)
  // Candidate prefixes: every prefix of every action of the statement, shortest first.
  const candidates = dedupe([...mine].flatMap((a) => Array.from({length: prefixOf(a).length}, (_, i) => prefixOf(a).slice(0, i + 1)))).sort(
    (x, y) => x.length - y.length,
  )
  for (const prefix of candidates) {
    const full = `${service}:${prefix}`
    if (missingBefore[lowerBound(`${full}\uffff`)] !== missingBefore[lowerBound(full)]) continue
    const mineCovered = [...remaining].filter((a) => a.startsWith(full))
    if (mineCovered.length === 0) continue
    const wildcard = `${service}:${originalCase(actions, prefix)}*`
    const listed = mineCovered.reduce((n, a) => n + a.length + 3, 0)
    if (wildcard.length + 3 >= listed) continue
    result.push(wildcard)
    for (const a of mineCovered) remaining.delete(a)
  }
  return [...result, ...actions.filter((a) => remaining.has(a.toLowerCase()))]
}

function originalCase(actions: string[], prefix: string): string {
  const hit = actions.find((a) => a.split(':')[1]?.toLowerCase().startsWith(prefix))
  return hit ? hit.split(':')[1].slice(0, prefix.length) : prefix
}

// ------------------------------------------------------------------ step g

/**
 * Whether a managed policy may go by ARN: same account or AWS managed, and every principal key
 * or variable in it judged alike for the user and the session, except Resource entries the
 * session cannot match at all (their resolved copies stay inline).
 */
function eligibleForArn(p: ManagedPolicy, accountId: string, ctx: PrincipalContext, roleTags: Record<string, string>): boolean {
  const arnAccount = /^arn:aws[a-z-]*:iam::([^:]*):policy\//.exec(p.arn)?.[1]
  if (arnAccount !== 'aws' && arnAccount !== accountId) return false
  if (p.document.Version !== POLICY_VERSION) return false
  const alike = (text: string) => principalVariableKeys(text).every((k) => sameForSession(k, ctx, roleTags))
  const strings = (v: unknown) => [v].flat().filter((x): x is string => typeof x === 'string')
  for (const s of statementsOf(p.document)) {
    if (!strings(s.NotResource).every(alike)) return false
    if (!strings(s.Resource).every((r) => inertInSession(r) || alike(r))) return false
    if (s.Condition)
      for (const {key, values} of conditionEntries(s.Condition)) {
        if (isPrincipalKey(key) && !sameForSession(key, ctx, roleTags)) return false
        if (!strings(values).every(alike)) return false
      }
  }
  return true
}

// ------------------------------------------------------------------ the pipeline

function allManaged(user: UserPolicies): ManagedPolicy[] {
  const seen = new Map<string, ManagedPolicy>()
  for (const p of [...user.managed, ...user.groups.flatMap((g) => g.managed)]) seen.set(p.arn, p)
  return [...seen.values()]
}

/** The naive policy: every statement of the user's policies, as written. */
export function naivePolicy(user: UserPolicies): string {
  const docs = [...user.inline, ...user.managed, ...user.groups.flatMap((g) => [...g.inline, ...g.managed])].map((p) => p.document)
  return JSON.stringify({Version: POLICY_VERSION, Statement: docs.flatMap(statementsOf)})
}

export async function compileSessionPolicy(user: UserPolicies, role: RolePolicies, options: CompileOptions): Promise<CompileResult> {
  const on = (step: StepName) => options.compress && !options.disable?.[step]
  const ctx = principalContext(user)
  const sides = userSides(ctx)
  const work: Work = {stmts: [], warnings: [], arnsAllowed: true}
  const naive = naivePolicy(user)
  const stages: CompileResult['stages'] = [{name: 'naive', chars: naive.length}]
  const measure = (name: string, arns: string[] = []) =>
    stages.push({name, chars: sessionPolicySize(work.stmts.length > 0 ? renderPolicy(work.stmts, {sid: true}) : null, arns)})

  work.stmts = collectUserStatements(user, sides, work.warnings)
  measure('variables')
  foldBoundary(work, user.permissionsBoundary, sides)
  measure('boundary')

  const view = roleView(role)
  // One answer with or without compression: nothing of the user's within the role, no session.
  const withinRole = grantsWithinRole(work.stmts, view)
  if (!withinRole)
    work.warnings.push(
      `nothing IAM user ${user.user.name} may do lies within the instance role's own policies, so there is no session (what a resource-based policy grants the instance role is not counted)`,
    )

  const partition = role.role.arn.split(':')[1] || 'aws'
  const roleAccount = role.role.arn.split(':')[4] ?? options.accountId
  const chaining = closeRoleChaining(
    work.stmts.filter((s) => s.effect === 'Allow'),
    options.roles,
    {
      session: {
        arn: role.role.arn,
        id: role.role.id,
        sessionArn: `arn:${partition}:sts::${roleAccount}:assumed-role/${role.role.name}/${options.session.name}`,
        accountId: roleAccount,
        // With SourceIdentity, and without it (the daemon retries without where a role refuses it).
        sides: [options.session.sourceIdentity, null]
          .filter((v, i, all) => all.indexOf(v) === i)
          .map((sourceIdentity) => sessionSide({roleArn: role.role.arn, roleId: role.role.id, sessionName: options.session.name, roleTags: role.role.tags, sourceIdentity})),
      },
      user: {arn: user.user.arn, id: user.user.id, accountId: user.user.arn.split(':')[4] ?? '', sides},
    },
    {accountId: roleAccount, partition, iamUser: user.user.name, sourceIdentity: options.session.sourceIdentity !== null},
  )
  work.warnings.push(...chaining.warnings)
  work.stmts = [...work.stmts, chaining.deny]
  measure('chaining')

  let policyArns: string[] = []
  if (options.compress) {
    const afterChaining = work.stmts
    const runCompression = async (stmts: Stmt[]): Promise<{stmts: Stmt[]; byStep: Array<[string, Stmt[]]>; leftOut: number}> => {
      const w: Work = {...work, stmts, warnings: []}
      const byStep: Array<[string, Stmt[]]> = []
      const leftOut = on('prune') ? prune(w, view) : 0
      byStep.push(['prune', w.stmts])
      if (on('merge')) await merge(w)
      byStep.push(['merge', w.stmts])
      if (on('wildcards') && options.catalog) await collapseWildcards(w, options.catalog)
      byStep.push(['wildcards', w.stmts])
      return {stmts: w.stmts, byStep, leftOut}
    }
    const plain = await runCompression(afterChaining)
    for (const [name, stmts] of plain.byStep) {
      work.stmts = stmts
      measure(name)
    }
    let best = {stmts: plain.stmts, arns: [] as string[], leftOut: plain.leftOut}
    if (on('policyArns') && work.arnsAllowed) {
      // Greedy: send by ARN the managed policies whose statements cost more than their ARN.
      const candidates = allManaged(user)
        .filter((p) => eligibleForArn(p, options.accountId, ctx, role.role.tags))
        .map((p) => ({p, cost: afterChaining.filter((s) => s.origin.managedArn === p.arn && !s.resolvedPrincipal).reduce((n, s) => n + JSON.stringify(toStatement(s)).length + 1, 0)}))
        .filter((c) => c.p.arn.length < c.cost)
        .sort((a, b) => b.cost - a.cost)
        .slice(0, 10)
      if (candidates.length > 0) {
        const byArn = new Set(candidates.map((c) => c.p.arn))
        const rest = afterChaining.filter((s) => !s.origin.managedArn || !byArn.has(s.origin.managedArn) || s.resolvedPrincipal)
        const withArns = await runCompression(rest)
        const arns = [...byArn]
        const size = (stmts: Stmt[], a: string[]) => sessionPolicySize(stmts.length > 0 ? renderPolicy(stmts) : null, a)
        if (size(withArns.stmts, arns) < size(best.stmts, best.arns)) best = {stmts: withArns.stmts, arns, leftOut: withArns.leftOut}
      }
    }
    work.stmts = best.stmts
    policyArns = best.arns
    measure('policy-arns', policyArns)
    if (best.leftOut > 0)
      work.warnings.push(
        `left out ${best.leftOut} Allow statement${best.leftOut === 1 ? '' : 's'} (or parts) that the instance role's own policies never allow: ` +
          'a resource-based policy that names the instance role will not extend them to this session (compress_user_policy = False keeps them)',
      )
  }

  const grantsAnything = withinRole && (!options.compress || policyArns.length > 0 || work.stmts.some((s) => s.effect === 'Allow'))
  const policy = grantsAnything && work.stmts.length > 0 ? renderPolicy(work.stmts) : null
  const compressed = sessionPolicySize(policy, grantsAnything ? policyArns : [])
  stages.push({name: 'minify', chars: compressed})
  const fits = compressed <= SESSION_POLICY_LIMIT
  if (!fits) {
    const largest = work.stmts
      .map((s, i) => ({i, s, n: JSON.stringify(toStatement(s)).length}))
      .sort((a, b) => b.n - a.n)
      .slice(0, 3)
      .map(({i, s, n}) => `#${i + 1} from ${s.origin.label} (${n} chars)`)
    work.warnings.push(`the session policy is ${compressed} characters, over AWS's limit of ${SESSION_POLICY_LIMIT}; largest statements: ${largest.join(', ')}`)
  }
  return {
    policy,
    policyArns: grantsAnything ? policyArns : [],
    size: {naive: naive.length, compressed, limit: SESSION_POLICY_LIMIT, fits},
    stages,
    warnings: work.warnings,
    grantsAnything,
    assumableRoles: chaining.assumable,
  }
}
