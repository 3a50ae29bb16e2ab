// The interception kept in place for real: in a network namespace of its own, the built `serve`
// installs its iptables rules and /healthz says so; once something flushes the tables (a firewall
// reload), serve says so and puts them back within seconds.
import assert from 'node:assert/strict'
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {CLEAN_ENV} from '../support/cli.js'
import {commandPath, netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'

const SERVE_ENV = {...CLEAN_ENV, AWS_REGION: 'us-east-1'}

interface Check {
  ok: boolean
  detail: string
}
interface Trial {
  installed: {status: number; body: {status: string; checks: Record<string, Check>}}
  /** Milliseconds from the flush until the log said the interception was installed again. */
  putBackMs: number
  after: {status: number; body: {status: string; checks: Record<string, Check>}}
  rulesAfter: string
  metrics: string
  log: string
  exit: number
}

describe('ec2userkeyd serve: /healthz and the iptables rules', () => {
  it('reports the interception in place, and puts it back within seconds when a firewall reload flushes the tables', function () {
    this.timeout(90_000)
    const missing = netnsMissing(['unshare', 'ip', 'iptables'])
    if (missing) return skipBecause(this, missing)
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-health-'))
    try {
      const iptables = commandPath('iptables')
      const config = join(dir, 'serve.conf')
      writeFileSync(
        config,
        `[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\niptables = ${iptables}\nadmin_listen = 127.0.0.1:9808\n`,
      )
      chmodSync(config, 0o644)
      // Given a private network namespace with a stand-in IMDS (see SCRIPT)
      const result = runInNewNetns(SCRIPT, [config, iptables], {env: SERVE_ENV, timeoutMs: 80_000})
      if ('skipped' in result) return skipBecause(this, result.skipped)
      assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
      const r = JSON.parse(result.stdout) as Trial
      // Installed: every check ok, the interception's among them
      assert.equal(r.installed.status, 200, JSON.stringify(r.installed.body))
      assert.equal(r.installed.body.status, 'ok')
      assert.deepEqual(Object.keys(r.installed.body.checks), ['config', 'interception', 'listener', 'upstream'])
      assert.match(r.installed.body.checks.interception.detail, /installed at /)
      // When the tables are flushed behind the daemon's back (as an iptables-restore of a saved
      // rule set, or a firewall's reload, does): it says so at ERROR and installs the rules again,
      // within a few seconds (it checks every 2)
      assert.match(r.log, /"level":"ERROR","msg":"the interception is not as installed: installing it again","problem":"[^"]*no chain EC2USERKEYD/)
      assert.ok(r.putBackMs < 6000, `put back after ${r.putBackMs} ms`)
      // Then the rules are in place again, /healthz is ok and says when they were put back, and the metric counts it
      assert.ok(r.rulesAfter.split('\n').includes('-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j EC2USERKEYD'), r.rulesAfter)
      assert.ok(r.rulesAfter.split('\n').some((l) => l.startsWith('-A EC2USERKEYD') && l.includes('DNAT')), r.rulesAfter)
      assert.equal(r.after.status, 200, JSON.stringify(r.after.body))
      assert.match(r.after.body.checks.interception.detail, /^EC2USERKEYD in place \(.*iptables -t nat, .*iptables -t filter.*installed again at .*\(it was: .*no chain EC2USERKEYD/)
      assert.match(r.metrics, /^ec2userkeyd_interception_reinstalls_total 1$/m)
      assert.equal(r.exit, 0)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})

/**
 * Runs inside `unshare --net` (argv: the configuration, the iptables binary): a stand-in IMDS on
 * 169.254.169.254:80, then the built serve, asked /healthz as installed; then the tables are
 * flushed, and serve is watched until it says it installed the interception again.
 */
const SCRIPT = `
import {execFileSync, spawn} from 'node:child_process'
import {once} from 'node:events'
import http from 'node:http'
const [config, iptables] = process.argv.slice(1)
const children = new Set()
process.on('SIGTERM', () => { for (const child of children) child.kill('SIGKILL'); process.exit(1) })
const sh = (...command) => execFileSync(command[0], command.slice(1), {encoding: 'utf8', stdio: 'pipe'})
sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
const imds = http.createServer((req, res) => res.end(req.method === 'PUT' ? 'token' : '{}')).listen(80, '169.254.169.254')
await once(imds, 'listening')

const get = (path) => new Promise((resolve, reject) => {
  http.get({host: '127.0.0.1', port: 9808, path}, (res) => {
    let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve({status: res.statusCode, body}))
  }).on('error', reject)
})
const healthz = async () => { const {status, body} = await get('/healthz'); return {status, body: JSON.parse(body)} }
async function serve() {
  const child = spawn(process.execPath, ['bin/run.js', 'serve', '--allow-unprivileged-port', '--config', config, '--port', '8808', '--upstream', 'http://169.254.169.254',
    '--instance-role', 'arn:aws:iam::123456789012:role/analytics-host'], {stdio: ['ignore', 'ignore', 'pipe']})
  children.add(child)
  let log = ''
  child.stderr.on('data', (c) => (log += c))
  const until = Date.now() + 20000
  // The interception goes in first; the admin listener comes last, once the daemon serves.
  while (!(log.includes('"msg":"interception installed"') && log.includes('"msg":"admin listener"'))) {
    if (Date.now() > until || child.exitCode !== null) throw new Error('serve did not install the interception:\\n' + log)
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    log: () => log,
    stop: async () => {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const [code] = await exited
      return code
    },
  }
}
const r = {}
try {
  const daemon = await serve()
  r.installed = await healthz()
  // What an iptables-restore of a rule set without ours, or a firewall's reload, leaves
  const flushed = Date.now()
  for (const table of ['nat', 'filter']) { sh(iptables, '-w', '-t', table, '-F'); sh(iptables, '-w', '-t', table, '-X') }
  while (!daemon.log().includes('"msg":"interception installed again"')) {
    if (Date.now() - flushed > 20000) throw new Error('the interception was not put back:\\n' + daemon.log())
    await new Promise((r) => setTimeout(r, 20))
  }
  r.putBackMs = Date.now() - flushed
  r.after = await healthz()
  r.rulesAfter = sh(iptables, '-w', '-t', 'nat', '-S')
  r.metrics = (await get('/metrics')).body
  r.exit = await daemon.stop()
  r.log = daemon.log()
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  imds.close()
}
console.log(JSON.stringify(r))
process.exit(0)
`
