import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'

import {OfflineIamSource} from '../src/lib/aws/offline.js'
import {AccountSnapshot, parseAccountSnapshot} from '../src/lib/aws/snapshot.js'
import {InputError, NotFoundError} from '../src/lib/errors.js'
import {statementsOf} from '../src/lib/iam/document.js'

const ACCOUNT_FILE = 'fixtures/account.json'
const accountText = readFileSync(new URL('../fixtures/account.json', import.meta.url), 'utf8')

const INSTANCE_ROLE_ARN = 'arn:aws:iam::123456789012:role/service-role/analytics-host'
const SHARED_READ = 'arn:aws:iam::123456789012:policy/acme-shared-read'
const BOUNDARY = 'arn:aws:iam::123456789012:policy/developer-boundary'
const ATHENA_FULL = 'arn:aws:iam::aws:policy/AmazonAthenaFullAccess'

const demoAccount = (): AccountSnapshot => parseAccountSnapshot(accountText, ACCOUNT_FILE)

/** The demo account less some managed policies, as an export made with a --filter would be. */
function accountWithout(...arns: string[]): AccountSnapshot {
  const raw = JSON.parse(accountText) as {Policies: Array<{Arn: string}>}
  raw.Policies = raw.Policies.filter((p) => !arns.includes(p.Arn))
  return parseAccountSnapshot(JSON.stringify(raw), ACCOUNT_FILE)
}

const defaultDocument = (snapshot: AccountSnapshot, arn: string) => {
  const policy = snapshot.policies.get(arn)!
  return policy.versions.get(policy.defaultVersionId)!.document
}

describe('OfflineIamSource (the demo account)', () => {
  let snapshot: AccountSnapshot
  let source: OfflineIamSource

  beforeEach(() => {
    snapshot = demoAccount()
    source = new OfflineIamSource(snapshot, 'analytics-host')
  })

  describe('getUserPolicies', () => {
    it('gives alice her inline policy, acme-shared-read at v2 and the data-science group’s policies', async () => {
      // When alice's policies are read
      const alice = (await source.getUserPolicies('alice'))!
      // Then her own inline policy keeps its policy variables
      assert.deepEqual(alice.user, {
        name: 'alice',
        arn: 'arn:aws:iam::123456789012:user/alice',
        id: snapshot.users.get('alice')!.id,
        path: '/',
        tags: {},
        permissionsBoundaryArn: null,
      })
      assert.match(alice.user.id, /^AIDA[A-Z2-7]{17}$/)
      assert.deepEqual(
        alice.inline.map((p) => p.name),
        ['home-prefix'],
      )
      assert.equal(
        statementsOf(alice.inline[0].document)[0].Resource,
        'arn:aws:s3:::acme-analytics-home/${aws:username}/*',
      )
      // And her managed policy is at its default version, not the older v1
      assert.deepEqual(alice.managed, [
        {
          name: 'acme-shared-read',
          arn: SHARED_READ,
          versionId: 'v2',
          document: defaultDocument(snapshot, SHARED_READ),
        },
      ])
      assert.notDeepEqual(
        alice.managed[0].document,
        snapshot.policies.get(SHARED_READ)!.versions.get('v1')!.document,
      )
      // And the group brings its inline and its AWS managed policy
      assert.equal(alice.groups.length, 1)
      const [group] = alice.groups
      assert.equal(group.name, 'data-science')
      assert.equal(group.arn, 'arn:aws:iam::123456789012:group/data-science')
      assert.deepEqual(
        group.inline.map((p) => p.name),
        ['query-data'],
      )
      assert.deepEqual(
        group.managed.map((p) => [p.arn, p.versionId]),
        [[ATHENA_FULL, 'v15']],
      )
      assert.equal(alice.permissionsBoundary, null)
    })

    it('gives bob his permissions boundary at its default version', async () => {
      const bob = (await source.getUserPolicies('bob'))!
      assert.equal(bob.user.permissionsBoundaryArn, BOUNDARY)
      assert.deepEqual(bob.permissionsBoundary, {
        name: 'developer-boundary',
        arn: BOUNDARY,
        versionId: 'v1',
        document: defaultDocument(snapshot, BOUNDARY),
      })
      const deny = statementsOf(bob.permissionsBoundary!.document).find((s) => s.Effect === 'Deny')
      assert.deepEqual(
        [deny?.Action, deny?.Resource],
        ['s3:DeleteObject', 'arn:aws:s3:::acme-analytics-prod/*'],
      )
    })

    it('gives bob both groups, sorted, and his inline Allow and Deny', async () => {
      const bob = (await source.getUserPolicies('bob'))!
      assert.deepEqual(
        bob.groups.map((g) => g.name),
        ['data-science', 'engineering'],
      )
      const engineering = bob.groups[1]
      assert.deepEqual(
        engineering.managed.map((p) => [p.name, p.versionId]),
        [['acme-shared-read', 'v2']],
      )
      assert.deepEqual(
        statementsOf(bob.inline[0].document).map((s) => s.Effect),
        ['Allow', 'Deny'],
      )
      assert.deepEqual(bob.managed, [])
    })

    it('gives carol her URL-encoded documents decoded, and her tags', async () => {
      const carol = (await source.getUserPolicies('carol'))!
      assert.deepEqual(carol.user.tags, {team: 'genomics', 'cost-center': 'cc-42'})
      assert.deepEqual(
        carol.inline.map((p) => p.name),
        ['genomics-workgroup', 'team-bucket'],
      )
      const [workgroup, teamBucket] = carol.inline.map((p) => statementsOf(p.document))
      assert.deepEqual(workgroup[0].Condition, {
        StringEquals: {
          'aws:username': 'carol',
          'aws:ResourceTag/cost-center': '${aws:PrincipalTag/cost-center}',
        },
      })
      assert.equal(teamBucket[0].Resource, 'arn:aws:s3:::acme-analytics-${aws:PrincipalTag/team}/*')
      assert.deepEqual(
        carol.groups.map((g) => [g.name, g.inline.map((p) => statementsOf(p.document)[0].Resource)]),
        [['genomics', ['arn:aws:s3:::acme-analytics-genomics/*']]],
      )
    })

    it('gives dave his four AWS managed policies, sorted by name, each at its default version', async () => {
      const dave = (await source.getUserPolicies('dave'))!
      assert.deepEqual(
        dave.managed.map((p) => [p.name, p.versionId]),
        [
          ['AWSGlueConsoleFullAccess', 'v14'],
          ['AmazonAthenaFullAccess', 'v15'],
          ['AmazonS3ReadOnlyAccess', 'v3'],
          ['CloudWatchLogsReadOnlyAccess', 'v12'],
        ],
      )
      const characters = dave.managed.reduce((n, p) => n + JSON.stringify(p.document).length, 0)
      assert.ok(
        characters > 2048,
        `dave's policies (${characters} characters) are too big for a session policy uncompressed`,
      )
    })

    it('gives erin, who has no policies and no groups, empty lists', async () => {
      const erin = (await source.getUserPolicies('erin'))!
      assert.deepEqual([erin.inline, erin.managed, erin.groups, erin.permissionsBoundary], [[], [], [], null])
    })

    it('answers null for a name with no IAM user, such as the local account svc-backup', async () => {
      assert.equal(await source.getUserPolicies('svc-backup'), null)
      assert.equal(await source.getUserPolicies('Alice'), null, 'IAM user names are looked up exactly')
    })

    it('rejects a managed policy that is attached but missing from Policies, naming the ARN', async () => {
      // Given an export that lacks AmazonAthenaFullAccess, which dave and data-science use
      const partial = new OfflineIamSource(accountWithout(ATHENA_FULL), 'analytics-host')
      // When dave, or alice through her group, is read, Then the error names the file, who uses it and the ARN
      await assert.rejects(partial.getUserPolicies('dave'), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.equal(
          error.message,
          `account file ${ACCOUNT_FILE}: user 'dave' uses managed policy ${ATHENA_FULL}, which is not in Policies`,
        )
        assert.match(error.suggestion ?? '', /without a --filter/)
        return true
      })
      await assert.rejects(partial.getUserPolicies('alice'), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.match(
          error.message,
          /group 'data-science' uses managed policy arn:aws:iam::aws:policy\/AmazonAthenaFullAccess/,
        )
        return true
      })
      // And users who do not use it are still read
      assert.equal((await partial.getUserPolicies('carol'))!.user.name, 'carol')
    })

    it('rejects a permissions boundary missing from Policies, saying it is the boundary', async () => {
      const partial = new OfflineIamSource(accountWithout(BOUNDARY), 'analytics-host')
      await assert.rejects(partial.getUserPolicies('bob'), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.match(
          error.message,
          /user 'bob' \(permissions boundary\) uses managed policy arn:aws:iam::123456789012:policy\/developer-boundary/,
        )
        return true
      })
    })
  })

  describe('getInstanceRole', () => {
    it('finds the instance role by name, with its path in the ARN', async () => {
      assert.deepEqual(await source.getInstanceRole(), {
        name: 'analytics-host',
        arn: INSTANCE_ROLE_ARN,
        accountId: '123456789012',
        source: 'configured',
      })
    })

    it('finds the instance role by its full ARN', async () => {
      const role = await new OfflineIamSource(snapshot, INSTANCE_ROLE_ARN).getInstanceRole()
      assert.equal(role.name, 'analytics-host')
      assert.equal(role.arn, INSTANCE_ROLE_ARN)
    })

    for (const [what, ref] of [
      ['without its path', 'arn:aws:iam::123456789012:role/analytics-host'],
      ['in another account', 'arn:aws:iam::210987654321:role/service-role/analytics-host'],
      ['of a role not in the file', 'arn:aws:iam::123456789012:role/service-role/batch-host'],
    ]) {
      it(`refuses an instance role ARN ${what} as not found`, async () => {
        await assert.rejects(new OfflineIamSource(snapshot, ref).getInstanceRole(), (error: unknown) => {
          assert.ok(error instanceof NotFoundError)
          assert.equal(error.message, `instance role '${ref}' is not in account file ${ACCOUNT_FILE}`)
          assert.match(error.suggestion ?? '', /analytics-host/, 'lists the roles there are')
          return true
        })
      })
    }

    it('refuses an unknown role name as not found', async () => {
      await assert.rejects(new OfflineIamSource(snapshot, 'batch-host').getInstanceRole(), NotFoundError)
    })

    it('asks for the instance role when none is configured', async () => {
      await assert.rejects(new OfflineIamSource(snapshot, null).getInstanceRole(), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.match(error.message, /offline mode \(--account\) needs the instance role/)
        assert.match(error.suggestion ?? '', /--instance-role NAME\|ARN or \[general\] instance_role/)
        return true
      })
    })
  })

  describe('getRole and getRolePolicies', () => {
    it('reads the instance role’s inline policies, AmazonS3ReadOnlyAccess at v3 and its trust policy', async () => {
      const host = (await source.getRolePolicies('analytics-host'))!
      assert.equal(host.role.arn, INSTANCE_ROLE_ARN)
      assert.deepEqual(
        host.inline.map((p) => p.name),
        ['analytics-data', 'ec2userkeyd'],
      )
      assert.deepEqual(
        host.managed.map((p) => [p.arn, p.versionId]),
        [['arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess', 'v3']],
      )
      assert.equal(host.permissionsBoundary, null)
      // It may assume the user roles and itself, and never delete a bucket
      const ec2userkeyd = statementsOf(host.inline[1].document)
      assert.deepEqual(ec2userkeyd[0].Resource, ['arn:aws:iam::123456789012:role/user-*', INSTANCE_ROLE_ARN])
      const denies = statementsOf(host.inline[0].document).filter((s) => s.Effect === 'Deny')
      assert.deepEqual(
        denies.map((s) => s.Action),
        ['s3:DeleteBucket'],
      )
      // And it trusts itself for the restricted self-assume
      const self = statementsOf(host.role.trustPolicy).find(
        (s) => JSON.stringify(s.Principal) === JSON.stringify({AWS: INSTANCE_ROLE_ARN}),
      )
      assert.deepEqual(self?.Action, ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession'])
    })

    it('reads user-alice as a role ec2userkeyd manages, trusting only the instance role', async () => {
      const role = (await source.getRole('user-alice'))!
      assert.equal(role.arn, 'arn:aws:iam::123456789012:role/user-alice')
      assert.deepEqual(role.tags, {'ec2userkeyd:managed': 'true', 'ec2userkeyd:iam-user': 'alice'})
      assert.deepEqual(statementsOf(role.trustPolicy), [
        {
          Effect: 'Allow',
          Principal: {AWS: INSTANCE_ROLE_ARN},
          Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
        },
      ])
    })

    it('answers null for roles that do not exist, such as user-bob', async () => {
      assert.equal(await source.getRole('user-bob'), null)
      assert.equal(await source.getRolePolicies('user-bob'), null)
    })
  })

  it('lists the IAM users sorted by name', async () => {
    assert.deepEqual(
      (await source.listUsers()).map((u) => u.name),
      ['alice', 'bob', 'carol', 'dave', 'erin'],
    )
  })

  it('answers null for a managed policy ARN that is not in the file', async () => {
    assert.equal(await source.getManagedPolicy('arn:aws:iam::aws:policy/AdministratorAccess'), null)
  })
})
