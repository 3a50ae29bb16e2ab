// The IMDS application of `serve` over a real loopback socket, in front of a fake upstream IMDS
// that records every request, with a fake credential broker and an injected connection owner.
import assert from 'node:assert/strict'
import {once} from 'node:events'
import {Agent, request} from 'node:http'
import {connect} from 'node:net'

import {fromInstanceMetadata} from '@smithy/credential-provider-imds'

import {errorPage} from '../../src/lib/imds/format.js'
import {ConnectionCaps} from '../../src/lib/imds/server.js'
import {call, Harness, INSTANCE_KEY, INSTANCE_SECRET, ROLE, startHarness, users} from './fake-imds.js'

const CREDS = `/latest/meta-data/iam/security-credentials/${ROLE}`
const alice = {uid: users.alice.uid, user: users.alice}
const bob = {uid: users.bob.uid, user: users.bob}
const root = {uid: 0, user: users.root}

/** Alice's credentials exactly as EC2 prints a credentials document. */
const ALICE_DOCUMENT = `{
  "Code" : "Success",
  "LastUpdated" : "2026-11-23T11:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAUSER1001KEY",
  "SecretAccessKey" : "secret-of-1001",
  "Token" : "session-token-of-1001",
  "Expiration" : "2026-11-23T11:30:00Z"
}`

describe('the IMDS application', () => {
  let h: Harness
  const get = (path: string, headers: Record<string, string> = {}) => call(h.port, 'GET', path, headers)
  const put = (path: string, headers: Record<string, string> = {}) => call(h.port, 'PUT', path, headers)
  const token = async (ttl = '21600') =>
    (await put('/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': ttl})).body

  afterEach(() => h.stop())

  describe('routing', () => {
    beforeEach(async () => (h = await startHarness()))

    it('lists the instance role under security-credentials/, as text', async () => {
      const reply = await get('/latest/meta-data/iam/security-credentials/')
      assert.deepEqual([reply.status, reply.headers['content-type'], reply.body], [200, 'text/plain', ROLE])
    })

    it('gives alice her own credentials, in EC2’s exact format, from the broker', async () => {
      const reply = await get(CREDS)
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['content-type'], 'text/plain')
      assert.equal(reply.headers.server, 'EC2ws')
      assert.equal(reply.body, ALICE_DOCUMENT)
      assert.deepEqual(h.broker.calls, [users.alice])
      assert.deepEqual(h.fake.credentialRequests(), [])
    })

    it('keeps LastUpdated at the time a set was first handed out, and says so as a cache hit', async () => {
      await get(CREDS)
      h.advance(60_000)
      const again = await get(CREDS)
      assert.match(again.body, /"LastUpdated" : "2026-11-23T11:00:00Z"/)
      assert.deepEqual(
        h.audits.map((a) => a.cacheHit),
        [false, true],
      )
    })

    it('adds AccountId to the document of security-credentials-extended (asked first by newer SDKs)', async () => {
      const listing = await get('/latest/meta-data/iam/security-credentials-extended/')
      assert.equal(listing.body, ROLE)
      const reply = await get(`/latest/meta-data/iam/security-credentials-extended/${ROLE}`)
      assert.equal(reply.body, ALICE_DOCUMENT.replace(/\n}$/, ',\n  "AccountId" : "123456789012"\n}'))
      assert.deepEqual(h.fake.credentialRequests(), [])
    })

    it('answers 404 for any other role name, without asking the broker', async () => {
      for (const name of ['other-role', ROLE.toUpperCase()]) {
        const reply = await get(`/latest/meta-data/iam/security-credentials/${name}`)
        assert.equal(reply.status, 404)
        assert.equal(reply.body, errorPage(404))
        assert.equal(reply.headers['content-type'], 'text/html')
      }
      assert.deepEqual(h.broker.calls, [])
      assert.deepEqual(
        h.audits.map((a) => a.outcome),
        ['denied', 'denied'],
      )
    })

    it('answers /iam/info in EC2’s format with the upstream’s instance profile', async () => {
      const reply = await get('/latest/meta-data/iam/info')
      assert.equal(reply.status, 200)
      assert.equal(
        reply.body,
        `{
  "Code" : "Success",
  "LastUpdated" : "2026-11-23T10:00:00Z",
  "InstanceProfileArn" : "arn:aws:iam::123456789012:instance-profile/analytics-host",
  "InstanceProfileId" : "AIPAEXAMPLEPROFILEID0"
}`,
      )
      assert.equal(h.fake.requests.at(-1)?.path, '/latest/meta-data/iam/info')
    })

    it('keeps the instance identity credentials from everyone but root', async () => {
      for (const path of [
        '/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance',
        '/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance/',
        '/latest/meta-data/identity-credentials/ec2/security-credentials/',
        '/latest/meta-data/Identity-Credentials/EC2/Security-Credentials/ec2-instance',
      ])
        assert.equal((await get(path)).status, 404, path)
      assert.deepEqual(h.fake.credentialRequests(), [])
      h.as(root)
      const reply = await get('/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance')
      assert.equal(reply.status, 200)
      assert.match(reply.body, new RegExp(INSTANCE_KEY))
    })

    it('passes ordinary paths to the upstream unchanged, with the daemon’s session, keeping status and content type', async () => {
      const cases: Array<[string, string, number, string]> = [
        ['/', '/', 200, 'text/plain'],
        ['/latest/', '/latest/', 200, 'text/plain'],
        ['/latest/meta-data/', '/latest/meta-data/', 200, 'text/plain'],
        ['/latest/meta-data', '/latest/meta-data', 200, 'text/plain'],
        ['/latest/meta-data/instance-id', '/latest/meta-data/instance-id', 200, 'text/plain'],
        ['/2021-01-03/meta-data/ami-id', '/2021-01-03/meta-data/ami-id', 200, 'text/plain'],
        ['/latest/meta-data/placement/region', '/latest/meta-data/placement/region', 200, 'text/plain'],
        [
          '/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/vpc-id',
          '/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/vpc-id',
          200,
          'text/plain',
        ],
        [
          '/latest/meta-data/tags/instance/team:name',
          '/latest/meta-data/tags/instance/team:name',
          200,
          'text/plain',
        ],
        ['/latest/meta-data/iam/', '/latest/meta-data/iam/', 200, 'text/plain'],
        [
          '/latest/dynamic/instance-identity/document',
          '/latest/dynamic/instance-identity/document',
          200,
          'application/json',
        ],
        ['/latest/user-data', '/latest/user-data', 200, 'application/octet-stream'],
        ['/latest/meta-data/no-such-thing', '/latest/meta-data/no-such-thing', 404, 'text/html'],
        ['//latest//meta-data//ami-id', '/latest/meta-data/ami-id', 200, 'text/plain'],
      ]
      for (const [asked, passed, status, type] of cases) {
        h.upstream['cache'].clear() // each case is seen upstream
        const reply = await get(asked)
        const seen = h.fake.requests.at(-1)!
        assert.deepEqual(
          [seen.method, seen.path, reply.status, reply.headers['content-type']],
          ['GET', passed, status, type],
          asked,
        )
        assert.match(seen.token ?? '', /^upstream-session-/, 'the daemon’s own session token')
      }
      assert.equal(
        h.fake.requests.filter((r) => r.method === 'PUT').length,
        1,
        'one upstream session for all of them',
      )
      assert.deepEqual(h.broker.calls, [])
    })

    it('answers HEAD like GET, without a body', async () => {
      const full = await get(CREDS)
      const head = await call(h.port, 'HEAD', CREDS)
      assert.deepEqual(
        [head.status, head.headers['content-length'], head.body],
        [200, String(Buffer.byteLength(full.body)), ''],
      )
      const passed = await call(h.port, 'HEAD', '/latest/meta-data/instance-id')
      assert.deepEqual([passed.status, passed.headers['content-length'], passed.body], [200, '19', ''])
    })

    it('answers 405 to other methods, naming the allowed ones', async () => {
      const getToken = await get('/latest/api/token')
      assert.deepEqual([getToken.status, getToken.headers.allow], [405, 'PUT'])
      for (const [method, path] of [
        ['PUT', '/latest/meta-data/instance-id'],
        ['POST', CREDS],
        ['DELETE', '/latest/meta-data/'],
        ['OPTIONS', '/latest/meta-data/'],
      ]) {
        const reply = await call(h.port, method, path)
        assert.deepEqual([reply.status, reply.headers.allow], [405, 'GET, HEAD'], `${method} ${path}`)
      }
      assert.deepEqual(h.fake.requests, [])
    })
  })

  describe('the AWS SDK', () => {
    const saved = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT
    afterEach(() => {
      if (saved === undefined) delete process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT
      else process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = saved
    })

    it('gets alice’s credentials with the SDK’s own IMDS provider, through IMDSv2 only', async () => {
      h = await startHarness({config: {require_imdsv2: true}})
      process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = h.url
      const quiet = {debug() {}, info() {}, warn() {}, error() {}}
      const credentials = await fromInstanceMetadata({timeout: 1000, maxRetries: 0, logger: quiet})()
      assert.deepEqual(
        [credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken],
        ['ASIAUSER1001KEY', 'secret-of-1001', 'session-token-of-1001'],
      )
      assert.deepEqual(
        h.logs.map((l) => [l.httpMethod, l.route, l.status]),
        [
          ['PUT', 'token', 200],
          ['GET', 'role-name', 200],
          ['GET', 'credentials', 200],
        ],
      )
      assert.deepEqual(h.fake.requests, [])
    })
  })

  describe('spellings of the credential paths', () => {
    beforeEach(async () => (h = await startHarness()))

    // Every one of these is alice's credentials document, from the daemon's own handler.
    const documentSpellings = [
      CREDS,
      `${CREDS}/`, // the Python tool's leak
      `${CREDS}//`,
      `${CREDS}/.`,
      `${CREDS}/%2e`,
      `${CREDS}/x/..`,
      `${CREDS}?x=1`,
      `${CREDS}?/../../user-data`,
      `//latest//meta-data//iam//security-credentials//${ROLE}`,
      `/latest/./meta-data/iam/security-credentials/${ROLE}`,
      `/latest/meta-data/./iam/security-credentials/${ROLE}`,
      `/latest/meta-data/iam/../iam/security-credentials/${ROLE}`,
      `/latest/meta-data/x/../iam/security-credentials/${ROLE}`,
      `/latest/meta-data/iam/security-credentials/./${ROLE}`,
      `/latest/meta-data/iam/%2e/security-credentials/${ROLE}`,
      `/latest/meta-data/iam/%2e%2e/iam/security-credentials/${ROLE}`,
      `/latest/meta-data/iam/.%2E/iam/security-credentials/${ROLE}`,
      `/latest/meta-data/iam/%252e%252e/iam/security-credentials/${ROLE}`,
      `/latest/meta-data/iam%2Fsecurity-credentials%2F${ROLE}`,
      `/latest%2Fmeta-data%2Fiam%2Fsecurity-credentials%2F${ROLE}`,
      `/latest/meta-data/iam/security-credentials%2F${ROLE}%2F`,
      `/latest/meta-data/iam/security-credentials%252F${ROLE}`,
      `/latest/meta-data/iam/security-credentials%25252F${ROLE}`,
      `/latest/meta-data/iam/security-credentials%25%32%46${ROLE}`,
      `/latest/meta-data/iam/%73ecurity-credentials/${ROLE}`,
      `/latest/meta-data/iam/security%2Dcredentials/${ROLE}`,
      `/%6catest/meta-data/iam/security-credentials/${ROLE}`,
      `/latest/meta-data/IAM/security-credentials/${ROLE}`,
      `/latest/META-DATA/iam/SECURITY-CREDENTIALS/${ROLE}`,
      `/LATEST/meta-data/iam/Security-Credentials/${ROLE}`,
      `/2021-01-03/meta-data/iam/security-credentials/${ROLE}`,
      `/2021-01-03/meta-data/iam/security-credentials/${ROLE}/`,
      `/1.0/meta-data/iam/security-credentials/${ROLE}`,
      `/meta-data/iam/security-credentials/${ROLE}`,
    ]
    it(`serves alice’s own credentials for all ${documentSpellings.length} spellings of the credentials path`, async () => {
      for (const path of documentSpellings) {
        const reply = await get(path)
        assert.deepEqual([reply.status, reply.body], [200, ALICE_DOCUMENT], path)
      }
      assert.equal(
        h.broker.calls.length,
        documentSpellings.length,
        'every spelling reached the daemon’s handler',
      )
      assert.deepEqual(h.fake.credentialRequests(), [], 'no spelling reached the upstream’s credentials')
    })

    const listingSpellings = [
      '/latest/meta-data/iam/security-credentials',
      '/latest/meta-data/iam/security-credentials/',
      '/latest/meta-data/iam/security-credentials//',
      '/latest/meta-data/iam/security-credentials/.',
      '/latest/meta-data/iam/security-credentials/x/..',
      '/latest/meta-data/iam/security-credentials%2F',
      '/latest/meta-data/iam/security-credentials%252F',
      '/latest/meta-data/iam/Security-Credentials/',
      '/latest/meta-data/iam/security-credentials?',
      '/2021-01-03/meta-data/iam/security-credentials/',
    ]
    it(`lists the role from the daemon for all ${listingSpellings.length} spellings of the listing`, async () => {
      for (const path of listingSpellings) {
        const reply = await get(path)
        assert.deepEqual([reply.status, reply.body], [200, ROLE], path)
      }
      assert.deepEqual(h.fake.requests, [], 'the listing never goes upstream')
    })

    // Near-spellings get nothing: refused as malformed (400), or by the daemon's handler (404).
    const refusedSpellings: Array<[string, number]> = [
      [`/latest/meta-data/iam/security-credentials;/${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials/${ROLE};x`, 400],
      [`/latest/meta-data/iam/security-credentials%3B/${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials%00/${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials/${ROLE}%00`, 400],
      [`/latest/meta-data/iam/security-credentials%20/${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials/${ROLE}%0d%0a`, 400],
      [`/latest/meta-data/iam/security-credentials%5C${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials\\${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials%2525252525252F${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials%zz/${ROLE}`, 400],
      [`/../latest/meta-data/iam/security-credentials/${ROLE}`, 400],
      [`/latest/meta-data/iam/security-credentials/%C3%A9`, 400],
      [`http://169.254.169.254/latest/meta-data/iam/security-credentials/${ROLE}`, 400],
      [`/latest/meta-data/iam/security_credentials/${ROLE}`, 404],
      [`/latest/meta-data/iam/securitycredentials/${ROLE}`, 404],
      [`/latest/meta-data/iam/security-credentials-v2/${ROLE}`, 404],
      [`/latest/meta-data/iam/security-credentials./${ROLE}`, 404],
      [`/latest/meta-data/iam/security-credentials/${ROLE}/extra`, 404],
      [`/latest/meta-data/iam/security-credentials/${ROLE}.`, 404],
      [`/foo/meta-data/iam/security-credentials/${ROLE}`, 404],
      [`/latest/iam/security-credentials/${ROLE}`, 404],
    ]
    it(`gives nothing for ${refusedSpellings.length} near-spellings, and passes none upstream`, async () => {
      for (const [path, status] of refusedSpellings) {
        const reply = await get(path)
        assert.equal(reply.status, status, path)
        assert.doesNotMatch(reply.body, /AccessKeyId/, path)
      }
      assert.deepEqual(h.fake.requests, [], 'nothing at all went upstream')
      assert.deepEqual(h.broker.calls, [])
    })
  })

  describe('IMDSv2 tokens', () => {
    beforeEach(async () => (h = await startHarness()))

    it('mints a token for the asking uid, with the TTL echoed', async () => {
      const reply = await put('/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '21600'})
      assert.equal(reply.status, 200)
      assert.equal(reply.headers['content-type'], 'text/plain')
      assert.equal(reply.headers['x-aws-ec2-metadata-token-ttl-seconds'], '21600')
      assert.match(reply.body, /^[A-Za-z0-9_-]{43}$/)
      const creds = await get(CREDS, {'X-aws-ec2-metadata-token': reply.body})
      assert.equal(creds.status, 200)
      assert.equal(creds.headers['x-aws-ec2-metadata-token-ttl-seconds'], '21600')
      assert.deepEqual(h.fake.requests, [], 'tokens are the daemon’s, not the upstream’s')
    })

    it('refuses a TTL that is missing, not a number, or outside 1-21600 (400)', async () => {
      for (const ttl of [undefined, '0', '21601', '-1', '1.5', 'abc', '1e3', '0x10', '', '999999']) {
        const reply = await put(
          '/latest/api/token',
          ttl === undefined ? {} : {'X-aws-ec2-metadata-token-ttl-seconds': ttl},
        )
        assert.equal(reply.status, 400, `ttl ${ttl}`)
      }
      assert.equal(
        (await put('/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '1'})).status,
        200,
      )
    })

    it('refuses a token PUT carrying X-Forwarded-For (403), as IMDS does', async () => {
      const reply = await put('/latest/api/token', {
        'X-aws-ec2-metadata-token-ttl-seconds': '60',
        'X-Forwarded-For': '10.0.0.1',
      })
      assert.equal(reply.status, 403)
      assert.equal(h.tokens.size, 0)
    })

    it('refuses another user’s token (401)', async () => {
      const alices = await token()
      h.as(bob)
      const reply = await get(CREDS, {'X-aws-ec2-metadata-token': alices})
      assert.equal(reply.status, 401)
      assert.equal(
        (await get('/latest/meta-data/instance-id', {'X-aws-ec2-metadata-token': alices})).status,
        401,
      )
      assert.deepEqual(h.broker.calls, [])
    })

    it('refuses an expired or made-up token (401)', async () => {
      const short = await token('1')
      h.advance(1000)
      assert.equal((await get(CREDS, {'X-aws-ec2-metadata-token': short})).status, 401)
      assert.equal((await get(CREDS, {'X-aws-ec2-metadata-token': 'A'.repeat(43)})).status, 401)
      assert.equal((await get(CREDS, {'X-aws-ec2-metadata-token': ''})).status, 401)
      assert.deepEqual(h.broker.calls, [])
    })

    it('serves IMDSv1 (no token) by default', async () => {
      assert.equal((await get(CREDS)).status, 200)
    })

    it('refuses IMDSv1 under require_imdsv2 (401), for root too', async () => {
      await h.stop()
      h = await startHarness({config: {require_imdsv2: true}})
      assert.equal((await get(CREDS)).status, 401)
      assert.equal((await get('/latest/meta-data/instance-id')).status, 401)
      assert.equal((await get(CREDS, {'X-aws-ec2-metadata-token': await token()})).status, 200)
      h.as(root)
      assert.equal((await get('/latest/meta-data/instance-id')).status, 401)
      assert.equal(
        (await get('/latest/meta-data/instance-id', {'X-aws-ec2-metadata-token': await token()})).status,
        200,
      )
    })
  })

  describe('owners', () => {
    beforeEach(async () => (h = await startHarness()))

    it('passes root’s requests to the upstream, credential paths included', async () => {
      h.as(root)
      const reply = await get(CREDS)
      assert.equal(reply.status, 200)
      const doc = JSON.parse(reply.body) as Record<string, string>
      assert.equal(doc.AccessKeyId, INSTANCE_KEY)
      assert.deepEqual(h.broker.calls, [])
      assert.equal(h.fake.requests.at(-1)?.path, CREDS)
      assert.deepEqual(
        h.audits.map((a) => [a.uid, a.outcome, a.detail]),
        [[0, 'upstream', 'HTTP 200']],
      )
    })

    it('mints root’s tokens itself, and passes root’s requests with the daemon’s session', async () => {
      h.as(root)
      const rootToken = await token()
      const reply = await get('/latest/meta-data/instance-id', {'X-aws-ec2-metadata-token': rootToken})
      assert.equal(reply.status, 200)
      assert.notEqual(h.fake.requests.at(-1)?.token, rootToken)
    })

    it('answers 404 to everything a uid no local user has asks, and audits its credential requests', async () => {
      h.as({uid: 4242, user: null})
      for (const path of [
        CREDS,
        '/latest/meta-data/iam/security-credentials/',
        '/latest/meta-data/iam/info',
        '/latest/meta-data/instance-id',
        '/latest/user-data',
        '/',
      ])
        assert.equal((await get(path)).status, 404, path)
      assert.equal(
        (await put('/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})).status,
        404,
      )
      assert.deepEqual(h.fake.requests, [], 'nothing reached the upstream')
      assert.deepEqual(h.broker.calls, [])
      assert.deepEqual(
        h.audits.map((a) => [a.uid, a.user, a.outcome, a.path, a.detail]),
        [
          [4242, null, 'denied', CREDS, 'HTTP 404: no local user has uid 4242'],
          [
            4242,
            null,
            'denied',
            '/latest/meta-data/iam/security-credentials/',
            'HTTP 404: no local user has uid 4242',
          ],
        ],
      )
    })

    it('audits every credential request a step refuses, and no other refusal', async () => {
      const good = await token()
      const other = await (async () => {
        h.as(bob)
        const t = await token()
        h.as(alice)
        return t
      })()
      await get(CREDS, {'X-aws-ec2-metadata-token': 'forged'})
      await get(CREDS, {'X-aws-ec2-metadata-token': other})
      await get('/latest/meta-data/instance-id', {'X-aws-ec2-metadata-token': 'forged'})
      await call(h.port, 'POST', CREDS)
      await get(CREDS, {Host: 'evil.example.com'})
      await get('/latest/meta-data/iam/security-credentials/%00')
      await get('/latest/meta-data/iam/security%2500credentials/x')
      h.as(null)
      await get(CREDS)
      h.as(alice)
      assert.equal((await get(CREDS, {'X-aws-ec2-metadata-token': good})).status, 200)
      assert.deepEqual(
        h.audits.map((a) => [a.uid, a.httpMethod, a.outcome, a.path, a.detail]),
        [
          [
            1001,
            'GET',
            'denied',
            CREDS,
            "HTTP 401: an IMDSv2 token that is unknown, expired or another uid's",
          ],
          [
            1001,
            'GET',
            'denied',
            CREDS,
            "HTTP 401: an IMDSv2 token that is unknown, expired or another uid's",
          ],
          [1001, 'POST', 'denied', CREDS, 'HTTP 405: method POST (GET, HEAD only)'],
          [
            null,
            'GET',
            'denied',
            `(raw) ${CREDS}`,
            'HTTP 400: Host "evil.example.com" is not the metadata service\'s',
          ],
          [
            null,
            'GET',
            'denied',
            '(raw) /latest/meta-data/iam/security-credentials/%00',
            "HTTP 400: the path cannot be made canonical: a character IMDS paths never hold in '\\u0000'",
          ],
          [
            null,
            'GET',
            'denied',
            '(raw) /latest/meta-data/iam/security%2500credentials/x',
            "HTTP 400: the path cannot be made canonical: a character IMDS paths never hold in 'security\\u0000credentials'",
          ],
          [null, 'GET', 'denied', CREDS, "HTTP 404: the connection's owner could not be found"],
          [1001, 'GET', 'issued', CREDS, null],
        ],
      )
    })

    it('takes the token PUT under /latest/ only, as IMDS', async () => {
      for (const path of ['/2021-01-03/api/token', '/api/token', '/1.0/api/token']) {
        const reply = await put(path, {'X-aws-ec2-metadata-token-ttl-seconds': '60'})
        assert.equal(reply.status, 405, path)
      }
      for (const path of ['/latest/api/token', '/latest//api/token', '/LATEST/api/token'])
        assert.equal((await put(path, {'X-aws-ec2-metadata-token-ttl-seconds': '60'})).status, 200, path)
      assert.deepEqual(h.fake.requests, [])
    })

    it('answers 404 to everything on a connection whose owner cannot be found', async () => {
      h.as(null)
      for (const path of [CREDS, '/latest/meta-data/instance-id', '/latest/user-data', '/'])
        assert.equal((await get(path)).status, 404, path)
      assert.equal(
        (await put('/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})).status,
        404,
      )
      assert.deepEqual(h.fake.requests, [])
      assert.deepEqual(h.broker.calls, [])
    })

    it('looks the owner up once per connection, however many requests it carries', async () => {
      const agent = new Agent({keepAlive: true, maxSockets: 1})
      const viaAgent = (path: string) =>
        new Promise<number>((resolve, reject) => {
          const req = request(
            {host: '127.0.0.1', port: h.port, path, agent, headers: {Host: '169.254.169.254'}},
            (res) => {
              res.resume()
              res.on('end', () => resolve(res.statusCode ?? 0))
            },
          )
          req.on('error', reject)
          req.end()
        })
      for (let i = 0; i < 5; i++) assert.equal(await viaAgent(CREDS), 200)
      agent.destroy()
      assert.equal(h.lookups(), 1)
    })

    it('answers 500 when the owner lookup fails, and tells why in a warning', async () => {
      h.as(new Error('/proc/net/tcp unreadable'))
      assert.deepEqual(
        [(await get(CREDS)).status, (await get('/latest/meta-data/instance-id')).status],
        [500, 500],
      )
      assert.match(h.warnings.join('\n'), /proc\/net\/tcp unreadable/)
      assert.deepEqual(h.fake.requests, [])
      assert.deepEqual(
        h.audits.map((a) => [a.uid, a.outcome, a.path, a.detail]),
        [[null, 'error', CREDS, 'HTTP 500: the daemon failed: /proc/net/tcp unreadable']],
        'the credential request is audited, the other one is not',
      )
      h.as(alice)
      assert.equal((await get(CREDS)).status, 200, 'a new connection is looked up afresh')
    })
  })

  describe('the broker’s outcomes', () => {
    beforeEach(async () => (h = await startHarness()))

    it('answers 404 when no method of the chain is for the user', async () => {
      h.broker.behaviour.set(1001, 'none')
      const reply = await get(CREDS)
      assert.deepEqual([reply.status, reply.body], [404, errorPage(404)])
      assert.deepEqual(
        h.audits.map((a) => [a.outcome, a.detail]),
        [['none', 'UserRole: role user-x does not exist']],
      )
    })

    it('answers 500 with a generic page when the chain fails, keeping the details in the audit', async () => {
      h.broker.behaviour.set(1001, 'error')
      const reply = await get(CREDS)
      assert.deepEqual(
        [reply.status, reply.headers['content-type'], reply.body],
        [500, 'text/html', errorPage(500)],
      )
      assert.deepEqual(
        h.audits.map((a) => [a.outcome, a.detail]),
        [['error', 'UserRole: sts:AssumeRole throttled']],
      )
    })

    it('answers 500 when the broker throws, with no partial document', async () => {
      h.broker.behaviour.set(1001, 'throw')
      const reply = await get(CREDS)
      assert.deepEqual([reply.status, reply.body], [500, errorPage(500)])
      assert.equal(h.audits[0].outcome, 'error')
      assert.equal(h.audits[0].detail, 'the broker broke')
    })

    it('tells the audited hook (metrics) of every audit record after writing it, and answers even when that fails', async () => {
      await get(CREDS)
      await get(CREDS, {'X-aws-ec2-metadata-token': 'not-a-token'})
      h.as(root)
      await get(CREDS)
      assert.deepEqual(h.audits.map((a) => a.outcome), ['issued', 'denied', 'upstream'])
      assert.equal(h.counted.length, 3)
      h.counted.forEach((record, i) => assert.equal(record, h.audits[i], 'the very record audited'))

      h.as({uid: users.alice.uid, user: users.alice})
      h.failCounting(true)
      const reply = await get(CREDS)
      assert.equal(reply.status, 200)
      assert.equal(JSON.parse(reply.body).AccessKeyId, 'ASIAUSER1001KEY')
      assert.equal(h.audits.length, 4)
      assert.ok(h.warnings.includes('counting a credential request failed: the metrics broke'), h.warnings.join('\n'))
    })

    it("audits what the session policy's compiler warned of in the issued record's detail", async () => {
      h.broker.behaviour.set(users.alice.uid, 'warned')
      assert.equal((await get(CREDS)).status, 200)
      assert.deepEqual(
        h.audits.map((a) => [a.outcome, a.detail]),
        [['issued', 'the session may not assume role shared; left out 2 Allow statements']],
      )
      h.broker.behaviour.set(users.alice.uid, 'issue')
      await get(CREDS)
      assert.equal(h.audits[1].detail, null)
    })

    it('answers 500, never the credentials, when the audit line cannot be written', async () => {
      h.failAudit(true)
      const reply = await get(CREDS)
      assert.deepEqual([reply.status, reply.body], [500, errorPage(500)])
      assert.ok(!reply.body.includes('ASIAUSER1001KEY'))
      assert.ok(h.warnings.some((w) => w.includes('the audit log cannot be written')), h.warnings.join('\n'))
      assert.deepEqual(h.counted, [], 'nothing counted that was not audited')
    })

    it('keeps every secret out of the audit records', async () => {
      const mine = await token()
      await get(CREDS, {'X-aws-ec2-metadata-token': mine})
      await get(`/latest/meta-data/iam/security-credentials-extended/${ROLE}`)
      h.as(root)
      await get(CREDS)
      const text = JSON.stringify(h.audits) + JSON.stringify(h.logs) + h.warnings.join('\n')
      for (const secret of [
        'secret-of-1001',
        'session-token-of-1001',
        mine,
        INSTANCE_SECRET,
        'instance-session-token',
        'upstream-session-',
      ])
        assert.ok(!text.includes(secret), `audit shows ${secret}`)
      const issued = h.audits[0]
      assert.deepEqual(
        {
          uid: issued.uid,
          user: issued.user,
          method: issued.method,
          roleArn: issued.roleArn,
          accessKeyId: issued.accessKeyId,
          expiration: issued.expiration,
          outcome: issued.outcome,
          path: issued.path,
        },
        {
          uid: 1001,
          user: 'alice',
          method: 'UserRole',
          roleArn: 'arn:aws:iam::123456789012:role/user-1001',
          accessKeyId: 'ASIAUSER1001KEY',
          expiration: '2026-11-23T11:30:00.123Z',
          outcome: 'issued',
          path: CREDS,
        },
      )
    })
  })

  describe('user data', () => {
    it('is passed through by default', async () => {
      h = await startHarness()
      const reply = await get('/latest/user-data')
      assert.deepEqual([reply.status, reply.headers['content-type']], [200, 'application/octet-stream'])
      assert.match(reply.body, /hunter2/)
    })

    it('is denied to everyone but root under deny_user_data, however spelled', async () => {
      h = await startHarness({config: {deny_user_data: true}})
      for (const path of [
        '/latest/user-data',
        '/latest/user-data/',
        '/latest/USER-DATA',
        '/latest/userdata',
        '/latest/User_Data',
        '/latest/user.data/x',
        '/2021-01-03/user-data',
        '/latest/x/../user-data',
        '/latest/user-data%2F',
      ])
        assert.equal((await get(path)).status, 404, path)
      assert.deepEqual(h.fake.requests, [])
      h.as(root)
      assert.equal((await get('/latest/user-data')).status, 200)
    })
  })

  describe('the instance identity document', () => {
    const paths = [
      '/latest/dynamic/instance-identity/document',
      '/latest/dynamic/instance-identity/pkcs7',
      '/latest/dynamic/instance-identity/signature',
      '/latest/dynamic/instance-identity/rsa2048',
      '/latest/dynamic/instance-identity/',
      '/latest/dynamic/Instance_Identity/document',
      '/2021-01-03/dynamic/instance-identity/document',
      '/latest/dynamic/x/../instance-identity%2Fdocument',
    ]

    it('is passed through by default', async () => {
      h = await startHarness()
      const reply = await get('/latest/dynamic/instance-identity/document')
      assert.deepEqual([reply.status, reply.headers['content-type']], [200, 'application/json'])
    })

    it('is denied to everyone but root under deny_instance_identity, however spelled', async () => {
      h = await startHarness({config: {deny_instance_identity: true}})
      for (const path of paths) assert.equal((await get(path)).status, 404, path)
      assert.deepEqual(h.fake.requests, [])
      assert.equal((await get('/latest/meta-data/instance-id')).status, 200, 'nothing else is denied')
      h.as(root)
      assert.equal((await get('/latest/dynamic/instance-identity/document')).status, 200)
    })
  })

  describe('HTTP hygiene', () => {
    beforeEach(async () => (h = await startHarness()))

    it('answers only to IMDS’s address or the listener’s own in the Host header (DNS rebinding)', async () => {
      for (const host of ['169.254.169.254', '169.254.169.254:80', `127.0.0.1:${h.port}`, '[fd00:ec2::254]'])
        assert.equal((await get('/latest/meta-data/instance-id', {Host: host})).status, 200, host)
      for (const host of [
        'evil.example',
        `evil.example:${h.port}`,
        '169.254.169.254.nip.io',
        '127.0.0.1',
        'localhost',
      ])
        assert.equal((await get(CREDS, {Host: host})).status, 400, host)
      assert.equal(h.broker.calls.length, 0)
    })

    it('refuses a request body (IMDS takes none)', async () => {
      const reply = await new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: h.port,
            method: 'GET',
            path: CREDS,
            agent: false,
            headers: {Host: '169.254.169.254', 'Content-Length': '5'},
          },
          (res) => {
            res.resume()
            resolve(res.statusCode ?? 0)
          },
        )
        req.on('error', reject)
        req.end('hello')
      })
      assert.equal(reply, 400)
      assert.deepEqual(h.broker.calls, [])
    })

    it('accepts an empty chunked body on the token PUT, refuses a non-empty one', async () => {
      const chunked = (body: string) =>
        new Promise<number>((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: h.port,
              method: 'PUT',
              path: '/latest/api/token',
              agent: false,
              headers: {
                Host: '169.254.169.254',
                'Transfer-Encoding': 'chunked',
                'X-aws-ec2-metadata-token-ttl-seconds': '60',
              },
            },
            (res) => {
              res.resume()
              resolve(res.statusCode ?? 0)
            },
          )
          req.on('error', reject)
          if (body) req.write(body)
          req.end()
        })
      assert.equal(await chunked(''), 200)
      assert.equal(await chunked('x'), 400)
    })

    it('refuses headers over 8 KiB (431) and request targets over 2 KiB (414)', async () => {
      assert.equal((await get(CREDS, {'X-Padding': 'x'.repeat(9000)})).status, 431)
      assert.equal((await get(`/latest/meta-data/${'a'.repeat(2100)}`)).status, 414)
    })

    it('cuts off a client that trickles its request headers', async () => {
      await h.stop()
      h = await startHarness({limits: {headersTimeoutMs: 300, requestTimeoutMs: 500}})
      const socket = connect(h.port, '127.0.0.1')
      await once(socket, 'connect')
      socket.write('GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n')
      const started = Date.now()
      let answer = ''
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
      await once(socket, 'close')
      assert.match(answer, /^HTTP\/1\.1 408/)
      assert.ok(Date.now() - started < 3000, `took ${Date.now() - started} ms`)
    })

    it('caps the open connections of one uid, and no one else’s; unknown uids share one cap', async () => {
      await h.stop()
      const refused: Array<[number | null, number]> = []
      h = await startHarness({
        limits: {caps: new ConnectionCaps({perUid: 3, onRefused: (uid, open) => refused.push([uid, open])})},
      })
      const idle = async () => {
        const before = h.lookups()
        const socket = connect(h.port, '127.0.0.1')
        await once(socket, 'connect')
        while (h.lookups() === before) await new Promise((resolve) => setTimeout(resolve, 5))
        return socket
      }
      const alices = [await idle(), await idle(), await idle()]
      // The fourth is closed at once: its request is neither answered nor handed to the broker.
      const fourth = connect(h.port, '127.0.0.1')
      fourth.write(`GET ${CREDS} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n`)
      let answer = ''
      fourth.on('data', (chunk: Buffer) => (answer += chunk.toString()))
      fourth.on('error', () => {})
      await once(fourth, 'close')
      assert.equal(answer, '')
      assert.deepEqual(refused, [[1001, 3]])
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.deepEqual(h.broker.calls, [], 'the refused connection’s request reached no one')
      // Closed before its request was read (nothing to audit), or read and refused: never issued.
      assert.ok(
        h.audits.every(
          (a) => a.outcome === 'denied' && /over its owner’s connection limit/.test(a.detail ?? ''),
        ),
        JSON.stringify(h.audits),
      )
      h.as(bob)
      assert.equal((await get(CREDS)).status, 200, 'bob is not held up by alice’s connections')
      // Three uids without a local user fill the one cap they share; a fourth is refused.
      const strangers = []
      for (const uid of [5001, 5002, 5003]) {
        h.as({uid, user: null})
        strangers.push(await idle())
      }
      h.as({uid: 5004, user: null})
      const late = await idle()
      if (!late.destroyed) await once(late, 'close')
      assert.deepEqual(refused.at(-1), [null, 3])
      h.as(alice)
      alices[0].destroy()
      await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal((await get(CREDS)).status, 200, 'a closed connection frees its place')
      for (const socket of [...alices, ...strangers]) socket.destroy()
    })

    it('answers 504 quickly when the upstream hangs', async () => {
      h.fake.hang(true)
      const started = Date.now()
      const reply = await get('/latest/meta-data/instance-id')
      assert.equal(reply.status, 504)
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`)
      assert.match(h.warnings.join('\n'), /did not answer/)
      assert.equal((await get(CREDS)).status, 200, 'the user’s credentials do not depend on the upstream')
    })

    it('caches the upstream’s 200 and 404 answers for a few seconds, and nothing else', async () => {
      await get('/latest/meta-data/instance-id')
      await get('/latest/meta-data/instance-id')
      assert.equal((await get('/latest/meta-data/no-such-thing')).status, 404)
      assert.equal((await get('/latest/meta-data/no-such-thing')).status, 404)
      const gets = (path: string) =>
        h.fake.requests.filter((r) => r.method === 'GET' && r.path === path).length
      assert.equal(gets('/latest/meta-data/instance-id'), 1)
      assert.equal(gets('/latest/meta-data/no-such-thing'), 1)
      h.fake.hang(true)
      assert.equal((await get('/latest/meta-data/placement/region')).status, 504, 'a timeout is not cached')
      h.fake.hang(false)
      assert.equal((await get('/latest/meta-data/placement/region')).status, 200)
      h.advance(5001)
      await get('/latest/meta-data/instance-id')
      await get('/latest/meta-data/no-such-thing')
      assert.equal(gets('/latest/meta-data/instance-id'), 2)
      assert.equal(gets('/latest/meta-data/no-such-thing'), 2)
    })

    it('logs every request with its route and status', async () => {
      await get(CREDS)
      await get('/latest/meta-data/instance-id')
      assert.deepEqual(
        h.logs.map((l) => [l.uid, l.route, l.status, l.path]),
        [
          [1001, 'credentials', 200, CREDS],
          [1001, 'upstream', 200, '/latest/meta-data/instance-id'],
        ],
      )
    })
  })
})
