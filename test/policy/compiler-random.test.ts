// The compiler's guarantee over random policy sets (fast-check): for every generated user
// (policies, boundary, tags) and instance role, and every probe request, the compiled session
// never allows what the IAM user within the role does not, and allows less only with a warning
// saying why. Runs 10,000 sets in CI (CI=true, about 15 minutes) and 1,000 otherwise; COMPILER_PROOF_RUNS and COMPILER_PROOF_SEED override.
import assert from 'node:assert/strict'

import fc from 'fast-check'

import type {ManagedPolicy, RolePolicies, UserPolicies} from '../../src/lib/aws/model.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument, Statement} from '../../src/lib/policy/document.js'
import {generateRequests, probePair, sessionAllows, sessionPrincipalContext, userAllows, userPrincipalContext} from '../support/iam-eval/index.js'

const ACTIONS = ['s3:GetObject', 's3:PutObject', 's3:Get*', 's3:*', 's3:ListBucket', 's3:DeleteObject', 'logs:*', 'logs:GetLogEvents', 'ec2:Describe*', 'ec2:RunInstances', '*']
const RESOURCES = [
  '*',
  'arn:aws:s3:::data/*',
  'arn:aws:s3:::data',
  'arn:aws:s3:::home/${aws:username}/*',
  'arn:aws:s3:::team-${aws:PrincipalTag/team}/*',
  'arn:aws:s3:::data/private/*',
  'arn:aws:s3:::d?ta/*',
  'arn:aws:logs:us-east-1:123456789012:log-group:app*',
  'arn:aws:s3:::home/${aws:userid}/*',
  "arn:aws:s3:::home/${aws:username, 'shared'}/*",
  'arn:aws:s3:::home/shared/*',
]
const CONDITIONS: Array<Statement['Condition'] | undefined> = [
  undefined,
  undefined,
  {StringEquals: {'aws:username': 'alice'}},
  {StringEquals: {'aws:username': 'bob'}},
  {StringLike: {'s3:prefix': ['${aws:username}/*']}},
  {StringEquals: {'aws:PrincipalTag/team': 'genomics'}},
  {StringNotEquals: {'aws:PrincipalTag/team': 'genomics'}},
  {Bool: {'aws:SecureTransport': 'true'}},
  // Principal keys the session sees differently from the user (absent, or another value).
  {StringNotEquals: {'aws:username': 'alice'}},
  {StringEqualsIfExists: {'aws:username': 'bob'}},
  {Null: {'aws:username': 'true'}},
  {StringEquals: {'aws:PrincipalType': 'AssumedRole'}},
  {ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:role/*'}},
  {StringLike: {'aws:userid': 'AROA*'}},
  {StringEquals: {'aws:PrincipalTag/team': 'physics'}},
]

const some = <T>(values: T[]) => fc.uniqueArray(fc.constantFrom(...values), {minLength: 1, maxLength: 3})
const statement = fc.record({
  Effect: fc.constantFrom<'Allow' | 'Deny'>('Allow', 'Allow', 'Deny'),
  notAction: fc.constantFrom(false, false, false, true),
  actions: some(ACTIONS),
  notResource: fc.constantFrom(false, false, false, true),
  resources: some(RESOURCES),
  condition: fc.constantFrom(...CONDITIONS),
})
type StatementSpec = typeof statement extends fc.Arbitrary<infer T> ? T : never
const toStatement = (s: StatementSpec): Statement => ({
  Effect: s.Effect,
  ...(s.notAction ? {NotAction: s.actions} : {Action: s.actions}),
  ...(s.notResource ? {NotResource: s.resources} : {Resource: s.resources}),
  ...(s.condition ? {Condition: s.condition} : {}),
})
const doc = (stmts: Statement[]): PolicyDocument => ({Version: '2012-10-17', Statement: stmts})

const world = fc.record({
  userPolicies: fc.array(fc.array(statement, {minLength: 1, maxLength: 4}), {minLength: 1, maxLength: 3}),
  managed: fc.boolean(),
  boundary: fc.option(fc.array(statement, {minLength: 1, maxLength: 3}), {nil: undefined}),
  role: fc.array(statement, {minLength: 1, maxLength: 4}),
  team: fc.constantFrom('genomics', 'physics', undefined),
  compress: fc.boolean(),
})

describe('the session-policy compiler, over random policy sets', () => {
  it('never over-grants, and under-grants only with a warning', async function () {
    this.timeout(0)
    const catalog = createActionCatalog()
    const runs = Number(process.env.COMPILER_PROOF_RUNS ?? (process.env.CI ? 10_000 : 1_000))
    await fc.assert(
      fc.asyncProperty(world, async (w) => {
        const docs = w.userPolicies.map((p) => doc(p.map(toStatement)))
        const managed: ManagedPolicy[] = w.managed
          ? [{name: 'm', arn: 'arn:aws:iam::123456789012:policy/m', versionId: 'v1', document: docs[0]}]
          : []
        const user: UserPolicies = {
          user: {name: 'alice', arn: 'arn:aws:iam::123456789012:user/alice', id: 'AIDAALICE', path: '/', tags: w.team ? {team: w.team} : {}, permissionsBoundaryArn: null},
          inline: (w.managed ? docs.slice(1) : docs).map((document, i) => ({name: `p${i}`, document})),
          managed,
          groups: [],
          permissionsBoundary: w.boundary ? {name: 'b', arn: 'arn:aws:iam::123456789012:policy/b', versionId: 'v1', document: doc(w.boundary.map(toStatement))} : null,
        }
        const roleDoc = doc(w.role.map(toStatement))
        const role: RolePolicies = {
          role: {name: 'host', arn: 'arn:aws:iam::123456789012:role/host', id: 'AROAHOST', path: '/', trustPolicy: doc([]), tags: {team: 'physics'}, permissionsBoundaryArn: null, maxSessionDuration: 3600},
          inline: [{name: 'r', document: roleDoc}],
          managed: [],
          permissionsBoundary: null,
        }
        const result = await compileSessionPolicy(user, role, {compress: w.compress, accountId: '123456789012', catalog})
        const session = [...(result.policy ? [JSON.parse(result.policy) as PolicyDocument] : []), ...result.policyArns.map(() => docs[0])]
        const sides = {
          user: userPrincipalContext({name: 'alice', id: 'AIDAALICE', arn: user.user.arn, tags: user.user.tags}),
          session: sessionPrincipalContext({roleArn: role.role.arn, roleId: 'AROAHOST', sessionName: 'alice', roleTags: role.role.tags}),
        }
        const probes = await generateRequests([...docs, roleDoc, ...session, ...(user.permissionsBoundary ? [user.permissionsBoundary.document] : [])], {
          principalContext: [sides.user, sides.session],
          maxRequests: 150,
        })
        for (const probe of probes) {
          const pair = probePair(probe, sides)
          const userMay = userAllows({identity: docs, boundary: user.permissionsBoundary?.document}, pair.user) && sessionAllows({identity: [roleDoc]}, [], pair.session)
          const sessionMay = session.length > 0 && sessionAllows({identity: [roleDoc]}, session, pair.session)
          assert.ok(!sessionMay || userMay, `over-grant: ${probe.action} ${probe.resource} ${JSON.stringify(probe.context)}\npolicy: ${result.policy}\narns: ${result.policyArns}`)
          assert.ok(
            !userMay || sessionMay || result.warnings.length > 0,
            `under-grant without a warning: ${probe.action} ${probe.resource} ${JSON.stringify(probe.context)}\npolicy: ${result.policy}\narns: ${result.policyArns}`,
          )
        }
      }),
      {numRuns: runs, seed: Number(process.env.COMPILER_PROOF_SEED ?? 20261123)},
    )
  })
})
