// The credential cache of `serve`. Keyed by everything that changes the credentials (method,
// role, session name, policy, policy ARNs, duration). A set is handed out only while more than
// max(15 min, 25% of its lifetime) remains, since SDKs refresh within their last 15 minutes; it
// is refreshed in the background well before then; concurrent requests for one key share one
// AssumeRole; while refreshes fail the last good set is served as long as it is valid; a
// failure is remembered briefly so one user cannot make the daemon hammer STS; and the whole
// cache is bounded (least recently used out first).
import {LRUCache} from 'lru-cache'

import type {Credentials} from './credentials.js'

export const MIN_REMAINING_MS = 15 * 60_000
/** Last-good credentials are served while a refresh fails, until this close to expiry. */
export const LAST_GOOD_MARGIN_MS = 60_000

export interface CredentialCacheOptions {
  now?: () => number
  maxEntries: number
  /** How long a failed issue is remembered (and a failing background refresh not retried). */
  failureTtlMs: number
  /** Told when a background refresh fails or last-good credentials are served. */
  warn?: (message: string) => void
}

interface Entry {
  credentials?: Credentials
  issuedAt?: number
  inflight?: Promise<Credentials>
  failure?: {error: unknown; until: number}
  /** When the entry was last asked for, and how to issue it again (for refreshActive). */
  lastAsked?: number
  issue?: () => Promise<Credentials>
}

export interface CacheStats {
  hits: number
  misses: number
  refreshes: number
  failures: number
}

export class CredentialCache {
  private readonly store: LRUCache<string, Entry>
  private readonly now: () => number
  readonly stats: CacheStats = {hits: 0, misses: 0, refreshes: 0, failures: 0}

  constructor(private readonly options: CredentialCacheOptions) {
    this.store = new LRUCache({max: options.maxEntries})
    this.now = options.now ?? Date.now
  }

  get size(): number {
    return this.store.size
  }

  /** Credentials for `key`, issuing them with `issue` when none can be served. */
  async get(key: string, issue: () => Promise<Credentials>): Promise<Credentials> {
    const now = this.now()
    let entry = this.store.get(key)
    if (!entry) {
      entry = {}
      this.store.set(key, entry)
    }
    entry.lastAsked = now
    entry.issue = issue
    const held = entry.credentials
    if (held && entry.issuedAt !== undefined) {
      const {serveUntil, refreshFrom} = windows(entry.issuedAt, held.expiration.getTime())
      if (now < serveUntil) {
        this.stats.hits++
        const failing = entry.failure && now < entry.failure.until
        if (now >= refreshFrom && !entry.inflight && !failing)
          this.start(key, entry, issue).catch((error) => this.options.warn?.(`background refresh of ${describeKey(key)} failed: ${message(error)}`))
        return held
      }
      // Past the serving window: refresh now (unless one just failed); fall back to the last
      // good set while it is valid.
      try {
        if (entry.failure && now < entry.failure.until) throw entry.failure.error
        return await (entry.inflight ?? this.start(key, entry, issue))
      } catch (error) {
        if (held.expiration.getTime() - this.now() > LAST_GOOD_MARGIN_MS) {
          this.options.warn?.(`serving last good credentials for ${describeKey(key)} (expiring ${held.expiration.toISOString()}): refresh failed: ${message(error)}`)
          return held
        }
        throw error
      }
    }
    if (entry.failure && now < entry.failure.until) {
      this.stats.hits++
      throw entry.failure.error
    }
    if (entry.inflight) return entry.inflight
    this.stats.misses++
    return this.start(key, entry, issue)
  }

  /**
   * Refreshes, in the background, the credentials of keys asked for within `activeWithinMs` that
   * are past their refresh point: SDKs come back only near expiry, and should then find fresh
   * credentials waiting rather than wait for an AssumeRole. Returns how many refreshes started.
   */
  refreshActive(activeWithinMs: number): number {
    const now = this.now()
    let started = 0
    for (const [key, entry] of this.store.entries()) {
      if (!entry.credentials || entry.issuedAt === undefined || !entry.issue || entry.inflight) continue
      if (entry.lastAsked === undefined || now - entry.lastAsked > activeWithinMs) continue
      if (entry.failure && now < entry.failure.until) continue
      if (now < windows(entry.issuedAt, entry.credentials.expiration.getTime()).refreshFrom) continue
      started++
      this.start(key, entry, entry.issue).catch((error) => this.options.warn?.(`background refresh of ${describeKey(key)} failed: ${message(error)}`))
    }
    return started
  }

  private start(key: string, entry: Entry, issue: () => Promise<Credentials>): Promise<Credentials> {
    const refreshing = entry.credentials !== undefined
    if (refreshing) this.stats.refreshes++
    const issuedAt = this.now()
    const flight = issue().then(
      (credentials) => {
        entry.credentials = credentials
        entry.issuedAt = issuedAt
        entry.failure = undefined
        entry.inflight = undefined
        return credentials
      },
      (error: unknown) => {
        this.stats.failures++
        entry.failure = {error, until: this.now() + this.options.failureTtlMs}
        entry.inflight = undefined
        throw error
      },
    )
    entry.inflight = flight
    // Keep the entry (and so its in-flight promise) findable while the call runs.
    this.store.set(key, entry)
    return flight
  }
}

/** When a set stops being handed out, and when its background refresh starts (halfway there). */
export function windows(issuedAt: number, expiresAt: number): {serveUntil: number; refreshFrom: number} {
  const lifetime = expiresAt - issuedAt
  const serveUntil = expiresAt - Math.max(MIN_REMAINING_MS, lifetime / 4)
  return {serveUntil, refreshFrom: issuedAt + (serveUntil - issuedAt) / 2}
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** Keys are JSON arrays [method, roleArn, sessionName, ...]: name the first three in logs. */
function describeKey(key: string): string {
  try {
    const [method, roleArn, session] = JSON.parse(key) as string[]
    return `${method} ${roleArn} session ${session}`
  } catch {
    return key
  }
}
