// The local users of the end-to-end tests (made with useradd, removed afterwards) and the lock
// that keeps two runs on one machine from sharing them.
import {spawnSync} from 'node:child_process'
import {closeSync, openSync, readFileSync, rmSync, writeSync} from 'node:fs'

import type {TestUser} from './driver.js'

const getent = (db: string, key: string | number): string[] | null => {
  const r = spawnSync('getent', [db, String(key)], {encoding: 'utf8'})
  return r.status === 0 ? r.stdout.trim().split(':') : null
}

/**
 * The test users: made with useradd (no home, no login shell, a user group each) unless a name,
 * uid or group is taken by anything but an earlier run of this test; removed by `remove`.
 */
export class TestUsers {
  readonly made: TestUser[] = []

  constructor(
    private readonly users: ReadonlyArray<{name: string; uid: number}>,
    /** The GECOS comment that marks them as this test's. */
    private readonly mark: string,
  ) {}

  /** Why the users cannot be made here, or null. */
  clash(): string | null {
    for (const {name, uid} of this.users) {
      const byName = getent('passwd', name)
      const byUid = getent('passwd', uid)
      const ours = (entry: string[] | null) =>
        entry && entry[0] === name && entry[2] === String(uid) && entry[4] === this.mark
      if ((byName && !ours(byName)) || (byUid && !ours(byUid)))
        return `user ${name} or uid ${uid} exists on this machine (${(byName ?? byUid)!.slice(0, 3).join(':')}); the test will not touch it`
      if (!byName && getent('group', name))
        return `group ${name} exists on this machine; the test will not touch it`
    }
    return null
  }

  create(): void {
    const shell = ['/usr/sbin/nologin', '/sbin/nologin', '/bin/false'].find(
      (s) => spawnSync('test', ['-x', s]).status === 0,
    )!
    for (const {name, uid} of this.users) {
      // Left over from a run that died before its cleanup (see clash): removed, made again.
      if (getent('passwd', name)) this.delete(name)
      const r = spawnSync('useradd', ['-u', String(uid), '-U', '-M', '-s', shell, '-c', this.mark, name], {
        encoding: 'utf8',
      })
      if (r.status !== 0) throw new Error(`useradd ${name} failed: ${r.stderr.trim()}`)
      const entry = getent('passwd', name)!
      this.made.push({name, uid, gid: Number(entry[3])})
    }
  }

  remove(): string[] {
    const problems: string[] = []
    for (const {name} of this.made.splice(0)) {
      const problem = this.delete(name)
      if (problem) problems.push(problem)
    }
    return problems
  }

  private delete(name: string): string | null {
    const r = spawnSync('userdel', [name], {encoding: 'utf8'})
    // userdel removes the user's group where USERGROUPS_ENAB is on; elsewhere it is ours to remove
    if (getent('group', name)) spawnSync('groupdel', [name])
    return r.status === 0 ? null : `userdel ${name}: ${r.stderr.trim()}`
  }
}

/** One run at a time on a machine: the test users are machine-wide. */
export class RunLock {
  // A fixed path, whatever TMPDIR says: every run on the machine must find the same file
  private static readonly file = '/tmp/ec2userkeyd-e2e.lock'
  private held = false

  /** Null when taken; else who holds it. */
  take(): string | null {
    for (let attempt = 0; attempt < 2; attempt++)
      try {
        const fd = openSync(RunLock.file, 'wx', 0o600)
        writeSync(fd, String(process.pid))
        closeSync(fd)
        this.held = true
        return null
      } catch {
        const pid = Number(readFileSync(RunLock.file, 'utf8').trim())
        try {
          if (pid > 0) process.kill(pid, 0)
          if (pid > 0) return `another run of this test (pid ${pid}) holds ${RunLock.file}`
        } catch {
          // its process is gone: a stale lock
        }
        rmSync(RunLock.file, {force: true})
      }
    return `cannot take ${RunLock.file}`
  }

  release(): void {
    if (this.held) rmSync(RunLock.file, {force: true})
    this.held = false
  }
}

