// The system's user database: uid ↔ name through NSS (`getent passwd`, so LDAP and SSSD users
// resolve as they do for login), or a passwd-format file for offline use and demos.
import {execFile} from 'node:child_process'
import {readFile} from 'node:fs/promises'

import {InputError, NotFoundError, UserError} from '../errors.js'

export interface LocalUser {
  name: string
  uid: number
}

export type UserQuery = {uid: number} | {name: string}

export interface UserDatabase {
  /** null when no such user exists. */
  find(query: UserQuery): Promise<LocalUser | null>
}

const describe = (q: UserQuery) => ('uid' in q ? `uid ${q.uid}` : `user '${q.name}'`)

/** One passwd line (`name:x:uid:gid:gecos:home:shell`), or null when it is not one. */
export function parsePasswdLine(line: string): LocalUser | null {
  const fields = line.split(':')
  if (fields.length < 7 || fields[0] === '' || !/^\d+$/.test(fields[2])) return null
  return {name: fields[0], uid: Number(fields[2])}
}

/** NSS through getent(1): exit 2 means "no such entry". */
export function nssUserDatabase(getent = 'getent'): UserDatabase {
  return {
    find(query) {
      const key = 'uid' in query ? String(query.uid) : query.name
      // A name that getent would read as a uid (all digits) or as an option is not a name.
      if ('name' in query && (/^\d+$/.test(key) || key.startsWith('-') || key === '')) return Promise.resolve(null)
      return new Promise((resolve, reject) => {
        execFile(getent, ['passwd', key], {timeout: 10_000}, (error, stdout) => {
          if (error) {
            if ((error as {code?: unknown}).code === 2) return resolve(null)
            return reject(new UserError('unavailable', `could not look up ${describe(query)} with getent passwd: ${error.message.split('\n')[0]}`))
          }
          const user = parsePasswdLine(stdout.split('\n')[0] ?? '')
          if (!user) return reject(new UserError('unexpected', `getent passwd ${key} printed an entry that is not a passwd line`))
          resolve(user)
        })
      })
    },
  }
}

/** A passwd-format file (`--passwd FILE`): the demo users, or another host's database offline. */
export async function passwdFileDatabase(path: string): Promise<UserDatabase> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new InputError(`cannot read passwd file ${path}: ${(error as Error).message}`, {suggestion: 'give a file in /etc/passwd format'})
  }
  const users: LocalUser[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return
    const user = parsePasswdLine(line)
    if (!user) throw new InputError(`${path}:${i + 1}: not a passwd line (name:x:uid:gid:gecos:home:shell)`)
    users.push(user)
  })
  return {
    async find(query) {
      return users.find((u) => ('uid' in query ? u.uid === query.uid : u.name === query.name)) ?? null
    },
  }
}

/** Like find, but an unknown user is a NotFoundError naming it. */
export async function requireUser(db: UserDatabase, query: UserQuery): Promise<LocalUser> {
  const user = await db.find(query)
  if (!user) throw new NotFoundError(`no local ${describe(query)} in the user database`, {suggestion: 'check the name or uid (getent passwd)'})
  return user
}

/** A group's gid through NSS (`getent group NAME`); null when there is no such group. */
export function groupId(name: string, getent = 'getent'): Promise<number | null> {
  if (/^\d+$/.test(name) || name.startsWith('-') || name === '') return Promise.resolve(null)
  return new Promise((resolve, reject) => {
    execFile(getent, ['group', name], {timeout: 10_000}, (error, stdout) => {
      if (error) {
        if ((error as {code?: unknown}).code === 2) return resolve(null)
        return reject(new UserError('unavailable', `could not look up group '${name}' with getent group: ${error.message.split('\n')[0]}`))
      }
      const gid = stdout.split('\n')[0]?.split(':')[2]
      resolve(gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : null)
    })
  })
}
