import assert from 'node:assert/strict'

import type {ManagedPolicy, RolePolicies, UserPolicies} from '../../src/lib/iam/model.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument, Statement} from '../../src/lib/iam/document.js'

const doc = (...Statement: Statement[]): PolicyDocument => ({Version: '2012-10-17', Statement})

function user(inline: PolicyDocument[], extra: Partial<UserPolicies> = {}): UserPolicies {
  return {
    user: {name: 'alice', arn: 'arn:aws:iam::123456789012:user/alice', id: 'AIDAALICE', path: '/', tags: {team: 'genomics'}, permissionsBoundaryArn: null},
    inline: inline.map((document, i) => ({name: `p${i}`, document})),
    managed: [],
    groups: [],
    permissionsBoundary: null,
    ...extra,
  }
}

function role(...docs: PolicyDocument[]): RolePolicies {
  return {
    role: {
      name: 'host',
      arn: 'arn:aws:iam::123456789012:role/host',
      id: 'AROAHOST',
      path: '/',
      trustPolicy: doc(),
      tags: {},
      permissionsBoundaryArn: null,
      maxSessionDuration: 3600,
    },
    inline: docs.map((document, i) => ({name: `r${i}`, document})),
    managed: [],
    permissionsBoundary: null,
  }
}

const broadRole = role(doc({Effect: 'Allow', Action: '*', Resource: '*'}))
const compile = (u: UserPolicies, r: RolePolicies = broadRole, compress = true) =>
  compileSessionPolicy(u, r, {compress, accountId: '123456789012', catalog: createActionCatalog(), roles: [], session: {name: 'alice', sourceIdentity: 'alice'}})
const isChainingDeny = (s: Statement) => s.Effect === 'Deny' && [s.Action ?? []].flat().length > 0 && [s.Action ?? []].flat().every((a) => a.startsWith('sts:'))
/** The policy's statements but step c's Deny of role chaining (test/policy/session-escapes.test.ts pins that one). */
const statements = (policy: string | null) => (policy ? (JSON.parse(policy) as {Statement: Statement[]}).Statement.filter((s) => !isChainingDeny(s)) : [])

describe('the session-policy compiler', () => {
  it("resolves ${aws:username} and ${aws:PrincipalTag/team} for the user, since a role session has neither", async () => {
    const result = await compile(
      user([doc({Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::home/${aws:username}/*', 'arn:aws:s3:::data-${aws:PrincipalTag/team}/*']})]),
      broadRole,
      false,
    )
    assert.deepEqual(statements(result.policy)[0].Resource, ['arn:aws:s3:::home/alice/*', 'arn:aws:s3:::data-genomics/*'])
  })

  it('drops a principal condition true for the user, and a statement whose principal condition is false', async () => {
    const result = await compile(
      user([
        doc(
          {Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: {StringEquals: {'aws:username': 'alice'}}},
          {Effect: 'Allow', Action: 's3:PutObject', Resource: '*', Condition: {StringEquals: {'aws:username': 'bob'}}},
        ),
      ]),
      broadRole,
      false,
    )
    assert.deepEqual(statements(result.policy), [{Effect: 'Allow', Action: 's3:GetObject', Resource: '*'}])
  })

  it('drops an Allow whose principal variable has no value for the user: it matches nothing for the user either', async () => {
    const result = await compile(user([doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::x-${aws:PrincipalTag/missing}/*'})]), broadRole, false)
    assert.equal(result.policy, null)
    assert.equal(result.grantsAnything, false)
  })

  it('folds a boundary of plain Allows on * in as Deny NotAction', async () => {
    const boundary: ManagedPolicy = {name: 'b', arn: 'arn:aws:iam::123456789012:policy/b', versionId: 'v1', document: doc({Effect: 'Allow', Action: ['s3:*', 'logs:*'], Resource: '*'})}
    const result = await compile(user([doc({Effect: 'Allow', Action: '*', Resource: '*'})], {permissionsBoundary: boundary}), broadRole, false)
    assert.deepEqual(statements(result.policy).at(-1), {Effect: 'Deny', NotAction: ['s3:*', 'logs:*'], Resource: '*'})
  })

  it('passes no managed policy by ARN when the boundary allows the user nothing', async () => {
    // Given a boundary whose only Allow is conditioned on another user's name (found by the random proof)
    const boundary: ManagedPolicy = {
      name: 'b',
      arn: 'arn:aws:iam::123456789012:policy/b',
      versionId: 'v1',
      document: doc({Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: {StringEquals: {'aws:username': 'bob'}}}),
    }
    const m: ManagedPolicy = {name: 'm', arn: 'arn:aws:iam::123456789012:policy/m', versionId: 'v1', document: doc({Effect: 'Allow', Action: 'logs:*', Resource: '*'})}
    // When alice's session policy is compiled with compression
    const result = await compile(user([], {managed: [m], permissionsBoundary: boundary}))
    // Then nothing is granted at all
    assert.equal(result.policy, null)
    assert.deepEqual(result.policyArns, [])
  })

  it('keeps s3:* under a role with s3:Get* (the Python tool dropped it)', async () => {
    const narrowRole = role(doc({Effect: 'Allow', Action: 's3:Get*', Resource: '*'}))
    const result = await compile(user([doc({Effect: 'Allow', Action: 's3:*', Resource: 'arn:aws:s3:::b/*'})]), narrowRole)
    assert.ok(result.policy, 'something remains')
    assert.deepEqual(statements(result.policy)[0].Resource, 'arn:aws:s3:::b/*')
  })

  it('prunes statements the role can never allow, and answers null when nothing remains', async () => {
    const s3Role = role(doc({Effect: 'Allow', Action: 's3:*', Resource: '*'}))
    const result = await compile(user([doc({Effect: 'Allow', Action: 'ec2:*', Resource: '*'})]), s3Role)
    assert.equal(result.policy, null)
    assert.deepEqual(result.policyArns, [])
    assert.ok(result.size.fits)
  })

  it('merges statements that differ in one list only', async () => {
    const result = await compile(
      user([doc({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::a/*'}, {Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::b/*'})]),
      broadRole,
    )
    assert.deepEqual(statements(result.policy), [{Effect: 'Allow', Action: 's3:GetObject', Resource: ['arn:aws:s3:::a/*', 'arn:aws:s3:::b/*']}])
  })

  it('never collapses actions into a wildcard that adds an action the role grants', async () => {
    // Given a role granting all of s3 and a user with two of the many s3:GetObject* actions
    const result = await compile(user([doc({Effect: 'Allow', Action: ['s3:GetObject', 's3:GetObjectAcl'], Resource: '*'})]), role(doc({Effect: 'Allow', Action: 's3:*', Resource: '*'})))
    // Then the actions stay listed
    assert.deepEqual(statements(result.policy)[0].Action, ['s3:GetObject', 's3:GetObjectAcl'])
  })

  it('says so, naming the largest statements, when the policy stays over 2,048 characters', async () => {
    const many = Array.from({length: 40}, (_, i) => ({Effect: 'Allow' as const, Action: `s3:GetObject`, Resource: `arn:aws:s3:::bucket-number-${i}-with-a-long-name/*`, Condition: {StringEquals: {'s3:ExistingObjectTag/k': `v${i}`}}}))
    const result = await compile(user([doc(...many)]))
    assert.equal(result.size.fits, false)
    assert.ok(result.size.compressed > 2048)
    assert.match(result.warnings.at(-1)!, /over AWS's limit of 2048; largest statements: #\d+ from user inline policy p0/)
  })

  describe('passing managed policies by ARN (step f)', () => {
    // A managed policy big enough that its ARN is always the shorter way to send it.
    const padding = Array.from({length: 12}, (_, i) => ({Effect: 'Allow' as const, Action: 'logs:GetLogEvents', Resource: `arn:aws:logs:us-east-1:123456789012:log-group:group-${i}:*`}))
    const managed = (...extra: Statement[]): ManagedPolicy => ({name: 'm', arn: 'arn:aws:iam::123456789012:policy/m', versionId: 'v1', document: doc(...padding, ...extra)})
    const withManaged = (m: ManagedPolicy) => user([], {managed: [m]})
    const taggedRole = (tags: Record<string, string>) => ({...broadRole, role: {...broadRole.role, tags}})

    it('sends a policy with ${aws:username} in a Resource by ARN, and the resolved statement inline', async () => {
      // Given a managed policy granting the user's own home prefix
      const result = await compile(withManaged(managed({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::home/${aws:username}/*'})))
      // Then the ARN carries the rest (the session cannot match the unresolved entry) and the home prefix goes inline
      assert.deepEqual(result.policyArns, ['arn:aws:iam::123456789012:policy/m'])
      assert.deepEqual(statements(result.policy), [{Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::home/alice/*'}])
    })

    it('never sends by ARN a policy with ${aws:username} in a NotResource (the session would match every resource)', async () => {
      const result = await compile(withManaged(managed({Effect: 'Allow', Action: 's3:GetObject', NotResource: 'arn:aws:s3:::home/${aws:username}/*'})))
      assert.deepEqual(result.policyArns, [])
    })

    for (const [condition, why] of [
      [{StringNotEquals: {'aws:username': 'bob'}}, 'the session has no user name'],
      [{StringEquals: {'aws:PrincipalType': 'User'}}, 'the session is an AssumedRole'],
      [{ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:user/*'}}, 'the session has the role ARN'],
      [{StringLike: {'s3:prefix': '${aws:userid}/*'}}, 'the session has another user id'],
    ] as const)
      it(`never sends by ARN a policy whose condition the session would judge differently (${why})`, async () => {
        const result = await compile(withManaged(managed({Effect: 'Allow', Action: 's3:ListBucket', Resource: '*', Condition: condition})))
        assert.deepEqual(result.policyArns, [])
      })

    it('sends by ARN a policy with a principal-tag condition only when the role carries the same tag value as the user', async () => {
      const m = managed({Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: {StringEquals: {'aws:PrincipalTag/team': 'genomics'}}})
      // alice is tagged team=genomics
      assert.deepEqual((await compile(withManaged(m), taggedRole({Team: 'genomics'}))).policyArns, [m.arn])
      assert.deepEqual((await compile(withManaged(m), taggedRole({team: 'physics'}))).policyArns, [])
      assert.deepEqual((await compile(withManaged(m), taggedRole({}))).policyArns, [])
    })

    it('sends by ARN a policy with a principal-tag variable both lack', async () => {
      const m = managed({Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::x-${aws:PrincipalTag/project}/*'})
      assert.deepEqual((await compile(withManaged(m), taggedRole({}))).policyArns, [m.arn])
      assert.deepEqual((await compile(withManaged(m), taggedRole({project: 'p1'}))).policyArns, [])
    })
  })
})
