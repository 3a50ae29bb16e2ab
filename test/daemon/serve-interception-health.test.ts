// /healthz's interception check for real: in a network namespace of its own, the built `serve`
// installs its iptables rules and /healthz says so; once something deletes a jump to its chain,
// /healthz fails on interception, saying what is missing.
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
  installed: {status: number; body: {status: string; checks: Record<string, Check>}; exit: number}
  broken: {status: number; body: {status: string; checks: Record<string, Check>}; exit: number}
}

describe('ec2userkeyd serve: /healthz and the iptables rules', () => {
  it('reports the interception in place, and failing once a jump to its chain is gone', function () {
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
      assert.deepEqual(Object.keys(r.installed.body.checks), [
        'config',
        'interception',
        'listener',
        'upstream',
      ])
      assert.match(
        r.installed.body.checks.interception.detail,
        /^EC2USERKEYD in place \(.*iptables -t nat, .*iptables -t filter/,
      )
      assert.equal(r.installed.exit, 0)
      // A jump deleted behind the daemon's back: 503, on interception, saying which
      assert.equal(r.broken.status, 503)
      assert.equal(r.broken.body.status, 'failing')
      assert.equal(r.broken.body.checks.interception.ok, false)
      assert.match(
        r.broken.body.checks.interception.detail,
        /iptables -t nat: no jump to EC2USERKEYD from OUTPUT/,
      )
      for (const name of ['config', 'listener', 'upstream'])
        assert.equal(r.broken.body.checks[name].ok, true, name)
      assert.equal(r.broken.exit, 0)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})

/**
 * Runs inside `unshare --net` (argv: the configuration, the iptables binary): a stand-in IMDS on
 * 169.254.169.254:80, then the built serve twice: once asked /healthz as installed, once after a
 * jump was deleted (the first /healthz of that run, so no earlier result is reused).
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

const healthz = () => new Promise((resolve, reject) => {
  http.get({host: '127.0.0.1', port: 9808, path: '/healthz'}, (res) => {
    let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve({status: res.statusCode, body: JSON.parse(body)}))
  }).on('error', reject)
})
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
  let daemon = await serve()
  r.installed = await healthz()
  r.installed.exit = await daemon.stop()
  daemon = await serve()
  sh(iptables, '-t', 'nat', '-D', 'OUTPUT', '-p', 'tcp', '-d', '169.254.169.254', '--dport', '80', '-j', 'EC2USERKEYD')
  r.broken = await healthz()
  r.broken.exit = await daemon.stop()
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  imds.close()
}
console.log(JSON.stringify(r))
process.exit(0)
`
