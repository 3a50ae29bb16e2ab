// IMDSv2 session tokens minted by the daemon. A token is 32 random bytes, held only in memory
// with the uid that asked for it and its expiry; it is good for that uid alone, so a token
// one user leaks (or another user's process reads from /proc) opens nothing for anyone else.
// The store is bounded per uid and overall: every short-lived CLI process mints a token, and a
// user must not be able to grow the daemon's memory without limit. Past a uid's cap its own
// oldest token goes; past the overall cap, the oldest token of the uid holding the most. So a
// user who mints without end (even from many uids: subordinate uids, containers) only ever
// evicts tokens of the biggest holders, which are their own, never a light user's.
import {randomBytes} from 'node:crypto'

/** IMDS's bounds for X-aws-ec2-metadata-token-ttl-seconds. */
export const TOKEN_TTL_MIN = 1
export const TOKEN_TTL_MAX = 21600

/** Longer than any token this store mints: such a header is refused without a lookup. */
const MAX_TOKEN_LENGTH = 128

export interface TokenStoreOptions {
  now?: () => number
  /** Live tokens one uid may hold (default 500); past it its oldest token goes. */
  maxPerUid?: number
  /** Live tokens in all (default 20,000); past it the oldest token of the uid holding the most goes. */
  maxTotal?: number
}

interface Held {
  uid: number
  expiresAt: number
}

export class TokenStore {
  private readonly now: () => number
  private readonly maxPerUid: number
  private readonly maxTotal: number
  /** Insertion order is minting order: the first entry is the oldest. */
  private readonly tokens = new Map<string, Held>()
  private readonly byUid = new Map<number, Set<string>>()

  constructor(options: TokenStoreOptions = {}) {
    this.now = options.now ?? Date.now
    this.maxPerUid = Math.max(1, options.maxPerUid ?? 500)
    this.maxTotal = Math.max(1, options.maxTotal ?? 20_000)
  }

  get size(): number {
    return this.tokens.size
  }

  /** A new token for `uid`, good for `ttlSeconds` (already checked to be within IMDS's bounds). */
  mint(uid: number, ttlSeconds: number): string {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < TOKEN_TTL_MIN || ttlSeconds > TOKEN_TTL_MAX)
      throw new RangeError(`token TTL ${ttlSeconds} is outside ${TOKEN_TTL_MIN}-${TOKEN_TTL_MAX} seconds`)
    this.sweepExpired(uid)
    const mine = this.byUid.get(uid)
    while (mine && mine.size >= this.maxPerUid) this.drop(mine.values().next().value!)
    while (this.tokens.size >= this.maxTotal) this.drop(this.oldestOfBiggestHolder())
    const token = randomBytes(32).toString('base64url')
    this.tokens.set(token, {uid, expiresAt: this.now() + ttlSeconds * 1000})
    // Looked up again: dropping a uid's last token removes its set.
    const set = this.byUid.get(uid) ?? new Set<string>()
    this.byUid.set(uid, set.add(token))
    return token
  }

  /** 'ok' only for a live token minted for this very uid; unknown, expired or another uid's: 'invalid'. */
  check(token: string, uid: number): 'ok' | 'invalid' {
    return this.remainingSeconds(token, uid) === null ? 'invalid' : 'ok'
  }

  /** Whole seconds the token has left for `uid` (IMDS echoes them), or null when it is not good for it. */
  remainingSeconds(token: string, uid: number): number | null {
    if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null
    const held = this.tokens.get(token)
    if (!held) return null
    const left = held.expiresAt - this.now()
    if (left <= 0) {
      this.drop(token)
      return null
    }
    return held.uid === uid ? Math.ceil(left / 1000) : null
  }

  private drop(token: string): void {
    const held = this.tokens.get(token)
    if (!held) return
    this.tokens.delete(token)
    const mine = this.byUid.get(held.uid)
    mine?.delete(token)
    if (mine?.size === 0) this.byUid.delete(held.uid)
  }

  /**
   * The oldest token of the uid holding the most (ties: the uid that has held tokens the longest).
   * A scan of the holders, only when the store is full: at most maxTotal / 1 uids, in practice
   * a few hundred.
   */
  private oldestOfBiggestHolder(): string {
    let victim: Set<string> | undefined
    for (const set of this.byUid.values()) if (!victim || set.size > victim.size) victim = set
    return victim!.values().next().value!
  }

  /** Expired tokens of `uid` go before its count is weighed against the cap. */
  private sweepExpired(uid: number): void {
    const now = this.now()
    for (const token of this.byUid.get(uid) ?? [])
      if (this.tokens.get(token)!.expiresAt <= now) this.drop(token)
  }
}
