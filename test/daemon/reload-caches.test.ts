// What a reload keeps: the daemon in this process, live against the AWS test double, answering a
// child process running as uid 65534, which the user database here calls bob (an IAM user of the
// demo account: RestrictedInstanceRole, whose credentials rest on IAM reads and one AssumeRole).
// A reload of options that decide nothing about credentials keeps both caches; one that changes
// what a user gets drops the credential cache (and the IAM reads when they depend on it).
import assert from 'node:assert/strict'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {parseConfig} from '../../src/lib/config/load.js'
import type {LogLevel} from '../../src/lib/config/schema.js'
import {Daemon, startDaemon} from '../../src/lib/daemon/daemon.js'
import {createLogger, ReconfigurableLogger} from '../../src/lib/daemon/log.js'
import {createMetrics} from '../../src/lib/daemon/metrics.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {asUser, freePort, get, isRoot, NOBODY, requestAs, useDoubleEnv} from './serve-support.js'

/** [general] options `extra`, over the instance role named and bob's session policy compressed to fit. */
const config = (extra = '') =>
  parseConfig(
    `[general]\ninstance_role = analytics-host\n${extra}[method_RestrictedInstanceRole]\ncompress_user_policy = True\n`,
    '/etc/ec2userkeyd.conf',
  )

describe('the daemon across reloads', function () {
  let double: AwsDouble
  let upstream: FakeImds
  let restoreEnv = () => {}
  let daemon: Daemon
  let logger: ReconfigurableLogger
  const lines: Array<{level: string; msg: string; [field: string]: unknown}> = []

  const bob = async () => {
    const reply = await asUser(NOBODY, daemon.address.port)
    assert.equal(reply.credentials.status, 200, JSON.stringify(lines.slice(-5)))
    return JSON.parse(reply.credentials.body) as {AccessKeyId: string}
  }
  const issued = () => double.assumeRoleLog.filter((r) => r.result === 'ok')
  const iamCalls = () => double.calls.filter((c) => c.service === 'iam').length
  const audits = () => lines.filter((l) => l.msg === 'credential request')
  const dropped = () =>
    lines.filter((l) => l.msg === 'credential cache dropped: options that decide credentials changed')

  before(async function () {
    if (!isRoot) return this.skip() // playing another user needs root
    double = await startAwsDouble({
      snapshot: await loadAccountSnapshot(fixture('account.json')),
      instanceRole: 'analytics-host',
    })
    upstream = await startFakeImds()
    restoreEnv = useDoubleEnv(double)
    logger = createLogger({
      level: 'INFO',
      sinks: [{write: (_level: LogLevel, line: string) => void lines.push(JSON.parse(line))}],
    })
    daemon = await startDaemon({
      config: config(),
      host: '127.0.0.1',
      port: 0,
      upstream: upstream.url,
      env: process.env,
      logger,
      metrics: createMetrics(),
      users: {find: async (q) => ('uid' in q && q.uid === NOBODY ? {name: 'bob', uid: NOBODY} : null)},
    })
  })

  after(async () => {
    await daemon?.close()
    restoreEnv()
    await upstream?.stop()
    await double?.stop()
  })

  it('keeps every credential and IAM read across a reload of options that do not decide credentials', async () => {
    // Given bob's credentials, issued once
    const first = await bob()
    assert.equal(issued().length, 1)
    assert.equal(issued()[0].roleSessionName, 'bob')
    const reads = iamCalls()
    // When a reload changes the log, the listeners' options and the interception's
    await daemon.reload(
      config(
        'log_level = DEBUG\nlog_console = True\nlog_syslog = False\nkeep_rules_on_exit = True\n' +
          `daemon_port = 8099\nadmin_listen = 127.0.0.1:${await freePort()}\niptables = /usr/sbin/iptables-legacy\n`,
      ),
    )
    // Then bob gets the same set from the cache: no AssumeRole, no IAM read, nothing dropped
    assert.equal((await bob()).AccessKeyId, first.AccessKeyId)
    assert.equal(audits().at(-1)!.cacheHit, true)
    // When another changes what is answered, not with what: IMDSv2 only, no user data
    assert.equal((await requestAs(NOBODY, daemon.address.port, '/latest/meta-data/instance-id')).status, 200)
    await daemon.reload(config('require_imdsv2 = True\ndeny_user_data = True\n'))
    // Then that takes effect, and bob still gets the same set
    assert.equal((await requestAs(NOBODY, daemon.address.port, '/latest/meta-data/instance-id')).status, 401)
    assert.equal((await bob()).AccessKeyId, first.AccessKeyId)
    assert.equal(issued().length, 1)
    assert.equal(iamCalls(), reads)
    assert.deepEqual(dropped(), [])
  })

  it('drops the credential cache, keeping IAM reads, when an option deciding credentials changes', async () => {
    // Given bob's cached set, issued with SourceIdentity
    const before = await bob()
    assert.equal(issued().at(-1)!.sourceIdentity, 'bob')
    const reads = iamCalls()
    // When source_identity goes off: the cache key does not hold it, so only dropping the cache makes it count
    await daemon.reload(config('source_identity = False\n'))
    // Then bob's next set is a new AssumeRole, made the new way, and the IAM reads are reused
    const after = await bob()
    assert.notEqual(after.AccessKeyId, before.AccessKeyId)
    assert.equal(issued().at(-1)!.accessKeyId, after.AccessKeyId)
    assert.equal(issued().at(-1)!.sourceIdentity, undefined)
    assert.equal(iamCalls(), reads)
    assert.equal(audits().at(-1)!.cacheHit, false)
    // And one INFO line says what changed
    assert.deepEqual(
      dropped().map(({level, options, iamReadCache}) => ({level, options, iamReadCache})),
      [{level: 'INFO', options: ['source_identity'], iamReadCache: 'kept'}],
    )
  })

  it('never hands a user credentials cached for a chain that a reload replaced, even when it comes back', async () => {
    // Given bob's RestrictedInstanceRole set, cached under the running configuration
    const restricted = await bob()
    assert.equal(audits().at(-1)!.method, 'RestrictedInstanceRole')
    const count = issued().length
    // When a reload gives bob another chain
    await daemon.reload(config('source_identity = False\nper_user_credential_methods = bob: InstanceRole\n'))
    const instance = await bob()
    // Then his credentials come from that chain, newly issued
    assert.equal(audits().at(-1)!.method, 'InstanceRole')
    assert.equal(issued().length, count + 1)
    assert.notEqual(instance.AccessKeyId, restricted.AccessKeyId)
    // When the next reload gives the old chain back
    await daemon.reload(config('source_identity = False\n'))
    // Then its set is issued afresh, not taken from before the first reload
    const again = await bob()
    assert.equal(audits().at(-1)!.method, 'RestrictedInstanceRole')
    assert.equal(audits().at(-1)!.cacheHit, false)
    assert.equal(issued().length, count + 2)
    assert.ok(![restricted.AccessKeyId, instance.AccessKeyId].includes(again.AccessKeyId))
  })

  it('starts the IAM reads over too when an option they depend on changes', async () => {
    await bob()
    const reads = iamCalls()
    await daemon.reload(config('source_identity = False\niam_cache_seconds = 600\n'))
    await bob()
    assert.ok(iamCalls() > reads, 'bob’s IAM user and the instance role were read again')
    assert.deepEqual(
      dropped()
        .map(({options, iamReadCache}) => ({options, iamReadCache}))
        .at(-1),
      {options: ['iam_cache_seconds'], iamReadCache: 'dropped'},
    )
  })

  it("writes the access log as the logger's level is now, without a reload", async () => {
    logger.reconfigure({level: 'INFO'})
    await get(daemon.address.port, '/latest/meta-data/instance-id')
    assert.equal(lines.filter((l) => l.msg === 'request').length, 0)
    logger.reconfigure({level: 'DEBUG'})
    await get(daemon.address.port, '/latest/meta-data/instance-id')
    assert.equal(lines.filter((l) => l.msg === 'request').length, 1)
  })
})
