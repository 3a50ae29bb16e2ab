// The log line, built in one object per line: exactly the line of the spread it replaced,
// `{time, level, msg, ...redact(fields)}` (audit: `{audit: true, ...fields}`), for every kind
// of field a caller may pass, secret-looking names dropped.
import assert from 'node:assert/strict'

import type {LogLevel} from '../../src/lib/config/schema.js'
import {createLogger, LogFields, redact} from '../../src/lib/daemon/log.js'
import type {AuditRecord} from '../../src/lib/imds/app.js'

const SECRET_KEYS = /secret|token|password|sessiontoken/i
const NOW = new Date('2026-11-23T10:00:00.123Z')

/** The line as the logger wrote it before (the reference). */
function spreadLine(level: LogLevel, msg: string, fields: LogFields): string {
  const redacted = Object.fromEntries(Object.entries(fields).filter(([k]) => !SECRET_KEYS.test(k)))
  return JSON.stringify({time: NOW.toISOString(), level, msg, ...redacted})
}

function loggerAt(level: LogLevel) {
  const lines: Array<[LogLevel, string]> = []
  const logger = createLogger({level, sinks: [{write: (l, line) => lines.push([l, line])}], now: () => NOW})
  return {logger, lines}
}

const auditRecord = (): AuditRecord => ({
  time: '2026-11-23T10:00:01.000Z',
  uid: 1002,
  user: 'bob',
  httpMethod: 'GET',
  path: '/latest/meta-data/iam/security-credentials/analytics-host',
  outcome: 'issued',
  detail: null,
  method: 'RestrictedInstanceRole',
  roleArn: 'arn:aws:iam::123456789012:role/service-role/analytics-host',
  accessKeyId: 'ASIAEXAMPLEKEY000001',
  expiration: '2026-11-23T11:00:00.000Z',
  cacheHit: true,
  latencyMs: 0.25,
})

function withHidden(): LogFields {
  const fields: LogFields = Object.create({inherited: 'not own'})
  fields.shown = 1
  Object.defineProperty(fields, 'hidden', {value: 2, enumerable: false})
  return fields
}

const cases: Array<[string, () => LogFields]> = [
  ['an audit record (its own time)', () => ({...auditRecord()})],
  ['no fields', () => ({})],
  [
    'secret-looking names',
    () => ({
      secretAccessKey: 's',
      sessionToken: 't',
      Token: 'u',
      password: 'p',
      'x-aws-ec2-metadata-token': 'v',
      accessKeyId: 'AKIA',
      ok: 1,
    }),
  ],
  [
    'fields named like the line’s own',
    () => ({level: 'CRITICAL', msg: 'other', time: undefined, after: true}),
  ],
  ['index-like names, which come first', () => ({b: 1, 2: 'two', a: 2, 0: 'zero'})],
  [
    'values JSON drops or converts',
    () => ({
      u: undefined,
      f: () => 1,
      d: new Date(0),
      n: NaN,
      nested: {token: 'kept: only top-level names count'},
      list: [1, undefined],
    }),
  ],
  ['a field named __proto__', () => JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as LogFields],
  ['non-enumerable and inherited fields', withHidden],
]

describe('log lines', () => {
  for (const [name, fields] of cases) {
    it(`writes ${name} exactly as the spread did`, () => {
      const {logger, lines} = loggerAt('DEBUG')
      logger.info('something', fields())
      logger.warn('something', fields())
      assert.deepEqual(lines, [
        ['INFO', spreadLine('INFO', 'something', fields())],
        ['WARNING', spreadLine('WARNING', 'something', fields())],
      ])
    })

    it(`audits ${name} exactly as the spread did`, () => {
      const {logger, lines} = loggerAt('DEBUG')
      logger.audit('credential request', fields())
      assert.deepEqual(lines, [
        ['INFO', spreadLine('INFO', 'credential request', {audit: true, ...fields()})],
      ])
    })
  }

  it('writes a credential request’s audit line exactly as audit() writes the record, whatever the level, request after request', () => {
    const later = {...auditRecord(), time: '2026-11-23T10:00:02.000Z', latencyMs: 0.5}
    const records: AuditRecord[] = [
      auditRecord(),
      later,
      {...later, latencyMs: NaN},
      {...later, cacheHit: false},
      {...later, user: 'bob"\n'},
      {
        ...auditRecord(),
        uid: null,
        user: null,
        path: '(raw) /latest/meta-data/iam/security-credentials/\\x00"quoted"\u2028',
        outcome: 'denied',
        detail: 'HTTP 400: the path cannot be made canonical: "%zz"',
        method: null,
        roleArn: null,
        accessKeyId: null,
        expiration: null,
        cacheHit: null,
      },
      auditRecord(),
    ]
    const {logger, lines} = loggerAt('CRITICAL')
    const reference = loggerAt('DEBUG')
    for (const record of records) {
      logger.credentialRequest(record)
      reference.logger.audit('credential request', {...record})
    }
    assert.deepEqual(lines, reference.lines)
  })

  it('writes one audit line per record whatever the level', () => {
    const {logger, lines} = loggerAt('CRITICAL')
    logger.info('chatter', {a: 1})
    logger.audit('credential request', {...auditRecord()})
    assert.equal(lines.length, 1)
    assert.equal(JSON.parse(lines[0][1]).audit, true)
  })

  it('never writes a secret-looking field, in an audit line either', () => {
    const {logger, lines} = loggerAt('DEBUG')
    logger.audit('credential request', {
      ...auditRecord(),
      secretAccessKey: 'wJalr',
      sessionToken: 'IQoJ',
      imdsToken: 'AQAE',
    })
    assert.doesNotMatch(lines[0][1], /wJalr|IQoJ|AQAE|secret|token/i)
  })

  it('redacts as before', () => {
    for (const [, make] of cases) {
      const fields = make()
      assert.deepStrictEqual(
        redact(fields),
        Object.fromEntries(Object.entries(fields).filter(([k]) => !SECRET_KEYS.test(k))),
      )
    }
  })
})
