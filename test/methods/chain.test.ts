import assert from 'node:assert/strict'

import {parseConfig} from '../../src/lib/config/load.js'
import {selectChain} from '../../src/lib/methods/chain.js'
import {sessionNameFor} from '../../src/lib/methods/session.js'

const config = parseConfig(
  [
    '[general]',
    'credential_methods = UserRole, RestrictedInstanceRole, InstanceRole',
    'per_user_credential_methods = alice: UserRole, InstanceRole, svc-backup: InstanceRole',
    'per_uid_credential_methods = 0-999: InstanceRole, 1000-1999: RestrictedInstanceRole, 1500: CreateUserRole',
    '',
  ].join('\n'),
  'test.conf',
)

describe('choosing the chain for a local user', () => {
  it('takes per_user_credential_methods for the name first, whatever the uid', () => {
    assert.deepEqual(selectChain(config, {name: 'alice', uid: 1500}), {methods: ['UserRole', 'InstanceRole'], source: 'user', rule: 'alice'})
    assert.deepEqual(selectChain(config, {name: 'svc-backup', uid: 5000}).methods, ['InstanceRole'])
  })

  it('then the last per_uid rule whose uid or inclusive range holds the uid', () => {
    assert.deepEqual(selectChain(config, {name: 'x', uid: 0}), {methods: ['InstanceRole'], source: 'uid', rule: '0-999'})
    assert.deepEqual(selectChain(config, {name: 'x', uid: 999}).rule, '0-999')
    assert.deepEqual(selectChain(config, {name: 'x', uid: 1000}).methods, ['RestrictedInstanceRole'])
    assert.deepEqual(selectChain(config, {name: 'x', uid: 1999}).methods, ['RestrictedInstanceRole'])
    // 1500 lies in 1000-1999 and in the later single-uid rule: the later one wins
    assert.deepEqual(selectChain(config, {name: 'x', uid: 1500}), {methods: ['CreateUserRole'], source: 'uid', rule: '1500'})
  })

  it('else the default chain', () => {
    assert.deepEqual(selectChain(config, {name: 'x', uid: 2000}), {methods: ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'], source: 'default'})
  })

  it('never mistakes an object member such as "constructor" for a configured user', () => {
    assert.equal(selectChain(config, {name: 'constructor', uid: 2000}).source, 'default')
    assert.equal(selectChain(config, {name: '__proto__', uid: 2000}).source, 'default')
  })
})

describe('session names', () => {
  it('uses a valid user name as it is', () => {
    assert.equal(sessionNameFor('alice'), 'alice')
    assert.equal(sessionNameFor('svc.backup@corp'), 'svc.backup@corp')
  })

  it('makes any other name valid (characters [\\w+=,.@-], 2-64 long) and keeps different users apart', () => {
    const names = ['a', 'bob smith', 'bob_smith', 'josé', 'x'.repeat(80), 'x'.repeat(81), 'DOMAIN\\alice', 'ünïcødé']
    const sessions = names.map(sessionNameFor)
    for (const s of sessions) assert.match(s, /^[\w+=,.@-]{2,64}$/, s)
    assert.equal(new Set(sessions).size, names.length, 'all distinct')
    assert.ok(sessionNameFor('bob smith').startsWith('bob_smith-'))
  })
})
