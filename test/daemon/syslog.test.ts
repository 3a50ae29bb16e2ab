// The daemon's syslog sink, and serve's log through it (log_syslog = True, the default): each
// line reaches the system logger's socket, /dev/log, where glibc's syslog(3) sends it, as
// `<PRI>TIMESTAMP ec2userkeyd[PID]: LINE` with facility daemon and the level's severity. The
// test stands in for the system logger at /dev/log, so it needs root and a host that has no
// logger of its own there (it never takes over a real one); elsewhere it is skipped with the
// reason. It removes /dev/log afterwards.
import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import type {LogLevel} from '../../src/lib/config/schema.js'
import {syslogSink} from '../../src/lib/daemon/syslog.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {AwsDouble, childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {freePort, get, isRoot, NotifyReceiver, ServeChild, spawnServe} from './serve-support.js'

const DEV_LOG = '/dev/log'
const DAEMON = 3 << 3
const SEVERITY: Record<LogLevel, number> = {DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3, CRITICAL: 2}

/** A datagram as glibc's syslog(3) sends it: priority, time, ident[pid], the line. */
function parseDatagram(datagram: string): {priority: number; ident: string; pid: number; line: string} {
  const m = /^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ([^[]+)\[(\d+)\]: (.*)$/s.exec(datagram)
  assert.ok(m, `not a syslog datagram: ${JSON.stringify(datagram)}`)
  return {priority: Number(m[1]), ident: m[2], pid: Number(m[3]), line: m[4]}
}

describe('syslog', function () {
  const skip = !isRoot
    ? 'needs root (to stand in for the system logger at /dev/log)'
    : existsSync(DEV_LOG)
      ? 'this host has a system logger at /dev/log (the test does not take it over)'
      : null
  let logger: NotifyReceiver | null = null

  before(async function () {
    if (skip) {
      console.log(`      (skipped: ${skip})`)
      this.skip()
    }
    logger = await NotifyReceiver.bind(DEV_LOG)
  })

  after(() => {
    logger?.close()
    if (logger) rmSync(DEV_LOG, {force: true})
  })

  beforeEach(() => {
    logger!.drain()
    logger!.messages.length = 0
  })

  it('sends each line to /dev/log as ec2userkeyd[pid], facility daemon, with its level’s severity', async () => {
    const sink = await syslogSink()
    const levels: LogLevel[] = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL']
    for (const level of levels) sink.write(level, JSON.stringify({level, msg: `a line at ${level}`, text: 'ünïcode "quoted" %s %n'}))
    sink.close?.()
    const got = (await logger!.waitFor(levels.length)).map(parseDatagram)
    assert.deepEqual(
      got.map((d) => [d.priority, d.ident, d.pid, JSON.parse(d.line).msg, JSON.parse(d.line).text]),
      levels.map((level) => [DAEMON | SEVERITY[level], 'ec2userkeyd', process.pid, `a line at ${level}`, 'ünïcode "quoted" %s %n']),
    )
  })

  describe('ec2userkeyd serve with log_syslog = True', () => {
    let double: AwsDouble
    let upstream: FakeImds
    let dir: string
    let serve: ServeChild | null = null

    before(async () => {
      double = await startAwsDouble({snapshot: await loadAccountSnapshot(fixture('account.json')), instanceRole: 'analytics-host'})
      upstream = await startFakeImds()
      dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-syslog-'))
    })

    after(async () => {
      if (serve && serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGKILL')
      await upstream?.stop()
      await double?.stop()
      rmSync(dir, {recursive: true, force: true})
    })

    it('logs to syslog only: its start, an audit line per credential request, its stop', async () => {
      // Given serve logging to syslog and not to the console
      const config = join(dir, 'ec2userkeyd.conf')
      writeFileSync(config, '[general]\nlog_syslog = True\nlog_console = False\nlog_level = INFO\n')
      const port = await freePort()
      serve = spawnServe(
        ['--no-iptables', '--config', config, '--port', String(port), '--upstream', upstream.url, '--instance-role', 'analytics-host'],
        childEnv(double),
      )
      const {pid} = serve.child
      const lines = () => {
        logger!.drain()
        return logger!.messages.map(parseDatagram).filter((d) => d.pid === pid)
      }
      const until = async (pattern: RegExp) => {
        for (const end = Date.now() + 15_000; !lines().some((d) => pattern.test(d.line)); ) {
          assert.ok(Date.now() < end, `no ${pattern} in syslog: ${JSON.stringify(lines())}\nstderr: ${serve!.log()}`)
          await new Promise((resolve) => setTimeout(resolve, 25))
        }
      }
      await until(/"msg":"listening"/)
      // When root asks for credentials (passed to the upstream IMDS) and serve is stopped
      const reply = await get(port, '/latest/meta-data/iam/security-credentials/analytics-host')
      assert.equal(reply.status, 200)
      await until(/"msg":"credential request"/)
      serve.child.kill('SIGTERM')
      assert.equal(await serve.exited, 0)
      // Then every line went to syslog, the audit line at INFO, and none to the console
      const records: Array<Record<string, unknown>> = lines().map((d) => ({priority: d.priority, ident: d.ident, ...(JSON.parse(d.line) as Record<string, unknown>)}))
      const audit = records.find((r) => r.msg === 'credential request')!
      assert.deepEqual(
        [audit.priority, audit.ident, audit.audit, audit.uid, audit.outcome],
        [DAEMON | SEVERITY.INFO, 'ec2userkeyd', true, 0, 'upstream'],
      )
      const msgs = records.map((r) => r.msg)
      for (const msg of ['starting', 'listening', 'credential request', 'stopping', 'stopped'])
        assert.ok(msgs.includes(msg), `${msg} not in syslog: ${JSON.stringify(msgs)}`)
      assert.ok(msgs.indexOf('listening') < msgs.indexOf('credential request') && msgs.indexOf('credential request') < msgs.indexOf('stopped'))
      assert.deepEqual(new Set(records.map((r) => r.ident)), new Set(['ec2userkeyd']))
      assert.doesNotMatch(serve.log(), /"msg":"(listening|credential request)"/, 'nothing on the console')
    })
  })
})
