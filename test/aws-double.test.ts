import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'

import {
  AttachRolePolicyCommand,
  CreateRoleCommand,
  DeleteRoleCommand,
  DeleteRolePermissionsBoundaryCommand,
  DeleteRolePolicyCommand,
  DetachRolePolicyCommand,
  GetPolicyCommand,
  GetPolicyVersionCommand,
  GetRoleCommand,
  GetRolePolicyCommand,
  GetUserCommand,
  IAMClient,
  ListPoliciesCommand,
  paginateGetGroup,
  paginateListAttachedRolePolicies,
  paginateListGroupPolicies,
  paginateListRoleTags,
  paginateListUsers,
  PutRolePermissionsBoundaryCommand,
  PutRolePolicyCommand,
  TagRoleCommand,
  UntagRoleCommand,
  UpdateAssumeRolePolicyCommand,
} from '@aws-sdk/client-iam'
import {
  AssumeRoleCommand,
  AssumeRoleCommandInput,
  GetCallerIdentityCommand,
  STSClient,
} from '@aws-sdk/client-sts'

import {AccountSnapshot, parseAccountSnapshot} from '../src/lib/aws/snapshot.js'
import {AwsDouble, SessionCredentials, startAwsDouble} from './support/aws-double/index.js'

const ACCOUNT = '111122223333'
const HOST_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/analytics-host`
const HOST_SESSION_ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/analytics-host/i-0123456789abcdef0`
const roleArn = (name: string, path = '/') => `arn:aws:iam::${ACCOUNT}:role${path}${name}`
const policyArn = (name: string) => `arn:aws:iam::${ACCOUNT}:policy/${name}`

const allow = (action: string | string[], principal: unknown, condition?: unknown) => ({
  Effect: 'Allow',
  Principal: principal,
  Action: action,
  ...(condition ? {Condition: condition} : {}),
})
const trust = (...statements: unknown[]) => ({Version: '2012-10-17', Statement: statements})
const readS3 = {
  Version: '2012-10-17',
  Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/*'}],
}

/** A small account in get-account-authorization-details format. */
function accountSnapshot(): AccountSnapshot {
  const user = (name: string, groups: string[], extra: object = {}) => ({
    UserName: name,
    UserId: `AIDA${name.toUpperCase()}`,
    Arn: `arn:aws:iam::${ACCOUNT}:user/${name}`,
    Path: '/',
    CreateDate: '2021-03-04T05:06:07Z',
    GroupList: groups,
    ...extra,
  })
  const role = (name: string, trustPolicy: object, extra: object = {}) => ({
    RoleName: name,
    RoleId: `AROA${name.toUpperCase().replace(/-/g, '')}`,
    Arn: roleArn(name, (extra as {Path?: string}).Path ?? '/'),
    Path: '/',
    CreateDate: '2022-01-01T00:00:00Z',
    AssumeRolePolicyDocument: trustPolicy,
    ...extra,
  })
  const managed = Array.from({length: 11}, (_, i) => `team-${String(i + 1).padStart(2, '0')}`)
  const json = {
    UserDetailList: [
      user('alice', ['devs'], {
        UserPolicyList: [{PolicyName: 'home', PolicyDocument: readS3}],
        AttachedManagedPolicies: [{PolicyName: 'team-01', PolicyArn: policyArn('team-01')}],
        Tags: [{Key: 'team', Value: 'data'}],
      }),
      user('bob', ['devs']),
      user('carol', []),
      user('dave', ['devs']),
    ],
    GroupDetailList: [
      {
        GroupName: 'devs',
        GroupId: 'AGPADEVS',
        Arn: `arn:aws:iam::${ACCOUNT}:group/devs`,
        Path: '/',
        CreateDate: '2020-01-01T00:00:00Z',
        GroupPolicyList: ['a', 'b', 'c'].map((n) => ({PolicyName: `devs-${n}`, PolicyDocument: readS3})),
      },
    ],
    RoleDetailList: [
      role('analytics-host', trust(allow('sts:AssumeRole', {Service: 'ec2.amazonaws.com'})), {
        RolePolicyList: [
          {PolicyName: 'host-inline', PolicyDocument: encodeURIComponent(JSON.stringify(readS3))},
        ],
        AttachedManagedPolicies: managed.slice(0, 3).map((n) => ({PolicyName: n, PolicyArn: policyArn(n)})),
        Tags: [
          {Key: 'a', Value: '1'},
          {Key: 'b', Value: '2'},
          {Key: 'c', Value: '3'},
        ],
        PermissionsBoundary: {
          PermissionsBoundaryType: 'PermissionsBoundaryPolicy',
          PermissionsBoundaryArn: policyArn('team-11'),
        },
        MaxSessionDuration: 7200,
        Description: 'the instance role <&>',
      }),
      // Admits the instance role, with source identity; lives under a path.
      role('user-alice', trust(allow(['sts:AssumeRole', 'sts:SetSourceIdentity'], {AWS: HOST_ROLE_ARN})), {
        Path: '/ec2userkeyd/',
        MaxSessionDuration: 43200,
      }),
      // Admits the whole account, without source identity.
      role('user-bob', trust(allow('sts:assume*', {AWS: `arn:aws:iam::${ACCOUNT}:root`}))),
      // Admits only principals whose ARN matches a pattern the instance role does not.
      role(
        'user-carol',
        trust(
          allow(
            'sts:AssumeRole',
            {AWS: '*'},
            {ArnLike: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/batch-*`}},
          ),
        ),
      ),
      // A condition the double does not model: fails closed.
      role(
        'user-dave',
        trust(allow('sts:AssumeRole', {AWS: ACCOUNT}, {IpAddress: {'aws:SourceIp': '10.0.0.0/8'}})),
      ),
      // Allowed to all, denied to the instance role.
      role(
        'user-erin',
        trust(allow('sts:*', {AWS: '*'}), {
          Effect: 'Deny',
          Principal: {AWS: HOST_ROLE_ARN},
          Action: 'sts:AssumeRole',
        }),
      ),
      // Admitted through a condition the double models.
      role(
        'user-frank',
        trust(
          allow(
            'sts:AssumeRole',
            {AWS: '*'},
            {StringLike: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/analytics-*`}},
          ),
        ),
      ),
    ],
    Policies: managed.map((name, i) => ({
      PolicyName: name,
      PolicyId: `ANPA${i}`,
      Arn: policyArn(name),
      Path: '/',
      DefaultVersionId: i === 0 ? 'v2' : 'v1',
      CreateDate: '2020-05-05T00:00:00Z',
      PolicyVersionList: [
        {VersionId: 'v1', Document: readS3, CreateDate: '2020-05-05T00:00:00Z'},
        ...(i === 0
          ? [
              {
                VersionId: 'v2',
                Document: encodeURIComponent(
                  JSON.stringify({Statement: {Effect: 'Allow', Action: 's3:*', Resource: '*'}}),
                ),
                CreateDate: '2020-06-06T00:00:00Z',
              },
            ]
          : []),
      ],
    })),
  }
  return parseAccountSnapshot(JSON.stringify(json), 'inline test account')
}

/** Awaits a rejection and hands back the SDK error, for assertions on its fields. */
async function failure(
  promise: Promise<unknown>,
): Promise<Error & {Code?: string; $metadata: {httpStatusCode?: number; attempts?: number}}> {
  try {
    await promise
  } catch (error) {
    return error as never
  }
  assert.fail('expected the call to fail')
}

async function collect<P, T>(pages: AsyncIterable<P>, pick: (p: P) => T[] | undefined): Promise<T[]> {
  const out: T[] = []
  for await (const page of pages) out.push(...(pick(page) ?? []))
  return out
}

describe('AWS test double', () => {
  let double: AwsDouble
  let iam: IAMClient
  let sts: STSClient
  const clients: {destroy(): void}[] = []
  const iamAs = (credentials: SessionCredentials, maxAttempts?: number) => {
    const c = new IAMClient({endpoint: double.url, region: 'us-east-1', credentials, maxAttempts})
    clients.push(c)
    return c
  }
  const stsAs = (credentials: SessionCredentials) => {
    const c = new STSClient({endpoint: double.url, region: 'us-east-1', credentials})
    clients.push(c)
    return c
  }
  const assume = (input: Partial<AssumeRoleCommandInput> & {RoleArn: string}) =>
    sts.send(new AssumeRoleCommand({RoleSessionName: 'alice', ...input}))

  before(async () => {
    double = await startAwsDouble({snapshot: accountSnapshot(), instanceRole: 'analytics-host'})
    iam = iamAs(double.instanceCredentials)
    sts = stsAs(double.instanceCredentials)
  })
  beforeEach(() => double.reset())
  after(async () => {
    for (const c of clients) c.destroy()
    await double.stop()
  })

  describe('IAM reads', () => {
    it('pages ListUsers two at a time and the SDK paginator sees every user', async () => {
      const users = await collect(paginateListUsers({client: iam}, {}), (p) => p.Users)
      assert.deepEqual(
        users.map((u) => u.UserName),
        ['alice', 'bob', 'carol', 'dave'],
      )
      const calls = double.calls.filter((c) => c.action === 'ListUsers')
      assert.equal(calls.length, 2)
      assert.equal(calls[0].params.Marker, undefined)
      assert.ok(calls[1].params.Marker, 'the second page was asked for with the first page’s Marker')
    })

    it('honours MaxItems as asked', async () => {
      const page = await iam.send(new ListPoliciesCommand({Scope: 'Local', MaxItems: 5}))
      assert.equal(page.Policies?.length, 5)
      assert.equal(page.IsTruncated, true)
      const rest = await iam.send(
        new ListPoliciesCommand({Scope: 'Local', MaxItems: 100, Marker: page.Marker}),
      )
      assert.equal(rest.Policies?.length, 6)
      assert.equal(rest.IsTruncated, false)
      assert.equal(rest.Marker, undefined)
    })

    it('pages group members, group policies, attached role policies and role tags', async () => {
      const members = await collect(paginateGetGroup({client: iam}, {GroupName: 'devs'}), (p) => p.Users)
      assert.deepEqual(
        members.map((u) => u.UserName),
        ['alice', 'bob', 'dave'],
      )
      const names = await collect(
        paginateListGroupPolicies({client: iam}, {GroupName: 'devs'}),
        (p) => p.PolicyNames,
      )
      assert.deepEqual(names, ['devs-a', 'devs-b', 'devs-c'])
      const attached = await collect(
        paginateListAttachedRolePolicies({client: iam}, {RoleName: 'analytics-host'}),
        (p) => p.AttachedPolicies,
      )
      assert.deepEqual(
        attached.map((a) => a.PolicyArn),
        [policyArn('team-01'), policyArn('team-02'), policyArn('team-03')],
      )
      const tags = await collect(
        paginateListRoleTags({client: iam}, {RoleName: 'analytics-host'}),
        (p) => p.Tags,
      )
      assert.deepEqual(tags, [
        {Key: 'a', Value: '1'},
        {Key: 'b', Value: '2'},
        {Key: 'c', Value: '3'},
      ])
    })

    it('answers policy documents URL-encoded, decoding to the snapshot’s documents', async () => {
      const inline = await iam.send(
        new GetRolePolicyCommand({RoleName: 'analytics-host', PolicyName: 'host-inline'}),
      )
      assert.match(inline.PolicyDocument!, /^%7B%22/)
      assert.deepEqual(JSON.parse(decodeURIComponent(inline.PolicyDocument!)), readS3)

      const role = (await iam.send(new GetRoleCommand({RoleName: 'analytics-host'}))).Role!
      assert.deepEqual(
        JSON.parse(decodeURIComponent(role.AssumeRolePolicyDocument!)).Statement[0].Principal,
        {Service: 'ec2.amazonaws.com'},
      )

      const version = (
        await iam.send(new GetPolicyVersionCommand({PolicyArn: policyArn('team-01'), VersionId: 'v2'}))
      ).PolicyVersion!
      assert.equal(version.IsDefaultVersion, true)
      assert.deepEqual(JSON.parse(decodeURIComponent(version.Document!)).Statement.Action, 's3:*')
    })

    it('describes a role with tags, boundary, session limit and an escaped description', async () => {
      const role = (await iam.send(new GetRoleCommand({RoleName: 'analytics-host'}))).Role!
      assert.equal(role.Arn, HOST_ROLE_ARN)
      assert.equal(role.MaxSessionDuration, 7200)
      assert.equal(role.Description, 'the instance role <&>')
      assert.equal(role.PermissionsBoundary?.PermissionsBoundaryArn, policyArn('team-11'))
      assert.equal(role.Tags?.length, 3)
      assert.deepEqual(role.CreateDate, new Date('2022-01-01T00:00:00Z'))
    })

    it('describes a user and a managed policy with its attachment count', async () => {
      const user = (await iam.send(new GetUserCommand({UserName: 'alice'}))).User!
      assert.deepEqual(user.Tags, [{Key: 'team', Value: 'data'}])
      const policy = (await iam.send(new GetPolicyCommand({PolicyArn: policyArn('team-01')}))).Policy!
      assert.equal(policy.DefaultVersionId, 'v2')
      assert.equal(policy.AttachmentCount, 2) // alice and analytics-host
      const attached = await iam.send(
        new ListPoliciesCommand({Scope: 'Local', OnlyAttached: true, MaxItems: 100}),
      )
      assert.deepEqual(
        attached.Policies?.map((p) => p.PolicyName),
        ['team-01', 'team-02', 'team-03'],
      )
    })
  })

  describe('errors and failure injection', () => {
    it('surfaces a missing entity as the SDK’s NoSuchEntity exception with HTTP 404', async () => {
      const error = await failure(iam.send(new GetUserCommand({UserName: 'nobody'})))
      // The SDK names modelled errors after their shape; the wire code stays in Code.
      assert.equal(error.name, 'NoSuchEntityException')
      assert.equal(error.Code, 'NoSuchEntity')
      assert.equal(error.$metadata.httpStatusCode, 404)
      assert.equal(error.message, 'The user with name nobody cannot be found.')
    })

    it('throttles twice and the SDK’s retry gets the third attempt through', async () => {
      double.inject({action: 'GetUser', code: 'Throttling', times: 2})
      const user = await iam.send(new GetUserCommand({UserName: 'bob'}))
      assert.equal(user.User?.UserName, 'bob')
      assert.equal(user.$metadata.attempts, 3)
      assert.deepEqual(
        double.calls.map((c) => c.error ?? c.status),
        ['Throttling', 'Throttling', 200],
      )
    })

    it('retries an injected InternalFailure (HTTP 500) but not AccessDenied', async () => {
      double.inject({code: 'InternalFailure', times: 1})
      assert.equal((await iam.send(new GetUserCommand({UserName: 'bob'}))).$metadata.attempts, 2)

      double.inject({action: 'GetRole', code: 'AccessDenied', times: 5})
      const error = await failure(iam.send(new GetRoleCommand({RoleName: 'user-bob'})))
      assert.equal(error.name, 'AccessDenied')
      assert.equal(error.$metadata.httpStatusCode, 403)
      assert.equal(double.calls.filter((c) => c.action === 'GetRole').length, 1)
    })

    it('refuses an unknown access key with InvalidClientTokenId', async () => {
      const stranger = iamAs({accessKeyId: 'ASIAUNKNOWNUNKNOWN00', secretAccessKey: 'x', sessionToken: 'y'})
      const error = await failure(stranger.send(new GetUserCommand({UserName: 'alice'})))
      assert.equal(error.name, 'InvalidClientTokenId')
      assert.equal(error.$metadata.httpStatusCode, 403)
      assert.equal(double.calls[0].caller, null)
    })

    it('adds the configured latency to a call', async () => {
      double.setLatency(60, 'GetUser')
      const start = Date.now()
      await iam.send(new GetUserCommand({UserName: 'bob'}))
      assert.ok(Date.now() - start >= 55, `took ${Date.now() - start} ms`)
    })
  })

  describe('STS', () => {
    it('identifies the instance credentials as the instance role’s session', async () => {
      const me = await sts.send(new GetCallerIdentityCommand({}))
      assert.equal(me.Arn, HOST_SESSION_ARN)
      assert.equal(me.UserId, 'AROAANALYTICSHOST:i-0123456789abcdef0')
      assert.equal(me.Account, ACCOUNT)
    })

    it('assumes a role whose trust policy names the instance role, and the credentials work', async () => {
      const before = Date.now()
      const out = await assume({RoleArn: roleArn('user-alice', '/ec2userkeyd/'), RoleSessionName: 'alice'})
      const creds = out.Credentials!
      assert.match(creds.AccessKeyId!, /^ASIA[A-Z0-9]{16}$/)
      assert.notEqual(creds.AccessKeyId, double.instanceCredentials.accessKeyId)
      const lifetime = creds.Expiration!.getTime() - before
      assert.ok(lifetime > 3590_000 && lifetime <= 3601_000, `lifetime ${lifetime}`)
      assert.equal(out.AssumedRoleUser?.Arn, `arn:aws:sts::${ACCOUNT}:assumed-role/user-alice/alice`)
      assert.equal(out.PackedPolicySize, undefined)

      const asAlice = stsAs({
        accessKeyId: creds.AccessKeyId!,
        secretAccessKey: creds.SecretAccessKey!,
        sessionToken: creds.SessionToken!,
      })
      const me = await asAlice.send(new GetCallerIdentityCommand({}))
      assert.equal(me.Arn, `arn:aws:sts::${ACCOUNT}:assumed-role/user-alice/alice`)
      assert.equal(me.UserId, 'AROAUSERALICE:alice')
      assert.deepEqual(
        double.assumeRoleLog.map((r) => [r.result, r.callerArn, r.accessKeyId]),
        [['ok', HOST_SESSION_ARN, creds.AccessKeyId]],
      )
      assert.equal(double.calls.at(-1)?.caller, me.Arn)
    })

    it('issues fresh credentials on every call', async () => {
      const a = await assume({RoleArn: roleArn('user-bob')})
      const b = await assume({RoleArn: roleArn('user-bob')})
      assert.notEqual(a.Credentials?.AccessKeyId, b.Credentials?.AccessKeyId)
      assert.notEqual(a.Credentials?.SessionToken, b.Credentials?.SessionToken)
    })

    it('admits through the account root and a StringLike condition on aws:PrincipalArn', async () => {
      await assume({RoleArn: roleArn('user-bob')})
      await assume({RoleArn: roleArn('user-frank')})
      assert.deepEqual(
        double.assumeRoleLog.map((r) => r.result),
        ['ok', 'ok'],
      )
    })

    it('refuses with AccessDenied when the trust policy does not admit the caller', async () => {
      for (const name of ['user-carol', 'user-dave', 'user-erin', 'no-such-role', 'analytics-host']) {
        const arn = roleArn(name)
        const error = await failure(assume({RoleArn: arn}))
        assert.equal(error.name, 'AccessDenied', name)
        assert.equal(
          error.message,
          `User: ${HOST_SESSION_ARN} is not authorized to perform: sts:AssumeRole on resource: ${arn}`,
        )
      }
      // A role ARN with the wrong path is not the role.
      await failure(assume({RoleArn: roleArn('user-alice')}))
      assert.deepEqual(
        double.assumeRoleLog.map((r) => r.result),
        Array(6).fill('AccessDenied'),
      )
    })

    it('sets a source identity only where the trust policy allows sts:SetSourceIdentity', async () => {
      const ok = await assume({RoleArn: roleArn('user-alice', '/ec2userkeyd/'), SourceIdentity: 'alice'})
      assert.equal(ok.SourceIdentity, 'alice')
      const error = await failure(assume({RoleArn: roleArn('user-bob'), SourceIdentity: 'bob'}))
      assert.equal(error.name, 'AccessDenied')
      assert.match(error.message, /not authorized to perform: sts:SetSourceIdentity on resource/)
      assert.deepEqual(
        double.assumeRoleLog.map((r) => [r.sourceIdentity, r.result]),
        [
          ['alice', 'ok'],
          ['bob', 'AccessDenied'],
        ],
      )
    })

    it('caps a chained session at one hour, whatever the role allows', async () => {
      const arn = roleArn('user-alice', '/ec2userkeyd/')
      const error = await failure(assume({RoleArn: arn, DurationSeconds: 7200}))
      assert.equal(error.name, 'ValidationError')
      assert.equal(
        error.message,
        'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.',
      )
      const short = await failure(assume({RoleArn: arn, DurationSeconds: 899}))
      assert.match(short.message, /greater than or equal to 900/)
      await assume({RoleArn: arn, DurationSeconds: 3600})
      assert.deepEqual(
        double.assumeRoleLog.map((r) => [r.durationSeconds, r.result]),
        [
          [7200, 'ValidationError'],
          [899, 'ValidationError'],
          [3600, 'ok'],
        ],
      )
    })

    it('checks the session policy: JSON, session name, size, and reports the packed size', async () => {
      const arn = roleArn('user-bob')
      const withPolicy = await assume({
        RoleArn: arn,
        Policy: JSON.stringify(readS3),
        PolicyArns: [{arn: policyArn('team-02')}],
      })
      assert.equal(typeof withPolicy.PackedPolicySize, 'number')
      assert.ok(withPolicy.PackedPolicySize! > 0 && withPolicy.PackedPolicySize! < 100)
      assert.deepEqual(double.assumeRoleLog[0].policyArns, [policyArn('team-02')])

      const malformed = await failure(assume({RoleArn: arn, Policy: '{"Statement": ['}))
      assert.equal(malformed.name, 'MalformedPolicyDocumentException')
      const badName = await failure(assume({RoleArn: arn, RoleSessionName: 'has space'}))
      assert.equal(badName.name, 'ValidationError')
      const huge = {
        Version: '2012-10-17',
        Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: 'x'.repeat(2000)}],
      }
      const tooLong = await failure(
        assume({RoleArn: arn, Policy: JSON.stringify(huge), PolicyArns: [{arn: policyArn('team-02')}]}),
      )
      assert.equal(tooLong.name, 'ValidationError')
      assert.match(tooLong.message, /exceeds the limit of 2048/)
    })

    it('refuses a session policy that packs over the modelled limit', async () => {
      const tight = await startAwsDouble({
        snapshot: accountSnapshot(),
        instanceRole: 'analytics-host',
        packedPolicyLimit: 50,
      })
      const client = new STSClient({
        endpoint: tight.url,
        region: 'us-east-1',
        credentials: tight.instanceCredentials,
      })
      try {
        const error = await failure(
          client.send(
            new AssumeRoleCommand({
              RoleArn: roleArn('user-bob'),
              RoleSessionName: 'bob',
              Policy: JSON.stringify(readS3),
            }),
          ),
        )
        assert.equal(error.name, 'PackedPolicyTooLargeException')
        assert.match(error.message, /^Packed policy consumes \d+% of allotted space/)
        assert.equal(tight.assumeRoleLog[0].result, 'PackedPolicyTooLarge')
      } finally {
        client.destroy()
        await tight.stop()
      }
    })

    it('logs an AssumeRole refused by an injected failure', async () => {
      double.inject({action: 'AssumeRole', code: 'AccessDenied', times: 1})
      await failure(assume({RoleArn: roleArn('user-bob')}))
      assert.deepEqual(
        double.assumeRoleLog.map((r) => [r.roleArn, r.result]),
        [[roleArn('user-bob'), 'AccessDenied']],
      )
    })
  })

  describe('IAM writes', () => {
    const trustHost = JSON.stringify(trust(allow('sts:AssumeRole', {AWS: HOST_ROLE_ARN})))

    it('creates a role the snapshot, GetRole and AssumeRole all see', async () => {
      const created = await iam.send(
        new CreateRoleCommand({
          RoleName: 'user-gina',
          Path: '/ec2userkeyd/',
          AssumeRolePolicyDocument: trustHost,
          Description: 'for gina',
          MaxSessionDuration: 7200,
          PermissionsBoundary: policyArn('team-11'),
          Tags: [{Key: 'owner', Value: 'gina'}],
        }),
      )
      assert.equal(created.Role?.Arn, roleArn('user-gina', '/ec2userkeyd/'))
      assert.match(created.Role!.RoleId!, /^AROA[A-Z0-9]{17}$/)
      const stored = double.snapshot.roles.get('user-gina')!
      assert.equal(stored.maxSessionDuration, 7200)
      assert.deepEqual(stored.tags, {owner: 'gina'})
      assert.equal(stored.permissionsBoundaryArn, policyArn('team-11'))
      const got = (await iam.send(new GetRoleCommand({RoleName: 'user-gina'}))).Role!
      assert.equal(decodeURIComponent(got.AssumeRolePolicyDocument!), trustHost, 'answered as sent')
      assert.equal(
        (await assume({RoleArn: created.Role!.Arn!})).AssumedRoleUser?.Arn,
        `arn:aws:sts::${ACCOUNT}:assumed-role/user-gina/alice`,
      )

      const again = await failure(
        iam.send(new CreateRoleCommand({RoleName: 'USER-GINA', AssumeRolePolicyDocument: trustHost})),
      )
      assert.equal(again.name, 'EntityAlreadyExistsException')
      assert.equal(again.$metadata.httpStatusCode, 409)
    })

    it('refuses trust policies that are malformed or name a principal that does not exist', async () => {
      const bad = await failure(
        iam.send(new CreateRoleCommand({RoleName: 'user-hal', AssumeRolePolicyDocument: '{not json'})),
      )
      assert.equal(bad.name, 'MalformedPolicyDocumentException')
      const ghost = JSON.stringify(trust(allow('sts:AssumeRole', {AWS: roleArn('ghost')})))
      const unknown = await failure(
        iam.send(new CreateRoleCommand({RoleName: 'user-hal', AssumeRolePolicyDocument: ghost})),
      )
      assert.equal(unknown.name, 'MalformedPolicyDocumentException')
      assert.match(unknown.message, /Invalid principal/)
      assert.equal(double.snapshot.roles.has('user-hal'), false)

      const update = await failure(
        iam.send(new UpdateAssumeRolePolicyCommand({RoleName: 'user-bob', PolicyDocument: ghost})),
      )
      assert.equal(update.name, 'MalformedPolicyDocumentException')
      await iam.send(new UpdateAssumeRolePolicyCommand({RoleName: 'user-bob', PolicyDocument: trustHost}))
      assert.deepEqual(double.snapshot.roles.get('user-bob')!.trustPolicy, JSON.parse(trustHost))
    })

    it('puts, reads back and deletes inline policies within the 10,240-character quota', async () => {
      await iam.send(new CreateRoleCommand({RoleName: 'user-ivy', AssumeRolePolicyDocument: trustHost}))
      const text = JSON.stringify(readS3, null, 2)
      await iam.send(
        new PutRolePolicyCommand({RoleName: 'user-ivy', PolicyName: 'home', PolicyDocument: text}),
      )
      const got = await iam.send(new GetRolePolicyCommand({RoleName: 'user-ivy', PolicyName: 'home'}))
      assert.equal(decodeURIComponent(got.PolicyDocument!), text)

      const malformed = await failure(
        iam.send(
          new PutRolePolicyCommand({
            RoleName: 'user-ivy',
            PolicyName: 'x',
            PolicyDocument: '{"Statement": {"Effect": "Allow"}}',
          }),
        ),
      )
      assert.equal(malformed.name, 'MalformedPolicyDocumentException')

      const big = JSON.stringify({
        Statement: [
          {
            Effect: 'Allow',
            Action: 's3:GetObject',
            Resource: `arn:aws:s3:::${'b'.repeat(10240 - 120 - text.length)}`,
          },
        ],
      })
      await iam.send(new PutRolePolicyCommand({RoleName: 'user-ivy', PolicyName: 'big', PolicyDocument: big}))
      // LimitExceeded is in the SDK's list of throttling codes, so it is retried: ask for one attempt.
      const once = iamAs(double.instanceCredentials, 1)
      const over = await failure(
        once.send(
          new PutRolePolicyCommand({
            RoleName: 'user-ivy',
            PolicyName: 'more',
            PolicyDocument: JSON.stringify(readS3),
          }),
        ),
      )
      assert.equal(over.name, 'LimitExceededException')
      assert.equal(over.message, 'Maximum policy size of 10240 bytes exceeded for role user-ivy')
      assert.deepEqual([...double.snapshot.roles.get('user-ivy')!.inline.keys()], ['home', 'big'])

      await iam.send(new DeleteRolePolicyCommand({RoleName: 'user-ivy', PolicyName: 'big'}))
      const gone = await failure(
        iam.send(new DeleteRolePolicyCommand({RoleName: 'user-ivy', PolicyName: 'big'})),
      )
      assert.equal(gone.name, 'NoSuchEntityException')
    })

    it('attaches up to ten managed policies and refuses the eleventh', async () => {
      await iam.send(new CreateRoleCommand({RoleName: 'user-jo', AssumeRolePolicyDocument: trustHost}))
      for (let i = 1; i <= 10; i++)
        await iam.send(
          new AttachRolePolicyCommand({
            RoleName: 'user-jo',
            PolicyArn: policyArn(`team-${String(i).padStart(2, '0')}`),
          }),
        )
      const once = iamAs(double.instanceCredentials, 1)
      const eleventh = await failure(
        once.send(new AttachRolePolicyCommand({RoleName: 'user-jo', PolicyArn: policyArn('team-11')})),
      )
      assert.equal(eleventh.name, 'LimitExceededException')
      assert.equal(eleventh.$metadata.httpStatusCode, 409)
      assert.equal(double.snapshot.roles.get('user-jo')!.attached.length, 10)

      const missing = await failure(
        iam.send(new AttachRolePolicyCommand({RoleName: 'user-bob', PolicyArn: policyArn('nope')})),
      )
      assert.equal(missing.name, 'NoSuchEntityException')

      await iam.send(new DetachRolePolicyCommand({RoleName: 'user-jo', PolicyArn: policyArn('team-01')}))
      assert.equal(double.snapshot.roles.get('user-jo')!.attached.length, 9)
      const conflict = await failure(iam.send(new DeleteRoleCommand({RoleName: 'user-jo'})))
      assert.equal(conflict.name, 'DeleteConflictException')
    })

    it('tags, untags, sets and clears a boundary, and deletes an empty role', async () => {
      await iam.send(
        new CreateRoleCommand({
          RoleName: 'user-kim',
          AssumeRolePolicyDocument: trustHost,
          Tags: [{Key: 'a', Value: '1'}],
        }),
      )
      await iam.send(new TagRoleCommand({RoleName: 'user-kim', Tags: [{Key: 'b', Value: '2'}]}))
      await iam.send(new UntagRoleCommand({RoleName: 'user-kim', TagKeys: ['a']}))
      assert.deepEqual(double.snapshot.roles.get('user-kim')!.tags, {b: '2'})

      await iam.send(
        new PutRolePermissionsBoundaryCommand({
          RoleName: 'user-kim',
          PermissionsBoundary: policyArn('team-05'),
        }),
      )
      assert.equal(
        (await iam.send(new GetRoleCommand({RoleName: 'user-kim'}))).Role?.PermissionsBoundary
          ?.PermissionsBoundaryArn,
        policyArn('team-05'),
      )
      await iam.send(new DeleteRolePermissionsBoundaryCommand({RoleName: 'user-kim'}))
      assert.equal(double.snapshot.roles.get('user-kim')!.permissionsBoundaryArn, null)

      await iam.send(new DeleteRoleCommand({RoleName: 'user-kim'}))
      const gone = await failure(iam.send(new GetRoleCommand({RoleName: 'user-kim'})))
      assert.equal(gone.name, 'NoSuchEntityException')
    })
  })

  describe('configuration from the environment', () => {
    it('is reached through AWS_ENDPOINT_URL_IAM / AWS_ENDPOINT_URL_STS by clients given no endpoint', async () => {
      const saved = {...process.env}
      Object.assign(process.env, double.env())
      delete process.env.AWS_PROFILE
      try {
        const envIam = new IAMClient({})
        const envSts = new STSClient({})
        clients.push(envIam, envSts)
        assert.equal((await envSts.send(new GetCallerIdentityCommand({}))).Arn, HOST_SESSION_ARN)
        assert.equal((await envIam.send(new GetUserCommand({UserName: 'carol'}))).User?.UserName, 'carol')
      } finally {
        process.env = saved
      }
      assert.deepEqual(
        double.calls.map((c) => [c.service, c.action]),
        [
          ['sts', 'GetCallerIdentity'],
          ['iam', 'GetUser'],
        ],
      )
    })
  })

  describe('standalone launcher (main.ts)', () => {
    it('prints {url, env}, serves the SDK and its control API, and stops on SIGTERM', async function () {
      this.timeout(20_000)
      const dir = mkdtempSync(join(tmpdir(), 'aws-double-'))
      const file = join(dir, 'account.json')
      writeFileSync(
        file,
        JSON.stringify({
          RoleDetailList: [
            {
              RoleName: 'host',
              RoleId: 'AROAHOST',
              Arn: roleArn('host'),
              Path: '/',
              AssumeRolePolicyDocument: trust(allow('sts:AssumeRole', {Service: 'ec2.amazonaws.com'})),
            },
          ],
        }),
      )
      const main = fileURLToPath(new URL('./support/aws-double/main.ts', import.meta.url))
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', main, '--account', file, '--instance-role', 'host'],
        {stdio: ['ignore', 'pipe', 'inherit']},
      )
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      try {
        const line = await new Promise<string>((resolve, reject) => {
          createInterface({input: child.stdout!}).once('line', resolve)
          child.once('exit', (code) => reject(new Error(`launcher exited (${code}) before printing`)))
        })
        const {url, env, unset} = JSON.parse(line) as {
          url: string
          env: Record<string, string>
          unset: string[]
        }
        assert.equal(env.AWS_ENDPOINT_URL_IAM, url)
        assert.ok(unset.includes('AWS_PROFILE'))
        const client = new STSClient({
          endpoint: env.AWS_ENDPOINT_URL_STS,
          region: env.AWS_REGION,
          credentials: {
            accessKeyId: env.AWS_ACCESS_KEY_ID,
            secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
            sessionToken: env.AWS_SESSION_TOKEN,
          },
        })
        clients.push(client)
        assert.equal(
          (await client.send(new GetCallerIdentityCommand({}))).Arn,
          `arn:aws:sts::${ACCOUNT}:assumed-role/host/i-0123456789abcdef0`,
        )
        const state = (await (await fetch(`${url}/__double/state`)).json()) as {calls: {action: string}[]}
        assert.deepEqual(
          state.calls.map((c) => c.action),
          ['GetCallerIdentity'],
        )
      } finally {
        child.kill('SIGTERM')
      }
      assert.equal(await exited, 0)
    })
  })
})
