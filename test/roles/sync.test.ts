import assert from 'node:assert/strict'

import {IAMClient} from '@aws-sdk/client-iam'
import {STSClient} from '@aws-sdk/client-sts'

import {LiveIamSource} from '../../src/lib/aws/live.js'
import {AccountSnapshot, loadAccountSnapshot, SnapshotRole} from '../../src/lib/aws/snapshot.js'
import {Config, defaultConfig} from '../../src/lib/config/schema.js'
import {NotFoundError} from '../../src/lib/errors.js'
import type {PolicyDocument} from '../../src/lib/iam/document.js'
import {RoleSyncDeps, syncUserRole} from '../../src/lib/roles/sync.js'
import {syncRoles} from '../../src/lib/stages/roles-sync.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname
const ACCOUNT = '123456789012'
const INSTANCE_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/service-role/analytics-host`
const WRITES = new Set([
  'CreateRole',
  'UpdateRole',
  'DeleteRole',
  'UpdateAssumeRolePolicy',
  'PutRolePolicy',
  'DeleteRolePolicy',
  'AttachRolePolicy',
  'DetachRolePolicy',
  'TagRole',
  'UntagRole',
  'PutRolePermissionsBoundary',
  'DeleteRolePermissionsBoundary',
])

const allow = (resource: string | string[], action: string | string[] = 's3:GetObject'): PolicyDocument => ({
  Version: '2012-10-17',
  Statement: [{Effect: 'Allow', Action: action, Resource: resource}],
})

/** A customer managed policy, added to the snapshot; returns its ARN. */
function addPolicy(snapshot: AccountSnapshot, name: string, document: PolicyDocument): string {
  const arn = `arn:aws:iam::${ACCOUNT}:policy/${name}`
  snapshot.policies.set(arn, {
    name,
    arn,
    id: `ANPA${name.toUpperCase().replace(/[^A-Z0-9]/g, '')}`,
    path: '/',
    createDate: '2024-01-01T00:00:00Z',
    defaultVersionId: 'v1',
    versions: new Map([['v1', {versionId: 'v1', document, createDate: '2024-01-01T00:00:00Z'}]]),
  })
  return arn
}

function addUser(
  snapshot: AccountSnapshot,
  name: string,
  has: {inline?: Record<string, PolicyDocument>; attached?: string[]} = {},
): void {
  snapshot.users.set(name, {
    name,
    arn: `arn:aws:iam::${ACCOUNT}:user/${name}`,
    id: `AIDA${name.toUpperCase()}EXAMPLE`,
    path: '/',
    createDate: '2024-01-01T00:00:00Z',
    tags: {},
    inline: new Map(Object.entries(has.inline ?? {})),
    attached: (has.attached ?? []).map((arn) => ({name: arn.split('/').pop()!, arn})),
    groups: [],
    permissionsBoundaryArn: null,
  })
}

function addRole(snapshot: AccountSnapshot, name: string, role: Partial<SnapshotRole> = {}): SnapshotRole {
  const created: SnapshotRole = {
    name,
    arn: `arn:aws:iam::${ACCOUNT}:role/${name}`,
    id: `AROA${name.toUpperCase().replace(/[^A-Z0-9]/g, '')}`,
    path: '/',
    createDate: '2024-01-01T00:00:00Z',
    description: '',
    trustPolicy: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: {AWS: INSTANCE_ROLE_ARN},
          Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
        },
      ],
    },
    tags: {'ec2userkeyd:managed': 'true', 'ec2userkeyd:iam-user': name.replace(/^user-/, '')},
    inline: new Map(),
    attached: [],
    permissionsBoundaryArn: null,
    maxSessionDuration: 3600,
    ...role,
  }
  snapshot.roles.set(name, created)
  return created
}

/** A role as the tests compare it: what it permits and who it trusts, without ids and dates. */
function roleState(role: SnapshotRole | undefined) {
  if (!role) return undefined
  return {
    trust: role.trustPolicy,
    tags: role.tags,
    boundary: role.permissionsBoundaryArn,
    attached: role.attached.map((a) => a.arn).sort(),
    inline: Object.fromEntries([...role.inline].sort(([a], [b]) => (a < b ? -1 : 1))),
  }
}

describe('roles sync (the library, through the real SDK clients and the AWS test double)', () => {
  let snapshot: AccountSnapshot
  let double: AwsDouble
  let iam: IAMClient
  let sts: STSClient
  let config: Config

  const deps = (): RoleSyncDeps => ({
    source: new LiveIamSource({iam, sts, instanceRoleRef: null}),
    iam,
    config,
  })
  const writes = () => double.calls.filter((c) => WRITES.has(c.action))

  beforeEach(async () => {
    snapshot = await loadAccountSnapshot(accountFile)
    // alice's role in the demo account is not (yet) tagged as ours; tests that want it say so.
    snapshot.roles.delete('user-alice')
    double = await startAwsDouble({snapshot, instanceRole: 'analytics-host'})
    const common = {
      endpoint: double.url,
      region: 'us-east-1',
      credentials: double.instanceCredentials,
      retryMode: 'adaptive',
      maxAttempts: 6,
    }
    iam = new IAMClient(common)
    sts = new STSClient(common)
    config = defaultConfig()
  })
  afterEach(async () => {
    iam.destroy()
    sts.destroy()
    await double.stop()
  })

  describe('one user', () => {
    it('creates the role of a user who has none, holding exactly her permissions', async () => {
      // Given bob: no role yet; a boundary, two groups, an inline policy
      // When his role is synced
      const {entry, status} = await syncUserRole(deps(), 'bob', {dryRun: false})
      // Then it exists with the instance role's trust, his boundary, his managed and inline policies, and our tags
      assert.equal(status, 'ok', entry.error ?? '')
      assert.deepEqual(entry, {
        user: 'bob',
        iamUser: 'bob',
        role: 'user-bob',
        roleArn: `arn:aws:iam::${ACCOUNT}:role/user-bob`,
        exists: false,
        changes: [
          {op: 'create-role', target: 'user-bob'},
          {op: 'set-boundary', target: `arn:aws:iam::${ACCOUNT}:policy/developer-boundary`},
          {op: 'attach-policy', target: 'arn:aws:iam::aws:policy/AmazonAthenaFullAccess'},
          {op: 'attach-policy', target: `arn:aws:iam::${ACCOUNT}:policy/acme-shared-read`},
          {op: 'put-inline', target: 'user.scratch-space'},
          {op: 'put-inline', target: 'group.data-science.query-data'},
          {op: 'put-inline', target: 'group.engineering.read-logs'},
          {op: 'tag-role', target: 'ec2userkeyd:managed=true'},
          {op: 'tag-role', target: 'ec2userkeyd:iam-user=bob'},
        ],
        error: null,
      })
      const role = snapshot.roles.get('user-bob')!
      assert.equal(role.path, '/')
      assert.equal(role.description, 'Managed by ec2userkeyd for IAM user bob')
      const bob = snapshot.users.get('bob')!
      assert.deepEqual(roleState(role), {
        trust: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: {AWS: INSTANCE_ROLE_ARN},
              Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
            },
          ],
        },
        tags: {'ec2userkeyd:managed': 'true', 'ec2userkeyd:iam-user': 'bob'},
        boundary: `arn:aws:iam::${ACCOUNT}:policy/developer-boundary`,
        attached: [
          `arn:aws:iam::${ACCOUNT}:policy/acme-shared-read`,
          'arn:aws:iam::aws:policy/AmazonAthenaFullAccess',
        ],
        inline: {
          'group.data-science.query-data': snapshot.groups.get('data-science')!.inline.get('query-data'),
          'group.engineering.read-logs': snapshot.groups.get('engineering')!.inline.get('read-logs'),
          'user.scratch-space': bob.inline.get('scratch-space'),
        },
      })
      // CreateRole carried the trust, the boundary and the tags in one call
      assert.equal(writes().filter((c) => c.action === 'CreateRole').length, 1)
      assert.deepEqual(
        writes()
          .map((c) => c.action)
          .filter((a) => a === 'TagRole' || a === 'PutRolePermissionsBoundary'),
        [],
      )
    })

    it("writes alice's ${aws:username} out in her role's copy of the policy", async () => {
      // Given alice's home-prefix policy uses ${aws:username}, which a role session does not have
      await syncUserRole(deps(), 'alice', {dryRun: false})
      // Then her role's copy names her
      const copy = JSON.stringify(snapshot.roles.get('user-alice')!.inline.get('user.home-prefix'))
      assert.match(copy, /arn:aws:s3:::acme-analytics-home\/alice\/\*/)
      assert.match(copy, /"s3:prefix":"alice\/\*"/)
      assert.doesNotMatch(copy, /aws:username/)
    })

    it('lets only the instance role assume the new role, and with instance_role_linked off any role of the account', async () => {
      // Given the default (linked) config, When bob's role is created
      await syncUserRole(deps(), 'bob', {dryRun: false})
      // Then the instance role can assume it (with a source identity) and another role cannot
      const asInstance = new STSClient({
        endpoint: double.url,
        region: 'us-east-1',
        credentials: double.instanceCredentials,
      })
      const other = new STSClient({
        endpoint: double.url,
        region: 'us-east-1',
        credentials: double.sessionFor('user-bob', 'someone'),
      })
      const {AssumeRoleCommand} = await import('@aws-sdk/client-sts')
      const assume = (client: STSClient, arn: string) =>
        client.send(new AssumeRoleCommand({RoleArn: arn, RoleSessionName: 'bob', SourceIdentity: 'bob'}))
      await assume(asInstance, `arn:aws:iam::${ACCOUNT}:role/user-bob`)
      await assert.rejects(assume(other, `arn:aws:iam::${ACCOUNT}:role/user-bob`), /AccessDenied/)

      // When carol's is created with instance_role_linked = False
      config.method_CreateUserRole.instance_role_linked = false
      await syncUserRole(deps(), 'carol', {dryRun: false})
      // Then another role of the account can assume it too
      await assume(other, `arn:aws:iam::${ACCOUNT}:role/user-carol`)
      asInstance.destroy()
      other.destroy()
    })

    it('fills a role that exists but is empty, without creating it', async () => {
      // Given a tagged user-bob with the right trust and nothing else
      addRole(snapshot, 'user-bob')
      // When synced
      const {entry} = await syncUserRole(deps(), 'bob', {dryRun: false})
      // Then it gets his boundary and policies; no CreateRole, no trust update
      assert.equal(entry.exists, true)
      assert.deepEqual(
        entry.changes.map((c) => c.op),
        ['set-boundary', 'put-inline', 'put-inline', 'put-inline', 'attach-policy', 'attach-policy'],
      )
      assert.deepEqual(
        writes()
          .map((c) => c.action)
          .filter((a) => a === 'CreateRole' || a === 'UpdateAssumeRolePolicy'),
        [],
      )
      assert.equal(snapshot.roles.get('user-bob')!.inline.size, 3)
      assert.equal(snapshot.roles.get('user-bob')!.attached.length, 2)
    })

    it('changes nothing when the role is already in sync: a second run is a no-op', async () => {
      // Given bob's role synced once
      const first = await syncUserRole(deps(), 'bob', {dryRun: false})
      assert.ok(first.entry.changes.length > 0)
      const after = structuredClone(roleState(snapshot.roles.get('user-bob')))
      double.reset()
      // When synced again
      const second = await syncUserRole(deps(), 'bob', {dryRun: false})
      // Then no change is planned, no write call is made, and the role is as it was
      assert.equal(second.status, 'ok')
      assert.deepEqual(second.entry.changes, [])
      assert.equal(second.entry.exists, true)
      assert.deepEqual(writes(), [])
      assert.deepEqual(roleState(snapshot.roles.get('user-bob')), after)
    })

    it('removes whatever the role has beyond the user: policies, boundary, foreign trust', async () => {
      // Given erin (no permissions) and her tagged role with extra policies, a boundary and a broad trust
      const extra = addPolicy(snapshot, 'extra-read', allow('*'))
      addRole(snapshot, 'user-erin', {
        trustPolicy: {
          Version: '2012-10-17',
          Statement: [
            {Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: 'sts:AssumeRole'},
          ],
        },
        inline: new Map([['left-over', allow('*', 's3:*')]]),
        attached: [{name: 'extra-read', arn: extra}],
        permissionsBoundaryArn: `arn:aws:iam::${ACCOUNT}:policy/developer-boundary`,
      })
      // When synced
      const {entry, status} = await syncUserRole(deps(), 'erin', {dryRun: false})
      // Then all of it is gone and only the instance role is trusted
      assert.equal(status, 'ok', entry.error ?? '')
      assert.deepEqual(entry.changes, [
        {op: 'update-trust', target: INSTANCE_ROLE_ARN},
        {op: 'detach-policy', target: extra},
        {op: 'delete-inline', target: 'left-over'},
        {op: 'delete-boundary', target: `arn:aws:iam::${ACCOUNT}:policy/developer-boundary`},
      ])
      assert.deepEqual(roleState(snapshot.roles.get('user-erin')), {
        trust: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Principal: {AWS: INSTANCE_ROLE_ARN},
              Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
            },
          ],
        },
        tags: {'ec2userkeyd:managed': 'true', 'ec2userkeyd:iam-user': 'erin'},
        boundary: null,
        attached: [],
        inline: {},
      })
    })

    it('attaches max_attached_policies managed policies and copies the rest in as inline policies', async () => {
      // Given dave's four AWS managed policies and a quota of two
      config.method_CreateUserRole.max_attached_policies = 2
      // When synced
      const {entry, status} = await syncUserRole(deps(), 'dave', {dryRun: false})
      // Then the first two (by name) are attached and the other two are inline copies of their documents
      assert.equal(status, 'ok', entry.error ?? '')
      const role = snapshot.roles.get('user-dave')!
      assert.deepEqual(
        role.attached.map((a) => a.name),
        ['AWSGlueConsoleFullAccess', 'AmazonAthenaFullAccess'],
      )
      assert.deepEqual([...role.inline.keys()].sort(), [
        'managed.AmazonS3ReadOnlyAccess',
        'managed.CloudWatchLogsReadOnlyAccess',
      ])
      const s3 = snapshot.policies.get('arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess')!
      assert.deepEqual(
        role.inline.get('managed.AmazonS3ReadOnlyAccess'),
        s3.versions.get(s3.defaultVersionId)!.document,
      )
    })

    it('copies in, resolved, a managed policy that uses principal variables instead of attaching it', async () => {
      // Given erin holds a customer managed policy scoped with ${aws:username}
      const own = addPolicy(
        snapshot,
        'own-prefix',
        allow('arn:aws:s3:::acme-analytics-home/${aws:username}/*'),
      )
      snapshot.users.get('erin')!.attached.push({name: 'own-prefix', arn: own})
      // When synced
      await syncUserRole(deps(), 'erin', {dryRun: false})
      // Then it is not attached (a session has no aws:username) but copied with her name in it
      const role = snapshot.roles.get('user-erin')!
      assert.deepEqual(role.attached, [])
      assert.deepEqual(
        role.inline.get('managed.own-prefix'),
        allow('arn:aws:s3:::acme-analytics-home/erin/*'),
      )
    })

    it("reports AWS's quota of attached policies with what to do, when max_attached_policies is set above it", async () => {
      // Given a user with 11 managed policies, max_attached_policies 12, and AWS's default quota of 10
      config.method_CreateUserRole.max_attached_policies = 12
      const arns = Array.from({length: 11}, (_, i) =>
        addPolicy(snapshot, `p${String(i).padStart(2, '0')}`, allow(`arn:aws:s3:::b${i}/*`)),
      )
      addUser(snapshot, 'frank', {attached: arns})
      // When synced (the SDK retries LimitExceededException as if it were throttling: two attempts keep this short)
      const impatient = new IAMClient({
        endpoint: double.url,
        region: 'us-east-1',
        credentials: double.instanceCredentials,
        maxAttempts: 2,
      })
      const {entry, status, failure} = await syncUserRole({...deps(), iam: impatient}, 'frank', {
        dryRun: false,
      })
      impatient.destroy()
      // Then the eleventh attach fails with AWS's LimitExceeded and a line saying what to do
      assert.equal(status, 'failed')
      assert.equal(failure, 'unexpected')
      assert.match(
        entry.error ?? '',
        /AWS quota reached for iam:AttachRolePolicy user-frank .*PoliciesPerRole: 10/,
      )
      assert.match(entry.error ?? '', /max_attached_policies/)
      assert.equal(
        entry.changes.filter((c) => c.op === 'attach-policy').length,
        10,
        'the changes made before it are listed',
      )
      assert.equal(snapshot.roles.get('user-frank')!.attached.length, 10)
    })

    it('refuses a user whose inline policies would pass 10,240 characters, and changes nothing', async () => {
      // Given frank: three inline policies of about 4,000 characters each
      const big = (n: number) =>
        allow(
          Array.from(
            {length: 100},
            (_, i) => `arn:aws:s3:::acme-analytics-${n}-${String(i).padStart(3, '0')}/*`,
          ),
        )
      addUser(snapshot, 'frank', {inline: {one: big(1), two: big(2), three: big(3)}})
      // When synced
      const {entry, status} = await syncUserRole(deps(), 'frank', {dryRun: false})
      // Then it fails naming the total and the largest policies, and no write is made
      assert.equal(status, 'failed')
      assert.match(
        entry.error ?? '',
        /role user-frank would need 1\d,\d{3} characters of inline policies for IAM user frank, over AWS's 10,240 per role/,
      )
      assert.match(entry.error ?? '', /largest: user\.\w+ \d,\d{3}/)
      assert.deepEqual(entry.changes, [])
      assert.deepEqual(writes(), [])
      assert.equal(snapshot.roles.has('user-frank'), false)
    })

    it('never touches a role of that name without the ec2userkeyd tag, unless adopted', async () => {
      // Given someone else's user-alice
      const foreign = addRole(snapshot, 'user-alice', {
        tags: {owner: 'data-platform'},
        inline: new Map([['theirs', allow('*')]]),
      })
      const before = structuredClone(roleState(foreign))
      // When synced without --adopt
      const refused = await syncUserRole(deps(), 'alice', {dryRun: false})
      // Then it is an error for alice and the role is untouched
      assert.equal(refused.status, 'failed')
      assert.match(
        refused.entry.error ?? '',
        /role user-alice \(for IAM user alice\) exists but is not managed by ec2userkeyd .*--adopt/,
      )
      assert.deepEqual(refused.entry.changes, [])
      assert.deepEqual(writes(), [])
      assert.deepEqual(roleState(snapshot.roles.get('user-alice')), before)

      // When adopted
      const adopted = await syncUserRole(deps(), 'alice', {dryRun: false, adopt: true})
      // Then it is synced and tagged as ours (its other tags stay)
      assert.equal(adopted.status, 'ok', adopted.entry.error ?? '')
      assert.deepEqual(adopted.entry.changes.slice(-2), [
        {op: 'tag-role', target: 'ec2userkeyd:managed=true'},
        {op: 'tag-role', target: 'ec2userkeyd:iam-user=alice'},
      ])
      assert.deepEqual(snapshot.roles.get('user-alice')!.tags, {
        owner: 'data-platform',
        'ec2userkeyd:managed': 'true',
        'ec2userkeyd:iam-user': 'alice',
      })
      assert.equal(snapshot.roles.get('user-alice')!.inline.has('theirs'), false)
    })

    it('absorbs throttling with the SDK retry', async () => {
      // Given IAM throttles the first CreateRole and two PutRolePolicy calls
      double.inject({action: 'CreateRole', code: 'Throttling', times: 1})
      double.inject({action: 'PutRolePolicy', code: 'Throttling', times: 2})
      // When bob is synced
      const {entry, status} = await syncUserRole(deps(), 'bob', {dryRun: false})
      // Then it succeeds, the throttled calls having been retried
      assert.equal(status, 'ok', entry.error ?? '')
      assert.equal(double.calls.filter((c) => c.action === 'CreateRole').length, 2)
      assert.equal(
        double.calls.filter((c) => c.action === 'PutRolePolicy' && c.error === 'Throttling').length,
        2,
      )
      assert.equal(snapshot.roles.get('user-bob')!.inline.size, 3)
    })

    it('plans without writing when dry-run, or when given no IAM client', async () => {
      for (const run of [
        {iam, dryRun: true},
        {iam: null, dryRun: false},
      ]) {
        const {entry, status} = await syncUserRole({...deps(), iam: run.iam}, 'bob', {dryRun: run.dryRun})
        assert.equal(status, 'ok')
        assert.equal(entry.changes[0].op, 'create-role')
        assert.deepEqual(writes(), [])
        assert.equal(snapshot.roles.has('user-bob'), false)
      }
    })

    it('reports a local user without an IAM user', async () => {
      const {entry, status, failure} = await syncUserRole(deps(), 'nobody', {dryRun: false})
      assert.equal(status, 'no-iam-user')
      assert.equal(failure, 'notFound')
      assert.equal(
        entry.error,
        "no IAM user 'nobody' (local user 'nobody', [method_CreateUserRole] iam_name_pattern '{username}'): check the name and the pattern",
      )
      assert.equal(entry.exists, false)
      assert.deepEqual(writes(), [])
    })

    it('warns about a statement it had to leave out of the copy', async () => {
      // Given erin's inline policy with a condition on her principal tag that step a cannot
      // decide (it compares numbers; without the tag the condition would simply be false)
      snapshot.users.get('erin')!.tags.level = '2'
      snapshot.users.get('erin')!.inline.set('levels', {
        Version: '2012-10-17',
        Statement: [
          {
            Effect: 'Allow',
            Action: 's3:GetObject',
            Resource: '*',
            Condition: {NumericLessThan: {'aws:PrincipalTag/level': '3'}},
          },
          {Effect: 'Allow', Action: 's3:ListBucket', Resource: '*'},
        ],
      })
      // When synced
      const {status, warnings} = await syncUserRole(deps(), 'erin', {dryRun: false})
      // Then the statement is dropped (granting less), and the warning says so
      assert.equal(status, 'ok')
      assert.deepEqual(
        snapshot.roles.get('user-erin')!.inline.get('user.levels'),
        allow('*', 's3:ListBucket'),
      )
      assert.equal(warnings.length, 1)
      assert.match(
        warnings[0],
        /user inline policy levels: cannot decide its condition NumericLessThan aws:PrincipalTag\/level/,
      )
    })

    it('gives exactly the documented entry shape', async () => {
      const {entry} = await syncUserRole(deps(), 'erin', {dryRun: true})
      assert.deepEqual(Object.keys(entry), [
        'user',
        'iamUser',
        'role',
        'roleArn',
        'exists',
        'changes',
        'error',
      ])
      for (const change of entry.changes) assert.deepEqual(Object.keys(change), ['op', 'target'])
    })
  })

  describe('many users', () => {
    it('syncs every IAM user with --all, and a user that fails does not stop the others', async () => {
      // Given one user at a time, in name order, and IAM refusing the CreateRole after alice's (bob's)
      // When every user is synced
      const report = await syncRoles(
        deps(),
        {users: [], all: true},
        {
          dryRun: false,
          concurrency: 1,
          onProgress: (done) => {
            if (done === 1) double.inject({action: 'CreateRole', code: 'AccessDenied', times: 1})
          },
        },
      )
      // Then bob failed with AWS's refusal and the others got their roles
      const byUser = Object.fromEntries(report.result.roles.map((r) => [r.user, r]))
      assert.deepEqual(Object.keys(byUser), ['alice', 'bob', 'carol', 'dave', 'erin'])
      assert.match(byUser.bob.error ?? '', /AWS denied iam:CreateRole user-bob/)
      assert.deepEqual(byUser.bob.changes, [])
      for (const name of ['alice', 'carol', 'dave', 'erin']) {
        assert.equal(byUser[name].error, null, name)
        assert.ok(snapshot.roles.has(`user-${name}`), name)
      }
      assert.equal(snapshot.roles.has('user-bob'), false)
      assert.equal(report.failure, 'accessDenied')
      assert.equal(report.result.dryRun, false)
    })

    it('calls a mix of failures unexpected', async () => {
      // Given an unknown user and a foreign role
      addRole(snapshot, 'user-carol', {tags: {}})
      const report = await syncRoles(deps(), {users: ['nobody', 'carol', 'erin']}, {dryRun: false})
      assert.deepEqual(
        report.result.roles.map((r) => [r.user, r.error === null]),
        [
          ['nobody', false],
          ['carol', false],
          ['erin', true],
        ],
      )
      assert.equal(report.failure, 'unexpected')
    })

    it('selects the members of a group with --group, and fails for a group that does not exist', async () => {
      const report = await syncRoles(deps(), {users: [], group: 'data-science'}, {dryRun: true})
      assert.deepEqual(
        report.result.roles.map((r) => r.user),
        ['alice', 'bob'],
      )
      assert.ok(double.calls.some((c) => c.action === 'GetGroup'))
      await assert.rejects(
        syncRoles(deps(), {users: [], group: 'nope'}, {dryRun: true}),
        (e: unknown) => e instanceof NotFoundError && /IAM group 'nope' not found/.test(e.message),
      )
    })

    it('maps IAM users back to local names through iam_name_pattern', async () => {
      // Given IAM users iam-gina and harry, and the pattern iam-{username}
      addUser(snapshot, 'iam-gina')
      addUser(snapshot, 'harry')
      config.method_CreateUserRole.iam_name_pattern = 'iam-{username}'
      // When every user is planned
      const report = await syncRoles(deps(), {users: [], all: true}, {dryRun: true})
      // Then only gina, whose IAM user fits the pattern, is selected
      assert.deepEqual(
        report.result.roles.map((r) => [r.user, r.iamUser, r.role]),
        [['gina', 'iam-gina', 'user-gina']],
      )
    })

    it('makes no write call with --dry-run, and reports progress for every user', async () => {
      const progress: Array<[number, number]> = []
      const report = await syncRoles(
        deps(),
        {users: [], all: true},
        {dryRun: true, onProgress: (done, total) => progress.push([done, total])},
      )
      assert.equal(report.result.dryRun, true)
      assert.ok(report.result.roles.every((r) => r.changes.length > 0))
      assert.deepEqual(writes(), [])
      assert.deepEqual(progress, [
        [0, 5],
        [1, 5],
        [2, 5],
        [3, 5],
        [4, 5],
        [5, 5],
      ])
    })

    it('leaves nothing to do after a first run of --all', async () => {
      // Given every role synced once
      const first = await syncRoles(deps(), {users: [], all: true}, {dryRun: false})
      assert.equal(first.failure, null, JSON.stringify(first.result))
      double.reset()
      // When run again
      const second = await syncRoles(deps(), {users: [], all: true}, {dryRun: false})
      // Then zero changes and zero writes
      assert.deepEqual(
        second.result.roles.map((r) => r.changes.length),
        [0, 0, 0, 0, 0],
      )
      assert.deepEqual(writes(), [])
    })

    it('refuses local users who would share one role', async () => {
      config.method_CreateUserRole.role_name_pattern = 'shared-role'
      const report = await syncRoles(deps(), {users: ['bob', 'carol']}, {dryRun: false})
      assert.ok(
        report.result.roles.every((r) =>
          /local users bob, carol would all get role shared-role/.test(r.error ?? ''),
        ),
      )
      assert.deepEqual(writes(), [])
      assert.equal(report.failure, 'usage')
    })
  })
})
