import assert from 'node:assert/strict'
import {once} from 'node:events'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import {ImdsUpstream, parseCredentialsDocument, UpstreamError} from '../../src/lib/imds/upstream.js'
import {call, FakeImds, INSTANCE_KEY, INSTANCE_SECRET, ROLE, startFakeImds} from './fake-imds.js'

/** An upstream that answers every GET after `delayMs`, with `body` (default: the path asked). */
async function slowUpstream(delayMs: number, body?: string) {
  const server = createServer((req, res) => {
    if (req.method === 'PUT') return void res.end('session')
    setTimeout(() => res.end(body ?? req.url), delayMs)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: () => {
      server.closeAllConnections()
      server.close()
    },
  }
}

describe('the upstream IMDS client', () => {
  let fake: FakeImds
  let upstream: ImdsUpstream
  let now: number
  const start = (options: ConstructorParameters<typeof ImdsUpstream>[0] = {}) =>
    (upstream = new ImdsUpstream({baseUrl: fake.url, now: () => now, timeoutMs: 300, ...options}))
  const puts = () => fake.requests.filter((r) => r.method === 'PUT').length

  beforeEach(async () => {
    now = 1_000_000
    fake = await startFakeImds()
  })
  afterEach(async () => {
    upstream?.close()
    await fake.stop()
  })

  it('is as lenient as the real IMDS: a trailing slash still reaches the credentials (the fake can catch a leak)', async () => {
    const port = Number(new URL(fake.url).port)
    const token = (
      await call(port, 'PUT', '/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})
    ).body
    const reply = await call(port, 'GET', `/latest/meta-data/iam/security-credentials/${ROLE}/`, {
      'X-aws-ec2-metadata-token': token,
    })
    assert.match(reply.body, new RegExp(INSTANCE_KEY))
    assert.equal(fake.credentialRequests().length, 1)
  })

  it('opens one IMDSv2 session for all its requests and keeps status, content type and body', async () => {
    start({cacheTtlMs: 0})
    const a = await upstream.get('/latest/meta-data/instance-id')
    const b = await upstream.get('/latest/dynamic/instance-identity/document')
    const c = await upstream.get('/latest/meta-data/nothing')
    assert.deepEqual([a.status, a.contentType, a.body.toString()], [200, 'text/plain', 'i-0123456789abcdef0'])
    assert.deepEqual([b.status, b.contentType], [200, 'application/json'])
    assert.deepEqual([c.status, c.contentType], [404, 'text/html'])
    assert.equal(puts(), 1)
    assert.ok(fake.requests.filter((r) => r.method === 'GET').every((r) => r.token === 'upstream-session-1'))
  })

  it('opens a new session when the upstream forgets its token, and retries once', async () => {
    start({cacheTtlMs: 0})
    await upstream.get('/latest/meta-data/instance-id')
    fake.forgetTokens()
    const again = await upstream.get('/latest/meta-data/instance-id')
    assert.equal(again.status, 200)
    assert.equal(puts(), 2)
    assert.equal(fake.requests.at(-1)?.token, 'upstream-session-2')
  })

  it('renews its session before the token expires', async () => {
    start({cacheTtlMs: 0, tokenTtlSeconds: 21600})
    await upstream.get('/latest/meta-data/instance-id')
    now += 21600_000 - 300_000
    await upstream.get('/latest/meta-data/instance-id')
    assert.equal(puts(), 2)
  })

  it('gives up on a hung upstream within its deadline (timeout)', async () => {
    start({timeoutMs: 200})
    fake.hang(true)
    const started = Date.now()
    await assert.rejects(
      upstream.get('/latest/meta-data/instance-id'),
      (e: unknown) => e instanceof UpstreamError && e.kind === 'timeout',
    )
    assert.ok(Date.now() - started < 1000)
  })

  it('reports an unreachable upstream as failed', async () => {
    const closed = createServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const {port} = closed.address() as AddressInfo
    closed.close()
    await once(closed, 'close')
    upstream = new ImdsUpstream({baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 500})
    await assert.rejects(
      upstream.get('/latest/meta-data/instance-id'),
      (e: unknown) => e instanceof UpstreamError && e.kind === 'failed',
    )
  })

  it('refuses an answer larger than its limit', async () => {
    start({maxBodyBytes: 10})
    await assert.rejects(upstream.get('/latest/user-data'), /more than 10 bytes/)
  })

  it('caches 200 answers briefly and shares one request among concurrent callers', async () => {
    start({cacheTtlMs: 5000})
    await Promise.all([1, 2, 3].map(() => upstream.get('/latest/meta-data/ami-id')))
    await upstream.get('/latest/meta-data/ami-id')
    const gets = () => fake.requests.filter((r) => r.path === '/latest/meta-data/ami-id').length
    assert.equal(gets(), 1)
    now += 5000
    await upstream.get('/latest/meta-data/ami-id')
    assert.equal(gets(), 2)
  })

  it('passes a credential path only when asked to, and never caches it', async () => {
    start()
    const path = `/latest/meta-data/iam/security-credentials/${ROLE}`
    for (const spelling of [
      path,
      '/latest/meta-data/iam/Security_Credentials/',
      '/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance',
    ])
      await assert.rejects(upstream.get(spelling), /refusing to pass the credential path/)
    assert.deepEqual(fake.requests, [])
    await upstream.get(path, {credentials: true})
    await upstream.get(path, {credentials: true})
    assert.equal(fake.credentialRequests().length, 2)
  })

  it('reads the instance’s own credentials for InstanceRole’s fallback', async () => {
    start()
    const credentials = await upstream.instanceCredentials()
    assert.deepEqual(credentials, {
      accessKeyId: INSTANCE_KEY,
      secretAccessKey: INSTANCE_SECRET,
      sessionToken: 'instance-session-token',
      expiration: new Date('2026-11-23T16:00:00Z'),
      arn: `arn:aws:iam::123456789012:role/${ROLE}`,
    })
  })

  it('shares its connections fairly: a flood of distinct paths from one uid does not hold up another uid', async () => {
    // An upstream that takes 50 ms per answer, so that the flood is still queued when uid 1002 asks.
    const order: string[] = []
    const slow = await slowUpstream(50)
    try {
      upstream = new ImdsUpstream({
        baseUrl: slow.url,
        timeoutMs: 10_000,
        maxConnections: 4,
        maxConnectionsPerUid: 2,
      })
      const flood = Array.from({length: 30}, (_, i) =>
        upstream.get(`/latest/meta-data/flood-${i}`, {uid: 1001}).then(() => order.push('flood')),
      )
      await new Promise((resolve) => setTimeout(resolve, 10))
      const light = upstream.get('/latest/meta-data/instance-id', {uid: 1002}).then((a) => {
        order.push('light')
        return a
      })
      assert.equal((await light).body.toString(), '/latest/meta-data/instance-id')
      await Promise.all(flood)
      // At most 2 of the flood at a time: uid 1002 is answered within the flood's first rounds, not after its 30 requests.
      assert.ok(
        order.indexOf('light') <= 4,
        `uid 1002 was answered after ${order.indexOf('light')} of uid 1001's requests`,
      )
    } finally {
      slow.stop()
    }
  })

  it('does not make a uid wait in another uid’s queue for a path both ask for', async () => {
    const order: string[] = []
    const slow = await slowUpstream(50)
    try {
      upstream = new ImdsUpstream({
        baseUrl: slow.url,
        timeoutMs: 10_000,
        maxConnections: 4,
        maxConnectionsPerUid: 1,
      })
      // uid 1001 floods its one-connection share, then asks for the region (queued last)
      const flood = Array.from({length: 20}, (_, i) =>
        upstream.get(`/latest/meta-data/flood-${i}`, {uid: 1001}).then(() => order.push('flood')),
      )
      const theirs = upstream.get('/latest/meta-data/placement/region', {uid: 1001})
      await new Promise((resolve) => setTimeout(resolve, 10))
      // uid 1002 asks for the same path: on a connection of its own share, not behind the flood
      await upstream.get('/latest/meta-data/placement/region', {uid: 1002}).then(() => order.push('light'))
      await Promise.all([...flood, theirs])
      assert.ok(
        order.indexOf('light') <= 3,
        `uid 1002 was answered after ${order.indexOf('light')} of uid 1001's requests`,
      )
    } finally {
      slow.stop()
    }
  })

  it('refuses one uid’s request when no share of the connections frees up in time', async () => {
    const slow = await slowUpstream(600, 'late')
    try {
      upstream = new ImdsUpstream({
        baseUrl: slow.url,
        timeoutMs: 1000,
        maxConnections: 4,
        maxConnectionsPerUid: 1,
      })
      const results = await Promise.allSettled(
        ['a', 'b', 'c'].map((p) => upstream.get(`/latest/meta-data/${p}`, {uid: 1001})),
      )
      // b waits some 600 ms for a's slot, c at least 1,200 ms: past the 1 s deadline. (The
      // upstream's 600 ms is a lower bound: c cannot be served in time however fast the machine.)
      assert.deepEqual(
        results.map((r) =>
          r.status === 'fulfilled' ? r.value.body.toString() : (r.reason as UpstreamError).kind,
        ),
        ['late', 'late', 'timeout'],
      )
    } finally {
      slow.stop()
    }
  })

  it('refuses a credentials document that is not complete', () => {
    assert.throws(() => parseCredentialsDocument('{"Code" : "Failure"}', ROLE), /Code "Failure"/)
    assert.throws(
      () => parseCredentialsDocument('{"Code" : "Success", "AccessKeyId" : "A"}', ROLE),
      /incomplete/,
    )
    assert.throws(() => parseCredentialsDocument('not json', ROLE), /not JSON/)
    assert.throws(
      () =>
        parseCredentialsDocument(
          '{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"S","Token":"T","Expiration":"soon"}',
          ROLE,
        ),
      /incomplete/,
    )
  })
})
