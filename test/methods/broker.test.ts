// The credential chain end to end in-process: the real SDK v3 clients against the AWS test
// double, the cached live IAM source, the compiler, the credential cache.
import assert from 'node:assert/strict'

import {IAMClient} from '@aws-sdk/client-iam'
import {AssumeRoleCommand, STSClient} from '@aws-sdk/client-sts'

import {CachedIamSource} from '../../src/lib/aws/cached.js'
import {LiveIamSource} from '../../src/lib/aws/live.js'
import {AccountSnapshot, loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {parseConfig} from '../../src/lib/config/load.js'
import {CredentialBroker, IssueOutcome} from '../../src/lib/methods/broker.js'
import {CredentialCache} from '../../src/lib/methods/cache.js'
import {IAM_WRITES} from '../../src/lib/methods/session.js'
import {roleSyncer} from '../../src/lib/methods/engine.js'
import type {MethodDeps} from '../../src/lib/methods/methods.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname
const INSTANCE_ROLE = 'arn:aws:iam::123456789012:role/service-role/analytics-host'
const DEMO_CONFIG = ['[general]', 'per_user_credential_methods = svc-backup: InstanceRole', '[method_RestrictedInstanceRole]', 'compress_user_policy = True', ''].join('\n')

const IAM_TTL_MS = 300_000

const users = {
  alice: {name: 'alice', uid: 1001},
  bob: {name: 'bob', uid: 1002},
  erin: {name: 'erin', uid: 1005},
  frank: {name: 'frank', uid: 1006}, // a local user with no IAM user
  svcBackup: {name: 'svc-backup', uid: 998},
}

describe('the credential chain (through the AWS test double)', () => {
  let double: AwsDouble
  let iam: IAMClient
  let sts: STSClient
  let warnings: string[]
  /** The IAM read cache of the last broker(). */
  let source: CachedIamSource

  async function start(options: {packedPolicyLimit?: number; edit?: (snapshot: AccountSnapshot) => void} = {}) {
    const {edit, ...rest} = options
    const snapshot = await loadAccountSnapshot(accountFile)
    edit?.(snapshot)
    double = await startAwsDouble({snapshot, instanceRole: 'analytics-host', ...rest})
    const common = {endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials, retryMode: 'adaptive', maxAttempts: 2}
    iam = new IAMClient(common)
    sts = new STSClient(common)
  }

  /** The IAM read cache's clock (ms): tests move it on; the credential cache keeps real time. */
  let clock = 0

  function broker(configText = DEMO_CONFIG, extra: Partial<MethodDeps> = {}): CredentialBroker {
    warnings = []
    clock = Date.now()
    source = new CachedIamSource(new LiveIamSource({iam, sts, instanceRoleRef: null}), {ttlMs: IAM_TTL_MS, failureTtlMs: 30_000, maxEntries: 1000, now: () => clock})
    const config = parseConfig(configText, 'test.conf')
    const deps: MethodDeps = {config, source, sts, catalog: createActionCatalog(), warn: (m) => warnings.push(m), syncRole: roleSyncer(config, iam), ...extra}
    return new CredentialBroker(deps, new CredentialCache({maxEntries: 1000, failureTtlMs: 30_000}), {sleep: async () => {}, newRoleDelayMs: 0})
  }

  const issuedBy = (o: IssueOutcome) => (o.ok ? o.method : `none (${o.error ? `error in ${o.error.method}: ${o.error.message}` : o.skipped.map((s) => `${s.method}: ${s.reason}`).join('; ')})`)
  const assumed = (roleArn: string) => double.assumeRoleLog.filter((r) => r.roleArn === roleArn)

  beforeEach(() => start())
  afterEach(async () => {
    iam.destroy()
    sts.destroy()
    await double.stop()
  })

  it('gives alice her own role, named for her, with her SourceIdentity and an hour-long session', async () => {
    const outcome = await broker().credentialsFor(users.alice)
    assert.equal(issuedBy(outcome), 'UserRole')
    assert.ok(outcome.ok)
    assert.equal(outcome.roleArn, 'arn:aws:iam::123456789012:role/user-alice')
    assert.match(outcome.credentials.arn, /assumed-role\/user-alice\/alice$/)
    const [call] = assumed('arn:aws:iam::123456789012:role/user-alice')
    assert.deepEqual(
      {session: call.roleSessionName, source: call.sourceIdentity, duration: call.durationSeconds, policy: call.policy, result: call.result},
      {session: 'alice', source: 'alice', duration: 3600, policy: undefined, result: 'ok'},
    )
  })

  it('falls through for bob (no user-bob role) to the instance role restricted by his compiled session policy', async () => {
    const outcome = await broker().credentialsFor(users.bob)
    assert.equal(issuedBy(outcome), 'RestrictedInstanceRole')
    assert.deepEqual(outcome.skipped.map((s) => s.method), ['UserRole'])
    const [call] = assumed(INSTANCE_ROLE)
    assert.equal(call.result, 'ok')
    assert.ok(call.policy && call.policy.includes('"Statement"'), 'a session policy was sent')
    assert.ok(call.policyArns.includes('arn:aws:iam::aws:policy/AmazonAthenaFullAccess'))
  })

  it("closes role chaining: carol's session may assume a role her account trusts, never the instance role or alice's role", async () => {
    // Given carol, who may switch to any role of the account, and a role that trusts the account
    iam.destroy()
    sts.destroy()
    await double.stop()
    await start({
      edit: (snapshot) => {
        // (Her session carries a SourceIdentity, which a chained AssumeRole passes on: AWS then
        // requires sts:SetSourceIdentity in her policy and in the role's trust.)
        snapshot.users.get('carol')!.inline.set('switch-roles', {Version: '2012-10-17', Statement: [{Effect: 'Allow', Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'], Resource: 'arn:aws:iam::123456789012:role/*'}]})
        const template = snapshot.roles.get('user-alice')!
        snapshot.roles.set('shared-reader', {
          ...template,
          name: 'shared-reader',
          arn: 'arn:aws:iam::123456789012:role/shared-reader',
          id: 'AROASHAREDREADER0000',
          tags: {},
          inline: new Map(),
          attached: [],
          trustPolicy: {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: 'arn:aws:iam::123456789012:root'}, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity']}]},
        })
      },
    })
    // When her RestrictedInstanceRole session (real SDK, through the double) tries each
    const outcome = await broker().credentialsFor({name: 'carol', uid: 1003})
    assert.equal(issuedBy(outcome), 'RestrictedInstanceRole')
    assert.ok(outcome.ok)
    const asCarol = new STSClient({endpoint: double.url, region: 'us-east-1', credentials: outcome.credentials, maxAttempts: 1})
    const attempt = async (roleArn: string) => {
      try {
        await asCarol.send(new AssumeRoleCommand({RoleArn: roleArn, RoleSessionName: 'hop'}))
        return 'ok'
      } catch (error) {
        return (error as Error).name
      }
    }
    // Then the instance role (its whole self) and alice's role refuse her, the shared role does not
    assert.equal(await attempt(INSTANCE_ROLE), 'AccessDenied')
    assert.equal(await attempt('arn:aws:iam::123456789012:role/user-alice'), 'AccessDenied')
    assert.equal(await attempt('arn:aws:iam::123456789012:role/shared-reader'), 'ok')
    asCarol.destroy()
  })

  it('gives erin, whose IAM user may do nothing, no credentials at all, never the instance role', async () => {
    const outcome = await broker().credentialsFor(users.erin)
    assert.equal(outcome.ok, false)
    assert.deepEqual(outcome.skipped.map((s) => s.method), ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'])
    assert.match(outcome.skipped[2].reason, /IAM user erin exists/)
    assert.deepEqual(assumed(INSTANCE_ROLE), [], 'no AssumeRole on the instance role')
  })

  it('gives a local user without an IAM user the instance role less role chaining, IAM writes and Secrets Manager', async () => {
    const outcome = await broker().credentialsFor(users.frank)
    assert.equal(issuedBy(outcome), 'InstanceRole')
    const [call] = assumed(INSTANCE_ROLE)
    const policy = JSON.parse(call.policy!)
    assert.deepEqual(policy.Statement, [
      {Effect: 'Allow', Action: '*', Resource: '*'},
      {Effect: 'Deny', Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'sts:SetContext', ...IAM_WRITES, 'secretsmanager:*'], Resource: '*'},
    ])
  })

  it('sends svc-backup straight to InstanceRole by its per-user chain', async () => {
    const outcome = await broker().credentialsFor(users.svcBackup)
    assert.equal(issuedBy(outcome), 'InstanceRole')
    assert.deepEqual(outcome.chain, {methods: ['InstanceRole'], source: 'user', rule: 'svc-backup'})
    assert.equal(double.assumeRoleLog.length, 1)
  })

  it('fails closed when STS keeps throttling: no later method is tried', async () => {
    double.inject({action: 'AssumeRole', code: 'Throttling', times: 10})
    const outcome = await broker().credentialsFor(users.alice)
    assert.equal(outcome.ok, false)
    assert.ok(!outcome.ok && outcome.error?.method === 'UserRole', issuedBy(outcome))
    assert.match(outcome.ok ? '' : outcome.error!.message, /throttled/i)
    assert.deepEqual(assumed(INSTANCE_ROLE), [])
  })

  it('fails closed when IAM cannot be read for a user', async () => {
    double.inject({action: 'GetUser', code: 'ServiceFailure', times: 10})
    const outcome = await broker().credentialsFor(users.bob)
    assert.ok(!outcome.ok && outcome.error?.method === 'RestrictedInstanceRole', issuedBy(outcome))
    assert.deepEqual(assumed(INSTANCE_ROLE), [])
  })

  it('treats a session policy AWS finds too large once packed as not for the user, warns with its size, and still keeps the instance role from bob', async () => {
    await double.stop()
    await start({packedPolicyLimit: 200})
    const outcome = await broker().credentialsFor(users.bob)
    assert.equal(outcome.ok, false, issuedBy(outcome))
    assert.equal(assumed(INSTANCE_ROLE).length, 1)
    assert.equal(assumed(INSTANCE_ROLE)[0].result, 'PackedPolicyTooLarge')
    assert.match(warnings.join('\n'), /too large once packed by AWS/)
    assert.match(outcome.skipped.at(-1)!.reason, /IAM user bob exists/)
  })

  it('retries once without SourceIdentity when the role refuses it, warns, and remembers', async () => {
    const role = double.snapshot.roles.get('user-alice')!
    role.trustPolicy = {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {AWS: INSTANCE_ROLE}, Action: 'sts:AssumeRole'}]}
    const b = broker()
    assert.equal(issuedBy(await b.credentialsFor(users.alice)), 'UserRole')
    assert.deepEqual(
      assumed(role.arn).map((r) => [r.sourceIdentity, r.result]),
      [
        ['alice', 'AccessDenied'],
        [undefined, 'ok'],
      ],
    )
    assert.match(warnings.join('\n'), /refuses sts:SetSourceIdentity/)
    // Another user of the same role pattern would be another role; the same role again goes straight without it
    b.cache.stats.hits = 0
    await b.credentialsFor(users.alice)
    assert.equal(assumed(role.arn).length, 2, 'served from the cache')
  })

  it('makes 200 concurrent requests for one user cost exactly one AssumeRole', async () => {
    const b = broker()
    const outcomes = await Promise.all(Array.from({length: 200}, () => b.credentialsFor(users.alice)))
    assert.ok(outcomes.every((o) => o.ok && o.method === 'UserRole'))
    assert.equal(double.assumeRoleLog.length, 1)
    assert.equal(new Set(outcomes.map((o) => (o.ok ? o.credentials.accessKeyId : ''))).size, 1)
  })

  it('answers a warm request for a restricted user without any AWS call', async () => {
    const b = broker()
    assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'RestrictedInstanceRole')
    double.reset()
    assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'RestrictedInstanceRole')
    assert.deepEqual(
      double.calls.map((c) => c.action),
      [],
    )
  })

  it('lets a user who gets nothing make no AWS call on the next requests (failures are remembered)', async () => {
    const b = broker()
    assert.equal((await b.credentialsFor(users.erin)).ok, false)
    double.reset()
    for (let i = 0; i < 10; i++) assert.equal((await b.credentialsFor(users.erin)).ok, false)
    assert.deepEqual(double.calls.map((c) => c.action), [])
  })

  it('keeps the credentials of users who share one session policy apart, request after request', async () => {
    // Given two local users restricted by the same IAM user's policy (one session policy string)
    const b = broker('[general]\ncredential_methods = RestrictedInstanceRole\n[method_RestrictedInstanceRole]\niam_name_pattern = bob\ncompress_user_policy = True\n')
    const ann = {name: 'ann', uid: 2001}
    const cid = {name: 'cid', uid: 2002}
    // When they ask in turn, again and again
    const sessions: string[] = []
    for (let i = 0; i < 3; i++)
      for (const user of [ann, cid, cid, ann]) {
        const outcome = await b.credentialsFor(user)
        assert.ok(outcome.ok, issuedBy(outcome))
        sessions.push(outcome.credentials.arn.split('/').at(-1)!)
      }
    // Then each always gets a session of their own, issued once
    assert.deepEqual(sessions, Array.from({length: 3}, () => ['ann', 'cid', 'cid', 'ann']).flat())
    assert.deepEqual(assumed(INSTANCE_ROLE).map((c) => c.roleSessionName), ['ann', 'cid'])
  })

  it('names sessions validly for any user name, and distinctly', async () => {
    const outcome = await broker().credentialsFor({name: 'ab cd', uid: 1010})
    assert.equal(issuedBy(outcome), 'InstanceRole')
    const [call] = assumed(INSTANCE_ROLE)
    assert.match(call.roleSessionName, /^ab_cd-[0-9a-f]{8}$/)
    assert.equal(call.sourceIdentity, call.roleSessionName)
  })

  describe('when the instance role does not trust itself', () => {
    beforeEach(() => {
      const role = double.snapshot.roles.get('analytics-host')!
      role.trustPolicy = {Version: '2012-10-17', Statement: [{Effect: 'Allow', Principal: {Service: 'ec2.amazonaws.com'}, Action: 'sts:AssumeRole'}]}
    })
    const upstream = async () => ({accessKeyId: 'ASIAUPSTREAM', secretAccessKey: 's', sessionToken: 't', expiration: new Date(Date.now() + 3_600_000), arn: INSTANCE_ROLE})

    it('gives no credentials with fail_safe = True', async () => {
      const outcome = await broker(`${DEMO_CONFIG}[method_InstanceRole]\nfail_safe = True\n`, {instanceCredentials: upstream}).credentialsFor(users.frank)
      assert.equal(outcome.ok, false, issuedBy(outcome))
    })

    it("hands out the instance's own credentials with fail_safe = False, as the Python tool did, with a warning", async () => {
      const outcome = await broker(`${DEMO_CONFIG}[method_InstanceRole]\nfail_safe = False\n`, {instanceCredentials: upstream}).credentialsFor(users.frank)
      assert.ok(outcome.ok && outcome.credentials.accessKeyId === 'ASIAUPSTREAM', issuedBy(outcome))
      assert.match(warnings.join('\n'), /fail_safe = False/)
    })

    it('never hands the instance credentials to a user with an IAM identity, even with fail_safe = False', async () => {
      const outcome = await broker(`${DEMO_CONFIG}[method_InstanceRole]\nfail_safe = False\n`, {instanceCredentials: upstream}).credentialsFor(users.erin)
      assert.equal(outcome.ok, false, issuedBy(outcome))
    })
  })

  describe('a warm request (what the last request worked out, reused while its IAM reads hold)', () => {
    /** Past two TTLs of the IAM read cache: the next read of anything waits for IAM. */
    const expireIamReads = () => (clock += 2 * IAM_TTL_MS + 1)

    it("sees a change to the user's IAM permissions as soon as the read cache reads them again", async () => {
      // Given bob's restricted credentials, and then a change to his IAM user
      const b = broker()
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'RestrictedInstanceRole')
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'RestrictedInstanceRole')
      const [first] = assumed(INSTANCE_ROLE)
      assert.match(first.policy ?? '', /acme-analytics-scratch/)
      double.snapshot.users.get('bob')!.inline.delete('scratch-space')
      const outcome = await b.credentialsFor(users.bob)
      assert.equal(assumed(INSTANCE_ROLE).length, 1, 'the same session until the reads expire')
      // When his next request comes after the reads expired (well within a second)
      expireIamReads()
      const changed = await b.credentialsFor(users.bob)
      // Then it was worked out again from IAM: a new session with the changed policy
      assert.ok(changed.ok && outcome.ok && changed.credentials.accessKeyId !== outcome.credentials.accessKeyId, issuedBy(changed))
      const latest = assumed(INSTANCE_ROLE).at(-1)!
      assert.ok(latest.policy && !latest.policy.includes('acme-analytics-scratch'), latest.policy)
    })

    it('never gives InstanceRole to a user an earlier method has since found an IAM identity for', async () => {
      // Given frank, with no IAM user (known since before his first request), so that
      // RestrictedInstanceRole passes and InstanceRole issues
      const b = broker('[general]\ncredential_methods = RestrictedInstanceRole, InstanceRole\n')
      assert.equal(await source.getUserPolicies('frank'), null)
      clock += IAM_TTL_MS / 2
      assert.equal(issuedBy(await b.credentialsFor(users.frank)), 'InstanceRole')
      // When an IAM user frank appears, one who may do nothing on this instance, and the read
      // cache has read him while what InstanceRole read (the instance role) is still fresh
      const erin = double.snapshot.users.get('erin')!
      double.snapshot.users.set('frank', {...structuredClone(erin), name: 'frank', arn: 'arn:aws:iam::123456789012:user/frank'})
      clock += IAM_TTL_MS * 0.7
      assert.equal(issuedBy(await b.credentialsFor(users.frank)), 'InstanceRole', 'still the stale answer: no IAM user')
      for (let i = 0; i < 400 && !(await source.getUserPolicies('frank')); i++) await new Promise((resolve) => setTimeout(resolve, 5))
      assert.ok(await source.getUserPolicies('frank'), 'the read cache knows IAM user frank now')
      // Then frank gets nothing: never the instance role, which would grant him more than his IAM user
      const outcome = await b.credentialsFor(users.frank)
      assert.equal(outcome.ok, false, issuedBy(outcome))
      assert.match(outcome.skipped.map((s) => s.reason).join('; '), /IAM user frank/)
    })

    it('brings a role changed behind its back in step again once the read cache reads it again (CreateUserRole)', async () => {
      // Given bob's role, made by the first request, and served without any AWS call since
      const b = broker('[general]\ncredential_methods = CreateUserRole\n')
      await b.credentialsFor(users.bob)
      double.reset()
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'CreateUserRole')
      assert.deepEqual(double.calls.map((c) => c.action), [])
      // When a policy of the role is deleted behind the daemon's back, and the reads expire
      const role = double.snapshot.roles.get('user-bob')!
      role.inline.delete([...role.inline.keys()][0])
      expireIamReads()
      // Then bob's next request puts it back
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'CreateUserRole')
      assert.ok(double.calls.some((c) => c.action === 'PutRolePolicy'), double.calls.map((c) => c.action).join(' '))
    })
  })

  describe('CreateUserRole', () => {
    const chain = '[general]\ncredential_methods = CreateUserRole, InstanceRole\n'
    const WRITES = /^(Create|Put|Attach|Detach|Delete|Tag|Untag|Update)/

    it("creates bob's role from his IAM user, then assumes it", async () => {
      const outcome = await broker(chain).credentialsFor(users.bob)
      assert.equal(issuedBy(outcome), 'CreateUserRole')
      assert.ok(outcome.ok && outcome.roleArn === 'arn:aws:iam::123456789012:role/user-bob')
      assert.ok(double.snapshot.roles.has('user-bob'), 'the role exists now')
      assert.equal(assumed('arn:aws:iam::123456789012:role/user-bob').at(-1)!.result, 'ok')
    })

    it('changes nothing on the next request for the same user, and then makes no AWS call at all', async () => {
      const b = broker(chain)
      await b.credentialsFor(users.bob)
      double.reset()
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'CreateUserRole')
      assert.deepEqual(double.calls.filter((c) => WRITES.test(c.action) || c.action === 'AssumeRole').map((c) => c.action), [])
      double.reset()
      await b.credentialsFor(users.bob)
      assert.deepEqual(double.calls.map((c) => c.action), [])
    })

    it('reads nothing from IAM on the request after it created the role: the read cache holds the role it wrote', async () => {
      // Given bob's first request, which creates his role
      const b = broker(chain)
      await b.credentialsFor(users.bob)
      double.reset()
      // When he asks again
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'CreateUserRole')
      // Then no AWS call at all: neither the role's eight reads nor a write
      assert.deepEqual(double.calls.map((c) => c.action), [])
    })

    /** The role as IAM holds it now, read afresh. */
    const readRole = (name: string) => new LiveIamSource({iam, sts, instanceRoleRef: null}).getRolePolicies(name)

    it('remembers a role it created exactly as IAM holds it', async () => {
      await broker(chain).credentialsFor(users.bob)
      double.reset()
      const remembered = await source.getRolePolicies('user-bob')
      assert.deepEqual(double.calls, [], 'answered from the cache')
      assert.deepStrictEqual(remembered, await readRole('user-bob'))
    })

    it('remembers a role it brought back in step exactly as IAM holds it', async () => {
      // Given bob's role, then changed behind the daemon's back: a policy gone, another added, a tag changed
      await broker(chain).credentialsFor(users.bob)
      const role = double.snapshot.roles.get('user-bob')!
      const [dropped] = [...role.inline.keys()]
      role.inline.delete(dropped)
      role.inline.set('stray', {Version: '2012-10-17', Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}]})
      role.attached = role.attached.slice(1)
      role.tags = {...role.tags, 'ec2userkeyd:iam-user': 'someone-else', team: 'data'}
      // When a daemon that has not read it yet syncs it
      const b = broker(chain)
      assert.equal(issuedBy(await b.credentialsFor(users.bob)), 'CreateUserRole')
      assert.ok(double.calls.some((c) => c.action === 'PutRolePolicy') && double.calls.some((c) => c.action === 'DeleteRolePolicy'))
      double.reset()
      // Then the next request reads nothing, and what the daemon remembers is what IAM holds
      await b.credentialsFor(users.bob)
      assert.deepEqual(double.calls.map((c) => c.action), [])
      assert.deepStrictEqual(await source.getRolePolicies('user-bob'), await readRole('user-bob'))
    })

    it('reads the role again after a sync that failed part way', async () => {
      // Given a sync whose second write fails
      double.inject({action: 'AttachRolePolicy', code: 'AccessDenied', times: 1})
      const b = broker(chain)
      await b.credentialsFor(users.bob)
      double.reset()
      // When bob asks again, the role is read from IAM (what the first sync left is not known)
      await b.credentialsFor(users.bob)
      assert.ok(double.calls.some((c) => c.action === 'GetRole'), double.calls.map((c) => c.action).join(' '))
      assert.deepStrictEqual(await source.getRolePolicies('user-bob'), await readRole('user-bob'))
    })

    it('is not for a local user without an IAM user: the chain goes on', async () => {
      const outcome = await broker(chain).credentialsFor(users.frank)
      assert.equal(issuedBy(outcome), 'InstanceRole')
      assert.equal(double.snapshot.roles.has('user-frank'), false)
    })

    it("fails closed when the user's role name is taken by a role ec2userkeyd does not manage", async () => {
      const foreign = structuredClone(double.snapshot.roles.get('unrelated-lambda-role')!)
      double.snapshot.roles.set('user-bob', {...foreign, name: 'user-bob', arn: 'arn:aws:iam::123456789012:role/user-bob', tags: {}})
      const outcome = await broker(chain).credentialsFor(users.bob)
      assert.ok(!outcome.ok && outcome.error?.method === 'CreateUserRole', issuedBy(outcome))
      assert.deepEqual(assumed(INSTANCE_ROLE), [], 'no fall-through to the instance role')
    })
  })
})
