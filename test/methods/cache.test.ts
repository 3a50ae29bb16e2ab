import assert from 'node:assert/strict'

import {CredentialCache, LAST_GOOD_MARGIN_MS} from '../../src/lib/methods/cache.js'
import type {Credentials} from '../../src/lib/methods/credentials.js'

const MIN = 60_000
const HOUR = 60 * MIN

/** A fake clock and an issuer that counts its calls and can be made to fail. */
function world() {
  let now = 1_000_000_000_000
  let issued = 0
  let failing: Error | null = null
  const warnings: string[] = []
  const cache = new CredentialCache({now: () => now, maxEntries: 100, failureTtlMs: 30_000, warn: (m) => warnings.push(m)})
  const issue = async (): Promise<Credentials> => {
    issued++
    if (failing) throw failing
    return {accessKeyId: `AKIA${issued}`, secretAccessKey: 's', sessionToken: 't', expiration: new Date(now + HOUR), arn: 'arn'}
  }
  const settle = () => new Promise((resolve) => setImmediate(resolve))
  return {
    cache,
    issue,
    warnings,
    settle,
    advance: (ms: number) => (now += ms),
    issuedCount: () => issued,
    fail: (error: Error | null) => (failing = error),
  }
}

describe('the credential cache', () => {
  it('serves one set while more than max(15 min, 25% of its lifetime) remains', async () => {
    const w = world()
    await w.cache.get('k', w.issue)
    w.fail(new Error('refresh refused')) // so the set in hand stays the only one
    w.advance(44 * MIN) // 16 minutes left
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA1')
    assert.equal(w.warnings.filter((m) => m.includes('last good')).length, 0, 'served as fresh, not as a fallback')
  })

  it('refreshes in the background halfway to the end of the serving window, and serves the new set after', async () => {
    const w = world()
    await w.cache.get('k', w.issue)
    // Before the refresh point: no new call
    w.advance(20 * MIN)
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA1')
    assert.equal(w.issuedCount(), 1)
    // Past it (22.5 min of 45): the old set is served and a refresh starts
    w.advance(3 * MIN)
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA1')
    await w.settle()
    assert.equal(w.issuedCount(), 2)
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA2')
    assert.equal(w.issuedCount(), 2)
  })

  it('never hands out a set with 15 minutes or less left: it issues a new one first', async () => {
    const w = world()
    w.fail(null)
    await w.cache.get('k', w.issue)
    w.fail(new Error('background refresh refused'))
    w.advance(30 * MIN)
    await w.cache.get('k', w.issue) // starts a refresh that fails
    await w.settle()
    w.fail(null)
    w.advance(16 * MIN) // 14 minutes left, past the failure's 30 s memory
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA3')
  })

  it('keeps serving the last good set while refreshes fail and it is still valid, then gives up', async () => {
    const w = world()
    await w.cache.get('k', w.issue)
    w.fail(new Error('STS throttled'))
    w.advance(50 * MIN) // 10 minutes left
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA1')
    assert.match(w.warnings.join('\n'), /serving last good credentials .*STS throttled/)
    w.advance(HOUR / 6 - LAST_GOOD_MARGIN_MS + 1) // within a minute of expiry
    await assert.rejects(w.cache.get('k', w.issue), /STS throttled/)
  })

  it('remembers a failure briefly instead of calling again for every request', async () => {
    const w = world()
    w.fail(new Error('AccessDenied'))
    for (let i = 0; i < 5; i++) await assert.rejects(w.cache.get('k', w.issue), /AccessDenied/)
    assert.equal(w.issuedCount(), 1)
    w.advance(31_000)
    w.fail(null)
    assert.equal((await w.cache.get('k', w.issue)).accessKeyId, 'AKIA2')
  })

  it('makes 200 concurrent requests for one key share a single issue', async () => {
    const w = world()
    const results = await Promise.all(Array.from({length: 200}, () => w.cache.get('k', w.issue)))
    assert.equal(w.issuedCount(), 1)
    assert.ok(results.every((r) => r.accessKeyId === 'AKIA1'))
  })

  it('keeps different keys apart', async () => {
    const w = world()
    const a = await w.cache.get('a', w.issue)
    const b = await w.cache.get('b', w.issue)
    assert.notEqual(a.accessKeyId, b.accessKeyId)
  })

  it('stays within its bound, dropping the least recently used', async () => {
    const w = world()
    const small = new CredentialCache({now: () => 0, maxEntries: 3, failureTtlMs: 0})
    for (const k of ['a', 'b', 'c', 'd']) await small.get(k, w.issue)
    assert.equal(small.size, 3)
    const before = w.issuedCount()
    await small.get('a', w.issue) // evicted: issued again
    assert.equal(w.issuedCount(), before + 1)
  })

  it('refreshes recently active keys in the background without waiting for a request, and leaves idle ones', async () => {
    const w = world()
    await w.cache.get('active', w.issue)
    await w.cache.get('idle', w.issue)
    w.advance(10 * MIN)
    await w.cache.get('active', w.issue) // asked again: active
    w.advance(14 * MIN) // past the refresh point (22.5 min) of both
    assert.equal(w.cache.refreshActive(20 * MIN), 1, 'only the key asked for within 20 minutes')
    await w.settle()
    assert.equal(w.issuedCount(), 3)
    assert.equal((await w.cache.get('active', w.issue)).accessKeyId, 'AKIA3')
    assert.equal(w.cache.refreshActive(20 * MIN), 0, 'fresh now: nothing to do')
  })
})
