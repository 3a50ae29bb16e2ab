// The daemon's whole life, as a user on the host meets it. Run by lifecycle.test.ts as
//   unshare --net -- node --import tsx test/e2e/lifecycle-script.ts '{"user": {...}, "iptables": "/usr/sbin/iptables"}'
// inside a network namespace set up as an instance looks from inside (169.254.169.254 on lo, a
// stand-in for the real IMDS there handing out the instance role's credentials, the AWS double).
// A user polls the metadata service for credentials every 20 ms through every phase: the boot
// (the interception installed, a first start that fails), stops and restarts, kill -9, a failed
// start between two good ones, a would-be squatter, systemd's sockets, ip6tables missing, and
// `intercept remove`. Prints one JSON object: what the user met in each phase.
import {ChildProcess, spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {request} from 'node:http'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {startFakeImds} from '../imds/fake-imds.js'
import {childEnv, startAwsDouble} from '../support/aws-double/index.js'
import type {TestUser} from './driver.js'

const {user, iptables} = JSON.parse(process.argv.at(-1)!) as {user: TestUser; iptables: string}
const REPO = fileURLToPath(new URL('../..', import.meta.url))
const IMDS = '169.254.169.254'
const CREDENTIALS = '/latest/meta-data/iam/security-credentials/analytics-host'
const children = new Set<ChildProcess>()
const track = <T extends ChildProcess>(child: T): T => {
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}
const work = mkdtempSync(join(tmpdir(), 'ec2userkeyd-lifecycle-'))
chmodSync(work, 0o755)
const cleanup = () => {
  for (const child of children) child.kill('SIGKILL')
  rmSync(work, {recursive: true, force: true})
}
process.on('SIGTERM', () => (cleanup(), process.exit(1)))
setTimeout(() => {
  process.stderr.write('lifecycle: four minutes are up\n')
  cleanup()
  process.exit(3)
}, 240_000).unref()
const sh = (file: string, ...args: string[]) => spawnSync(file, args, {encoding: 'utf8'})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', `${IMDS}/32`, 'dev', 'lo')
const double = await startAwsDouble({snapshot: await loadAccountSnapshot(join(REPO, 'fixtures/account.json')), instanceRole: 'analytics-host'})
const instanceKey = double.instanceCredentials.accessKeyId
const imds = await startFakeImds({host: IMDS, port: 80, instanceCredentials: {...double.instanceCredentials, expiration: double.instanceSession.expiration}})

// The demo host's configuration: this machine's iptables, the admin socket in the work directory.
const demo = readFileSync(join(REPO, 'fixtures/ec2userkeyd.conf'), 'utf8')
const configWith = (name: string, extra: string) => {
  const file = join(work, name)
  writeFileSync(file, demo.replace(/^\[general\]$/m, `[general]\nadmin_listen = ${join(work, "admin.sock")}\n${extra}`), {mode: 0o600})
  return file
}
const config = configWith('ec2userkeyd.conf', `iptables = ${iptables}\n`)
const env = childEnv(double, {PATH: process.env.PATH, HOME: '/nonexistent', NO_COLOR: '1'})
// AWS unreachable: a start that must find the instance role (by name: iam:GetRole) fails.
const deadEnv = {...env, AWS_ENDPOINT_URL_IAM: 'http://127.0.0.1:9', AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1'}

// ---- the user's poller: one request every 20 ms, each answer one letter on stdout
const POLLER = `
const http = require('node:http')
const [host, path, instanceKey] = process.argv.slice(1)
// IMDSv2, as the SDKs ask: a token, then the credentials with it.
function ask(method, p, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({host, port: 80, path: p, method, headers, agent: false, timeout: 400}, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({status: res.statusCode, body}))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}
async function once() {
  try {
    const token = await ask('PUT', '/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})
    const answer = await ask('GET', path, token.status === 200 ? {'X-aws-ec2-metadata-token': token.body} : {})
    let key = null
    try { key = JSON.parse(answer.body).AccessKeyId } catch {}
    process.stdout.write(answer.status === 200 && key ? (key === instanceKey ? 'I' : 'O') : 'S')
  } catch (e) {
    process.stdout.write(e.message === 'timeout' ? 'T' : 'R')
  }
  setTimeout(once, 20)
}
once()
`
const poller = track(spawn(process.execPath, ['-e', POLLER, IMDS, CREDENTIALS, instanceKey], {uid: user.uid, gid: user.gid, cwd: '/', stdio: ['ignore', 'pipe', 'inherit']}))
let seen = ''
poller.stdout!.on('data', (c) => (seen += c))
const count = (text: string) => ({instance: [...text].filter((c) => c === 'I').length, own: [...text].filter((c) => c === 'O').length, refused: [...text].filter((c) => c === 'R').length, other: [...text].filter((c) => c === 'S' || c === 'T').length, requests: text.length})
/** What the poller saw from `from` (an offset into `seen`) to now. */
const since = (from: number) => count(seen.slice(from))
let lastServe: Serve | null = null
/**
 * Where the answers to requests begun from now on start, once the rules just went in: the first
 * answer after now may be of a request begun before, to the real IMDS; the next one is not.
 */
async function nextBegun(): Promise<number> {
  const now = seen.length
  while (seen.length === now) await sleep(5)
  return now + 1
}
async function untilOwn(from: number, what: string) {
  const deadline = Date.now() + 30_000
  // Their own credentials, and a few answers in all: the poller is still asking
  while (!seen.slice(from).includes('O') || seen.length - from < 8) {
    if (Date.now() > deadline)
      throw new Error(`the user never got their own credentials ${what}: ${seen.slice(from).slice(-60)}\nserve's log:\n${lastServe?.log().split('\n').slice(-15).join('\n')}`)
    await sleep(20)
  }
  await sleep(300) // and a few more answers of the daemon's
}

// ---- serve and the CLI
interface Serve {
  child: ChildProcess
  log: () => string
}
function serve(options: {env?: NodeJS.ProcessEnv; args?: string[]; config?: string; via?: string[]} = {}): Serve {
  const command = [process.execPath, join(REPO, 'bin/run.js'), 'serve', '--config', options.config ?? config, '--upstream', `http://${IMDS}`, ...(options.args ?? [])]
  const launch = options.via ? [...options.via, ...command] : command
  const child = track(spawn(launch[0], launch.slice(1), {cwd: REPO, env: options.env ?? env, stdio: ['ignore', 'ignore', 'pipe']}))
  let log = ''
  child.stderr!.on('data', (c) => (log += c))
  lastServe = {child, log: () => log}
  return lastServe
}
async function waitLog(s: Serve, pattern: RegExp, ms = 30_000) {
  const deadline = Date.now() + ms
  while (!pattern.test(s.log())) {
    if (s.child.exitCode !== null || s.child.signalCode !== null || Date.now() > deadline) throw new Error(`no ${pattern} in serve's log (${s.child.exitCode ?? s.child.signalCode ?? 'timed out'}):\n${s.log()}`)
    await sleep(20)
  }
}
async function exitOf(s: Serve, ms = 30_000): Promise<number | null> {
  if (s.child.exitCode !== null) return s.child.exitCode
  const timer = setTimeout(() => s.child.kill('SIGKILL'), ms)
  const [code] = (await once(s.child, 'exit')) as [number | null]
  clearTimeout(timer)
  return code
}
async function stop(s: Serve, signal: NodeJS.Signals = 'SIGTERM') {
  s.child.kill(signal)
  return exitOf(s)
}
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/run.js'), ...args], {cwd: REPO, env, encoding: 'utf8', timeout: 60_000})
  return {code: r.status, stdout: r.stdout, stderr: r.stderr}
}
const ours = (binary: string) =>
  ['nat', 'filter'].flatMap((table) => (sh(binary, '-w', '-t', table, '-S').stdout ?? '').split('\n').filter((l) => l.includes('EC2USERKEYD')))
const ip6tables = iptables.replace(/iptables([^/]*)$/, 'ip6tables$1')
async function healthz(): Promise<{status: number; body: {checks: Record<string, {ok: boolean; detail: string}>}}> {
  return new Promise((resolve, reject) => {
    request({socketPath: join(work, 'admin.sock'), path: '/healthz'}, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({status: res.statusCode!, body: JSON.parse(body)}))
    })
      .on('error', reject)
      .end()
  })
}

const r: Record<string, unknown> = {}
try {
  // Boot: before anything, the user reaches the real IMDS (the poller sees the instance's key).
  await sleep(300)
  r.beforeInterception = since(0)
  // The early unit installs the interception; then the daemon's first start fails (AWS unreachable).
  r.install = cli('intercept', 'install', '--config', config, '--json').code
  let mark = await nextBegun()
  const failing = serve({env: deadEnv, args: ['--instance-role', 'analytics-host']})
  r.failedStart = {exit: await exitOf(failing), said: /^Error: .*iam:GetRole/m.test(failing.log()) ? true : failing.log()}
  await sleep(500)
  r.afterFailedFirstStart = {rules: ours(iptables).length}
  let daemon = serve()
  await untilOwn(mark, 'after the boot')
  r.boot = since(mark)

  // SIGTERM, and a start a second later
  mark = seen.length
  r.stopped = await stop(daemon)
  await sleep(1000)
  daemon = serve()
  await untilOwn(mark, 'after a restart')
  r.restart = since(mark)

  // kill -9, and a start at once
  mark = seen.length
  await stop(daemon, 'SIGKILL')
  daemon = serve()
  await untilOwn(mark, 'after kill -9')
  r.kill9 = since(mark)

  // A failed start between two good ones
  mark = seen.length
  await stop(daemon)
  const failed = serve({env: deadEnv, args: ['--instance-role', 'analytics-host']})
  r.failedBetween = {exit: await exitOf(failed)}
  daemon = serve()
  await untilOwn(mark, 'after a failed start between two good ones')
  r.between = since(mark)

  // While it is down, the user tries to take the daemon's port and answer for it
  mark = seen.length
  await stop(daemon)
  const squat = spawnSync(process.execPath, ['-e', "require('node:net').createServer().on('error', (e) => { console.log(e.code); process.exit(0) }).listen(808, '127.0.0.1', () => { console.log('bound'); process.exit(0) })"], {uid: user.uid, gid: user.gid, encoding: 'utf8'})
  r.squatter = squat.stdout.trim()
  await sleep(500)
  // And a daemon configured on a port a user could take is refused
  const unprivileged = serve({config: configWith('unprivileged.conf', `iptables = ${iptables}\ndaemon_port = 8808\n`)})
  r.unprivileged = {exit: await exitOf(unprivileged), said: /any user can bind/.test(unprivileged.log())}
  daemon = serve()
  await untilOwn(mark, 'after the squatter')
  r.squat = since(mark)

  // systemd's sockets: the daemon takes the listeners it is handed
  mark = seen.length
  await stop(daemon)
  const listen = ['-l', '127.0.0.1:808', ...(existsSync('/proc/net/if_inet6') ? ['-l', '[::1]:808'] : []), '-l', join(work, 'admin.sock')]
  rmSync(join(work, 'admin.sock'), {force: true})
  const passEnv = Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : ['-E', `${k}=${v}`]))
  daemon = serve({via: ['systemd-socket-activate', ...listen, ...passEnv]})
  await untilOwn(mark, 'from systemd-socket-activate')
  await waitLog(daemon, /"msg":"admin listener".*"from":"systemd"/)
  r.activation = {...since(mark), fromSystemd: (daemon.log().match(/"msg":"listening"[^\n]*"from":"systemd"/g) ?? []).length, health: (await healthz()).status}

  // intercept status: protected with the daemon up, and down; then remove: exposed
  const statusUp = cli('intercept', 'status', '--config', config, '--json')
  r.statusUp = {code: statusUp.code, ...JSON.parse(statusUp.stdout)}
  mark = seen.length
  await stop(daemon)
  const statusDown = cli('intercept', 'status', '--config', config, '--json')
  r.statusDown = {code: statusDown.code, ...JSON.parse(statusDown.stdout)}
  const removed = cli('intercept', 'remove', '--config', config, '--json')
  r.remove = {code: removed.code, left: [...ours(iptables), ...(existsSync(ip6tables) ? ours(ip6tables) : [])]}
  const statusRemoved = cli('intercept', 'status', '--config', config, '--json')
  r.statusRemoved = {code: statusRemoved.code, protected: JSON.parse(statusRemoved.stdout).protected}
  await sleep(400)
  r.removed = since(mark)

  // ip6tables missing, with an IPv6 metadata endpoint that answers: not healthy, and says what to do
  // (counted from the moment serve put the IPv4 rules back, which intercept remove took out)
  const bin = join(work, 'bin')
  mkdirSync(bin)
  symlinkSync(iptables, join(bin, 'iptables'))
  const v6 = sh('ip', '-6', 'addr', 'add', 'fd00:ec2::254/128', 'dev', 'lo', 'nodad')
  if (v6.status !== 0) r.noIp6tables = {skipped: `no IPv6 here: ${v6.stderr.trim()}`}
  else {
    const imds6 = await startFakeImds({host: 'fd00:ec2::254', port: 80})
    daemon = serve({config: configWith('no-ip6tables.conf', `iptables = ${join(bin, 'iptables')}\n`)})
    await waitLog(daemon, /"msg":"interception installed"/)
    mark = await nextBegun()
    await untilOwn(mark, 'without ip6tables')
    await waitLog(daemon, /"msg":"admin listener"/)
    await sleep(500)
    const health = await healthz()
    r.noIp6tables = {...since(mark), health: health.status, ipv6: health.body.checks.ipv6}
    await stop(daemon)
    await imds6.stop()
  }

  // A configuration that does not load (one bad value, in an option the rules do not use), at
  // boot: `intercept install` installs anyway and exits 2 saying why; so does serve before its exit
  const broken = configWith('broken.conf', `iptables = ${iptables}\nsession_duration = 1 hour\n`)
  cli('intercept', 'remove', '--config', config)
  const badInstall = cli('intercept', 'install', '--config', broken, '--json')
  const afterInstall = ours(iptables).length
  cli('intercept', 'remove', '--config', config)
  const badServe = serve({config: broken})
  const serveExit = await exitOf(badServe)
  mark = await nextBegun()
  await sleep(700)
  r.brokenConfig = {
    install: badInstall.code,
    said: /the configuration does not load \(.*session_duration = '1 hour'.*\): the interception is installed/.test(badInstall.stderr) ? true : badInstall.stderr,
    problems: (JSON.parse(badInstall.stdout) as {configProblems: string[]}).configProblems.length,
    rulesAfterInstall: afterInstall,
    serveExit,
    serveSaid: /the interception is installed/.test(badServe.log()) ? true : badServe.log(),
    rulesAfterServe: ours(iptables).length,
    ...since(mark),
  }

  // An admin lowers net.ipv4.ip_unprivileged_port_start (per network namespace) while the daemon
  // is down, and the user takes its port: intercept status must not call her the daemon
  writeFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', '0')
  const squatter = track(spawn(process.execPath, ['-e', "require('node:net').createServer((s) => s.on('error', () => {}).end('HTTP/1.1 200 OK\\r\\n\\r\\nforged')).listen(808, '127.0.0.1', () => console.log('bound'))"], {uid: user.uid, gid: user.gid, stdio: ['ignore', 'pipe', 'pipe']}))
  let bound = ''
  squatter.stdout!.on('data', (c) => (bound += c))
  const deadline = Date.now() + 10_000
  while (!bound.includes('bound') && Date.now() < deadline) await sleep(20)
  const statusSquatted = cli('intercept', 'status', '--config', config, '--json')
  const report = JSON.parse(statusSquatted.stdout) as {protected: boolean; families: Array<{family: number; meets: string; listener: {owner: number | null}}>}
  r.squatted = {bound: bound.trim(), code: statusSquatted.code, protected: report.protected, meets: report.families[0].meets, owner: report.families[0].listener.owner, sockets: readFileSync('/proc/net/tcp', 'utf8').split('\n').filter((l) => l.includes(':0328 '))}
  squatter.kill('SIGKILL')
  writeFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', '1024')
} catch (error) {
  r.error = (error as Error).stack
}
sh(iptables, '-w', '-t', 'nat', '-S')
cli('intercept', 'remove', '--config', config)
poller.kill('SIGKILL')
await imds.stop()
await double.stop()
cleanup()
process.stdout.write(`${JSON.stringify(r)}\n`)
process.exit(0)
