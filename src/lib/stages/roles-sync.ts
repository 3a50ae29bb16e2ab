// `roles sync`: the selected local users' CreateUserRole roles made to match their IAM users
// (roles/sync.ts does one user, for this and for CreateUserRole in serve), a few at once, with
// the failures of each user in their entry and one exit status for all.
import pLimit from 'p-limit'

import {applyNamePattern} from '../config/schema.js'
import type {ErrorKind} from '../errors.js'
import {RoleSelection, selectLocalUsers} from '../roles/select.js'
import {RoleSyncDeps, RoleSyncResult, syncUserRole, UserRoleSync, UserRoleSyncOptions} from '../roles/sync.js'

export interface SyncRolesOptions extends UserRoleSyncOptions {
  /** Users synced at once (default 4). */
  concurrency?: number
  /** Called with 0 once the users are known, then after each user. */
  onProgress?: (done: number, total: number) => void
}

export interface SyncRolesReport {
  result: RoleSyncResult
  warnings: Array<{user: string; message: string}>
  /**
   * null when every user succeeded; else the kind every failure shares, or 'unexpected' when
   * they differ. The command's exit status is this kind's code.
   */
  failure: ErrorKind | null
}

/**
 * Syncs the selected users' roles. Fails as a whole only when the users cannot be listed or the
 * instance role cannot be found; each user's own failure is in its entry.
 */
export async function syncRoles(
  deps: RoleSyncDeps,
  selection: RoleSelection,
  options: SyncRolesOptions,
): Promise<SyncRolesReport> {
  await deps.source.getInstanceRole()
  const users = await selectLocalUsers(deps.source, deps.config, selection)
  const dryRun = options.dryRun || deps.iam === null

  // Two local users whose pattern gives one role would fight over it.
  const roleOf = (u: string) => applyNamePattern(deps.config.method_CreateUserRole.role_name_pattern, u)
  const sharers = new Map<string, string[]>()
  for (const u of users) sharers.set(roleOf(u), [...(sharers.get(roleOf(u)) ?? []), u])

  const limit = pLimit(options.concurrency ?? 4)
  let done = 0
  options.onProgress?.(0, users.length)
  const outcomes = await Promise.all(
    users.map((u) =>
      limit(async (): Promise<UserRoleSync> => {
        const shared = sharers.get(roleOf(u))!
        const outcome =
          shared.length > 1
            ? await syncUserRole({...deps, iam: null}, u, {dryRun: true}).then((o) => ({
                ...o,
                entry: {
                  ...o.entry,
                  changes: [],
                  error: `local users ${shared.join(', ')} would all get role ${o.entry.role}: [method_CreateUserRole] role_name_pattern must contain {username}`,
                },
                status: 'failed' as const,
                failure: 'usage' as const,
              }))
            : await syncUserRole(deps, u, {dryRun, adopt: options.adopt})
        options.onProgress?.(++done, users.length)
        return outcome
      }),
    ),
  )

  const kinds = new Set(outcomes.map((o) => o.failure).filter((k): k is ErrorKind => k !== null))
  return {
    result: {dryRun, roles: outcomes.map((o) => o.entry)},
    warnings: outcomes.flatMap((o) => o.warnings.map((message) => ({user: o.entry.user, message}))),
    failure: kinds.size === 0 ? null : kinds.size === 1 ? [...kinds][0] : 'unexpected',
  }
}
