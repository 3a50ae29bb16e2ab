// The per-user roles of CreateUserRole, kept in step with their IAM users, one local user at a
// time: what the daemon runs on demand, and what `roles sync` (stages/roles-sync.ts) runs for
// each user it selects. Each user is read, planned and checked in full before the first write,
// so a user that cannot be synced is left unchanged.
import type {IAMClient} from '@aws-sdk/client-iam'

import {CachedIamSource} from '../aws/cached.js'
import {describeAwsError} from '../aws/errors.js'
import {applyNamePattern, Config} from '../config/schema.js'
import type {ErrorKind, UserError} from '../errors.js'
import {byName, IamSource, ManagedPolicy, RolePolicies, UserPolicies} from '../iam/model.js'
import {isIamName} from '../iam/names.js'
import {ApplyOutcome, applyRolePlan} from './apply.js'
import {DesiredRole, desiredRole, partitionOf} from './desired.js'
import {planRoleSync, RoleChange, RolePlan} from './plan.js'

export type {RoleChange, RoleChangeOp} from './plan.js'
export type {RoleSelection} from './select.js'

/** One user's role: an element of the command's JSON `roles` list. */
export interface RoleSyncEntry {
  /** The local (UNIX) user name. */
  user: string
  iamUser: string
  role: string
  roleArn: string
  /** Whether the role existed before this run. */
  exists: boolean
  /** The changes made (with --dry-run: that would be made); on error, those made before it. */
  changes: RoleChange[]
  error: string | null
}

/** The command's JSON contract. */
export interface RoleSyncResult {
  dryRun: boolean
  roles: RoleSyncEntry[]
}

export interface RoleSyncDeps {
  source: IamSource
  /** For the writes; null means plan only. */
  iam: IAMClient | null
  config: Config
}

export interface UserRoleSyncOptions {
  dryRun: boolean
  /** Take over a role of the user's role name that lacks the ec2userkeyd tag. */
  adopt?: boolean
}

export type RoleSyncStatus = 'ok' | 'no-iam-user' | 'failed'

export interface UserRoleSync {
  entry: RoleSyncEntry
  status: RoleSyncStatus
  /** The kind of failure (its exit code), null when status is ok. */
  failure: ErrorKind | null
  /** Statements step a left out or widened, and similar notes for an admin. */
  warnings: string[]
}

const oneLine = (e: UserError) => `${e.message}${e.suggestion ? ` (${e.suggestion})` : ''}`

/**
 * Plans and (unless dry-run or without a client) applies one local user's role. Never throws:
 * every failure, AWS's or the user's own, is reported in the entry.
 */
export async function syncUserRole(
  deps: RoleSyncDeps,
  localUser: string,
  options: UserRoleSyncOptions,
): Promise<UserRoleSync> {
  const settings = deps.config.method_CreateUserRole
  const iamUser = applyNamePattern(settings.iam_name_pattern, localUser)
  const roleName = applyNamePattern(settings.role_name_pattern, localUser)
  const entry: RoleSyncEntry = {
    user: localUser,
    iamUser,
    role: roleName,
    roleArn: '',
    exists: false,
    changes: [],
    error: null,
  }
  let warnings: string[] = []
  const failed = (failure: ErrorKind, error: string): UserRoleSync => ({
    entry: {...entry, error},
    status: 'failed',
    failure,
    warnings,
  })

  try {
    const instanceRole = await deps.source.getInstanceRole()
    entry.roleArn = `arn:${partitionOf(instanceRole.arn)}:iam::${instanceRole.accountId}:role/${roleName}`
    if (!isIamName(roleName))
      return failed(
        'usage',
        `'${roleName}' (local user '${localUser}', [method_CreateUserRole] role_name_pattern '${settings.role_name_pattern}') is not a valid IAM role name: ` +
          'use at most 64 letters, digits and +=,.@_-',
      )
    const [user, current] = await Promise.all([
      isIamName(iamUser) ? deps.source.getUserPolicies(iamUser) : Promise.resolve(null),
      deps.source.getRolePolicies(roleName),
    ])
    if (current) {
      entry.roleArn = current.role.arn
      entry.exists = true
    }
    if (!user)
      return {
        entry: {
          ...entry,
          error: `no IAM user '${iamUser}' (local user '${localUser}', [method_CreateUserRole] iam_name_pattern '${settings.iam_name_pattern}'): check the name and the pattern`,
        },
        status: 'no-iam-user',
        failure: 'notFound',
        warnings,
      }

    const desired = desiredRole(user, {roleName, config: deps.config, instanceRole})
    warnings = desired.warnings
    const plan = planRoleSync(desired, current, {adopt: options.adopt})
    if (plan.error !== null) return failed('unexpected', plan.error)
    if (options.dryRun || deps.iam === null || plan.changes.length === 0)
      return {entry: {...entry, changes: plan.changes}, status: 'ok', failure: null, warnings}

    const outcome = await applyRolePlan(deps.iam, desired, plan)
    rememberApplied(deps.source, {desired, current, user, plan, outcome})
    if (outcome.error)
      return {
        entry: {...entry, changes: outcome.applied, error: oneLine(outcome.error)},
        status: 'failed',
        failure: outcome.error.kind,
        warnings,
      }
    return {entry: {...entry, changes: outcome.applied}, status: 'ok', failure: null, warnings}
  } catch (error) {
    const e = describeAwsError(error, `reading IAM for local user ${localUser}`)
    return failed(e.kind, oneLine(e))
  }
}

interface Applied {
  desired: DesiredRole
  /** The role as read before the plan (null: it did not exist). */
  current: RolePolicies | null
  user: UserPolicies
  plan: RolePlan
  outcome: ApplyOutcome
}

/**
 * Tells the IAM read cache what the role is after a sync's writes, so that the user's next
 * request does not read it all again (eight calls), and does not miss a role IAM may not show
 * yet. Only when every change was made and every part of the result is known; otherwise the
 * cache forgets the role, and the next sync reads what IAM holds.
 */
function rememberApplied(source: IamSource, applied: Applied): void {
  if (!(source instanceof CachedIamSource)) return
  let after: RolePolicies | null = null
  try {
    after = applied.outcome.error ? null : roleAfter(applied)
  } catch {
    after = null
  }
  if (after) source.recordRole(applied.plan.role, after)
  else source.forgetRole(applied.plan.role)
}

/**
 * The role as IAM holds it once the whole plan is applied, as LiveIamSource.getRolePolicies
 * would read it; null when a part of it is not known here (then it is read again). CreateRole
 * set the trust policy, boundary and tags; the other changes set what their names say; what
 * the plan left alone is as it was read.
 */
export function roleAfter({desired, current, user, plan, outcome}: Applied): RolePolicies | null {
  const ops = new Set(plan.changes.map((c) => c.op))
  const created = outcome.created
  if (ops.has('create-role') !== (created !== null) || (!created && !current)) return null
  const before = current?.role

  const boundaryArn = created
    ? desired.permissionsBoundaryArn
    : ops.has('set-boundary')
      ? desired.permissionsBoundaryArn
      : ops.has('delete-boundary')
        ? null
        : before!.permissionsBoundaryArn

  // Managed policies: those the user's read gave (the role's are the same policies), or the role's own.
  const known = new Map<string, ManagedPolicy>()
  for (const p of [...(current?.managed ?? []), ...user.managed, ...user.groups.flatMap((g) => g.managed)])
    known.set(p.arn, p)
  if (current?.permissionsBoundary) known.set(current.permissionsBoundary.arn, current.permissionsBoundary)
  if (user.permissionsBoundary) known.set(user.permissionsBoundary.arn, user.permissionsBoundary)
  const managed = desired.attached.map((p) => known.get(p.arn))
  const boundary = boundaryArn === null ? null : known.get(boundaryArn)
  if (managed.some((p) => p === undefined) || boundary === undefined) return null

  // Inline policies: the desired ones; what was put is the text sent, the rest is as read.
  const put = new Set(plan.changes.filter((c) => c.op === 'put-inline').map((c) => c.target))
  const read = new Map((current?.inline ?? []).map((p) => [p.name, p.document]))
  const inline = desired.inline.map((p) => ({
    name: p.name,
    document: put.has(p.name) ? JSON.parse(p.text) : read.get(p.name),
  }))
  if (inline.some((p) => p.document === undefined)) return null

  return {
    role: {
      name: desired.name,
      arn: created?.arn ?? before!.arn,
      id: created?.id ?? before!.id,
      path: created?.path ?? before!.path,
      trustPolicy:
        created || ops.has('update-trust') ? structuredClone(desired.trustPolicy) : before!.trustPolicy,
      tags: created ? {...desired.tags} : {...before!.tags, ...desired.tags},
      permissionsBoundaryArn: boundaryArn,
      maxSessionDuration: created?.maxSessionDuration ?? before!.maxSessionDuration,
    },
    inline: inline.sort(byName),
    managed: (managed as ManagedPolicy[]).sort(byName),
    permissionsBoundary: boundary,
  }
}
