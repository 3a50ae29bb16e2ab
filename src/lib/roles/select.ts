// Which local users a `roles sync` run covers: those named, every IAM user whose name fits
// iam_name_pattern (--all), or the members of an IAM group (--group). IAM users are turned back
// into local names by inverting the pattern.
import type {IamSource, IamUser} from '../iam/model.js'
import type {Config} from '../config/schema.js'
import {NotFoundError} from '../errors.js'

export interface RoleSelection {
  /** Local user names, as given. */
  users: string[]
  /** Every IAM user whose name fits [method_CreateUserRole] iam_name_pattern. */
  all?: boolean
  /** Only the members of this IAM group (alone, or narrowing --all). */
  group?: string
}

/**
 * The inverse of a name pattern: the local name an IAM user name was made from, or null when
 * the name does not fit. `{username}` → identical names, `iam-{username}` strips the prefix,
 * `{{`/`}}` are literal braces. A pattern without `{username}` names no local user.
 */
export function localNameMatcher(pattern: string): (iamName: string) => string | null {
  let source = ''
  let placeholders = 0
  for (const token of pattern.match(/\{\{|\}\}|\{username\}|[^{}]+|[{}]/g) ?? []) {
    if (token === '{username}') source += placeholders++ === 0 ? '(.+)' : '\\1'
    else
      source += (token === '{{' ? '{' : token === '}}' ? '}' : token).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  }
  if (placeholders === 0) return () => null
  const regex = new RegExp(`^${source}$`, 's')
  return (iamName) => regex.exec(iamName)?.[1] ?? null
}

/** The local users to sync, each once, in the order given (named) or by IAM user name. */
export async function selectLocalUsers(
  source: IamSource,
  config: Config,
  selection: RoleSelection,
): Promise<string[]> {
  const unique = (names: string[]) => [...new Set(names)]
  if (!selection.all && !selection.group) return unique(selection.users)
  let iamUsers: IamUser[]
  if (selection.group) {
    const members = await source.listGroupUsers(selection.group)
    if (members === null)
      throw new NotFoundError(`IAM group '${selection.group}' not found`, {
        suggestion: 'check the name given with --group',
      })
    iamUsers = members
  } else {
    iamUsers = await source.listUsers()
  }
  const localName = localNameMatcher(config.method_CreateUserRole.iam_name_pattern)
  return unique([
    ...selection.users,
    ...iamUsers.map((u) => localName(u.name)).filter((n): n is string => n !== null),
  ])
}
