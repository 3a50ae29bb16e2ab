import assert from 'node:assert/strict'

import {TokenStore} from '../../src/lib/imds/tokens.js'

describe('the IMDSv2 token store', () => {
  let now: number
  const store = (options: {maxPerUid?: number; maxTotal?: number} = {}) =>
    new TokenStore({now: () => now, ...options})
  beforeEach(() => (now = 1_000_000))

  it('mints unguessable tokens: 32 random bytes, base64url, never twice the same', () => {
    const tokens = store()
    const minted = new Set(Array.from({length: 1000}, () => tokens.mint(1001, 60)))
    assert.equal(minted.size, 1000)
    for (const token of minted) assert.match(token, /^[A-Za-z0-9_-]{43}$/)
  })

  it('binds a token to the uid that asked for it', () => {
    const tokens = store()
    const alice = tokens.mint(1001, 60)
    assert.equal(tokens.check(alice, 1001), 'ok')
    assert.equal(tokens.check(alice, 1002), 'invalid')
    assert.equal(tokens.check(alice, 0), 'invalid', 'not even root may use another uid’s token')
  })

  it('expires a token when its TTL has passed, to the millisecond', () => {
    const tokens = store()
    const token = tokens.mint(1001, 2)
    now += 1999
    assert.equal(tokens.remainingSeconds(token, 1001), 1)
    now += 1
    assert.equal(tokens.check(token, 1001), 'invalid')
    assert.equal(tokens.size, 0, 'an expired token is forgotten when seen')
  })

  it('refuses unknown, empty and oversized tokens', () => {
    const tokens = store()
    tokens.mint(1001, 60)
    for (const token of ['', 'x', 'A'.repeat(43), 'A'.repeat(10_000)])
      assert.equal(tokens.check(token, 1001), 'invalid')
  })

  it('refuses TTLs outside 1-21600 seconds', () => {
    const tokens = store()
    for (const ttl of [0, 21601, -1, 1.5, NaN]) assert.throws(() => tokens.mint(1001, ttl), RangeError)
    assert.doesNotThrow(() => tokens.mint(1001, 21600))
  })

  it('keeps at most maxPerUid tokens per uid, dropping that uid’s oldest first', () => {
    const tokens = store({maxPerUid: 3})
    const bobs = tokens.mint(1002, 60)
    const alices = [1, 2, 3, 4].map(() => tokens.mint(1001, 60))
    assert.deepEqual(
      alices.map((t) => tokens.check(t, 1001)),
      ['invalid', 'ok', 'ok', 'ok'],
    )
    assert.equal(tokens.check(bobs, 1002), 'ok', 'one user’s tokens never push out another’s')
  })

  it('keeps at most maxTotal tokens, dropping the oldest of the biggest holder', () => {
    const tokens = store({maxTotal: 3})
    const first = tokens.mint(1001, 60)
    const second = tokens.mint(1002, 60)
    const third = tokens.mint(1002, 60)
    const fourth = tokens.mint(1003, 60)
    assert.deepEqual(
      [tokens.check(first, 1001), tokens.check(second, 1002), tokens.check(third, 1002), tokens.check(fourth, 1003)],
      ['ok', 'invalid', 'ok', 'ok'],
      'uid 1002 holds the most: its oldest goes, not the oldest of all (uid 1001’s)',
    )
    assert.equal(tokens.size, 3)
  })

  it('lets no user evict a light user’s token by minting from many uids', () => {
    // One person with 40 uids (subordinate uids, containers) mints as fast as they can.
    const tokens = store({maxPerUid: 50, maxTotal: 1000})
    const alice = tokens.mint(1001, 21600)
    for (let i = 0; i < 100_000; i++) tokens.mint(200_000 + (i % 40), 21600)
    assert.equal(tokens.check(alice, 1001), 'ok')
    assert.equal(tokens.size, 1000)
    // Only once alice holds as many as the biggest holder can her own go.
    const more = Array.from({length: 30}, () => tokens.mint(1001, 21600))
    assert.equal(tokens.check(more.at(-1)!, 1001), 'ok')
  })

  it('sweeps a uid’s expired tokens before weighing its count against the cap', () => {
    const tokens = store({maxPerUid: 2})
    tokens.mint(1001, 1)
    tokens.mint(1001, 1)
    now += 5000
    const a = tokens.mint(1001, 60)
    const b = tokens.mint(1001, 60)
    assert.deepEqual([tokens.check(a, 1001), tokens.check(b, 1001)], ['ok', 'ok'])
    assert.equal(tokens.size, 2)
  })
})
