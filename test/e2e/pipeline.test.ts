// The whole pipeline as users meet it (issue 7): local users made with useradd, each running the
// real AWS SDK v3 with its default credential chain, the built `serve` with its real iptables
// rules, a fake upstream IMDS on 169.254.169.254:80 and the AWS test double, all in a network
// namespace of the test's own (`unshare --net`), so the host's iptables are never touched. The
// namespace side is driver.ts, which this file commands line by line; the users live in the
// host's user database (it is not namespaced) and are removed afterwards. Needs root, unshare,
// ip, iptables, useradd, userdel, groupdel, getent and curl, as in CI (.ci/run); skipped, saying
// why, elsewhere.
import assert from 'node:assert/strict'
import {ChildProcess, spawn} from 'node:child_process'
import {createInterface} from 'node:readline'

import {repoRoot} from '../support/cli.js'
import {commandPath} from '../support/netns.js'
import type {Answer, Command, CurlResult, DriverSetup, Ready, SdkResult, SdkRun} from './driver.js'
import {RunLock, TestUsers} from './users.js'

const ACCOUNT = '123456789012'
const INSTANCE_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/service-role/analytics-host`
const MARK = 'ec2userkeyd end-to-end test'
/** The demo account's local users (fixtures/README.md), plus one with no IAM user. Uids unlikely to be taken. */
const USERS = [
  {name: 'alice', uid: 64001},
  {name: 'bob', uid: 64002},
  {name: 'carol', uid: 64003},
  {name: 'dave', uid: 64004},
  {name: 'erin', uid: 64005},
  {name: 'e2e-frank', uid: 64006},
]
/** The session each user's SDK must see: its role and session name. */
const EXPECTED: Record<string, string | null> = {
  alice: `arn:aws:sts::${ACCOUNT}:assumed-role/user-alice/alice`,
  bob: `arn:aws:sts::${ACCOUNT}:assumed-role/analytics-host/bob`,
  carol: `arn:aws:sts::${ACCOUNT}:assumed-role/analytics-host/carol`,
  dave: `arn:aws:sts::${ACCOUNT}:assumed-role/analytics-host/dave`,
  erin: null,
  'e2e-frank': `arn:aws:sts::${ACCOUNT}:assumed-role/analytics-host/e2e-frank`,
}
const CREDENTIALS = '/latest/meta-data/iam/security-credentials/analytics-host'
/** Spellings of the instance's credential endpoints (the Python tool leaked on the first). */
const PROBES = [
  '/latest/meta-data/iam/security-credentials/analytics-host/',
  '/latest/meta-data/iam/security-credentials//analytics-host',
  '//latest//meta-data//iam/security-credentials/analytics-host',
  '/latest/meta-data/iam/security-credentials%2Fanalytics-host',
  '/latest/meta-data/iam%2Fsecurity-credentials%2Fanalytics-host',
  '/latest/meta-data/iam/security-credentials%252Fanalytics-host',
  '/latest/meta-data/iam/security%2dcredentials/analytics-host',
  '/latest/meta-data/./iam/./security-credentials/./analytics-host',
  '/latest/meta-data/iam/x/../security-credentials/analytics-host',
  '/latest/meta-data/iam/security-credentials/x/../analytics-host',
  '/LATEST/META-DATA/IAM/SECURITY-CREDENTIALS/analytics-host',
  '/2021-01-03/meta-data/iam/security-credentials/analytics-host',
  '/1.0/meta-data/iam/security-credentials/analytics-host',
  '/latest/meta-data/iam/security-credentials-extended/analytics-host',
  '/latest/meta-data/iam/security-credentials-extended/analytics-host/',
  '/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance',
  '/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance/',
  '/latest/meta-data/iam/securitycredentials/analytics-host',
  '/latest/meta-data/iam/security-credentials/analytics-host?x=/',
]

interface AssumeRole {
  roleArn: string
  roleSessionName: string
  policy?: string
  policyArns: string[]
  sourceIdentity?: string
  callerArn: string | null
  result: string
  accessKeyId?: string
}

/** driver.ts inside `unshare --net`, in a process group of its own, commanded one line at a time. */
class Driver {
  stderr = ''
  private readonly answers: string[] = []
  private waiting: (() => void) | null = null

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.on('data', (c) => (this.stderr += c))
    createInterface({input: child.stdout!}).on('line', (line) => {
      this.answers.push(line)
      this.waiting?.()
    })
    child.on('exit', () => this.waiting?.())
  }

  static start(setup: DriverSetup): Driver {
    const child = spawn(
      'unshare',
      ['--net', '--', process.execPath, '--import', 'tsx', 'test/e2e/driver.ts', JSON.stringify(setup)],
      {cwd: repoRoot, detached: true, stdio: ['pipe', 'pipe', 'pipe']},
    )
    return new Driver(child)
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null
  }

  async next(ms: number): Promise<string> {
    const deadline = Date.now() + ms
    while (this.answers.length === 0) {
      if (this.exited)
        throw new Error(
          `the driver exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.stderr}`,
        )
      if (Date.now() > deadline) throw new Error(`the driver did not answer within ${ms} ms:\n${this.stderr}`)
      await new Promise<void>((resolve) => {
        this.waiting = resolve
        setTimeout(resolve, 200)
      })
      this.waiting = null
    }
    return this.answers.shift()!
  }

  async ready(): Promise<Ready> {
    const first = JSON.parse(await this.next(60_000)) as {ready?: Ready; failed?: string}
    if (!first.ready) throw new Error(`the driver could not start: ${first.failed}\n${this.stderr}`)
    return first.ready
  }

  async ask<T>(command: Command, ms = 60_000): Promise<Answer & {result: T}> {
    this.child.stdin!.write(JSON.stringify(command) + '\n')
    const answer = JSON.parse(await this.next(ms)) as Answer
    if (answer.error) throw new Error(`${command.op}: ${answer.error}`)
    return answer as Answer & {result: T}
  }

  /** Asks it to stop everything (serve gets SIGTERM), then kills what is left of its group. */
  async stop(): Promise<void> {
    if (!this.exited) {
      this.child.stdin!.write(JSON.stringify({op: 'shutdown'}) + '\n')
      const deadline = Date.now() + 20_000
      while (!this.exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    }
    try {
      process.kill(-this.child.pid!, 'SIGKILL') // the group: serve and clients too, whatever happened
    } catch {
      // already gone
    }
  }
}

describe('end to end: users, the real SDK, serve and its iptables rules (network namespace)', function () {
  this.timeout(60_000)
  const lock = new RunLock()
  const users = new TestUsers(USERS, MARK)
  let driver: Driver | undefined
  let ready: Ready
  const uidOf = (name: string) => USERS.find((u) => u.name === name)!.uid
  const assumeRoles = async () =>
    (await driver!.ask<{assumeRoleLog: AssumeRole[]}>({op: 'double'})).result.assumeRoleLog
  /** The key of the one set of credentials the double issued for this user's session. */
  const keyOf = (log: AssumeRole[], name: string) => {
    const issued = log.filter((r) => r.roleSessionName === name && r.result === 'ok')
    assert.ok(issued.length >= 1, `no AssumeRole issued for ${name}: ${JSON.stringify(log)}`)
    return issued.at(-1)!.accessKeyId!
  }
  /** SDK clients, each in a process of its own unless told otherwise. */
  const sdk = async (runs: SdkRun[]) => {
    const answer = await driver!.ask<SdkResult[]>({op: 'sdk', runs})
    assert.deepEqual(
      answer.upstreamCredentialRequests,
      [],
      'no credential path of the real IMDS was fetched for a user',
    )
    return answer.result
  }
  /** The daemon's audit records of a user's credential requests. */
  const audits = async (name: string) => {
    const log = (await driver!.ask<string>({op: 'daemonLog'})).result
    return log
      .split('\n')
      .filter((l) => l.includes('"audit":true'))
      .map((l) => JSON.parse(l) as {uid: number; user: string; method: string | null; outcome: string})
      .filter((a) => a.uid === uidOf(name))
  }
  /** The methods that issued a user's credentials, by the daemon's audit. */
  const methodsFor = async (name: string) => [
    ...new Set((await audits(name)).filter((a) => a.outcome === 'issued').map((a) => a.method)),
  ]
  const jumps = (listing: string) =>
    listing.split('\n').filter((l) => l.startsWith('-A OUTPUT') && l.endsWith('-j EC2USERKEYD')).length

  before(async function () {
    this.timeout(90_000)
    const tools = ['unshare', 'ip', 'iptables', 'useradd', 'userdel', 'groupdel', 'getent', 'curl']
    const skip = (reason: string) => {
      console.log(`      (skipped: ${reason})`)
      this.skip()
    }
    if (process.getuid?.() !== 0)
      return skip('needs root: it adds local users and runs serve with real iptables rules')
    const missing = tools.filter((t) => !commandPath(t))
    if (missing.length) return skip(`needs ${missing.join(', ')} (CI installs them in .ci/run)`)
    const held = lock.take()
    if (held) return skip(held)
    const clash = users.clash()
    if (clash) {
      lock.release()
      return skip(clash)
    }
    users.create()
    driver = Driver.start({users: users.made, iptables: commandPath('iptables')})
    try {
      ready = await driver.ready()
    } catch (error) {
      if (/unshare: /.test(driver.stderr)) return skip(driver.stderr.trim().split('\n')[0])
      throw error
    }
    console.log(`      (SDK clients ${ready.clientStart})`)
  })

  afterEach(async function () {
    // What the daemon said, for a failure in CI (it logs no secrets)
    if (this.currentTest?.state !== 'failed' || !driver || driver.exited) return
    const log = (await driver.ask<string>({op: 'daemonLog'})).result
    console.log(`      serve's log, last 40 lines:\n${log.trimEnd().split('\n').slice(-40).join('\n')}`)
  })

  after(async function () {
    this.timeout(40_000)
    await driver?.stop()
    const problems = users.remove()
    lock.release()
    assert.deepEqual(problems, [], 'the test users are removed')
  })

  it("gives sixty SDK clients of six users, asking at once from a cold start, each its own user's session", async () => {
    // Given six users, ten SDK clients each (five processes of two), none with credentials of its own
    const runs = USERS.map(({name}) => ({user: name, processes: 5, clients: 2}))
    // When they all ask at the same moment
    const results = await sdk(runs)
    const log = await assumeRoles()
    // Then every client ran as its user and saw its own user's session, with its user's key
    assert.equal(results.length, 60)
    for (const r of results) {
      assert.equal(r.uid, uidOf(r.user), `a client of ${r.user} ran as uid ${r.uid}`)
      if (EXPECTED[r.user] === null) {
        assert.equal(r.arn, undefined, `${r.user} got ${r.arn}`)
        assert.match(r.error!, /CredentialsProviderError|credentials/i)
      } else {
        assert.equal(r.arn, EXPECTED[r.user], `a client of ${r.user}: ${r.error} ${JSON.stringify(r.notes)}`)
        assert.equal(r.accessKeyId, keyOf(log, r.user))
      }
    }
    // And each user's clients shared one AssumeRole (single flight), no key went to two users
    for (const {name} of USERS) {
      const issued = log.filter((l) => l.roleSessionName === name && l.result === 'ok')
      assert.equal(issued.length, EXPECTED[name] === null ? 0 : 1, `AssumeRoles issued for ${name}`)
    }
    const holders = new Map<string, Set<string>>()
    for (const r of results)
      if (r.accessKeyId) holders.set(r.accessKeyId, (holders.get(r.accessKeyId) ?? new Set()).add(r.user))
    for (const [key, who] of holders) assert.equal(who.size, 1, `${key} went to ${[...who].join(' and ')}`)
    assert.ok(!holders.has(ready.instance.accessKeyId), "no user got the instance's key")
  })

  it("gives alice her own role's session (UserRole) through the SDK's IMDSv2 flow", async () => {
    const [result] = await sdk([{user: 'alice', processes: 1, clients: 1}])
    assert.equal(result.arn, EXPECTED.alice, result.error)
    assert.deepEqual(await methodsFor('alice'), ['UserRole'])
    const log = await assumeRoles()
    const issued = log.filter((l) => l.roleSessionName === 'alice' && l.result === 'ok')
    assert.deepEqual(
      issued.map((l) => [l.roleArn, l.callerArn, l.sourceIdentity, l.policy, l.accessKeyId]),
      [
        [
          `arn:aws:iam::${ACCOUNT}:role/user-alice`,
          ready.instance.arn,
          'alice',
          undefined,
          result.accessKeyId,
        ],
      ],
    )
  })

  it('gives bob, carol and dave the instance role cut down by a session policy from their IAM users (RestrictedInstanceRole)', async () => {
    const results = await sdk(['bob', 'carol', 'dave'].map((user) => ({user, processes: 1, clients: 1})))
    const log = await assumeRoles()
    const policies: string[] = []
    for (const r of results) {
      assert.equal(r.arn, EXPECTED[r.user], r.error)
      assert.deepEqual(await methodsFor(r.user), ['RestrictedInstanceRole'], r.user)
      const [issued, ...more] = log.filter((l) => l.roleSessionName === r.user && l.result === 'ok')
      assert.equal(more.length, 0)
      assert.equal(issued.roleArn, INSTANCE_ROLE_ARN)
      assert.equal(issued.accessKeyId, r.accessKeyId)
      // A session policy: inline, by ARN (dave's four AWS managed policies go by ARN alone), or both
      assert.ok(issued.policy || issued.policyArns.length, `${r.user}'s AssumeRole carried no session policy`)
      if (issued.policy) assert.ok(Array.isArray(JSON.parse(issued.policy).Statement))
      policies.push(JSON.stringify([issued.policy, issued.policyArns]))
    }
    assert.equal(new Set(policies).size, 3, 'each user has a session policy of their own')
  })

  it('gives a user with no IAM user the instance role less role chaining, IAM writes and Secrets Manager (InstanceRole)', async () => {
    const [result] = await sdk([{user: 'e2e-frank', processes: 1, clients: 1}])
    assert.equal(result.arn, EXPECTED['e2e-frank'], result.error)
    assert.deepEqual(await methodsFor('e2e-frank'), ['InstanceRole'])
    const [issued] = (await assumeRoles()).filter(
      (l) => l.roleSessionName === 'e2e-frank' && l.result === 'ok',
    )
    assert.equal(issued.roleArn, INSTANCE_ROLE_ARN)
    const denied = (JSON.parse(issued.policy!).Statement as {Effect: string; Action: string | string[]}[])
      .filter((s) => s.Effect === 'Deny')
      .flatMap((s) => s.Action)
    for (const action of ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'iam:Pass*', 'iam:Create*', 'iam:Put*', 'iam:Attach*', 'iam:Update*', 'secretsmanager:*'])
      assert.ok(denied.includes(action), `${action} denied`)
  })

  it('gives erin, whose IAM user may do nothing, no credentials at all', async () => {
    const [result] = await sdk([{user: 'erin', processes: 1, clients: 1}])
    assert.equal(result.arn, undefined)
    assert.match(result.error!, /credentials/i)
    assert.deepEqual(
      (await assumeRoles()).filter((l) => l.roleSessionName === 'erin' && l.result === 'ok'),
      [],
    )
    const outcomes = (await audits('erin')).map((a) => a.outcome)
    assert.ok(outcomes.length > 0)
    assert.deepEqual([...new Set(outcomes)], ['none'])
  })

  it('lets root through to the real IMDS: the instance role itself, never via the daemon', async () => {
    const answer = await driver!.ask<SdkResult[]>({
      op: 'sdk',
      runs: [{user: 'root', processes: 1, clients: 1}],
    })
    const [result] = answer.result
    assert.equal(result.uid, 0)
    assert.equal(result.arn, ready.instance.arn, result.error)
    assert.equal(result.accessKeyId, ready.instance.accessKeyId)
    // The fake IMDS saw root's credential requests (so it would have seen anyone's)
    assert.ok(answer.upstreamCredentialRequests.length > 0)
    const log = (await driver!.ask<string>({op: 'daemonLog'})).result
    assert.ok(!log.split('\n').some((l) => l.includes('"audit":true') && l.includes('"uid":0,')))
  })

  it("answers curl over IMDSv1 with the user's own credentials", async () => {
    const log = await assumeRoles()
    for (const user of ['alice', 'bob', 'e2e-frank']) {
      const answer = await driver!.ask<CurlResult[]>({
        op: 'curl',
        user,
        paths: ['/latest/meta-data/iam/security-credentials/', CREDENTIALS],
      })
      assert.deepEqual(answer.upstreamCredentialRequests, [])
      const [list, credentials] = answer.result
      assert.deepEqual([list.status, list.body], [200, 'analytics-host'])
      assert.equal(credentials.status, 200, credentials.body)
      const document = JSON.parse(credentials.body)
      assert.equal(document.Code, 'Success')
      assert.equal(document.AccessKeyId, keyOf(log, user), user)
    }
    const [erin] = (await driver!.ask<CurlResult[]>({op: 'curl', user: 'erin', paths: [CREDENTIALS]})).result
    assert.equal(erin.status, 404)
  })

  it('hands out no instance credentials for any spelling of a credential path, and never asks the real IMDS for them', async () => {
    const log = await assumeRoles()
    for (const user of ['bob', 'erin']) {
      const answer = await driver!.ask<CurlResult[]>({op: 'curl', user, paths: PROBES})
      assert.deepEqual(
        answer.upstreamCredentialRequests,
        [],
        `the real IMDS was asked for credentials for ${user}`,
      )
      for (const probe of answer.result) {
        const what = `${user} ${probe.path} → ${probe.status} ${probe.body.slice(0, 80)}`
        assert.ok(!probe.body.includes(ready.instance.accessKeyId), what)
        assert.ok([200, 400, 404].includes(probe.status), what)
        if (user === 'erin') assert.notEqual(probe.status, 200, what)
        else if (probe.status === 200)
          assert.equal(JSON.parse(probe.body).AccessKeyId, keyOf(log, user), what)
      }
    }
  })

  it('keeps its rules on SIGTERM and exits 0; only intercept remove takes them out', async () => {
    const stopped = (
      await driver!.ask<{code: number | null; signal: string | null}>({op: 'stop', signal: 'SIGTERM'})
    ).result
    assert.deepEqual(stopped, {code: 0, signal: null})
    const kept = (await driver!.ask<Record<string, string>>({op: 'rules'})).result
    assert.deepEqual([jumps(kept.nat4), jumps(kept.filter4)], [1, 1], 'the rules outlive the daemon')
    assert.equal((await driver!.ask<number>({op: 'interceptRemove'})).result, 0)
    const rules = (await driver!.ask<Record<string, string>>({op: 'rules'})).result
    for (const [table, listing] of Object.entries(rules)) assert.doesNotMatch(listing, /EC2USERKEYD/, table)
  })

  it('after kill -9 and a restart, has its rules exactly once, serves again, and keeps them on SIGTERM until intercept remove', async () => {
    const counts = async () => {
      const rules = (await driver!.ask<Record<string, string>>({op: 'rules'})).result
      return Object.fromEntries(Object.entries(rules).map(([table, listing]) => [table, jumps(listing)]))
    }
    await driver!.ask({op: 'start'})
    const first = await counts()
    assert.deepEqual([first.nat4, first.filter4], [1, 1])
    assert.deepEqual((await driver!.ask({op: 'stop', signal: 'SIGKILL'})).result, {
      code: null,
      signal: 'SIGKILL',
    })
    assert.deepEqual(await counts(), first, 'the rules outlive kill -9')
    await driver!.ask({op: 'start'})
    assert.deepEqual(await counts(), first, 'a restart does not add a second jump')
    const [alice] = await sdk([{user: 'alice', processes: 1, clients: 1}])
    assert.equal(alice.arn, EXPECTED.alice, alice.error)
    assert.deepEqual((await driver!.ask({op: 'stop', signal: 'SIGTERM'})).result, {code: 0, signal: null})
    assert.deepEqual(await counts(), first, 'SIGTERM leaves the rules')
    assert.equal((await driver!.ask<number>({op: 'interceptRemove'})).result, 0)
    const rules = (await driver!.ask<Record<string, string>>({op: 'rules'})).result
    for (const [table, listing] of Object.entries(rules)) assert.doesNotMatch(listing, /EC2USERKEYD/, table)
  })
})
