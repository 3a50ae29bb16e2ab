// The credentials document, rendered once per set of credentials and reused: the reused
// document is always the one a fresh rendering gives, whatever changed in between.
import assert from 'node:assert/strict'

import {credentialsDocument} from '../../src/lib/imds/format.js'
import type {Credentials} from '../../src/lib/methods/credentials.js'

const credentials = (): Credentials => ({
  accessKeyId: 'ASIAEXAMPLEKEY000001',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE+/=',
  expiration: new Date('2026-11-23T11:00:00.000Z'),
  arn: 'arn:aws:sts::123456789012:assumed-role/analytics-host/bob',
})
const LAST_UPDATED = new Date('2026-11-23T10:00:00.999Z')

/** A rendering with no earlier one to reuse: a new credentials object each time. */
const fresh = (c: Credentials, lastUpdated: Date, accountId?: string) =>
  credentialsDocument({...c, expiration: new Date(c.expiration)}, new Date(lastUpdated), accountId)

describe('the credentials document', () => {
  it('is EC2’s, byte for byte', () => {
    assert.equal(
      credentialsDocument(credentials(), LAST_UPDATED),
      [
        '{',
        '  "Code" : "Success",',
        '  "LastUpdated" : "2026-11-23T10:00:00Z",',
        '  "Type" : "AWS-HMAC",',
        '  "AccessKeyId" : "ASIAEXAMPLEKEY000001",',
        '  "SecretAccessKey" : "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",',
        '  "Token" : "IQoJb3JpZ2luX2VjEXAMPLE+/=",',
        '  "Expiration" : "2026-11-23T11:00:00Z"',
        '}',
      ].join('\n'),
    )
  })

  it('is the same when asked again for the same credentials, on either path in turn', () => {
    const c = credentials()
    for (let i = 0; i < 3; i++) {
      assert.equal(credentialsDocument(c, LAST_UPDATED), fresh(c, LAST_UPDATED))
      assert.equal(
        credentialsDocument(c, LAST_UPDATED, '123456789012'),
        fresh(c, LAST_UPDATED, '123456789012'),
      )
    }
    assert.match(
      credentialsDocument(c, LAST_UPDATED, '123456789012'),
      /"Expiration" : "2026-11-23T11:00:00Z",\n {2}"AccountId" : "123456789012"\n}$/,
    )
  })

  it('is rendered anew for another LastUpdated or account', () => {
    const c = credentials()
    credentialsDocument(c, LAST_UPDATED, '123456789012')
    const later = new Date('2026-11-23T10:30:00Z')
    assert.equal(credentialsDocument(c, later, '123456789012'), fresh(c, later, '123456789012'))
    assert.equal(credentialsDocument(c, later, '210987654321'), fresh(c, later, '210987654321'))
  })

  it('is rendered anew when the credentials object changed in place', () => {
    const c = credentials()
    credentialsDocument(c, LAST_UPDATED)
    for (const change of [
      () => (c.accessKeyId = 'ASIAEXAMPLEKEY000002'),
      () => (c.secretAccessKey = 'another/secret'),
      () => (c.sessionToken = 'another-token'),
      () => (c.expiration = new Date('2026-11-23T12:00:00Z')),
      () => c.expiration.setTime(Date.parse('2026-11-23T13:00:00Z')),
    ]) {
      change()
      assert.equal(credentialsDocument(c, LAST_UPDATED), fresh(c, LAST_UPDATED))
    }
  })

  it('escapes what JSON must escape', () => {
    const c = {...credentials(), sessionToken: 'a"b\\c\nd'}
    assert.match(credentialsDocument(c, LAST_UPDATED), /"Token" : "a\\"b\\\\c\\nd"/)
    assert.equal(credentialsDocument(c, LAST_UPDATED), fresh(c, LAST_UPDATED))
  })
})
