import assert from 'node:assert/strict'

import {
  CANONICAL_MEMO_KEY_MAX,
  CANONICAL_MEMO_MAX,
  canonicalPath,
  canonicalPathMemo,
  computeCanonicalPath,
  foldedPath,
} from '../../src/lib/imds/paths.js'

describe('canonical IMDS paths', () => {
  const canonical: Array<[string, {version: string | null; path: string; upstreamPath: string}]> = [
    ['/', {version: null, path: '', upstreamPath: '/'}],
    ['//', {version: null, path: '', upstreamPath: '/'}],
    ['/latest', {version: 'latest', path: '', upstreamPath: '/latest'}],
    ['/latest/', {version: 'latest', path: '', upstreamPath: '/latest/'}],
    [
      '/latest/meta-data/instance-id',
      {version: 'latest', path: 'meta-data/instance-id', upstreamPath: '/latest/meta-data/instance-id'},
    ],
    ['/latest/meta-data/', {version: 'latest', path: 'meta-data', upstreamPath: '/latest/meta-data/'}],
    [
      '/2021-01-03/meta-data/ami-id',
      {version: '2021-01-03', path: 'meta-data/ami-id', upstreamPath: '/2021-01-03/meta-data/ami-id'},
    ],
    ['/1.0/meta-data/', {version: '1.0', path: 'meta-data', upstreamPath: '/1.0/meta-data/'}],
    ['/LATEST/meta-data', {version: 'latest', path: 'meta-data', upstreamPath: '/latest/meta-data'}],
    ['/meta-data/ami-id', {version: null, path: 'meta-data/ami-id', upstreamPath: '/meta-data/ami-id'}],
    [
      '//latest//meta-data///iam//',
      {version: 'latest', path: 'meta-data/iam', upstreamPath: '/latest/meta-data/iam/'},
    ],
    [
      '/latest/./meta-data/./iam',
      {version: 'latest', path: 'meta-data/iam', upstreamPath: '/latest/meta-data/iam'},
    ],
    ['/latest/meta-data/iam/..', {version: 'latest', path: 'meta-data', upstreamPath: '/latest/meta-data/'}],
    [
      '/latest/meta-data/iam/.',
      {version: 'latest', path: 'meta-data/iam', upstreamPath: '/latest/meta-data/iam/'},
    ],
    ['/x/../latest/user-data', {version: 'latest', path: 'user-data', upstreamPath: '/latest/user-data'}],
    [
      '/latest%2Fmeta-data%2Finstance-id',
      {version: 'latest', path: 'meta-data/instance-id', upstreamPath: '/latest/meta-data/instance-id'},
    ],
    [
      '/latest/meta-data%252Finstance-id',
      {version: 'latest', path: 'meta-data/instance-id', upstreamPath: '/latest/meta-data/instance-id'},
    ],
    [
      '/latest/meta-data/%2e%2e/user-data',
      {version: 'latest', path: 'user-data', upstreamPath: '/latest/user-data'},
    ],
    [
      '/latest/meta-data/%252e%252e/user-data',
      {version: 'latest', path: 'user-data', upstreamPath: '/latest/user-data'},
    ],
    [
      '/latest/meta-data/instance-id?x=1#y',
      {version: 'latest', path: 'meta-data/instance-id', upstreamPath: '/latest/meta-data/instance-id'},
    ],
    [
      '/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s',
      {
        version: 'latest',
        path: 'meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s',
        upstreamPath: '/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s',
      },
    ],
    [
      '/latest/meta-data/tags/instance/a+b=c,d_e:f@g',
      {
        version: 'latest',
        path: 'meta-data/tags/instance/a+b=c,d_e:f@g',
        upstreamPath: '/latest/meta-data/tags/instance/a+b=c,d_e:f@g',
      },
    ],
  ]
  for (const [raw, expected] of canonical) {
    it(`reads ${raw} as ${expected.upstreamPath}`, () => {
      const result = canonicalPath(raw)
      assert.ok(!('error' in result), JSON.stringify(result))
      assert.deepEqual(
        {version: result.version, path: result.path, upstreamPath: result.upstreamPath},
        expected,
      )
    })
  }

  const refused: Array<[string, RegExp]> = [
    ['latest/meta-data', /absolute path/],
    ['http://169.254.169.254/latest/meta-data/', /absolute path/],
    ['/latest/meta-data/%zz', /malformed/],
    ['/latest/meta-data/%', /malformed/],
    ['/latest/meta-data/%25', /malformed/], // a literal % left after decoding
    ['/latest/meta-data/%C3', /malformed/],
    ['/latest/meta-data%252525252Finstance-id', /still percent-encoded after 5 rounds/],
    ['/..', /above the root/],
    ['/latest/../../meta-data', /above the root/],
    ['/%2e%2e/latest', /above the root/],
    ['/latest/meta-data/%00', /never hold/],
    ['/latest/meta-data/instance-id%0d%0aX-Evil:%201', /never hold/],
    ['/latest/meta-data/a%20b', /never hold/],
    ['/latest/meta-data%5Ciam', /never hold/],
    ['/latest/meta-data;x/iam', /never hold/],
    ['/latest/meta-data/%3F', /never hold/],
    ['/latest/meta-data/%23', /never hold/],
    ['/latest/meta-data/%C3%A9', /never hold/],
  ]
  for (const [raw, why] of refused) {
    it(`refuses ${JSON.stringify(raw)}`, () => {
      const result = canonicalPath(raw)
      assert.ok('error' in result, `expected an error, got ${JSON.stringify(result)}`)
      assert.match(result.error, why)
    })
  }

  describe('the memo of recent targets', () => {
    const spellings = [...canonical.map(([raw]) => raw), ...refused.map(([raw]) => raw)]

    it('answers every spelling above exactly as the computation does, the first time and again', () => {
      for (const raw of spellings) {
        const computed = computeCanonicalPath(raw)
        assert.deepStrictEqual(canonicalPath(raw), computed, raw)
        assert.deepStrictEqual(canonicalPath(raw), computed, `${raw}, remembered`)
      }
    })

    it('hands out results no caller can change', () => {
      const result = canonicalPath('/latest/meta-data/iam/info')
      assert.ok(Object.isFrozen(result))
      assert.throws(() => Object.assign(result, {upstreamPath: '/latest/user-data'}), TypeError)
      assert.equal(
        (canonicalPath('/latest/meta-data/iam/info') as {upstreamPath: string}).upstreamPath,
        '/latest/meta-data/iam/info',
      )
    })

    it('stays bounded however many distinct targets a user sends', () => {
      for (let i = 0; i < 3 * CANONICAL_MEMO_MAX; i++) canonicalPath(`/latest/meta-data/${i}`)
      assert.equal(canonicalPathMemo.size, CANONICAL_MEMO_MAX)
      for (const raw of spellings) assert.deepStrictEqual(canonicalPath(raw), computeCanonicalPath(raw), raw)
    })

    it('computes long targets each time rather than remember them', () => {
      const long = `/latest/meta-data/${'a'.repeat(CANONICAL_MEMO_KEY_MAX)}`
      assert.deepStrictEqual(canonicalPath(long), computeCanonicalPath(long))
      assert.equal(canonicalPathMemo.has(long), false)
      canonicalPath('/latest/meta-data/ami-id')
      assert.equal(canonicalPathMemo.has('/latest/meta-data/ami-id'), true)
    })
  })

  it('folds case and punctuation away for the credential net', () => {
    assert.equal(foldedPath('meta-data/IAM/Security_Credentials;x'), 'metadataiamsecuritycredentialsx')
  })
})
