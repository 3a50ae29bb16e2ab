// runDaemon, in this process: signals from an EventEmitter, the configuration from a real file.
// Reloads run one at a time and coalesce; a SIGHUP during start-up waits for the daemon; log_*
// apply on reload (the flags still win); /healthz's config check tells a refused reload.
import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import type {AddressInfo} from 'node:net'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {loadConfig} from '../../src/lib/config/load.js'
import type {Config, LogLevel} from '../../src/lib/config/schema.js'
import {Daemon, DaemonOptions, startDaemon} from '../../src/lib/daemon/daemon.js'
import {Health} from '../../src/lib/daemon/health.js'
import {runDaemon, RunDaemonOptions} from '../../src/lib/daemon/lifecycle.js'
import type {LogSink} from '../../src/lib/daemon/log.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {freePort, get, useDoubleEnv} from './serve-support.js'

/** A sink keeping its lines (parsed where they are JSON). */
function memorySink(): LogSink & {lines: string[]; messages(): string[]; closed: number} {
  const sink = {
    lines: [] as string[],
    closed: 0,
    write: (_level: LogLevel, line: string) => void sink.lines.push(line),
    close: () => void sink.closed++,
    messages: () =>
      sink.lines.map((line) => {
        try {
          return (JSON.parse(line) as {msg: string}).msg
        } catch {
          return line
        }
      }),
  }
  return sink
}

function deferred<T = void>(): {promise: Promise<T>; resolve(value: T): void} {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return {promise, resolve}
}

const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms))

async function until(what: string, test: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await tick(10)
  }
}

describe('serve lifecycle (runDaemon)', function () {
  let dir: string
  let file: string
  /** The file: `text`, over log_console = True, log_syslog = False and log_level = INFO. */
  const write = (text: string) => {
    const base = {log_console: 'True', log_syslog: 'False', log_level: 'INFO'}
    const defaults = Object.entries(base).filter(([option]) => !new RegExp(`^${option} =`, 'm').test(text))
    writeFileSync(file, `[general]\n${defaults.map(([o, v]) => `${o} = ${v}\n`).join('')}${text}`)
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-lifecycle-'))
    file = join(dir, 'ec2userkeyd.conf')
    write('')
  })
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  /** runDaemon with a stand-in daemon whose start and reloads the test controls. */
  async function withFakeDaemon(hooks: {start?: Promise<void>; reload?: (config: Config) => Promise<void>}) {
    const signals = new EventEmitter()
    const console = memorySink()
    const reloads: Config[] = []
    let started = false
    let closed = false
    const fake = async (options: DaemonOptions): Promise<Daemon> => {
      await hooks.start
      started = true
      return {
        address: {address: '127.0.0.1', port: 1, family: 'IPv4'},
        ipv6Address: null,
        adminAddress: null,
        health: options.health ?? new Health(),
        async reload(config) {
          reloads.push(config)
          await hooks.reload?.(config)
        },
        async close() {
          closed = true
        },
      }
    }
    const loads: string[] = []
    const running = runDaemon({
      config: await loadConfig({path: file}),
      loadConfig: async () => {
        const config = await loadConfig({path: file})
        loads.push(String(config.general.session_duration))
        return config
      },
      host: '127.0.0.1',
      port: 1,
      upstream: 'http://127.0.0.1:1',
      interception: false,
      daemonUid: process.getuid!(),
      env: {},
      signals,
      outputs: {console, syslog: async () => assert.fail('no syslog here')},
      startDaemon: fake,
      allowUnprivilegedPort: true,
    })
    return {signals, console, reloads, loads, running, started: () => started, closed: () => closed}
  }

  it('runs reloads one at a time; SIGHUPs during one make exactly one more, which reads the newest file', async () => {
    // Given a daemon whose reloads take a while, and tell how many run at once
    let inReload = 0
    let mostAtOnce = 0
    let gate = deferred()
    const w = await withFakeDaemon({
      reload: async () => {
        mostAtOnce = Math.max(mostAtOnce, ++inReload)
        await gate.promise
        inReload--
      },
    })
    await until('start', w.started)
    await tick()
    // When the file changes three times and SIGHUP comes four times, three of them during the first reload
    write('session_duration = 1800\n')
    w.signals.emit('SIGHUP')
    await until('the first reload', () => w.reloads.length === 1)
    write('session_duration = 2400\n')
    w.signals.emit('SIGHUP')
    write('session_duration = 3000\n')
    w.signals.emit('SIGHUP')
    w.signals.emit('SIGHUP')
    const first = gate
    gate = deferred()
    first.resolve()
    await until('the second reload', () => w.reloads.length === 2)
    gate.resolve()
    await tick(200)
    // Then two reloads ran, never together: the first file, then the newest one read afresh
    assert.deepEqual(
      w.reloads.map((c) => c.general.session_duration),
      [1800, 3000],
    )
    assert.deepEqual(w.loads, ['1800', '3000'])
    assert.equal(mostAtOnce, 1)
    w.signals.emit('SIGTERM')
    await w.running
    assert.equal(w.closed(), true)
  })

  it('remembers a SIGHUP during start-up and reloads once, when the daemon is up', async () => {
    // Given a start that takes a while
    const start = deferred()
    const w = await withFakeDaemon({start: start.promise})
    await tick()
    // When SIGHUP comes twice before the daemon listens
    write('session_duration = 2000\n')
    w.signals.emit('SIGHUP')
    w.signals.emit('SIGHUP')
    await tick(50)
    assert.equal(w.reloads.length, 0, 'no reload before the daemon is up')
    start.resolve()
    // Then the daemon starts, and reloads once, with the file as it is now
    await until('the reload', () => w.reloads.length === 1)
    await tick(100)
    assert.deepEqual(
      w.reloads.map((c) => c.general.session_duration),
      [2000],
    )
    const messages = w.console.messages()
    assert.ok(
      messages.indexOf('SIGHUP came during start-up: reloading the configuration now') >
        messages.indexOf('starting'),
    )
    w.signals.emit('SIGTERM')
    await w.running
  })

  it('sends SIGHUP after SIGTERM nowhere, and stops only once', async () => {
    const w = await withFakeDaemon({})
    await until('start', w.started)
    await tick()
    w.signals.emit('SIGTERM')
    w.signals.emit('SIGHUP')
    await w.running
    assert.equal(w.reloads.length, 0)
    assert.equal(w.console.messages().filter((m) => m === 'stopping').length, 1)
    assert.equal(
      w.signals.listenerCount('SIGHUP') +
        w.signals.listenerCount('SIGTERM') +
        w.signals.listenerCount('SIGINT'),
      0,
    )
  })

  describe('with the real daemon', () => {
    let double: AwsDouble
    let upstream: FakeImds
    let restoreEnv = () => {}

    before(async () => {
      double = await startAwsDouble({
        snapshot: await loadAccountSnapshot(fixture('account.json')),
        instanceRole: 'analytics-host',
      })
      upstream = await startFakeImds()
      restoreEnv = useDoubleEnv(double)
    })
    after(async () => {
      restoreEnv()
      await upstream?.stop()
      await double?.stop()
    })

    async function run(flags: Partial<RunDaemonOptions> = {}) {
      const signals = new EventEmitter()
      const console = memorySink()
      const syslog = memorySink()
      let daemon: Daemon | null = null
      const running = runDaemon({
        config: await loadConfig({path: file}),
        loadConfig: () => loadConfig({path: file}),
        host: '127.0.0.1',
        port: 0,
        upstream: upstream.url,
        instanceRole: 'analytics-host',
        interception: false,
        daemonUid: process.getuid!(),
        env: process.env,
        signals,
        outputs: {console, syslog: async () => syslog},
        startDaemon: async (options) => (daemon = await startDaemon(options)),
        allowUnprivilegedPort: true,
        ...flags,
      })
      let failed: unknown = null
      running.catch((error) => (failed = error))
      await until('the daemon', () => {
        if (failed) throw failed
        return daemon !== null
      })
      await tick()
      const port = (daemon!.address as AddressInfo).port
      /** SIGHUP, and wait until the reload is over (its READY-equivalent: a reloaded or refused line in either sink). */
      const reload = async () => {
        const done = () =>
          [...console.messages(), ...syslog.messages()].filter((m) =>
            /^configuration reloaded$|^reload refused/.test(m),
          ).length
        const before = done()
        signals.emit('SIGHUP')
        await until('the reload', () => done() > before)
      }
      const stop = async () => {
        signals.emit('SIGTERM')
        await running
      }
      return {signals, console, syslog, port, reload, stop, daemon: () => daemon!}
    }

    it('applies log_level, log_console and log_syslog on reload', async () => {
      // Given a daemon logging errors only, to the console
      write('log_level = ERROR\n')
      const d = await run()
      try {
        await get(d.port, '/latest/meta-data/instance-id')
        assert.deepEqual(d.console.messages(), [], 'nothing below ERROR')
        // When the file asks for DEBUG
        write('log_level = DEBUG\n')
        await d.reload()
        await get(d.port, '/latest/meta-data/instance-id')
        // Then the reload's own lines show, and the access log
        assert.ok(d.console.messages().includes('configuration reloaded'))
        await until('the access log line', () => d.console.messages().includes('request'))
        // When it moves the log from the console to syslog, at INFO
        const console = d.console.lines.length
        write('log_level = INFO\nlog_console = False\nlog_syslog = True\n')
        await d.reload()
        await get(d.port, '/latest/meta-data/instance-id')
        // Then the lines after the switch go to syslog only, without the DEBUG ones
        assert.equal(d.console.lines.length, console, `console: ${d.console.lines.slice(console).join('\n')}`)
        assert.ok(d.syslog.messages().includes('configuration reloaded'), d.syslog.lines.join('\n'))
        assert.ok(!d.syslog.messages().includes('request'))
        // And back: syslog is closed when it is no longer used
        write('log_level = INFO\nlog_syslog = False\n')
        await d.reload()
        assert.equal(d.syslog.closed, 1)
      } finally {
        await d.stop()
      }
    })

    it('lets --log-level and --log-console win over the file, on reload too', async () => {
      write('log_level = DEBUG\nlog_console = False\n')
      const d = await run({logLevel: 'INFO', logConsole: true})
      try {
        write('log_level = DEBUG\nlog_console = False\nsession_duration = 1800\n')
        await d.reload()
        await get(d.port, '/latest/meta-data/instance-id')
        await tick(50)
        const messages = d.console.messages()
        assert.ok(messages.includes('configuration reloaded'), 'still on the console')
        assert.ok(!messages.includes('request') && !messages.includes('aws call'), 'still no DEBUG lines')
      } finally {
        await d.stop()
      }
    })

    it('warns, naming each, about options a reload cannot change', async () => {
      const d = await run()
      try {
        write(
          `daemon_port = 8099\nadmin_listen = 127.0.0.1:${await freePort()}\niptables = /usr/sbin/iptables-legacy\n`,
        )
        await d.reload()
        const warnings = d.console.lines
          .map((l) => JSON.parse(l) as {level: string; msg: string})
          .filter((l) => l.level === 'WARNING' && /next start/.test(l.msg))
        assert.deepEqual(
          warnings.map((w) => w.msg),
          ['daemon_port, iptables, admin_listen changed: they take effect at the next start, not on reload'],
        )
      } finally {
        await d.stop()
      }
    })

    it('tells a refused reload on /healthz (503, the config check failing, the reason in the log only) until a good one', async () => {
      // Given a daemon with an admin listener
      const admin = await freePort()
      write(`admin_listen = 127.0.0.1:${admin}\n`)
      const d = await run({instanceRole: undefined}) // found with sts:GetCallerIdentity, so the file's instance_role counts
      try {
        const healthy = await get(admin, '/healthz')
        assert.equal(healthy.status, 200, healthy.body)
        const report = JSON.parse(healthy.body)
        assert.equal(report.status, 'ok')
        assert.deepEqual(Object.keys(report.checks), ['config', 'listener', 'upstream'])
        for (const check of Object.values(report.checks) as Array<{ok: boolean; detail: string}>)
          assert.equal(check.ok, true)
        assert.match(report.checks.config.detail, new RegExp(`^${file} in force since `))
        assert.match(report.checks.listener.detail, /^listening on 127\.0\.0\.1:\d+, \[::1\]:\d+$/)
        // When a reload is refused (the file parses; the instance role it names does not exist)
        write(`admin_listen = 127.0.0.1:${admin}\ninstance_role = no-such-role\n`)
        await d.reload()
        // Then /healthz fails on config, saying so (why is for the log only: anyone may read
        // /healthz), and the other checks stand
        const refused = await get(admin, '/healthz')
        assert.equal(refused.status, 503)
        const failing = JSON.parse(refused.body)
        assert.equal(failing.status, 'failing')
        assert.equal(failing.checks.config.ok, false)
        assert.match(
          failing.checks.config.detail,
          /^reload refused at .*, the previous configuration is running \(the log says why\)$/,
        )
        assert.doesNotMatch(failing.checks.config.detail, /no-such-role/)
        assert.equal(failing.checks.listener.ok, true)
        // When the file is put right
        write(`admin_listen = 127.0.0.1:${admin}\n`)
        await d.reload()
        assert.equal((await get(admin, '/healthz')).status, 200)
      } finally {
        await d.stop()
      }
    })
  })
})
