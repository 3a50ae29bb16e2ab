// `serve` and its iptables rules: what --print-rules shows, the refusal to start without root,
// and, in a network namespace of its own, the built daemon installing the rules once it listens,
// removing them on SIGTERM, keeping them with keep_rules_on_exit, and replacing them after kill -9.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {CLEAN_ENV, repoRoot, runCli} from '../support/cli.js'
import {commandPath, netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'

const NOBODY = 65534
const isRoot = process.getuid?.() === 0
const SERVE_ENV = {...CLEAN_ENV, AWS_REGION: 'us-east-1'}

describe('ec2userkeyd serve and its iptables rules', () => {
  let dir: string
  const config = (name: string, text: string) => {
    const file = join(dir, name)
    writeFileSync(file, text)
    chmodSync(file, 0o644)
    return file
  }

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-rules-'))
    chmodSync(dir, 0o755) // uid 65534 reads the configuration too
  })

  after(() => rmSync(dir, {recursive: true, force: true}))

  it('prints the iptables and ip6tables commands it would run, and exits without listening', async () => {
    // Given a configuration naming the legacy iptables
    const file = config(
      'legacy.conf',
      '[general]\niptables = /usr/sbin/iptables-legacy\ndaemon_port = 8808\n',
    )
    // When the rules are asked for
    const {code, stdout, stderr} = await runCli(['serve', '--config', file, '--print-rules'])
    // Then they are the ones the daemon installs, for both families, with the matching ip6tables
    assert.equal(code, 0, stderr)
    const uids = [...new Set([0, process.getuid!()])]
    const family = (binary: string, imds: string, target: string) => {
      const match = `-p tcp -d ${imds} --dport 80`
      const pass = uids.map((uid) => `${match} -m owner --uid-owner ${uid} -j RETURN`)
      return [
        `${binary} -t nat -N EC2USERKEYD`,
        ...pass.map((rule) => `${binary} -t nat -A EC2USERKEYD ${rule}`),
        `${binary} -t nat -A EC2USERKEYD ${match} -j DNAT --to-destination ${target}`,
        `${binary} -t nat -I OUTPUT 1 ${match} -j EC2USERKEYD`,
        `${binary} -t filter -N EC2USERKEYD`,
        ...pass.map((rule) => `${binary} -t filter -A EC2USERKEYD ${rule}`),
        `${binary} -t filter -A EC2USERKEYD ${match} -m owner --socket-exists -j REJECT --reject-with tcp-reset`,
        `${binary} -t filter -I OUTPUT 1 ${match} -j EC2USERKEYD`,
        `${binary} -t filter -N EC2USERKEYD-FWD`,
        `${binary} -t filter -A EC2USERKEYD-FWD ${match} -j REJECT --reject-with tcp-reset`,
        `${binary} -t filter -I FORWARD 1 ${match} -j EC2USERKEYD-FWD`,
      ]
    }
    assert.deepEqual(stdout.trimEnd().split('\n'), [
      ...family('/usr/sbin/iptables-legacy', '169.254.169.254', '127.0.0.1:8808'),
      ...family('/usr/sbin/ip6tables-legacy', 'fd00:ec2::254', "'[::1]:8808'"),
    ])
  })

  it('follows --port and --host in the printed rules', async () => {
    const file = config('default.conf', '[general]\n')
    const {stdout} = await runCli([
      'serve',
      '--config',
      file,
      '--print-rules',
      '--port',
      '9999',
      '--host',
      '0.0.0.0',
    ])
    assert.match(
      stdout,
      /^\/sbin\/iptables -t nat -A EC2USERKEYD .* -j DNAT --to-destination 127\.0\.0\.1:9999$/m,
    )
    assert.match(
      stdout,
      /^\/sbin\/ip6tables -t nat -A EC2USERKEYD .* -j DNAT --to-destination '\[::1\]:9999'$/m,
    )
  })

  it('refuses to start without root unless told --no-iptables, in one line', async function () {
    // Given a user other than root (this process, or nobody when the tests run as root)
    const file = config('plain.conf', '[general]\ndaemon_port = 8808\n')
    const asUser = isRoot ? {uid: NOBODY, gid: NOBODY} : {}
    const readable = spawnSync(
      process.execPath,
      ['-e', "require('fs').accessSync('bin/run.js'); require('fs').accessSync('dist/commands/serve.js')"],
      {
        cwd: repoRoot,
        ...asUser,
      },
    )
    if (readable.status !== 0) {
      console.log(
        `      (skipped: uid ${NOBODY} cannot read the repository: ${String(readable.stderr).trim().split('\n')[0]})`,
      )
      return this.skip()
    }
    const run = (args: string[]) =>
      new Promise<{code: number | null; stdout: string; stderr: string}>((resolve) => {
        const child = spawn(process.execPath, ['bin/run.js', ...args], {
          cwd: repoRoot,
          env: SERVE_ENV,
          ...asUser,
        })
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (c) => (stdout += c))
        child.stderr.on('data', (c) => (stderr += c))
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
        child.on('exit', (code) => (clearTimeout(timer), resolve({code, stdout, stderr})))
      })
    // When serve starts
    const refused = await run(['serve', '--config', file])
    // Then it stops at once with one line saying what to do
    assert.equal(refused.code, 2)
    assert.equal(
      refused.stderr,
      'Error: serve installs iptables rules and needs root; run as root or pass --no-iptables\n',
    )
    // While printing the rules needs no root
    const printed = await run(['serve', '--config', file, '--print-rules'])
    assert.equal(printed.code, 0, printed.stderr)
    assert.match(printed.stdout, /-j DNAT --to-destination 127\.0\.0\.1:8808/)
  })

  it('installs the rules before it listens, removes them on SIGTERM when told, keeps them by default, replaces them after kill -9', async function () {
    this.timeout(120_000)
    const missing = netnsMissing(['unshare', 'ip', 'iptables'])
    if (missing) return skipBecause(this, missing)
    const iptables = commandPath('iptables')
    const conf = (keep: boolean) =>
      config(
        keep ? 'keep.conf' : 'remove.conf',
        `[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\niptables = ${iptables}\nkeep_rules_on_exit = ${keep ? 'True' : 'False'}\n`,
      )
    // Given a private network namespace with a stand-in IMDS (see SERVE_SCRIPT)
    const result = runInNewNetns(SERVE_SCRIPT, [conf(false), conf(true), iptables], {env: SERVE_ENV, timeoutMs: 110_000})
    if ('skipped' in result) return skipBecause(this, result.skipped)
    assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
    const r = JSON.parse(result.stdout) as ServeTrial
    const jumps = (listing: string) =>
      listing.split('\n').filter((l) => l.startsWith('-A OUTPUT') && l.endsWith('-j EC2USERKEYD')).length

    // Installed before anything else: before the daemon listens (meanwhile users are refused)
    assert.deepEqual(r.started.order, ['interception installed', 'listening'])
    assert.deepEqual([jumps(r.started.nat), jumps(r.started.filter)], [1, 1])
    // nobody's metadata requests reach the daemon (the instance role's name, not the stand-in's answer); root's pass
    assert.deepEqual(r.started.traffic, {nobody: '200 analytics-host', root: '200 real imds'})
    if ('skipped' in r.started.ipv6) console.log(`      (IPv6 part skipped: ${r.started.ipv6.skipped})`)
    else assert.equal(r.started.ipv6.nobody, '200 analytics-host')
    // SIGTERM with keep_rules_on_exit = False: exit 0, nothing of ours left, nobody reaches IMDS again
    assert.equal(r.stopped.exit, 0)
    assert.deepEqual(r.stopped.ours, [])
    assert.equal(r.stopped.nobody, '200 real imds')
    // keep_rules_on_exit: the rules stay, and nobody gets nothing (fail closed) while root still gets through
    assert.equal(r.kept.exit, 0)
    assert.deepEqual([jumps(r.kept.nat), jumps(r.kept.filter)], [1, 1])
    assert.match(r.kept.nobody, /^error ECONNREFUSED|^error ECONNRESET/)
    assert.equal(r.kept.root, '200 real imds')
    // A start over those rules, a kill -9, another start: still one jump each, and nobody is served
    assert.deepEqual(r.restarted.jumps, [1, 1, 1, 1])
    assert.equal(r.restarted.nobody, '200 analytics-host')
    assert.equal(r.restarted.exit, 0)
    assert.deepEqual(r.restarted.ours, [])
  })
})

interface ServeTrial {
  started: {
    order: string[]
    nat: string
    filter: string
    traffic: Record<string, string>
    ipv6: {skipped: string} | {nobody: string}
  }
  stopped: {exit: number; ours: string[]; nobody: string}
  kept: {exit: number; nat: string; filter: string; nobody: string; root: string}
  restarted: {jumps: number[]; nobody: string; exit: number; ours: string[]}
}

/**
 * Runs inside `unshare --net` (argv: the configuration removing the rules at exit, the one
 * keeping them, the iptables binary): a stand-in IMDS on 169.254.169.254:80 answering "real imds",
 * the built `serve` on port 8808, and requests made as root and as nobody (uid 65534).
 */
const SERVE_SCRIPT = `
import {execFileSync, spawn} from 'node:child_process'
import {once} from 'node:events'
import http from 'node:http'
const [removing, keeping, iptables] = process.argv.slice(1)
const ip6tables = iptables.replace(/iptables([^/]*)$/, 'ip6tables$1')
// Children die with this script, also when the test's timeout ends it
const children = new Set()
const track = (child) => (children.add(child), child.on('exit', () => children.delete(child)), child)
process.on('SIGTERM', () => {
  for (const child of children) child.kill('SIGKILL')
  process.exit(1)
})
const sh = (...command) => execFileSync(command[0], command.slice(1), {encoding: 'utf8', stdio: 'pipe'})
const ours = () => [iptables, ip6tables].flatMap((b) => ['nat', 'filter'].flatMap((t) => { try { return sh(b, '-t', t, '-S').split('\\n').filter((l) => l.includes('EC2USERKEYD')) } catch { return [] } }))
const jumps = (table) => sh(iptables, '-t', table, '-S').split('\\n').filter((l) => l.startsWith('-A OUTPUT') && l.endsWith('-j EC2USERKEYD')).length

sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
const imds = http.createServer((req, res) => res.end('real imds')).listen(80, '169.254.169.254')
await once(imds, 'listening')

const CLIENT = \`
  const [host, path] = process.argv.slice(1)
  const req = require('http').request({host, port: 80, path, timeout: 5000, headers: {host: '169.254.169.254'}}, (res) => {
    let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => console.log(res.statusCode + ' ' + body.trim()))
  })
  req.on('timeout', () => { console.log('timeout'); req.destroy() })
  req.on('error', (e) => console.log('error ' + e.code))
  req.end()
\`
async function ask(uid, host = '169.254.169.254') {
  const child = track(spawn(process.execPath, ['-e', CLIENT, host, '/latest/meta-data/iam/security-credentials/'], {uid, gid: uid, cwd: '/', stdio: ['ignore', 'pipe', 'inherit']}))
  let out = ''
  child.stdout.on('data', (c) => (out += c))
  await once(child, 'exit')
  return out.trim()
}

/** The built serve; waits until its log says the interception is installed and it listens. */
async function serve(config) {
  const child = track(spawn(process.execPath, ['bin/run.js', 'serve', '--allow-unprivileged-port', '--config', config, '--port', '8808', '--upstream', 'http://169.254.169.254',
    '--instance-role', 'arn:aws:iam::123456789012:role/analytics-host'], {stdio: ['ignore', 'ignore', 'pipe']}))
  const daemon = {child, log: ''}
  child.stderr.on('data', (c) => (daemon.log += c))
  daemon.messages = () => daemon.log.split('\\n').filter(Boolean).map((l) => { try { return JSON.parse(l).msg } catch { return l } })
  daemon.waitFor = async (msg) => {
    const until = Date.now() + 20000
    while (!daemon.messages().includes(msg)) {
      if (Date.now() > until || child.exitCode !== null) throw new Error('no "' + msg + '" in the log of serve:\\n' + daemon.log)
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  daemon.stop = async (signal = 'SIGTERM') => {
    const exited = once(child, 'exit')
    child.kill(signal)
    const [code] = await exited
    return code
  }
  await daemon.waitFor('interception installed')
  await daemon.waitFor('listening')
  return daemon
}
const r = {}
let daemon
try {
  // Started, then SIGTERM
  daemon = await serve(removing)
  r.started = {
    order: daemon.messages().filter((m) => m === 'listening' || m === 'interception installed').filter((m, i, all) => all.indexOf(m) === i),
    nat: sh(iptables, '-t', 'nat', '-S'),
    filter: sh(iptables, '-t', 'filter', '-S'),
    traffic: {nobody: await ask(65534), root: await ask(0)},
  }
  try {
    sh('ip', '-6', 'addr', 'add', 'fd00:ec2::254/128', 'dev', 'lo', 'nodad')
    if (!/"family":6,"binary":"[^"]*","redirect":true/.test(daemon.log)) throw new Error('IPv6 not redirected: ' + daemon.log.split('\\n').filter((l) => /WARNING|installed/.test(l)).join(' '))
    r.started.ipv6 = {nobody: await ask(65534, 'fd00:ec2::254')}
  } catch (error) {
    r.started.ipv6 = {skipped: String(error.stderr || error.message).trim().split('\\n')[0]}
  }
  r.stopped = {exit: await daemon.stop(), ours: ours(), nobody: await ask(65534)}

  // keep_rules_on_exit
  daemon = await serve(keeping)
  r.kept = {exit: await daemon.stop(), nat: sh(iptables, '-t', 'nat', '-S'), filter: sh(iptables, '-t', 'filter', '-S'), nobody: await ask(65534), root: await ask(0)}

  // Over the kept rules, then kill -9, then again
  daemon = await serve(keeping)
  const restarted = {jumps: [jumps('nat'), jumps('filter')]}
  await daemon.stop('SIGKILL')
  daemon = await serve(removing)
  restarted.jumps.push(jumps('nat'), jumps('filter'))
  restarted.nobody = await ask(65534)
  restarted.exit = await daemon.stop()
  restarted.ours = ours()
  r.restarted = restarted
} finally {
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL')
  imds.close()
}
console.log(JSON.stringify(r))
process.exit(0)
`
