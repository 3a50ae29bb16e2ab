// `serve` as admins run it: the built CLI as a child process, live against the AWS test double,
// with a fake upstream IMDS, answering real connections. Users other than root are played by
// child processes running as uid 65534 (nobody); the interception (iptables) is not used here
// (see serve-rules.test.ts): clients connect to the listener directly.
import assert from 'node:assert/strict'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {FakeImds, INSTANCE_KEY, INSTANCE_SECRET, startFakeImds} from '../imds/fake-imds.js'
import {asUser, freePort, get, isRoot, NOBODY, ServeChild, spawnServe, UserReply} from '../daemon/serve-support.js'

const CREDENTIALS_PATH = '/latest/meta-data/iam/security-credentials/analytics-host'

describe('ec2userkeyd serve', function () {
  let double: AwsDouble
  let upstream: FakeImds
  let serve: ServeChild
  let port: number
  let adminPort: number
  let configFile: string
  /** Every credential flow a user ran against the daemon, in order. */
  const flows: UserReply[] = []
  const nobody = async () => {
    const reply = await asUser(NOBODY, port)
    flows.push(reply)
    return reply
  }
  const audits = () => serve.records().filter((r) => r.msg === 'credential request')

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
    serve = spawnServe(['--no-iptables', '--config', configFile, '--port', String(port), '--upstream', upstream.url], childEnv(double))
    await serve.waitForLog(/"msg":"listening"/)
  })

  after(async () => {
    if (serve && serve.child.exitCode === null) serve.child.kill('SIGKILL')
    await upstream?.stop()
    await double?.stop()
  })

  it("gives a user (uid 65534, 'nobody', no IAM user) the instance role less AssumeRole, as a session of its own", async () => {
    const reply = await nobody()
    assert.equal(reply.token.status, 200)
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

  it('writes an audit line for the credential request, naming user, method and key', async () => {
    await serve.waitForLog(/"msg":"credential request".*"uid":65534/)
    const [record] = audits()
    assert.equal(audits().length, 1)
    assert.equal(record.outcome, 'issued')
    assert.equal(record.method, 'InstanceRole')
    assert.equal(record.user, 'nobody')
    assert.equal(record.path, CREDENTIALS_PATH)
    assert.equal(record.accessKeyId, JSON.parse(flows[0].credentials.body).AccessKeyId)
  })

  it("passes root's requests to the real IMDS, as the Python tool did", async () => {
    const reply = await get(port, '/latest/meta-data/instance-id')
    assert.deepEqual([reply.status, reply.body], [200, 'i-0123456789abcdef0'])
  })

  it('offers Prometheus metrics and a health check in JSON on the admin listener', async () => {
    const health = await get(adminPort, '/healthz')
    assert.equal(health.status, 200)
    assert.equal(health.headers['content-type'], 'application/json')
    const report = JSON.parse(health.body)
    assert.equal(report.status, 'ok')
    // --no-iptables: no interception to check
    assert.deepEqual(Object.keys(report.checks), ['config', 'listener', 'upstream'])
    for (const [name, check] of Object.entries(report.checks) as Array<[string, {ok: boolean; detail: string}]>) {
      assert.equal(check.ok, true, name)
      assert.equal(typeof check.detail, 'string')
    }
    const metrics = (await get(adminPort, '/metrics')).body
    assert.match(metrics, /ec2userkeyd_credential_requests_total\{outcome="issued",method="InstanceRole"\} 1/)
    assert.match(metrics, /ec2userkeyd_aws_call_seconds_count\{service="sts",operation="AssumeRole",outcome="ok"\} 1/)
  })

  it('refuses a configuration file that does not parse on SIGHUP and keeps serving', async () => {
    writeFileSync(configFile, '[general]\ncredential_methods = NoSuchMethod\n')
    serve.child.kill('SIGHUP')
    await serve.waitForLog(/reload refused.*NoSuchMethod/)
    assert.equal((await nobody()).credentials.status, 200)
  })

  it('refuses a file that parses but cannot be built (an instance role IAM does not have), and keeps serving the old one', async () => {
    // Given nobody's credentials under the running configuration
    const before = JSON.parse((await nobody()).credentials.body)
    const assumed = double.assumeRoleLog.length
    // When the file names an instance role that does not exist: it parses, and only building the engine can tell
    writeConfig('instance_role = no-such-role\n')
    serve.child.kill('SIGHUP')
    // Then the reload is refused, saying why
    await serve.waitForLog(/"msg":"reload refused: the running configuration stays","error":"instance role 'no-such-role' does not exist in IAM"/)
    assert.ok(double.calls.some((c) => c.action === 'GetRole' && c.params.RoleName === 'no-such-role'), 'the reload did try the new instance role')
    assert.doesNotMatch(serve.log(), /"msg":"configuration reloaded"/)
    // And the old configuration goes on serving, its cached credentials included
    const after = await nobody()
    assert.equal(after.credentials.status, 200)
    assert.equal(JSON.parse(after.credentials.body).AccessKeyId, before.AccessKeyId)
    assert.equal(double.assumeRoleLog.length, assumed)
    // And /healthz says the file on disk is not what runs
    const health = JSON.parse((await get(adminPort, '/healthz')).body)
    assert.equal(health.status, 'failing')
    assert.match(health.checks.config.detail, /^reload refused at /)
    assert.doesNotMatch(health.checks.config.detail, /no-such-role/, 'the reason may quote the file: the log only')
  })

  it('takes a good configuration on SIGHUP', async () => {
    writeConfig('per_user_credential_methods = nobody: UserRole\n')
    serve.child.kill('SIGHUP')
    await serve.waitForLog(/configuration reloaded/)
    // nobody's chain is now UserRole alone, and there is no user-nobody role
    assert.equal((await nobody()).credentials.status, 404)
    assert.equal((await get(adminPort, '/healthz')).status, 200)
  })

  it('finishes the requests in flight on SIGTERM, then exits 0', async () => {
    // Given nobody's chain back to the default (a new chain: the credential cache starts over), and slow answers:
    // STS for nobody's AssumeRole, the real IMDS for one path root asks for
    writeConfig()
    serve.child.kill('SIGHUP')
    await serve.waitForLog(/"msg":"configuration reloaded"/, {count: 2})
    double.setLatency(600, 'AssumeRole')
    upstream.delay('/latest/meta-data/ami-id', 700)
    const exited = serve.exited
    // When both requests are in flight
    const credentials = nobody()
    const ami = get(port, '/latest/meta-data/ami-id')
    const inFlight = () =>
      double.calls.some((c) => c.action === 'AssumeRole' && c.status === 0) && upstream.requests.some((r) => r.path === '/latest/meta-data/ami-id')
    for (const until = Date.now() + 10_000; !inFlight(); await new Promise((r) => setTimeout(r, 10)))
      assert.ok(Date.now() < until, 'the requests never reached STS and the IMDS')
    serve.child.kill('SIGTERM')
    // Then each gets its whole answer
    const user = await credentials
    assert.equal(user.credentials.status, 200)
    const document = JSON.parse(user.credentials.body)
    assert.equal(document.Code, 'Success')
    for (const key of ['AccessKeyId', 'SecretAccessKey', 'Token', 'Expiration']) assert.equal(typeof document[key], 'string', key)
    assert.deepEqual(await ami.then((r) => [r.status, r.body]), [200, 'ami-0123456789abcdef0'])
    const answered = Date.now()
    // And the daemon exits 0, having stopped, without waiting for kept-alive connections to time out
    assert.equal(await exited, 0)
    assert.ok(Date.now() - answered < 1000, `exited ${Date.now() - answered} ms after the last answer`)
    const messages = serve.records().map((r) => r.msg)
    assert.ok(messages.indexOf('stopping') < messages.indexOf('stopped'))
    assert.ok(messages.indexOf('stopping') < messages.lastIndexOf('credential request'), 'the request was answered after SIGTERM')
  })

  it('wrote exactly one audit record per credential request, and no secret a client received', () => {
    // Given every credential flow of this run, and the daemon's whole log
    const log = serve.log()
    const records = audits()
    // Then each credential request has its one record, in order, with the key the client got
    assert.equal(records.length, flows.length)
    assert.ok(records.every((r) => r.path === CREDENTIALS_PATH && r.uid === NOBODY && r.user === 'nobody'))
    assert.deepEqual(
      records.map((r) => [r.outcome, r.accessKeyId]),
      flows.map((f) => (f.credentials.status === 200 ? ['issued', JSON.parse(f.credentials.body).AccessKeyId] : ['none', null])),
    )
    // And no line of the log holds a secret key, session token or IMDSv2 token handed out
    const secrets = flows.flatMap((f) => {
      const issued = f.credentials.status === 200 ? JSON.parse(f.credentials.body) : {}
      return [f.token.value, issued.SecretAccessKey, issued.Token].filter((s): s is string => typeof s === 'string' && s !== '')
    })
    assert.ok(secrets.length >= 2 * flows.length, 'every flow had a token, and each issued set its secrets')
    for (const secret of new Set(secrets)) assert.ok(!log.includes(secret), `the log holds a secret: ${secret.slice(0, 8)}...`)
    for (const secret of [INSTANCE_SECRET, 'instance-session-token']) assert.ok(!log.includes(secret))
  })
})
