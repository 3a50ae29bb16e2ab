// Which caches a reload keeps, option by option: only the listed options leave the credential
// cache alone, and everything else (including an option added later) drops it.
import assert from 'node:assert/strict'

import {parseConfig} from '../../src/lib/config/load.js'
import {Config, defaultConfig, SCHEMA, SectionName} from '../../src/lib/config/schema.js'
import {
  changedOptions,
  IAM_READ_CACHE_OPTIONS,
  OPTIONS_OUTSIDE_APPLICATION,
  OPTIONS_OUTSIDE_CREDENTIALS,
  planReload,
} from '../../src/lib/daemon/reload.js'

const config = (text: string): Config => parseConfig(text, '/etc/ec2userkeyd.conf')

/** Another value of the same type: the test needs a change, not a sensible setting. */
function another(value: unknown): unknown {
  if (typeof value === 'boolean') return !value
  if (typeof value === 'number') return value + 1
  if (typeof value === 'string') return `${value}x`
  if (value === null) return 'x'
  if (Array.isArray(value))
    return [
      ...value,
      value.length > 0 && typeof value[0] === 'object'
        ? {key: '7', from: 7, to: 7, methods: ['InstanceRole']}
        : 'InstanceRole',
    ]
  return {...(value as object), zz: ['InstanceRole']}
}

const everyOption = Object.entries(SCHEMA).flatMap(([section, options]) =>
  Object.keys(options).map((o) => `${section}.${o}`),
)

describe('what a reload keeps', () => {
  for (const option of everyOption) {
    const [section, name] = option.split('.')
    const outside = (OPTIONS_OUTSIDE_CREDENTIALS as readonly string[]).includes(option)
    const iamToo = (IAM_READ_CACHE_OPTIONS as readonly string[]).includes(option)
    const expected = outside ? 'engine' : iamToo ? 'nothing' : 'iam-reads'
    it(`${option}: ${expected === 'engine' ? 'keeps both caches' : expected === 'nothing' ? 'drops both caches' : 'drops the credential cache, keeps IAM reads'}`, () => {
      // Given the defaults, and the same with one option changed
      const running = defaultConfig()
      const next = defaultConfig()
      const options = next[section as SectionName] as Record<string, unknown>
      options[name] = another(options[name])
      // Then exactly that option counts as changed, and decides what stays
      assert.deepEqual(changedOptions(running, next), [option])
      const plan = planReload({started: running, running, next})
      assert.equal(plan.keep, expected)
      assert.deepEqual(plan.credentialOptions, outside ? [] : [option])
    })
  }

  it('keeps the credential cache only for logging, the listeners, the interception and whether a request is answered', () => {
    assert.deepEqual([...OPTIONS_OUTSIDE_CREDENTIALS].sort(), [
      'general.admin_group',
      'general.admin_listen',
      'general.daemon_port',
      'general.deny_instance_identity',
      'general.deny_user_data',
      'general.forwarded_imds',
      'general.iptables',
      'general.keep_rules_on_exit',
      'general.log_console',
      'general.log_level',
      'general.log_syslog',
      'general.require_imdsv2',
    ])
  })

  it('keeps the IMDS application only for options that leave the engine alone too', () => {
    for (const option of OPTIONS_OUTSIDE_APPLICATION)
      assert.ok(OPTIONS_OUTSIDE_CREDENTIALS.includes(option), option)
  })

  it('counts an option it does not know (one added later) as deciding credentials', () => {
    // Given a configuration with one more option than the list knows of
    const running = defaultConfig()
    const next = defaultConfig()
    ;(next.general as Record<string, unknown>).some_future_option = true
    // Then the credential cache goes
    const plan = planReload({started: running, running, next})
    assert.equal(plan.keep, 'iam-reads')
    assert.deepEqual(plan.credentialOptions, ['general.some_future_option'])
  })

  it('sees a chain change, not a reordering of the same per-user chains', () => {
    const a = config('[general]\nper_user_credential_methods = alice: UserRole, bob: InstanceRole\n')
    const b = config('[general]\nper_user_credential_methods = bob: InstanceRole, alice: UserRole\n')
    const c = config(
      '[general]\nper_user_credential_methods = bob: InstanceRole, alice: UserRole, InstanceRole\n',
    )
    assert.deepEqual(changedOptions(a, b), [])
    assert.deepEqual(changedOptions(a, c), ['general.per_user_credential_methods'])
    // The order of uid rules matters (the last match wins)
    const d = config('[general]\nper_uid_credential_methods = 0-999: InstanceRole, 500: UserRole\n')
    const e = config('[general]\nper_uid_credential_methods = 500: UserRole, 0-999: InstanceRole\n')
    assert.deepEqual(changedOptions(d, e), ['general.per_uid_credential_methods'])
  })

  it('warns about restart-only options against the start, whatever reloads came since', () => {
    const started = defaultConfig()
    const moved = config('[general]\ndaemon_port = 8099\n')
    // A first reload moves the port; a second one keeps it moved: both are told
    assert.deepEqual(planReload({started, running: started, next: moved}).restartOnly, [
      'general.daemon_port',
    ])
    assert.deepEqual(planReload({started, running: moved, next: moved}).restartOnly, ['general.daemon_port'])
    assert.deepEqual(planReload({started, running: moved, next: started}).restartOnly, [])
  })

  it('keeps the IMDS application unless an option it reads changed', () => {
    const running = defaultConfig()
    assert.equal(
      planReload({started: running, running, next: config('[general]\nlog_level = DEBUG\n')}).keepApplication,
      true,
    )
    assert.equal(
      planReload({started: running, running, next: config('[general]\nrequire_imdsv2 = True\n')})
        .keepApplication,
      false,
    )
    assert.equal(
      planReload({started: running, running, next: config('[general]\nsession_duration = 1800\n')})
        .keepApplication,
      false,
    )
  })
})
