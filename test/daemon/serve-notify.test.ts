// The built `serve` under a stand-in systemd: its notifications (READY=1 once it serves,
// RELOADING=1 and READY=1 around a reload, STOPPING=1 at SIGTERM) reach a unix datagram socket
// named by NOTIFY_SOCKET, in that order; and a SIGHUP during start-up neither kills it nor is
// lost. --no-iptables, with the fake IMDS and the AWS test double, as test/cli/serve.test.ts.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {fieldsOf, freePort, NotifyReceiver, ServeChild, spawnServe} from './serve-support.js'

describe('ec2userkeyd serve under systemd (sd_notify)', function () {
  let double: AwsDouble
  let upstream: FakeImds
  let dir: string
  let configFile: string
  let systemd: NotifyReceiver | null = null
  let serve: ServeChild | null = null

  const writeConfig = (extra = '') =>
    writeFileSync(configFile, `[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\n${extra}`)

  before(async () => {
    double = await startAwsDouble({
      snapshot: await loadAccountSnapshot(fixture('account.json')),
      instanceRole: 'analytics-host',
    })
    upstream = await startFakeImds()
    dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-notify-'))
    configFile = join(dir, 'ec2userkeyd.conf')
  })

  afterEach(() => {
    if (serve && serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGKILL')
    serve = null
    systemd?.close()
    systemd = null
    double.reset()
  })

  after(async () => {
    await upstream?.stop()
    await double?.stop()
    rmSync(dir, {recursive: true, force: true})
  })

  /** Binds systemd's end at a fresh path and starts serve with NOTIFY_SOCKET pointing there. */
  async function startServe(extraArgs: string[] = []): Promise<{serve: ServeChild; systemd: NotifyReceiver}> {
    const socket = join(dir, `notify-${process.hrtime.bigint()}.sock`)
    systemd = await NotifyReceiver.bind(socket)
    const port = await freePort()
    serve = spawnServe(
      [
        '--no-iptables',
        '--config',
        configFile,
        '--port',
        String(port),
        '--upstream',
        upstream.url,
        ...extraArgs,
      ],
      {
        ...childEnv(double),
        NOTIFY_SOCKET: socket,
      },
    )
    return {serve, systemd}
  }

  it('says READY=1 once it serves, RELOADING=1 then READY=1 around a reload, and STOPPING=1 at SIGTERM', async () => {
    // Given serve started under a NOTIFY_SOCKET
    writeConfig()
    const {serve, systemd} = await startServe(['--instance-role', 'analytics-host'])
    // When it is up
    const [ready] = await systemd.waitFor(1)
    // Then READY=1 came once it listened, with a status line
    assert.match(serve.log(), /"msg":"listening"/, 'READY=1 before the listener')
    assert.deepEqual(fieldsOf(ready), [
      ['READY', '1'],
      ['STATUS', 'serving; no interception (--no-iptables)'],
    ])
    // When the configuration is reloaded
    writeConfig('session_duration = 1800\n')
    const sent = process.hrtime.bigint() / 1000n
    serve.child.kill('SIGHUP')
    const [, reloading, readyAgain] = await systemd.waitFor(3)
    await serve.waitForLog(/"msg":"configuration reloaded"/)
    // Then RELOADING=1 with the time on CLOCK_MONOTONIC (the same clock in every process), then READY=1
    const fields = Object.fromEntries(fieldsOf(reloading))
    assert.deepEqual(Object.keys(fields), ['RELOADING', 'MONOTONIC_USEC', 'STATUS'])
    assert.equal(fields.RELOADING, '1')
    const usec = BigInt(fields.MONOTONIC_USEC)
    assert.ok(
      usec >= sent && usec <= process.hrtime.bigint() / 1000n,
      `MONOTONIC_USEC ${usec} is not between ${sent} and now`,
    )
    assert.equal(fieldsOf(readyAgain)[0].join('='), 'READY=1')
    // When it is told to stop
    serve.child.kill('SIGTERM')
    // Then STOPPING=1, and it exits 0
    assert.equal(await serve.exited, 0)
    systemd.drain()
    assert.deepEqual(
      systemd.messages.map((m) => fieldsOf(m)[0].join('=')),
      ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1'],
    )
    assert.equal(Object.fromEntries(fieldsOf(systemd.messages[3])).STATUS, 'stopping (SIGTERM)')
  })

  it('survives a SIGHUP during start-up and reloads once it serves; a refused reload is in STATUS', async () => {
    // Given a start that takes a while: the instance role is discovered, and STS is slow
    writeConfig()
    double.setLatency(2000, 'GetCallerIdentity')
    const {serve, systemd} = await startServe()
    await serve.waitForLog(/"msg":"starting"/)
    // When SIGHUP comes before it listens (Node's default for SIGHUP is to end the process)
    writeConfig('session_duration = 1800\n')
    serve.child.kill('SIGHUP')
    // Then it starts all the same, and reloads once it serves
    await serve.waitForLog(/"msg":"listening"/)
    await serve.waitForLog(/"msg":"configuration reloaded"/)
    const messages = serve.records().map((r) => r.msg)
    assert.ok(
      messages.indexOf('SIGHUP came during start-up: reloading the configuration now') >
        messages.indexOf('listening'),
      messages.join('\n'),
    )
    assert.equal(messages.filter((m) => m === 'configuration reloaded').length, 1)
    await systemd.waitFor(3)
    assert.deepEqual(
      systemd.messages.map((m) => fieldsOf(m)[0].join('=')),
      ['READY=1', 'RELOADING=1', 'READY=1'],
    )
    // When a reload is refused (the instance role it names does not exist)
    writeConfig('instance_role = no-such-role\n')
    serve.child.kill('SIGHUP')
    const [, , , , refused] = await systemd.waitFor(5)
    // Then systemd hears READY=1 all the same (the daemon serves), with the refusal in STATUS
    const status = Object.fromEntries(fieldsOf(refused))
    assert.equal(status.READY, '1')
    assert.match(
      status.STATUS,
      /^serving; no interception \(--no-iptables\); reload refused at .*, the previous configuration is running \(the log says why\)$/,
    )
    serve.child.kill('SIGTERM')
    assert.equal(await serve.exited, 0)
  })
})
