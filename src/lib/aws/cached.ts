// IAM reads for the daemon: each answer (a user's policies, a role, ...) is reused for a short
// TTL and, for one more TTL, answered at once while it is read again in the background; concurrent reads of the same thing share one fetch, failures are remembered briefly
// (so one user cannot make the daemon hammer IAM), and the cache is bounded. Managed policy
// versions are cached for good by the live source itself (a version never changes).
import {LRUCache} from 'lru-cache'

import type {IamRole, IamSource, IamUser, InstanceRole, ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../iam/model.js'

export interface CachedIamSourceOptions {
  ttlMs: number
  failureTtlMs: number
  maxEntries: number
  now?: () => number
}

/** `gone`: no longer in the cache (replaced, deleted or evicted): a ReadLog that saw it no longer holds. */
type Slot = ({value: unknown; until: number; retryAfter?: number} | {error: unknown; until: number}) & {gone?: boolean}
type ValueSlot = Extract<Slot, {value: unknown}>

/**
 * What the reads through one recording view (CachedIamSource.recording) were answered with, so
 * that whatever was worked out from them can be reused for as long as the same reads would give
 * the same answers: every read answered from a fresh slot, each slot still the one in the cache
 * (a re-read, a write of roles sync, a forget or an eviction replaces it), none past its TTL.
 */
export class ReadLog {
  private readonly slots: ValueSlot[] = []
  private until = Infinity
  /** Every read so far was answered from a fresh slot (not fetched, not stale, not a failure). */
  private fresh = true

  constructor(private readonly now: () => number) {}

  /** @internal CachedIamSource: a read answered from `slot`, or (undefined) one that was not fresh. */
  saw(slot: ValueSlot | undefined): void {
    if (!slot) this.fresh = false
    else {
      this.slots.push(slot)
      if (slot.until < this.until) this.until = slot.until
    }
  }

  /** The same reads, made now, would be answered from the same slots (and there were some: no reads vouch for nothing). */
  holds(): boolean {
    if (!this.fresh || this.slots.length === 0 || this.now() >= this.until) return false
    for (const slot of this.slots) if (slot.gone) return false
    return true
  }
}

export class CachedIamSource implements IamSource {
  readonly mode: IamSource['mode']
  private readonly store: LRUCache<string, Slot>
  private readonly inflight = new Map<string, Promise<unknown>>()
  private readonly now: () => number
  /** Set on a recording view only (see recording). */
  private readonly log?: ReadLog

  constructor(
    private readonly inner: IamSource,
    private readonly options: CachedIamSourceOptions,
  ) {
    this.mode = inner.mode
    this.store = new LRUCache<string, Slot>({
      max: options.maxEntries,
      dispose: (slot) => {
        slot.gone = true
      },
    })
    this.now = options.now ?? Date.now
  }

  /**
   * This cache as seen by one piece of work: the same store, fetches and writes (the view is an
   * object whose prototype is this source; it is frozen, so that a method that ever assigns a
   * field of its own fails loudly rather than keeping it on the view), with every read noted in
   * `log`.
   */
  recording(): {source: CachedIamSource; log: ReadLog} {
    const log = new ReadLog(this.now)
    const source = Object.freeze(Object.create(this, {log: {value: log}})) as CachedIamSource
    return {source, log}
  }

  private cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const now = this.now()
    const slot = this.store.get(key)
    if (slot && now < slot.until) {
      if ('error' in slot) {
        this.log?.saw(undefined)
        return Promise.reject(slot.error)
      }
      this.log?.saw(slot)
      return Promise.resolve(slot.value as T)
    }
    this.log?.saw(undefined)
    // Expired within one more TTL: answer with what is known and read again in the background,
    // so a request never waits on IAM for data it had a moment ago.
    if (slot && 'value' in slot && now < slot.until + this.options.ttlMs) {
      if (!this.inflight.has(key) && !(slot.retryAfter !== undefined && now < slot.retryAfter))
        this.fetch(key, load).catch(() => {
          slot.retryAfter = this.now() + this.options.failureTtlMs
        })
      return Promise.resolve(slot.value as T)
    }
    return (this.inflight.get(key) as Promise<T> | undefined) ?? this.fetch(key, load)
  }

  private fetch<T>(key: string, load: () => Promise<T>): Promise<T> {
    const stale = this.store.get(key)
    // A read that was dropped meanwhile (a write to what it reads) answers its callers, but its
    // answer may predate the write: it is not kept.
    const current = () => this.inflight.get(key) === flight
    const flight: Promise<T> = load().then(
      (value) => {
        if (current()) {
          this.store.set(key, {value, until: this.now() + this.options.ttlMs})
          this.inflight.delete(key)
        }
        return value
      },
      (error: unknown) => {
        if (current()) {
          // A failed background read keeps the stale value for the rest of its window.
          if (!(stale && 'value' in stale && this.now() < stale.until + this.options.ttlMs))
            this.store.set(key, {error, until: this.now() + this.options.failureTtlMs})
          this.inflight.delete(key)
        }
        throw error
      },
    )
    this.inflight.set(key, flight)
    return flight
  }

  /**
   * Roles sync changed a role and knows what IAM holds now (`policies`, as a read would give
   * them): the next reads answer with it for a TTL instead of reading IAM again, which, just
   * after a write, may not even show it yet.
   */
  recordRole(roleName: string, policies: RolePolicies): void {
    const until = this.now() + this.options.ttlMs
    for (const key of roleKeys(roleName)) this.inflight.delete(key)
    this.store.delete('roles')
    this.store.set(`role:${roleName}`, {value: policies.role, until})
    this.store.set(`role-policies:${roleName}`, {value: policies, until})
  }

  /** Forget everything known of a role, recorded writes too (roles sync failed part way). */
  forgetRole(roleName: string): void {
    for (const key of roleKeys(roleName)) {
      this.store.delete(key)
      this.inflight.delete(key)
    }
  }

  getUserPolicies(userName: string): Promise<UserPolicies | null> {
    return this.cached(`user-policies:${userName}`, () => this.inner.getUserPolicies(userName))
  }

  getRole(roleName: string): Promise<IamRole | null> {
    return this.cached(`role:${roleName}`, () => this.inner.getRole(roleName))
  }

  getRolePolicies(roleName: string): Promise<RolePolicies | null> {
    return this.cached(`role-policies:${roleName}`, () => this.inner.getRolePolicies(roleName))
  }

  getManagedPolicy(arn: string): Promise<ManagedPolicy | null> {
    return this.cached(`managed:${arn}`, () => this.inner.getManagedPolicy(arn))
  }

  getInstanceRole(): Promise<InstanceRole> {
    return this.cached('instance-role', () => this.inner.getInstanceRole())
  }

  listRoles(): Promise<RoleTrust[]> {
    return this.cached('roles', () => this.inner.listRoles())
  }

  listUsers(): Promise<IamUser[]> {
    return this.cached('users', () => this.inner.listUsers())
  }

  listGroupUsers(groupName: string): Promise<IamUser[] | null> {
    return this.cached(`group-users:${groupName}`, () => this.inner.listGroupUsers(groupName))
  }
}

// The account's role list holds the role's trust policy too: a write of roles sync may change it.
const roleKeys = (roleName: string) => [`role:${roleName}`, `role-policies:${roleName}`, 'roles']
