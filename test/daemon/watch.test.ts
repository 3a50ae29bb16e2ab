// What serve keeps watching while it runs, in this process against a model of iptables: its
// rules (gone or changed: logged, installed again, /healthz says so; a reinstall that fails keeps
// /healthz failing and is tried again), the rules on a failed start (kept, whatever
// keep_rules_on_exit says), and net.ipv4.ip_unprivileged_port_start (lowered under a running
// daemon: logged once, /healthz fails).
import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadConfig} from '../../src/lib/config/load.js'
import type {LogLevel} from '../../src/lib/config/schema.js'
import type {Daemon, DaemonOptions} from '../../src/lib/daemon/daemon.js'
import {Health, HealthReport} from '../../src/lib/daemon/health.js'
import {runDaemon, RunDaemonOptions} from '../../src/lib/daemon/lifecycle.js'
import {createMetrics} from '../../src/lib/daemon/metrics.js'
import {CHAIN, jumpRule} from '../../src/lib/host/iptables.js'
import {fakeHost} from '../support/fake-iptables.js'

interface Line {
  level: string
  msg: string
  [field: string]: unknown
}

async function until(what: string, test: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await test())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe('serve keeps watching (runDaemon)', () => {
  let dir: string
  let file: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-watch-'))
    file = join(dir, 'ec2userkeyd.conf')
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  /** runDaemon on the fake host, with a stand-in daemon; `start` rejecting makes the start fail. */
  async function serve(options: {conf?: string; start?: () => Promise<void>; extra?: Partial<RunDaemonOptions>} = {}) {
    writeFileSync(file, `[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\niptables = /sbin/iptables\n${options.conf ?? ''}`)
    const host = fakeHost()
    const lines: Line[] = []
    const signals = new EventEmitter()
    const metrics = createMetrics()
    let health: Health | null = null
    const running = runDaemon({
      config: await loadConfig({path: file}),
      loadConfig: () => loadConfig({path: file}),
      host: '127.0.0.1',
      port: 808,
      upstream: 'http://127.0.0.1:1',
      interception: true,
      daemonUid: 0,
      env: {AWS_REGION: 'us-east-1'},
      signals,
      metrics,
      outputs: {console: {write: (_level: LogLevel, line: string) => void lines.push(JSON.parse(line) as Line)}, syslog: async () => assert.fail('no syslog here')},
      runCommand: host.run,
      interceptionCheckMs: 20,
      allowUnprivilegedPort: true,
      startDaemon: async (o: DaemonOptions): Promise<Daemon> => {
        await options.start?.()
        health = o.health!
        return {
          address: {address: '127.0.0.1', port: 808, family: 'IPv4'},
          ipv6Address: null,
          adminAddress: null,
          health: o.health!,
          reload: async () => {},
          close: async () => {},
        }
      },
      ...options.extra,
    })
    const said = (msg: string) => lines.filter((l) => l.msg === msg)
    const healthz = (): Promise<HealthReport> => health!.report()
    const stop = async () => {
      signals.emit('SIGTERM')
      await running
    }
    return {host, lines, said, healthz, stop, running, metrics, served: () => health !== null}
  }

  it('puts its rules back within a check when a firewall reload flushes them, saying so, and counts it', async () => {
    // Given serve, its rules installed
    const s = await serve()
    await until('serving', s.served)
    assert.deepEqual(s.host.v4.jumps('nat'), [jumpRule(4)])
    assert.equal((await s.healthz()).checks.interception.ok, true)
    try {
      // When a firewall reload flushes every table
      s.host.v4.flush()
      s.host.v6.flush()
      await until('the rules put back', () => s.said('interception installed again').length > 0)
      // Then it said what it found, at ERROR, and installed the rules again in both families
      const [found] = s.said('the interception is not as installed: installing it again')
      assert.equal(found.level, 'ERROR')
      assert.match(String(found.problem), /\/sbin\/iptables -t nat: no chain EC2USERKEYD/)
      assert.deepEqual(s.host.v4.jumps('nat'), [jumpRule(4)])
      assert.deepEqual(s.host.v4.jumps('filter'), [jumpRule(4)])
      if (existsSync('/proc/net/if_inet6')) assert.deepEqual(s.host.v6.jumps('nat'), [jumpRule(6)])
      assert.ok(s.host.v4.chain('nat', CHAIN)!.length > 0)
      // And /healthz is ok, saying when they were put back and what was wrong
      const report = await s.healthz()
      assert.equal(report.checks.interception.ok, true)
      assert.match(report.checks.interception.detail, /installed again at .* \(it was: .*no chain EC2USERKEYD/)
      // And the metric counts it
      assert.match(await s.metrics.registry.metrics(), /^ec2userkeyd_interception_reinstalls_total 1$/m)
      // And with nothing wrong, nothing more is done
      const calls = s.host.calls.length
      await new Promise((r) => setTimeout(r, 100))
      assert.ok(s.host.calls.slice(calls).every((c) => / -S$/.test(c)), 'only listings while the rules are in place')
      assert.equal(s.said('interception installed again').length, 1)
    } finally {
      await s.stop()
    }
    // And once stopped, it checks no more
    const after = s.host.calls.length
    await new Promise((r) => setTimeout(r, 100))
    assert.equal(s.host.calls.length, after)
  })

  it('keeps /healthz failing, saying why, while the rules cannot be put back, and tries again', async () => {
    const s = await serve()
    await until('serving', s.served)
    try {
      // Given iptables refusing to make chains, then the rules flushed
      s.host.v4.refuse = (args) => (args.includes('-N') ? 'Permission denied (you must be root)' : null)
      s.host.v4.flush()
      await until('the reinstall failing', () => s.said('cannot install the interception again').length >= 2)
      // Then /healthz fails on interception, with what is wrong and why it could not be fixed
      const failing = await s.healthz()
      assert.equal(failing.status, 'failing')
      assert.match(failing.checks.interception.detail, /no chain EC2USERKEYD.*installing it again failed: .*Permission denied/)
      // When iptables works again, the next check puts them back
      s.host.v4.refuse = () => null
      await until('the rules put back', () => s.said('interception installed again').length > 0)
      assert.deepEqual(s.host.v4.jumps('nat'), [jumpRule(4)])
      assert.equal((await s.healthz()).status, 'ok')
    } finally {
      await s.stop()
    }
  })

  it('keeps the rules when the daemon fails to start, even with keep_rules_on_exit = False, and warns of that option at every start', async () => {
    // Given keep_rules_on_exit = False, and a start that fails (AWS not reachable yet)
    const s = await serve({conf: 'keep_rules_on_exit = False\n', start: async () => Promise.reject(new Error('STS unreachable'))})
    await assert.rejects(s.running, /STS unreachable/)
    // Then the rules stay: until a start succeeds, users meet refused connections, not the real IMDS
    assert.deepEqual(s.host.v4.jumps('nat'), [jumpRule(4)])
    assert.deepEqual(s.host.v4.jumps('filter'), [jumpRule(4)])
    assert.equal(s.host.calls.filter((c) => / -D OUTPUT | -X /.test(c)).length, 0)
    assert.equal(s.said('interception kept (the daemon did not start): non-root users\' metadata requests are refused until it serves').length, 1)
    // And the start warned what the option does
    const [warning] = s.lines.filter((l) => l.msg.startsWith('keep_rules_on_exit = False'))
    assert.equal(warning.level, 'WARNING')
    // And a stop that follows a good start still removes them, as the option says
    const t = await serve({conf: 'keep_rules_on_exit = False\n'})
    await until('serving', t.served)
    await t.stop()
    assert.deepEqual(t.host.v4.jumps('nat'), [])
  })

  it('says once, and fails /healthz, when net.ipv4.ip_unprivileged_port_start is lowered under a daemon holding its own ports', async () => {
    // Given serve on its own ports (no systemd sockets), with the sysctl at 1024, then lowered to 80
    let start = 1024
    const s = await serve({extra: {allowUnprivilegedPort: false, unprivilegedPortStart: async () => start, portsCheckMs: 20}})
    await until('serving', s.served)
    try {
      assert.equal((await s.healthz()).checks.ports.ok, true)
      start = 80
      await until('the warning', () => s.lines.some((l) => l.level === 'ERROR' && l.msg.includes('can now be bound by any user')))
      // Then /healthz fails on ports, naming the listener, and the log said it once
      const report = await s.healthz()
      assert.equal(report.checks.ports.ok, false)
      assert.match(report.checks.ports.detail, /the metadata listener's port 808 can now be bound by any user \(net.ipv4.ip_unprivileged_port_start is 80\)/)
      await new Promise((r) => setTimeout(r, 100))
      assert.equal(s.lines.filter((l) => l.msg.includes('can now be bound by any user')).length, 1)
      // When it is set back, ports is ok again
      start = 1024
      await until('ports ok again', async () => (await s.healthz()).checks.ports.ok)
    } finally {
      await s.stop()
    }
  })
})
