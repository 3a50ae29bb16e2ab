// bench/issue: what a credential request costs in AWS calls and sequential round trips, with
// 50 ms added to every AWS call by the AWS test double. Cold: nothing cached but the instance
// role's identity (serve finds it at start-up); warm: the same user again.
//   node --import tsx bench/issue.ts [--latency MS] [--user NAME]
import {IAMClient} from '@aws-sdk/client-iam'
import {STSClient} from '@aws-sdk/client-sts'

import {CachedIamSource} from '../src/lib/aws/cached.js'
import {LiveIamSource} from '../src/lib/aws/live.js'
import {loadAccountSnapshot} from '../src/lib/aws/snapshot.js'
import {parseConfig} from '../src/lib/config/load.js'
import {CredentialBroker} from '../src/lib/methods/broker.js'
import {CredentialCache} from '../src/lib/methods/cache.js'
import {createActionCatalog} from '../src/lib/policy/catalog.js'
import {startAwsDouble} from '../test/support/aws-double/index.js'

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : fallback
}
const LATENCY = Number(arg('latency', '50'))
const USER = arg('user', 'bob')

const snapshot = await loadAccountSnapshot(new URL('../fixtures/account.json', import.meta.url).pathname)
const double = await startAwsDouble({snapshot, instanceRole: 'analytics-host'})
const common = {endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials}
const iam = new IAMClient(common)
const sts = new STSClient(common)
const catalog = createActionCatalog()

/** Sequential depth of the calls: a new round starts with a call that arrives after the current round's calls could have ended. */
function roundTrips(arrivals: number[]): number {
  let rounds = 0
  let roundStart = -Infinity
  for (const t of [...arrivals].sort((a, b) => a - b))
    if (t >= roundStart + LATENCY) {
      rounds++
      roundStart = t
    }
  return rounds
}

async function measure(method: string) {
  const config = parseConfig(`[general]\ncredential_methods = ${method}\n[method_RestrictedInstanceRole]\ncompress_user_policy = True\n`, 'bench.conf')
  const source = new CachedIamSource(new LiveIamSource({iam, sts, instanceRoleRef: null}), {ttlMs: 300_000, failureTtlMs: 30_000, maxEntries: 1000})
  const broker = new CredentialBroker({config, source, sts, catalog, warn: () => {}}, new CredentialCache({maxEntries: 1000, failureTtlMs: 30_000}))
  double.setLatency(0)
  await source.getInstanceRole() // serve discovers the instance role at start-up
  double.setLatency(LATENCY)
  double.reset()
  double.setLatency(LATENCY)
  const user = {name: USER, uid: 1002}
  let t = performance.now()
  const cold = await broker.credentialsFor(user)
  const coldMs = performance.now() - t
  const coldCalls = double.calls.map((c) => ({action: c.action, at: c.at.getTime()}))
  double.reset()
  double.setLatency(LATENCY)
  t = performance.now()
  await broker.credentialsFor(user)
  const warmMs = performance.now() - t
  const warmCalls = double.calls.length
  if (!cold.ok) throw new Error(`${method} issued nothing for ${USER}`)
  const counts = new Map<string, number>()
  for (const c of coldCalls) counts.set(c.action, (counts.get(c.action) ?? 0) + 1)
  console.log(
    `${method.padEnd(24)} cold: ${String(coldCalls.length).padStart(3)} AWS calls, ${roundTrips(coldCalls.map((c) => c.at))} round trips, ${coldMs.toFixed(0)} ms` +
      `   warm: ${warmCalls} AWS calls, ${warmMs.toFixed(1)} ms`,
  )
  console.log(`${''.padEnd(24)} ${[...counts].map(([a, n]) => `${a}×${n}`).join(' ')}`)
}

console.log(`bench/issue: user ${USER} of the demo account, ${LATENCY} ms added to every AWS call`)
for (const method of ['RestrictedInstanceRole', 'InstanceRole']) await measure(method)
console.log('target: cold RestrictedInstanceRole in at most 4 sequential round trips; warm requests make no AWS call')
iam.destroy()
sts.destroy()
await double.stop()
