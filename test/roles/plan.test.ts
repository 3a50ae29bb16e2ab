import assert from 'node:assert/strict'

import type {InstanceRole, RolePolicies, UserPolicies} from '../../src/lib/iam/model.js'
import {OfflineIamSource} from '../../src/lib/aws/offline.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {Config, defaultConfig} from '../../src/lib/config/schema.js'
import type {PolicyDocument} from '../../src/lib/iam/document.js'
import {desiredRole, judgedByPrincipal, MANAGED_TAG, trustPolicyFor} from '../../src/lib/roles/desired.js'
import {planRoleSync, samePolicy} from '../../src/lib/roles/plan.js'
import {localNameMatcher} from '../../src/lib/roles/select.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname
const INSTANCE_ROLE: InstanceRole = {
  name: 'analytics-host',
  arn: 'arn:aws:iam::123456789012:role/service-role/analytics-host',
  accountId: '123456789012',
  source: 'configured',
}

async function userPolicies(name: string): Promise<UserPolicies> {
  const source = new OfflineIamSource(await loadAccountSnapshot(accountFile), 'analytics-host')
  return (await source.getUserPolicies(name))!
}

function config(change: (c: Config) => void = () => {}): Config {
  const c = defaultConfig()
  change(c)
  return c
}

/** The role a first sync would leave behind: exactly the desired role. */
function roleAsDesired(desired: ReturnType<typeof desiredRole>): RolePolicies {
  return {
    role: {
      name: desired.name,
      arn: desired.arn,
      id: 'AROAEXAMPLE',
      path: '/',
      trustPolicy: JSON.parse(JSON.stringify(desired.trustPolicy)),
      tags: {...desired.tags},
      permissionsBoundaryArn: desired.permissionsBoundaryArn,
      maxSessionDuration: 3600,
    },
    inline: desired.inline.map((p) => ({name: p.name, document: JSON.parse(p.text)})),
    managed: desired.attached.map((p) => ({
      ...p,
      versionId: 'v1',
      document: {Version: '2012-10-17', Statement: []},
    })),
    permissionsBoundary: null,
  }
}

describe('roles sync: the desired role and its plan', () => {
  it('trusts only the instance role when instance_role_linked is on', () => {
    const {document} = trustPolicyFor(INSTANCE_ROLE, true)
    assert.deepEqual(document, {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: {AWS: INSTANCE_ROLE.arn},
          Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
        },
      ],
    })
  })

  it('trusts any role of the account, without a wildcard principal, when instance_role_linked is off', () => {
    const {document} = trustPolicyFor(INSTANCE_ROLE, false)
    assert.deepEqual(document, {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: {AWS: 'arn:aws:iam::123456789012:root'},
          Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'],
          Condition: {ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:role/*'}},
        },
      ],
    })
  })

  it("copies alice's policies with ${aws:username} written out, and attaches her managed ones", async () => {
    // Given alice: inline home-prefix with ${aws:username}, acme-shared-read, group data-science
    const desired = desiredRole(await userPolicies('alice'), {
      roleName: 'user-alice',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    // Then the names cannot collide, the variable is resolved, and both managed policies are attached
    assert.deepEqual(
      desired.inline.map((p) => p.name),
      ['user.home-prefix', 'group.data-science.query-data'],
    )
    const home = desired.inline[0].text
    assert.match(home, /acme-analytics-home\/alice\/\*/)
    assert.match(home, /"s3:prefix":"alice\/\*"/)
    assert.doesNotMatch(home, /\$\{/)
    assert.deepEqual(
      desired.attached.map((p) => p.name),
      ['acme-shared-read', 'AmazonAthenaFullAccess'],
    )
    assert.deepEqual(desired.problems, [])
  })

  it("decides carol's principal tags and aws:username condition for her", async () => {
    const desired = desiredRole(await userPolicies('carol'), {
      roleName: 'user-carol',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    const all = desired.inline.map((p) => p.text).join('\n')
    assert.match(all, /acme-analytics-genomics\/\*/)
    assert.match(all, /"aws:ResourceTag\/cost-center":"cc-42"/)
    assert.doesNotMatch(all, /aws:username|PrincipalTag/)
  })

  it('lists user-attached managed policies first, then each group in name order, each once', async () => {
    // Given bob: no managed policy of his own; groups data-science (Athena) and engineering (acme-shared-read)
    const desired = desiredRole(await userPolicies('bob'), {
      roleName: 'user-bob',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    assert.deepEqual(
      desired.attached.map((p) => p.name),
      ['AmazonAthenaFullAccess', 'acme-shared-read'],
    )
    assert.equal(desired.permissionsBoundaryArn, 'arn:aws:iam::123456789012:policy/developer-boundary')
  })

  it('treats a policy with principal variables or principal-key conditions as judged by the principal', () => {
    const plain: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}],
    }
    const variable: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/${aws:userid}/*'}],
    }
    const tagged: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 's3:GetObject',
          Resource: '*',
          Condition: {StringEquals: {'aws:PrincipalTag/team': 'x'}},
        },
      ],
    }
    const requestKey: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 's3:GetObject',
          Resource: '*',
          Condition: {IpAddress: {'aws:SourceIp': '10.0.0.0/8'}},
        },
      ],
    }
    assert.equal(judgedByPrincipal(plain), false)
    assert.equal(judgedByPrincipal(variable), true)
    assert.equal(judgedByPrincipal(tagged), true)
    assert.equal(judgedByPrincipal(requestKey), false)
  })

  it('plans nothing for a role that already holds exactly what the user has', async () => {
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      const desired = desiredRole(await userPolicies(name), {
        roleName: `user-${name}`,
        config: config(),
        instanceRole: INSTANCE_ROLE,
      })
      const plan = planRoleSync(desired, roleAsDesired(desired))
      assert.deepEqual(plan.changes, [], name)
      assert.equal(plan.error, null, name)
    }
  })

  it('compares trust policies by meaning, not by text', async () => {
    // Given a role whose trust says the same thing in another spelling
    const desired = desiredRole(await userPolicies('erin'), {
      roleName: 'user-erin',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    const current = roleAsDesired(desired)
    current.role.trustPolicy = {
      Statement: [
        {
          Sid: 'FromTheInstanceRole',
          Action: ['sts:setsourceidentity', 'sts:AssumeRole'],
          Principal: {AWS: [INSTANCE_ROLE.arn]},
          Effect: 'Allow',
        },
      ],
      Version: '2012-10-17',
    }
    // Then no update is planned
    assert.deepEqual(planRoleSync(desired, current).changes, [])
    // But a trust that admits someone else is replaced
    current.role.trustPolicy = {
      Version: '2012-10-17',
      Statement: [
        {Effect: 'Allow', Principal: {AWS: 'arn:aws:iam::123456789012:root'}, Action: 'sts:AssumeRole'},
      ],
    }
    assert.deepEqual(planRoleSync(desired, current).changes, [
      {op: 'update-trust', target: INSTANCE_ROLE.arn},
    ])
  })

  it('judges inline documents alike whatever their key order or list spelling', () => {
    const a: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::b/*']}],
    }
    const b: PolicyDocument = {
      Statement: {Resource: 'arn:aws:s3:::b/*', Action: ['S3:GetObject'], Effect: 'Allow'},
      Version: '2012-10-17',
    }
    const c: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::B/*']}],
    }
    assert.equal(samePolicy(a, b), true)
    assert.equal(samePolicy(a, c), false, 'resource ARNs are case-sensitive')
  })

  it('orders the changes to an existing role so permissions go before they come', async () => {
    // Given a managed role of bob's with a wrong trust, no boundary, an extra attached and inline policy
    const desired = desiredRole(await userPolicies('bob'), {
      roleName: 'user-bob',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    const current = roleAsDesired(desired)
    current.role.trustPolicy = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Principal: {Service: 'ec2.amazonaws.com'}, Action: 'sts:AssumeRole'}],
    }
    current.role.permissionsBoundaryArn = null
    current.role.tags = {[MANAGED_TAG]: 'true'}
    current.managed = [
      {
        name: 'AmazonS3ReadOnlyAccess',
        arn: 'arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess',
        versionId: 'v3',
        document: {Statement: []},
      },
    ]
    current.inline = [
      {
        name: 'legacy',
        document: {Version: '2012-10-17', Statement: [{Effect: 'Allow', Action: '*', Resource: '*'}]},
      },
    ]
    // When planned
    const plan = planRoleSync(desired, current)
    // Then trust and boundary first, removals, additions, tags last
    assert.deepEqual(
      plan.changes.map((c) => c.op),
      [
        'update-trust',
        'set-boundary',
        'detach-policy',
        'delete-inline',
        'put-inline',
        'put-inline',
        'put-inline',
        'attach-policy',
        'attach-policy',
        'tag-role',
      ],
    )
    assert.deepEqual(plan.changes.at(-1), {op: 'tag-role', target: 'ec2userkeyd:iam-user=bob'})
  })

  it('puts inline policies that shrink before those that grow', async () => {
    // Given a role whose group.data-science.query-data is larger now than it will be, and user.scratch-space smaller
    const desired = desiredRole(await userPolicies('bob'), {
      roleName: 'user-bob',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    const current = roleAsDesired(desired)
    const big: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 'athena:*',
          Resource: Array.from({length: 40}, (_, i) => `arn:aws:athena:*:*:workgroup/w${i}`),
        },
      ],
    }
    const small: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:*', Resource: '*'}],
    }
    current.inline = current.inline.map((p) =>
      p.name === 'user.scratch-space'
        ? {...p, document: small}
        : p.name === 'group.data-science.query-data'
          ? {...p, document: big}
          : p,
    )
    // Then the shrinking one goes first
    assert.deepEqual(
      planRoleSync(desired, current)
        .changes.filter((c) => c.op === 'put-inline')
        .map((c) => c.target),
      ['group.data-science.query-data', 'user.scratch-space'],
    )
  })

  it('removes a boundary the user does not have, last of the permission changes', async () => {
    const desired = desiredRole(await userPolicies('erin'), {
      roleName: 'user-erin',
      config: config(),
      instanceRole: INSTANCE_ROLE,
    })
    const current = roleAsDesired(desired)
    current.role.permissionsBoundaryArn = 'arn:aws:iam::123456789012:policy/developer-boundary'
    assert.deepEqual(planRoleSync(desired, current).changes, [
      {op: 'delete-boundary', target: 'arn:aws:iam::123456789012:policy/developer-boundary'},
    ])
  })

  it('fails the user when two policies would get the same inline name', async () => {
    // Given group "a.b" with policy "c" and group "a" with policy "b.c": both would be group.a.b.c
    const user = await userPolicies('erin')
    const doc: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}],
    }
    user.groups = [
      {
        name: 'a.b',
        arn: 'arn:aws:iam::123456789012:group/a.b',
        inline: [{name: 'c', document: doc}],
        managed: [],
      },
      {
        name: 'a',
        arn: 'arn:aws:iam::123456789012:group/a',
        inline: [{name: 'b.c', document: doc}],
        managed: [],
      },
    ]
    const desired = desiredRole(user, {roleName: 'user-erin', config: config(), instanceRole: INSTANCE_ROLE})
    const plan = planRoleSync(desired, null)
    assert.deepEqual(plan.changes, [])
    assert.match(plan.error ?? '', /would share the inline policy name 'group\.a\.b\.c'/)
  })

  it('fails the user when an inline policy name would pass 128 characters', async () => {
    const user = await userPolicies('erin')
    const doc: PolicyDocument = {
      Version: '2012-10-17',
      Statement: [{Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}],
    }
    user.groups = [
      {
        name: 'g'.repeat(100),
        arn: 'arn:aws:iam::123456789012:group/g',
        inline: [{name: 'p'.repeat(40), document: doc}],
        managed: [],
      },
    ]
    const plan = planRoleSync(
      desiredRole(user, {roleName: 'user-erin', config: config(), instanceRole: INSTANCE_ROLE}),
      null,
    )
    assert.match(plan.error ?? '', /147 characters, over IAM's 128/)
  })

  it('skips a policy none of whose statements can apply to the user', async () => {
    // Given an inline policy that only applies when aws:username is someone else
    const user = await userPolicies('erin')
    user.inline = [
      {
        name: 'only-for-frank',
        document: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Action: 's3:*',
              Resource: '*',
              Condition: {StringEquals: {'aws:username': 'frank'}},
            },
          ],
        },
      },
    ]
    const desired = desiredRole(user, {roleName: 'user-erin', config: config(), instanceRole: INSTANCE_ROLE})
    assert.deepEqual(desired.inline, [])
  })
})

describe('roles sync: local names from iam_name_pattern', () => {
  it('takes identical names for {username}', () => {
    assert.equal(localNameMatcher('{username}')('alice'), 'alice')
  })

  it('strips a prefix, and ignores IAM users without it', () => {
    const match = localNameMatcher('iam-{username}')
    assert.equal(match('iam-alice'), 'alice')
    assert.equal(match('alice'), null)
    assert.equal(match('iam-'), null)
  })

  it('reads {{ and }} as literal braces and other characters literally', () => {
    const match = localNameMatcher('{{x}}.{username}')
    assert.equal(match('{x}.bob'), 'bob')
    assert.equal(match('{x}Xbob'), null, 'the dot is no wildcard')
  })

  it('names no local user for a pattern without {username}', () => {
    assert.equal(localNameMatcher('shared')('shared'), null)
  })

  it('requires a repeated {username} to repeat the same name', () => {
    const match = localNameMatcher('{username}-{username}')
    assert.equal(match('al-al'), 'al')
    assert.equal(match('al-bo'), null)
  })
})
