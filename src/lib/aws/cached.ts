// IAM reads for the daemon: each answer (a user's policies, a role, ...) is reused for a short
// TTL, concurrent reads of the same thing share one fetch, failures are remembered briefly
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

type Slot = {value: unknown; until: number} | {error: unknown; until: number}

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
    const slot = this.store.get(key)
    if (slot && this.now() < slot.until) return 'error' in slot ? Promise.reject(slot.error) : Promise.resolve(slot.value as T)
    const pending = this.inflight.get(key)
    if (pending) return pending as Promise<T>
    const flight = load().then(
      (value) => {
        this.store.set(key, {value, until: this.now() + this.options.ttlMs})
        this.inflight.delete(key)
        return value
      },
      (error: unknown) => {
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
