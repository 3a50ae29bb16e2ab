// The compiler's guarantee over random worlds (fast-check): for every generated user (policies of
// every Version, boundary, tags), instance role, set of account roles with their trust policies
// (read by the compiler, or not), resource policy naming the instance role, and every probe
// request over every catalogued action plus one unpublished action per service, the session never
// does what the IAM user may not (however the user signs), and does less than the user within
// the instance role only with a warning saying why. Runs 10,000 worlds in CI (CI=true) and 1,000
// otherwise; COMPILER_PROOF_RUNS and COMPILER_PROOF_SEED override.
import assert from 'node:assert/strict'

import fc from 'fast-check'

import type {ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../../src/lib/iam/model.js'
import {createActionCatalog} from '../../src/lib/policy/catalog.js'
import {compileSessionPolicy} from '../../src/lib/policy/compiler.js'
import type {PolicyDocument, Statement} from '../../src/lib/iam/document.js'
import {sessionDocuments, SessionProof} from '../support/session-proof.js'

const ACCOUNT = '123456789012'
const HOST = `arn:aws:iam::${ACCOUNT}:role/host`
const USER = `arn:aws:iam::${ACCOUNT}:user/alice`

const ACTIONS = [
  's3:GetObject', 's3:PutObject', 's3:Get*', 's3:*', 's3:ListBucket', 's3:DeleteObject', 'logs:*', 'logs:GetLogEvents', 'ec2:Describe*', 'ec2:RunInstances', '*',
  'sts:AssumeRole', 'sts:*', 'sts:TagSession', 'sqs:SendMessage', 'sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueUrl', 'iam:PassRole',
]
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
  `arn:aws:iam::${ACCOUNT}:role/*`,
  `arn:aws:iam::${ACCOUNT}:role/user-*`,
  'arn:aws:iam::*:role/*',
  `arn:aws:sqs:us-east-1:${ACCOUNT}:jobs`,
]
const CONDITIONS: Array<Statement['Condition'] | undefined> = [
  undefined,
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
  {StringNotEqualsIfExists: {'aws:username': 'ivy'}},
  {StringEqualsIfExists: {'aws:username': 'bob'}},
  {Null: {'aws:username': 'true'}},
  {StringEquals: {'aws:PrincipalType': 'AssumedRole'}},
  {ArnLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:role/*'}},
  {ArnNotLike: {'aws:PrincipalArn': 'arn:aws:iam::123456789012:user/*'}},
  {StringLike: {'aws:userid': 'AROA*'}},
  {StringEquals: {'aws:PrincipalTag/team': 'physics'}},
  {'ForAnyValue:StringEquals': {'aws:PrincipalType': ['User', 'AssumedRole']}},
  {StringEquals: {'aws:SourceIdentity': 'alice'}},
  {Null: {'aws:SourceIdentity': 'false'}},
  // Credential keys: the user has long-term keys, a session token or MFA; the session none of it.
  {BoolIfExists: {'aws:MultiFactorAuthPresent': 'false'}},
  {Bool: {'aws:MultiFactorAuthPresent': 'true'}},
  {Bool: {'aws:MultiFactorAuthPresent': 'false'}},
  {NumericLessThan: {'aws:MultiFactorAuthAge': '3600'}},
  {NumericGreaterThanIfExists: {'aws:MultiFactorAuthAge': '3600'}},
  {Null: {'aws:TokenIssueTime': 'true'}},
  {Null: {'aws:TokenIssueTime': 'false'}},
  {DateGreaterThan: {'aws:TokenIssueTime': '2026-12-02T00:00:00Z'}},
]
const VERSIONS: Array<string | undefined> = ['2012-10-17', '2012-10-17', '2012-10-17', '2008-10-17', undefined]

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
const document = (stmts: Statement[], version: string | undefined = '2012-10-17'): PolicyDocument => (version ? {Version: version, Statement: stmts} : {Statement: stmts})

// Trust policies: of the instance role (EC2 and itself), of per-user roles (the instance role),
// and of roles that admit the account, the user, everyone, or the account under conditions the
// user and the session meet differently.
const ROOT = `arn:aws:iam::${ACCOUNT}:root`
const allow = (principal: unknown, condition?: Statement['Condition']): Statement => ({
  Effect: 'Allow',
  Principal: principal,
  Action: ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'],
  ...(condition ? {Condition: condition} : {}),
})
const TRUSTS: Record<string, PolicyDocument> = {
  'user-alice': document([allow({AWS: HOST})]),
  'user-bob': document([allow({AWS: HOST})]),
  shared: document([allow({AWS: ROOT})]),
  'alice-only': document([allow({AWS: USER})]),
  'any-role': document([allow({AWS: ROOT}, {ArnLike: {'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/*`}})]),
  physics: document([allow({AWS: ROOT}, {StringEquals: {'aws:PrincipalTag/team': 'physics'}})]),
  'not-alice': document([allow({AWS: ROOT}), {Effect: 'Deny', Principal: '*', Action: 'sts:AssumeRole', Condition: {StringEquals: {'aws:username': 'alice'}}}]),
  everyone: document([allow('*')]),
  'mfa-only': document([allow({AWS: ROOT}, {Bool: {'aws:MultiFactorAuthPresent': 'true'}})]),
  'source-alice': document([allow({AWS: ROOT}, {StringEquals: {'aws:SourceIdentity': 'alice'}})]),
  'old-version': document([allow({AWS: ROOT}, {StringNotEquals: {'aws:username': 'alice'}})], undefined),
}
const randomTrust = fc.record({
  Effect: fc.constantFrom<'Allow' | 'Deny'>('Allow', 'Allow', 'Deny'),
  principal: fc.constantFrom<unknown>({AWS: ROOT}, {AWS: HOST}, {AWS: USER}, '*', {Service: 'ec2.amazonaws.com'}),
  condition: fc.constantFrom(...CONDITIONS),
  version: fc.constantFrom(...VERSIONS),
})
const RESOURCE_POLICIES: Array<PolicyDocument | undefined> = [
  undefined,
  document([{Effect: 'Allow', Principal: {AWS: HOST}, Action: '*', Resource: '*'}]),
  document([{Effect: 'Allow', Principal: {AWS: HOST}, Action: 'sqs:*', Resource: '*'}]),
  document([{Effect: 'Allow', Principal: {AWS: HOST}, Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/private/*'}]),
]

const world = fc.record({
  userPolicies: fc.array(fc.record({statements: fc.array(statement, {minLength: 1, maxLength: 4}), version: fc.constantFrom(...VERSIONS)}), {minLength: 1, maxLength: 3}),
  managed: fc.boolean(),
  boundary: fc.option(fc.record({statements: fc.array(statement, {minLength: 1, maxLength: 3}), version: fc.constantFrom(...VERSIONS)}), {nil: undefined}),
  role: fc.array(statement, {minLength: 1, maxLength: 4}),
  team: fc.constantFrom('genomics', 'physics', undefined),
  roles: fc.uniqueArray(fc.constantFrom(...Object.keys(TRUSTS)), {maxLength: 5}),
  extraTrust: fc.option(randomTrust, {nil: undefined}),
  rolesReadable: fc.constantFrom(true, true, true, true, false),
  resourcePolicy: fc.constantFrom(...RESOURCE_POLICIES),
  compress: fc.boolean(),
})

const hostTrust = document([
  {Effect: 'Allow', Principal: {Service: 'ec2.amazonaws.com'}, Action: 'sts:AssumeRole'},
  allow({AWS: HOST}),
])

describe('the session-policy compiler, over random worlds', () => {
  it('never lets the session do more than the IAM user, and less only with a warning', async function () {
    this.timeout(0)
    const catalog = createActionCatalog()
    const runs = Number(process.env.COMPILER_PROOF_RUNS ?? (process.env.CI ? 10_000 : 1_000))
    await fc.assert(
      fc.asyncProperty(world, async (w) => {
        const docs = w.userPolicies.map((p) => document(p.statements.map(toStatement), p.version))
        const managed: ManagedPolicy[] = w.managed ? [{name: 'm', arn: `arn:aws:iam::${ACCOUNT}:policy/m`, versionId: 'v1', document: docs[0]}] : []
        const user: UserPolicies = {
          user: {name: 'alice', arn: USER, id: 'AIDAALICE', path: '/', tags: w.team ? {team: w.team} : {}, permissionsBoundaryArn: null},
          inline: (w.managed ? docs.slice(1) : docs).map((d, i) => ({name: `p${i}`, document: d})),
          managed,
          groups: [],
          permissionsBoundary: w.boundary ? {name: 'b', arn: `arn:aws:iam::${ACCOUNT}:policy/b`, versionId: 'v1', document: document(w.boundary.statements.map(toStatement), w.boundary.version)} : null,
        }
        const role: RolePolicies = {
          role: {name: 'host', arn: HOST, id: 'AROAHOST', path: '/', trustPolicy: hostTrust, tags: {team: 'physics'}, permissionsBoundaryArn: null, maxSessionDuration: 3600},
          inline: [{name: 'r', document: document(w.role.map(toStatement))}],
          managed: [],
          permissionsBoundary: null,
        }
        const roles: RoleTrust[] = [
          {name: 'host', arn: HOST, id: 'AROAHOST', trustPolicy: hostTrust},
          ...w.roles.map((name, i) => ({name, arn: `arn:aws:iam::${ACCOUNT}:role/${name}`, id: `AROA${i}`, trustPolicy: TRUSTS[name]})),
          ...(w.extraTrust
            ? [{name: 'random', arn: `arn:aws:iam::${ACCOUNT}:role/random`, id: 'AROARANDOM', trustPolicy: document([{...allow(w.extraTrust.principal, w.extraTrust.condition), Effect: w.extraTrust.Effect}], w.extraTrust.version)}]
            : []),
        ]
        const result = await compileSessionPolicy(user, role, {
          compress: w.compress,
          accountId: ACCOUNT,
          catalog,
          roles: w.rolesReadable ? roles : null,
          session: {name: 'alice', sourceIdentity: 'alice'},
        })
        const proof = new SessionProof(
          {
            user,
            role,
            roles,
            // A role made after the compile that trusts the instance role, and one of another account.
            otherRoles: [
              {arn: `arn:aws:iam::${ACCOUNT}:role/user-zz9new`, trustPolicy: TRUSTS['user-alice']},
              {arn: 'arn:aws:iam::999999999999:role/partner', trustPolicy: document([allow({AWS: HOST})])},
            ],
            resourcePolicy: w.resourcePolicy,
            sessionName: 'alice',
            sourceIdentity: 'alice',
          },
          result.grantsAnything ? sessionDocuments(user, result) : null,
        )
        const {overGrants, underGrants} = await proof.run({maxRequests: 150})
        const shown = `\npolicy: ${result.policy}\narns: ${result.policyArns}\nwarnings: ${result.warnings.join(' | ')}`
        assert.deepEqual(overGrants.slice(0, 1), [], `over-grant${shown}`)
        assert.ok(underGrants.length === 0 || result.warnings.length > 0, `under-grant without a warning: ${underGrants[0]}${shown}`)
      }),
      {numRuns: runs, seed: Number(process.env.COMPILER_PROOF_SEED ?? 20261202)},
    )
  })
})
