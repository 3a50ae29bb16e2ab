// IAM reads for the daemon: each answer (a user's policies, a role, ...) is reused for a short
// TTL and, for one more TTL, answered at once while it is read again in the background; concurrent reads of the same thing share one fetch, failures are remembered briefly
// (so one user cannot make the daemon hammer IAM), and the cache is bounded. Managed policy
// versions are cached for good by the live source itself (a version never changes).
import {LRUCache} from 'lru-cache'

import type {IamRole, IamSource, IamUser, InstanceRole, ManagedPolicy, RolePolicies, UserPolicies} from './model.js'

export interface CachedIamSourceOptions {
  ttlMs: number
  failureTtlMs: number
  maxEntries: number
  now?: () => number
}

type Slot = {value: unknown; until: number; retryAfter?: number} | {error: unknown; until: number}

export class CachedIamSource implements IamSource {
  readonly mode: IamSource['mode']
  private readonly store: LRUCache<string, Slot>
  private readonly inflight = new Map<string, Promise<unknown>>()
  private readonly now: () => number

  constructor(
    private readonly inner: IamSource,
    private readonly options: CachedIamSourceOptions,
  ) {
    this.mode = inner.mode
    this.store = new LRUCache({max: options.maxEntries})
    this.now = options.now ?? Date.now
  }

  private cached<T>(key: string, load: () => Promise<T>): Promise<T> {
    const now = this.now()
    const slot = this.store.get(key)
    if (slot && now < slot.until) return 'error' in slot ? Promise.reject(slot.error) : Promise.resolve(slot.value as T)
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
    const flight = load().then(
      (value) => {
        this.store.set(key, {value, until: this.now() + this.options.ttlMs})
        this.inflight.delete(key)
        return value
      },
      (error: unknown) => {
        // A failed background read keeps the stale value for the rest of its window.
        if (!(stale && 'value' in stale && this.now() < stale.until + this.options.ttlMs))
          this.store.set(key, {error, until: this.now() + this.options.failureTtlMs})
        this.inflight.delete(key)
        throw error
      },
    )
    this.inflight.set(key, flight)
    return flight
  }

  /** Forget what is known of a role (after roles sync changed it). */
  invalidateRole(roleName: string): void {
    this.store.delete(`role:${roleName}`)
    this.store.delete(`role-policies:${roleName}`)
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

  listUsers(): Promise<IamUser[]> {
    return this.cached('users', () => this.inner.listUsers())
  }

  listGroupUsers(groupName: string): Promise<IamUser[] | null> {
    return this.cached(`group-users:${groupName}`, () => this.inner.listGroupUsers(groupName))
  }
}
