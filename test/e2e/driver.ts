// The end-to-end test's hands inside the network namespace it made. Run by pipeline.test.ts as
//   unshare --net -- node --import tsx test/e2e/driver.ts '{"users": [...], "iptables": "/usr/sbin/iptables"}'
// it sets the namespace up as an EC2 instance looks from inside (169.254.169.254 on lo, an
// IMDS there, AWS reachable), runs the built `serve` with its real iptables rules, and then
// does what the test asks, one JSON command per line on stdin, one JSON answer per line on
// stdout: SDK and curl clients as the test's users, the AWS double's and the fake IMDS's logs,
// the rules, stopping and starting the daemon. Everything here dies with the namespace.
import {ChildProcess, execFileSync, spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {setPriority, tmpdir} from 'node:os'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {fileURLToPath} from 'node:url'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {startFakeImds, UpstreamRequest} from '../imds/fake-imds.js'

const IMDS_ADDRESS = '169.254.169.254'
const INSTANCE_ROLE = 'analytics-host'

export interface TestUser {
  name: string
  uid: number
  gid: number
}

export interface DriverSetup {
  users: TestUser[]
  iptables: string
}

/** What the driver says once everything runs. */
export interface Ready {
  doubleUrl: string
  instance: {accessKeyId: string; arn: string}
  /** How SDK clients become their user (see clientLaunch). */
  clientStart: 'spawned as the user' | 'dropped to the user after loading the SDK'
}

export type Command =
  | {op: 'sdk'; runs: SdkRun[]}
  | {op: 'curl'; user: string; paths: string[]}
  | {op: 'double'}
  | {op: 'daemonLog'}
  | {op: 'rules'}
  | {op: 'stop'; signal: 'SIGTERM' | 'SIGKILL'}
  | {op: 'start'}
  | {op: 'interceptRemove'}
  | {op: 'shutdown'}

/** `processes` processes of `clients` SDK clients each, as `user` ('root' too). */
export interface SdkRun {
  user: string
  processes: number
  clients: number
}

export interface SdkResult {
  user: string
  /** Which process of the command it ran in. */
  process: number
  /** The uid the client process ran as, by its own account. */
  uid: number
  arn?: string
  accessKeyId?: string
  error?: string
  /** The credential chain's last log lines, with an error. */
  notes?: string[]
}

export interface CurlResult {
  path: string
  status: number
  body: string
}

export interface Answer {
  id: number
  result?: unknown
  error?: string
  /** The fake IMDS's credential-path requests while the command ran (see credentialRequests). */
  upstreamCredentialRequests: UpstreamRequest[]
  ms: number
}

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const STS_MODULE = createRequire(import.meta.url).resolve('@aws-sdk/client-sts')
/** What the SDK's default chain requires lazily: loaded before a client says it is ready. */
const LAZY_MODULES = [
  '@aws-sdk/credential-provider-node',
  '@aws-sdk/credential-provider-env',
  '@aws-sdk/credential-provider-ini',
  '@aws-sdk/credential-provider-sso',
  '@aws-sdk/credential-provider-process',
  '@aws-sdk/credential-provider-web-identity',
  '@aws-sdk/credential-provider-http',
  '@smithy/credential-provider-imds',
]

/**
 * A process of SDK clients (argv: the client-sts module, the AWS endpoint, how many clients, the
 * modules the SDK's default chain requires lazily, and `uid:gid` when it must drop to its user
 * itself). It loads the SDK (the lazy modules too, so that little work is left once it is
 * asked), says `ready`, waits for `go` on stdin (so that every process asks at the same moment),
 * then has each of its clients, each with a credential chain of its own, ask STS who it is with
 * the default credential chain: nothing in its environment, so the IMDS provider, IMDSv2 with
 * the v1 fallback blocked. Prints one JSON line: each client's answer.
 */
const SDK_CLIENTS = `
const [stsModule, endpoint, count, lazy, dropTo] = process.argv.slice(1)
const {STSClient, GetCallerIdentityCommand} = require(stsModule)
const load = require('node:module').createRequire(stsModule)
for (const name of JSON.parse(lazy)) load(name)
if (dropTo) {
  const [uid, gid] = dropTo.split(':').map(Number)
  process.setgroups([])
  process.setgid(gid)
  process.setuid(uid)
}
async function ask() {
  // What the credential chain said, for a failure's message
  const notes = []
  const note = (...parts) => notes.push(parts.map((p) => (typeof p === 'string' ? p : p?.message ?? JSON.stringify(p))).join(' '))
  try {
    const client = new STSClient({region: 'us-east-1', endpoint, logger: {debug: note, info: note, warn: note, error: note}})
    const {Arn} = await client.send(new GetCallerIdentityCommand({}))
    const {accessKeyId} = await client.config.credentials()
    return {uid: process.getuid(), arn: Arn, accessKeyId}
  } catch (error) {
    return {uid: process.getuid(), error: error.name + ': ' + error.message, notes: notes.slice(-4)}
  }
}
process.stdin.on('end', () => process.exit(1))
process.stdin.once('data', async () => {
  const answers = await Promise.all(Array.from({length: Number(count)}, ask))
  process.stdout.write(JSON.stringify(answers) + '\\n', () => process.exit(0))
})
process.stdout.write('ready\\n')
`

const setup = JSON.parse(process.argv[2]) as DriverSetup
const usersByName = new Map(setup.users.map((u) => [u.name, u]))
const ip6tables = setup.iptables.replace(/iptables([^/]*)$/, 'ip6tables$1')
const children = new Set<ChildProcess>()
const work = mkdtempSync(join(tmpdir(), 'ec2userkeyd-e2e-'))
chmodSync(work, 0o755)
/** An empty home for every client: no ~/.aws to find. */
const clientHome = join(work, 'home')
mkdirSync(clientHome)
chmodSync(clientHome, 0o755)

function track<T extends ChildProcess>(child: T): T {
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}

function killAll(): void {
  for (const child of children) child.kill('SIGKILL')
}

function abandon(code: number): never {
  killAll()
  rmSync(work, {recursive: true, force: true})
  process.exit(code)
}
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => abandon(1))
// However the test goes, nothing here outlives two minutes.
setTimeout(() => {
  process.stderr.write('driver: two minutes are up; stopping everything\n')
  abandon(3)
}, 120_000).unref()

const sh = (file: string, ...args: string[]) => execFileSync(file, args, {encoding: 'utf8', stdio: 'pipe'})

// The namespace as an instance sees it: loopback up, IMDS's address local.
sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', `${IMDS_ADDRESS}/32`, 'dev', 'lo')

const double = await startAwsDouble({
  snapshot: await loadAccountSnapshot(join(REPO, 'fixtures/account.json')),
  instanceRole: INSTANCE_ROLE,
})
// The "real" IMDS hands out the double's instance-role session, so root's SDK gets a working one.
const imds = await startFakeImds({
  host: IMDS_ADDRESS,
  port: 80,
  instanceCredentials: {...double.instanceCredentials, expiration: double.instanceSession.expiration},
})

// The demo host's configuration, with this machine's iptables.
const configFile = join(work, 'ec2userkeyd.conf')
const demo = readFileSync(join(REPO, 'fixtures/ec2userkeyd.conf'), 'utf8')
if (!/^\[general\]$/m.test(demo)) throw new Error('fixtures/ec2userkeyd.conf has no [general] section')
writeFileSync(configFile, demo.replace(/^\[general\]$/m, `[general]\niptables = ${setup.iptables}`), {
  mode: 0o600,
})

const clientEnv = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: clientHome,
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  // The SDK may not fall back to IMDSv1: a client that gets credentials went through IMDSv2.
  AWS_EC2_METADATA_V1_DISABLED: 'true',
}

/**
 * How a client process becomes its user: spawned as the user when the user can load the SDK
 * from this repository; otherwise (a clone only root can read) spawned as root, loading the SDK
 * and then dropping to the user (groups, gid, uid) before it opens any connection.
 */
const canLoadAsUser = (() => {
  const user = setup.users[0]
  const probe = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', STS_MODULE], {
    uid: user.uid,
    gid: user.gid,
    cwd: '/',
    env: clientEnv,
  })
  return probe.status === 0
})()

function clientLaunch(user: string, clients: number): {args: string[]; ids: {uid?: number; gid?: number}} {
  const base = ['-e', SDK_CLIENTS, STS_MODULE, double.url, String(clients), JSON.stringify(LAZY_MODULES)]
  if (user === 'root') return {args: base, ids: {}}
  const u = usersByName.get(user)
  if (!u) throw new Error(`no test user '${user}'`)
  return canLoadAsUser
    ? {args: base, ids: {uid: u.uid, gid: u.gid}}
    : {args: [...base, `${u.uid}:${u.gid}`], ids: {}}
}

/** Every process of every run started, all ready, then all asked at once. */
async function sdk(runs: SdkRun[]): Promise<SdkResult[]> {
  const processes = runs.flatMap(({user, processes: n, clients}) =>
    Array.from({length: n}, () => {
      const {args, ids} = clientLaunch(user, clients)
      const child = track(
        spawn(process.execPath, args, {...ids, cwd: '/', env: clientEnv, stdio: ['pipe', 'pipe', 'pipe']}),
      )
      // Sixty node processes waking at once would starve the daemon of CPU on a small machine
      // (the SDK gives IMDS one second): the clients yield to the daemon.
      if (child.pid) setPriority(child.pid, 19)
      let out = ''
      let err = ''
      let closed = false
      child.stdout!.on('data', (c) => (out += c))
      child.stderr!.on('data', (c) => (err += c))
      child.on('close', () => (closed = true))
      const until = async (test: () => boolean, what: string, ms: number) => {
        const deadline = Date.now() + ms
        while (!test()) {
          if (closed || Date.now() > deadline)
            throw new Error(
              `SDK clients of ${user} ${closed ? `exited (${child.exitCode})` : 'timed out'} before ${what}: ${err.trim()}`,
            )
          await new Promise((r) => setTimeout(r, 20))
        }
      }
      return {user, child, out: () => out, until}
    }),
  )
  try {
    await Promise.all(processes.map((p) => p.until(() => p.out().startsWith('ready\n'), 'ready', 60_000)))
    for (const p of processes) p.child.stdin!.write('go\n')
    await Promise.all(
      processes.map((p) => p.until(() => p.out().split('\n').length > 2, 'its answers', 30_000)),
    )
    return processes.flatMap((p, index) =>
      (JSON.parse(p.out().split('\n')[1]) as Omit<SdkResult, 'user' | 'process'>[]).map((r) => ({
        user: p.user,
        process: index,
        ...r,
      })),
    )
  } finally {
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL')
  }
}

/** curl as the user (IMDSv1: no token), each path sent as written. */
async function curl(user: string, paths: string[]): Promise<CurlResult[]> {
  const u = usersByName.get(user)
  if (!u) throw new Error(`no test user '${user}'`)
  const results: CurlResult[] = []
  for (const path of paths) {
    const child = track(
      spawn(
        'curl',
        ['-sS', '--path-as-is', '--max-time', '10', '-w', '\n%{http_code}', `http://${IMDS_ADDRESS}${path}`],
        {
          uid: u.uid,
          gid: u.gid,
          cwd: '/',
          env: clientEnv,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      ),
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => (out += c))
    child.stderr.on('data', (c) => (err += c))
    const [code] = await once(child, 'exit')
    if (code !== 0) throw new Error(`curl as ${user} ${path} exited ${code}: ${err.trim()}`)
    const cut = out.lastIndexOf('\n')
    results.push({path, status: Number(out.slice(cut + 1)), body: out.slice(0, cut)})
  }
  return results
}

interface Daemon {
  child: ChildProcess
  log: string
}
let daemon: Daemon | null = null
/** Every line serve wrote, over all its starts. */
let daemonLog = ''

async function startServe(): Promise<void> {
  if (daemon && daemon.child.exitCode === null && daemon.child.signalCode === null)
    throw new Error(`serve is already running (pid ${daemon.child.pid})`)
  const child = track(
    spawn(
      process.execPath,
      ['bin/run.js', 'serve', '--config', configFile, '--upstream', `http://${IMDS_ADDRESS}`],
      {
        cwd: REPO,
        env: childEnv(double, {PATH: process.env.PATH, HOME: '/nonexistent', NO_COLOR: '1'}),
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    ),
  )
  const current: Daemon = {child, log: ''}
  daemon = current
  child.stderr!.on('data', (c) => {
    current.log += c
    daemonLog += c
  })
  const deadline = Date.now() + 30_000
  while (!/"msg":"interception installed"/.test(current.log)) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(
        `serve did not install its interception (${child.exitCode !== null ? `exit ${child.exitCode}` : 'timed out'}):\n${current.log}`,
      )
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function stopServe(
  signal: 'SIGTERM' | 'SIGKILL',
): Promise<{code: number | null; signal: string | null}> {
  const child = daemon?.child
  if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error('serve is not running')
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  const [code, by] = await exited
  clearTimeout(timer)
  return {code, signal: by}
}

function rules(): Record<string, string> {
  const listings: Record<string, string> = {}
  for (const [binary, family] of [
    [setup.iptables, '4'],
    [ip6tables, '6'],
  ])
    for (const table of ['nat', 'filter'])
      try {
        listings[`${table}${family}`] = sh(binary, '-w', '-t', table, '-S')
      } catch (error) {
        if (family === '4') throw error // ip6tables may lack a table; iptables may not
      }
  return listings
}

async function run(command: Command): Promise<unknown> {
  switch (command.op) {
    case 'sdk':
      return sdk(command.runs)
    case 'curl':
      return curl(command.user, command.paths)
    case 'double':
      return {assumeRoleLog: double.assumeRoleLog, calls: double.calls.length}
    case 'daemonLog':
      return daemonLog
    case 'rules':
      return rules()
    case 'stop':
      return stopServe(command.signal)
    case 'start':
      return startServe()
    case 'interceptRemove':
      return spawnSync(process.execPath, ['bin/run.js', 'intercept', 'remove', '--config', configFile], {cwd: REPO, env: {PATH: process.env.PATH, HOME: '/nonexistent'}}).status
    case 'shutdown':
      return null
  }
}

async function shutdown(): Promise<void> {
  if (daemon?.child.exitCode === null && daemon.child.signalCode === null)
    await stopServe('SIGTERM').catch(() => {})
  spawnSync(process.execPath, ['bin/run.js', 'intercept', 'remove', '--config', configFile], {cwd: REPO, env: {PATH: process.env.PATH, HOME: '/nonexistent'}})
  killAll()
  await imds.stop()
  await double.stop()
  rmSync(work, {recursive: true, force: true})
}

const reply = (answer: Answer | {ready: Ready} | {failed: string}) =>
  process.stdout.write(JSON.stringify(answer) + '\n')

try {
  await startServe()
} catch (error) {
  reply({failed: (error as Error).message})
  await shutdown()
  process.exit(1)
}
reply({
  ready: {
    doubleUrl: double.url,
    instance: {accessKeyId: double.instanceCredentials.accessKeyId, arn: double.instanceSession.arn},
    clientStart: canLoadAsUser ? 'spawned as the user' : 'dropped to the user after loading the SDK',
  },
})

let id = 0
// One command at a time, in order; stdin's end (the test went away) ends everything.
for await (const line of createInterface({input: process.stdin})) {
  if (!line.trim()) continue
  const command = JSON.parse(line) as Command
  const started = Date.now()
  const before = imds.credentialRequests().length
  const answer: Answer = {id: ++id, upstreamCredentialRequests: [], ms: 0}
  try {
    answer.result = await run(command)
  } catch (error) {
    answer.error = (error as Error).message
  }
  answer.upstreamCredentialRequests = imds.credentialRequests().slice(before)
  answer.ms = Date.now() - started
  if (command.op === 'shutdown') {
    await shutdown()
    reply(answer)
    process.exit(0)
  }
  reply(answer)
}
await shutdown()
process.exit(0)
