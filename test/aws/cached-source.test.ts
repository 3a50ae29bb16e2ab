import assert from 'node:assert/strict'

import {CachedIamSource} from '../../src/lib/aws/cached.js'
import type {IamRole, IamSource, RolePolicies, UserPolicies} from '../../src/lib/iam/model.js'

/** An IamSource that counts its reads; getUserPolicies can be made to fail. */
function countingSource() {
  const reads: string[] = []
  let failing = false
  let version = 0
  const user = (name: string): UserPolicies => ({
    user: {name, arn: `arn:aws:iam::123456789012:user/${name}`, id: `AIDA${version}`, path: '/', tags: {}, permissionsBoundaryArn: null},
    inline: [],
    managed: [],
    groups: [],
    permissionsBoundary: null,
  })
  const source = {
    mode: 'live',
    async getUserPolicies(name: string) {
      reads.push(`user:${name}`)
      await new Promise((resolve) => setImmediate(resolve))
      if (failing) throw new Error('IAM unavailable')
      version++
      return name === 'ghost' ? null : user(name)
    },
    async getRole(name: string) {
      reads.push(`role:${name}`)
      return {name} as IamRole
    },
    async getRolePolicies(name: string) {
      reads.push(`role-policies:${name}`)
      await new Promise((resolve) => setImmediate(resolve))
      return rolePolicies(name, 'as read')
    },
  } as unknown as IamSource
  return {source, reads, fail: (f: boolean) => (failing = f)}
}

const rolePolicies = (name: string, id: string): RolePolicies => ({
  role: {name, id} as IamRole,
  inline: [],
  managed: [],
  permissionsBoundary: null,
})

describe('cached IAM reads', () => {
  let now = 0
  const options = {ttlMs: 300_000, failureTtlMs: 30_000, maxEntries: 100, now: () => now}
  beforeEach(() => (now = 1_000_000))

  it('reuses an answer for the TTL, then answers with it while reading again in the background', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const first = await cached.getUserPolicies('bob')
    now += 299_000
    assert.equal(await cached.getUserPolicies('bob'), first)
    assert.equal(inner.reads.length, 1)
    now += 2_000
    assert.equal(await cached.getUserPolicies('bob'), first, 'no wait on IAM')
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(inner.reads.length, 2)
    assert.notEqual(await cached.getUserPolicies('bob'), first, 'the new answer')
  })

  it('waits for a fresh read once an answer is more than two TTLs old', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const first = await cached.getUserPolicies('bob')
    now += 600_001
    assert.notEqual(await cached.getUserPolicies('bob'), first)
    assert.equal(inner.reads.length, 2)
  })

  it('keeps answering with the known value while background reads fail, within its window', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const first = await cached.getUserPolicies('bob')
    inner.fail(true)
    now += 301_000
    assert.equal(await cached.getUserPolicies('bob'), first)
    await new Promise((resolve) => setTimeout(resolve, 5))
    assert.equal(await cached.getUserPolicies('bob'), first)
    assert.equal(inner.reads.length, 2, 'a failed background read is not retried at once')
  })

  it('remembers that a user does not exist for the TTL too', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    assert.equal(await cached.getUserPolicies('ghost'), null)
    assert.equal(await cached.getUserPolicies('ghost'), null)
    assert.equal(inner.reads.length, 1)
  })

  it('shares one read among concurrent callers', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const answers = await Promise.all(Array.from({length: 50}, () => cached.getUserPolicies('bob')))
    assert.equal(inner.reads.length, 1)
    assert.ok(answers.every((a) => a === answers[0]))
  })

  it('remembers a failure briefly, then tries again', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    inner.fail(true)
    await assert.rejects(cached.getUserPolicies('bob'), /IAM unavailable/)
    await assert.rejects(cached.getUserPolicies('bob'), /IAM unavailable/)
    assert.equal(inner.reads.length, 1)
    inner.fail(false)
    now += 31_000
    assert.ok(await cached.getUserPolicies('bob'))
    assert.equal(inner.reads.length, 2)
  })

  it('answers with the role roles sync recorded after its writes', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    await cached.getRolePolicies('user-bob')
    const written = rolePolicies('user-bob', 'as written')
    cached.recordRole('user-bob', written)
    assert.equal(await cached.getRolePolicies('user-bob'), written)
    assert.equal(await cached.getRole('user-bob'), written.role)
    assert.deepEqual(inner.reads, ['role-policies:user-bob'])
  })

  it('keeps no answer of a read that was under way when the role was written', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const reading = cached.getRolePolicies('user-bob')
    const written = rolePolicies('user-bob', 'as written')
    cached.recordRole('user-bob', written)
    assert.equal((await reading)!.role.id, 'as read', 'the early caller gets its read')
    assert.equal(await cached.getRolePolicies('user-bob'), written, 'later callers the written role')
  })

  it('reads a role again once roles sync says its writes failed part way, recorded or not', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    cached.recordRole('user-bob', rolePolicies('user-bob', 'as written'))
    cached.forgetRole('user-bob')
    assert.equal((await cached.getRolePolicies('user-bob'))!.role.id, 'as read')
    assert.deepEqual(inner.reads, ['role-policies:user-bob'])
  })

  it('keeps no answer of a read under way when the role is forgotten', async () => {
    const inner = countingSource()
    const cached = new CachedIamSource(inner.source, options)
    const reading = cached.getRolePolicies('user-bob')
    cached.forgetRole('user-bob')
    await reading
    await cached.getRolePolicies('user-bob')
    assert.deepEqual(inner.reads, ['role-policies:user-bob', 'role-policies:user-bob'])
  })

  describe('a recording view (what a piece of work read, and whether it still holds)', () => {
    /** A view that has read bob's policies and user-bob's role from fresh slots. */
    async function warm(maxEntries = 100) {
      const inner = countingSource()
      const cached = new CachedIamSource(inner.source, {...options, maxEntries})
      await cached.getUserPolicies('bob')
      await cached.getRolePolicies('user-bob')
      const {source, log} = cached.recording()
      await source.getUserPolicies('bob')
      await source.getRolePolicies('user-bob')
      return {cached, inner, source, log}
    }

    it('holds while every slot it read is the cache’s and fresh, and reads through the same cache', async () => {
      const {inner, log} = await warm()
      now += 299_999
      assert.equal(log.holds(), true)
      assert.deepEqual(inner.reads, ['user:bob', 'role-policies:user-bob'], 'the view read nothing of its own')
    })

    it('does not hold when nothing was read through it, and refuses a field set on the view', async () => {
      const {source, log} = new CachedIamSource(countingSource().source, options).recording()
      assert.equal(log.holds(), false, 'no reads vouch for nothing')
      assert.throws(() => Object.assign(source, {scratch: 1}), TypeError)
    })

    it('no longer holds once a slot it read is past its TTL', async () => {
      const {log} = await warm()
      now += 300_000
      assert.equal(log.holds(), false)
    })

    it('no longer holds once a slot it read is replaced or dropped: written by roles sync, or forgotten', async () => {
      const written = await warm()
      written.cached.recordRole('user-bob', rolePolicies('user-bob', 'as written'))
      assert.equal(written.log.holds(), false, 'written')
      const forgotten = await warm()
      forgotten.cached.forgetRole('user-bob')
      assert.equal(forgotten.log.holds(), false, 'forgotten')
    })

    it('no longer holds once a slot it read is evicted', async () => {
      const {cached, log} = await warm(2)
      await cached.getUserPolicies('carol')
      assert.equal(log.holds(), false)
    })

    it('does not hold when a read was not answered from a fresh slot: fetched, stale, or a remembered failure', async () => {
      const fetched = new CachedIamSource(countingSource().source, options).recording()
      await fetched.source.getUserPolicies('bob')
      assert.equal(fetched.log.holds(), false, 'fetched')

      const {cached} = await warm()
      now += 300_001
      const stale = cached.recording()
      await stale.source.getUserPolicies('bob')
      assert.equal(stale.log.holds(), false, 'stale')

      const inner = countingSource()
      const failing = new CachedIamSource(inner.source, options)
      inner.fail(true)
      await assert.rejects(failing.getUserPolicies('bob'))
      const failed = failing.recording()
      await assert.rejects(failed.source.getUserPolicies('bob'))
      assert.equal(failed.log.holds(), false, 'a remembered failure')
    })
  })
})
