// `serve` as admins run it: the built CLI as a child process, live against the AWS test double,
// with a fake upstream IMDS, answering real connections. Users other than root are played by
// child processes running as uid 65534 (nobody); the interception (iptables) is issue 7's and
// not used here: clients connect to the listener directly.
import assert from 'node:assert/strict'
import {ChildProcess, spawn} from 'node:child_process'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, repoRoot} from '../support/cli.js'
import {FakeImds, INSTANCE_KEY, startFakeImds} from '../imds/fake-imds.js'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0

/** A free loopback port (bound and released). */
async function freePort(): Promise<number> {
  const {createServer} = await import('node:net')
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{status: number; body: string}> {
  return new Promise((resolve, reject) => {
    request({host: '127.0.0.1', port, path, headers}, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
    })
      .on('error', reject)
      .end()
  })
}

/** The IMDSv2 credential flow, run as another uid in a child process; prints the three answers as JSON. */
function asUser(uid: number, port: number): Promise<{token: number; list: string; credentials: {status: number; body: string}}> {
  const script = `
    const http = require('node:http')
    const call = (method, path, headers) => new Promise((resolve, reject) => {
      const req = http.request({host: '127.0.0.1', port: ${port}, method, path, headers}, (res) => {
        let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve({status: res.statusCode, body}))
      }); req.on('error', reject); req.end()
    })
    ;(async () => {
      const token = await call('PUT', '/latest/api/token', {'x-aws-ec2-metadata-token-ttl-seconds': '60'})
      const h = {'x-aws-ec2-metadata-token': token.body}
      const list = await call('GET', '/latest/meta-data/iam/security-credentials/', h)
      const credentials = await call('GET', '/latest/meta-data/iam/security-credentials/' + list.body.trim(), h)
      process.stdout.write(JSON.stringify({token: token.status, list: list.body, credentials}))
    })().catch((e) => { process.stderr.write(String(e)); process.exit(1) })`
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => (out += c))
    child.stderr.on('data', (c) => (err += c))
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child as uid ${uid} failed: ${err}`))))
  })
}

describe('ec2userkeyd serve', function () {
  let double: AwsDouble
  let upstream: FakeImds
  let daemon: ChildProcess
  let log = ''
  let port: number
  let adminPort: number
  let configFile: string

  const waitForLog = async (pattern: RegExp, ms = 15_000) => {
    const until = Date.now() + ms
    while (!pattern.test(log)) {
      if (Date.now() > until) throw new Error(`no ${pattern} in the daemon's log:\n${log}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  const writeConfig = (extra = '') =>
    writeFileSync(configFile, `[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\nadmin_listen = 127.0.0.1:${adminPort}\n${extra}`)

  before(async function () {
    if (!isRoot) return this.skip() // playing another user needs root
    double = await startAwsDouble({snapshot: await loadAccountSnapshot(fixture('account.json')), instanceRole: 'analytics-host'})
    upstream = await startFakeImds()
    port = await freePort()
    adminPort = await freePort()
    configFile = join(mkdtempSync(join(tmpdir(), 'ec2userkeyd-serve-')), 'ec2userkeyd.conf')
    writeConfig()
    daemon = spawn(process.execPath, ['bin/run.js', 'serve', '--no-iptables', '--config', configFile, '--port', String(port), '--upstream', upstream.url], {
      cwd: repoRoot,
      env: childEnv(double),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    daemon.stderr!.on('data', (c) => (log += c))
    await waitForLog(/"msg":"listening"/)
  })

  after(async () => {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL')
    await upstream?.stop()
    await double?.stop()
  })

  it("gives a user (uid 65534, 'nobody', no IAM user) the instance role less AssumeRole, as a session of its own", async () => {
    const reply = await asUser(NOBODY, port)
    assert.equal(reply.token, 200)
    assert.equal(reply.list.trim(), 'analytics-host')
    assert.equal(reply.credentials.status, 200)
    const credentials = JSON.parse(reply.credentials.body)
    assert.equal(credentials.Code, 'Success')
    const issued = double.assumeRoleLog.filter((r) => r.result === 'ok')
    assert.deepEqual(
      issued.map((r) => [r.roleSessionName, r.accessKeyId]),
      [['nobody', credentials.AccessKeyId]],
    )
    assert.notEqual(credentials.AccessKeyId, INSTANCE_KEY)
    assert.deepEqual(upstream.credentialRequests(), [], "the instance's credentials were never fetched")
  })

  it('writes one audit line per credential request, without secrets', async () => {
    await waitForLog(/"msg":"credential request".*"uid":65534/)
    const audit = log.split('\n').filter((l) => l.includes('"credential request"'))
    assert.ok(audit.length >= 1)
    const record = JSON.parse(audit.at(-1)!)
    assert.equal(record.outcome, 'issued')
    assert.equal(record.method, 'InstanceRole')
    assert.equal(record.user, 'nobody')
    assert.doesNotMatch(log, /SecretAccessKey|IQoJb3JpZ2luX2Vj/)
  })

  it("passes root's requests to the real IMDS, as the Python tool did", async () => {
    const reply = await get(port, '/latest/meta-data/instance-id')
    assert.deepEqual(reply, {status: 200, body: 'i-0123456789abcdef0'})
  })

  it('offers Prometheus metrics and a health check on the admin listener', async () => {
    assert.equal((await get(adminPort, '/healthz')).status, 200)
    const metrics = (await get(adminPort, '/metrics')).body
    assert.match(metrics, /ec2userkeyd_credential_requests_total\{outcome="issued",method="InstanceRole"\} 1/)
    assert.match(metrics, /ec2userkeyd_aws_call_seconds_count\{service="sts",operation="AssumeRole",outcome="ok"\} 1/)
  })

  it('refuses a bad configuration on SIGHUP and keeps serving, then takes a good one', async () => {
    writeFileSync(configFile, '[general]\ncredential_methods = NoSuchMethod\n')
    daemon.kill('SIGHUP')
    await waitForLog(/reload refused/)
    assert.equal((await asUser(NOBODY, port)).credentials.status, 200)
    writeConfig('per_user_credential_methods = nobody: UserRole\n')
    daemon.kill('SIGHUP')
    await waitForLog(/configuration reloaded/)
    // nobody's chain is now UserRole alone, and there is no user-nobody role
    assert.equal((await asUser(NOBODY, port)).credentials.status, 404)
  })

  it('finishes and exits 0 on SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => daemon.once('exit', (code) => resolve(code)))
    daemon.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.match(log, /"msg":"stopped"/)
  })
})
