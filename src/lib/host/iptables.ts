// The interception: the iptables rules that send every non-root process's connections to the
// instance metadata service (tcp to 169.254.169.254:80, and with ip6tables [fd00:ec2::254]:80)
// to the daemon's listener, their installation, and their removal.
//
// Each family gets a chain EC2USERKEYD in two tables, each jumped to from OUTPUT for tcp to the
// IMDS address, port 80:
// - nat: RETURN for root and the daemon's own uid, DNAT for everyone else to the listener.
// - filter (the guard): RETURN for root and the daemon, tcp-reset for every other socket. A packet
//   to the IMDS address that nat redirected has the listener's address by the time filter sees it,
//   so the guard only meets connections nat did not redirect: those opened before the rules (their
//   conntrack entries skip nat, and a mid-stream pickup can even reverse them), or every one of a
//   family where nat is unavailable. No non-root request reaches the real IMDS around the rules.
//
// Installation is idempotent and never opens a gap: the chain's new rules go in at its top before
// whatever a crashed run left below them is deleted, and a jump that is already there stays (its
// duplicates go). Commands run through execFile (never a shell) with `-w`, so a concurrent
// iptables user waits instead of failing us.
import {execFile} from 'node:child_process'
import {access} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {isIPv4} from 'node:net'

import {InputError, UserError} from '../errors.js'

export const CHAIN = 'EC2USERKEYD'

export type IpFamily = 4 | 6
export type Table = 'nat' | 'filter'

/** Where clients dial IMDS, per family, and where nat sends them (IPv6: the daemon's [::1] listener). */
export const IMDS_ADDRESS = {4: '169.254.169.254', 6: 'fd00:ec2::254'} as const
export const IPV6_LISTENER = '::1'

export interface RuleOptions {
  family: IpFamily
  listenPort: number
  /** The uid the daemon runs as: its own requests to the real IMDS must pass, as root's do. */
  daemonUid: number
  /** IPv4: the listener's address (default 127.0.0.1). IPv6 always goes to [::1]. */
  listenAddress?: string
}

/** The jump from OUTPUT: tcp to the IMDS address, port 80. */
export function jumpRule(family: IpFamily): string[] {
  return [...imdsMatch(family), '-j', CHAIN]
}

/** The rules of the chain in one table, in order, as rule specifications (what follows `-A CHAIN`). */
export function chainRules(table: Table, options: RuleOptions): string[][] {
  const {family, listenPort, daemonUid} = options
  const passing = [...new Set([0, daemonUid])].map((uid) => [
    ...imdsMatch(family),
    '-m',
    'owner',
    '--uid-owner',
    String(uid),
    '-j',
    'RETURN',
  ])
  if (table === 'nat') {
    const target =
      family === 4
        ? `${options.listenAddress ?? '127.0.0.1'}:${listenPort}`
        : `[${IPV6_LISTENER}]:${listenPort}`
    return [...passing, [...imdsMatch(family), '-j', 'DNAT', '--to-destination', target]]
  }
  return [
    ...passing,
    [...imdsMatch(family), '-m', 'owner', '--socket-exists', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
  ]
}

/**
 * The interception of one family as argument vectors for iptables (or ip6tables), as a host
 * without earlier rules gets it: what `serve --print-rules` shows.
 */
export function interceptionRules(
  options: RuleOptions,
  tables: readonly Table[] = ['nat', 'filter'],
): string[][] {
  return tables.flatMap((table) => [
    ['-t', table, '-N', CHAIN],
    ...chainRules(table, options).map((rule) => ['-t', table, '-A', CHAIN, ...rule]),
    ['-t', table, '-I', 'OUTPUT', '1', ...jumpRule(options.family)],
  ])
}

function imdsMatch(family: IpFamily): string[] {
  return ['-p', 'tcp', '-d', IMDS_ADDRESS[family], '--dport', '80']
}

/** The ip6tables of an iptables: the same directory and variant (`iptables-legacy` → `ip6tables-legacy`). */
export function ip6tablesFor(iptables: string): string {
  const name = basename(iptables)
  return join(
    dirname(iptables),
    name.includes('iptables') ? name.replace('iptables', 'ip6tables') : 'ip6tables',
  )
}

/** The IPv4 address nat sends to, for a listener on `host`; the rules can't send to a name or an IPv6 listener. */
export function redirectAddress(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1'
  if (isIPv4(host)) return host
  throw new InputError(`the iptables rules can only send to an IPv4 listener, not --host ${host}`, {
    suggestion: 'use an IPv4 --host, or pass --no-iptables',
  })
}

// ---------------------------------------------------------------------------------------------
// Running commands

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a program (no shell): the exit status resolves; only a failure to run it at all rejects. */
export type RunCommand = (file: string, args: readonly string[]) => Promise<CommandResult>

export const runCommand: RunCommand = (file, args) =>
  new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        timeout: 30_000,
        env: {PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C'},
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') return reject(error)
        resolve({code: error ? (error.code as number) : 0, stdout, stderr})
      },
    )
  })

/** One iptables binary. */
class Xtables {
  constructor(
    readonly binary: string,
    private readonly run: RunCommand,
  ) {}

  async try(args: readonly string[]): Promise<CommandResult> {
    try {
      return await this.run(this.binary, ['-w', ...args])
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      throw new UserError('unavailable', `cannot run ${this.binary}: ${code ?? (error as Error).message}`, {
        suggestion: code === 'ENOENT' ? 'install iptables, or name it with [general] iptables' : undefined,
        cause: error,
      })
    }
  }

  async must(args: readonly string[]): Promise<string> {
    const result = await this.try(args)
    if (result.code !== 0)
      throw new UserError(
        'unavailable',
        `${this.binary} ${args.join(' ')} failed: ${firstLine(result.stderr)}`,
      )
    return result.stdout
  }

  /** What of ours the table holds: whether the chain exists, its rule count, the jumps to it from OUTPUT. */
  async listing(table: Table): Promise<TableListing> {
    return parseListing(await this.must(['-t', table, '-S']))
  }
}

export interface TableListing {
  chainExists: boolean
  chainRules: number
  /** Each jump from OUTPUT to the chain, as its rule specification. */
  jumps: string[][]
}

/** Reads `iptables -t TABLE -S`. */
export function parseListing(text: string): TableListing {
  const listing: TableListing = {chainExists: false, chainRules: 0, jumps: []}
  for (const line of text.split('\n')) {
    const tokens = tokenize(line)
    if (tokens[0] === '-N' && tokens[1] === CHAIN) listing.chainExists = true
    else if (tokens[0] === '-A' && tokens[1] === CHAIN) listing.chainRules++
    else if (
      tokens[0] === '-A' &&
      tokens[1] === 'OUTPUT' &&
      tokens.at(-2) === '-j' &&
      tokens.at(-1) === CHAIN
    )
      listing.jumps.push(tokens.slice(2))
  }
  return listing
}

/** Splits an `iptables -S` line: words, and double-quoted strings (comments) as one word. */
function tokenize(line: string): string[] {
  return [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) =>
    m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2],
  )
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] || 'no message'
}

// ---------------------------------------------------------------------------------------------
// Planning, installing, removing

export interface FamilyPlan {
  family: IpFamily
  binary: string
  /** nat can redirect this family to the daemon; otherwise only the guard is installed. */
  redirect: boolean
}

export interface InterceptionPlan extends Omit<RuleOptions, 'family'> {
  families: FamilyPlan[]
  /** Why part of the interception is left out (logged as warnings). */
  notes: string[]
}

export interface PlanOptions extends Omit<RuleOptions, 'family'> {
  /** [general] iptables. */
  iptables: string
  run?: RunCommand
  /** Where the kernel lists its IPv6 addresses; absent when the kernel has no IPv6 (default /proc/net/if_inet6). */
  ipv6Proc?: string
}

/**
 * What can be installed on this host: IPv4 with the configured iptables (which must work: else
 * a UserError), IPv6 where the kernel has it, with the matching ip6tables, redirecting where its
 * nat table works. Run as root, before the daemon starts, so that a missing iptables stops it.
 */
export async function planInterception(options: PlanOptions): Promise<InterceptionPlan> {
  const {
    iptables,
    run = runCommand,
    ipv6Proc = '/proc/net/if_inet6',
    listenPort,
    daemonUid,
    listenAddress,
  } = options
  const v4 = new Xtables(iptables, run)
  for (const table of ['nat', 'filter'] as const) await v4.listing(table)
  const plan: InterceptionPlan = {
    listenPort,
    daemonUid,
    listenAddress,
    families: [{family: 4, binary: iptables, redirect: true}],
    notes: [],
  }

  if (!(await exists(ipv6Proc))) return plan
  const ip6tables = ip6tablesFor(iptables)
  const v6 = new Xtables(ip6tables, run)
  const works = async (table: Table) => {
    try {
      const result = await v6.try(['-t', table, '-S'])
      return result.code === 0 ? null : firstLine(result.stderr)
    } catch (error) {
      return (error as Error).message
    }
  }
  const filterProblem = await works('filter')
  if (filterProblem) {
    plan.notes.push(`IPv6 metadata requests ([${IMDS_ADDRESS[6]}]:80) are not intercepted: ${filterProblem}`)
    return plan
  }
  const natProblem = await works('nat')
  plan.families.push({family: 6, binary: ip6tables, redirect: !natProblem})
  if (natProblem)
    plan.notes.push(
      `IPv6 metadata requests ([${IMDS_ADDRESS[6]}]:80) are refused for non-root users, not answered: ip6tables has no nat table (${natProblem})`,
    )
  return plan
}

export interface InstalledFamily {
  family: IpFamily
  binary: string
  redirect: boolean
  /** Jumps from OUTPUT left by an earlier run beyond the one kept (a crash, `kill -9`). */
  duplicateJumpsRemoved: number
  /** Rules of an earlier run replaced in the chains. */
  staleRulesReplaced: number
}

export interface InstallOptions {
  run?: RunCommand
  /** Whether the daemon listens on [::1]: without it IPv6 is only guarded. */
  ipv6Listener: boolean
}

export interface InstallReport {
  families: InstalledFamily[]
  /** The conntrack entries of connections to IMDS opened before the rules, deleted per family. */
  connections: ForgottenConnections
}

/**
 * Installs (or brings up to date) the plan's rules, family by family: nat, then the guard; then
 * forgets the connections to IMDS opened before them.
 */
export async function installInterception(
  plan: InterceptionPlan,
  options: InstallOptions,
): Promise<InstallReport> {
  const run = options.run ?? runCommand
  const installed: InstalledFamily[] = []
  for (const {family, binary, redirect: natWorks} of plan.families) {
    const xt = new Xtables(binary, run)
    const redirect = natWorks && (family === 4 || options.ipv6Listener)
    const done: InstalledFamily = {family, binary, redirect, duplicateJumpsRemoved: 0, staleRulesReplaced: 0}
    if (redirect) await installTable(xt, 'nat', {...plan, family}, done)
    // A family that can't redirect now must not keep redirecting to a listener that is not there.
    else if (natWorks) await removeTable(xt, 'nat')
    await installTable(xt, 'filter', {...plan, family}, done)
    installed.push(done)
  }
  const connections = await forgetImdsConnections({
    iptables: plan.families[0].binary,
    families: installed.map((f) => f.family),
    run,
  })
  return {families: installed, connections}
}

async function installTable(
  xt: Xtables,
  table: Table,
  options: RuleOptions,
  done: InstalledFamily,
): Promise<void> {
  const before = await xt.listing(table)
  if (!before.chainExists) await xt.must(['-t', table, '-N', CHAIN])
  // New rules first, then whatever followed them goes: the chain is never without its rules.
  const rules = chainRules(table, options)
  for (const [i, rule] of rules.entries()) await xt.must(['-t', table, '-I', CHAIN, String(i + 1), ...rule])
  for (let n = rules.length + before.chainRules; n > rules.length; n--)
    await xt.must(['-t', table, '-D', CHAIN, String(n)])
  done.staleRulesReplaced += before.chainRules

  const jump = jumpRule(options.family)
  if ((await xt.try(['-t', table, '-C', 'OUTPUT', ...jump])).code !== 0) {
    await xt.must(['-t', table, '-I', 'OUTPUT', '1', ...jump])
    return
  }
  // The jump is there: keep one, delete the copies earlier runs added (jumps of another shape are
  // not ours to judge; removal deletes them with the chain).
  for (let copies = before.jumps.filter((listed) => sameRule(listed, jump)).length; copies > 1; copies--) {
    await xt.must(['-t', table, '-D', 'OUTPUT', ...jump])
    done.duplicateJumpsRemoved++
  }
}

/**
 * Whether a rule as `iptables -S` lists it is the given specification: the listing adds the
 * implicit `-m tcp` and a /32 or /128 prefix length, and orders options its own way.
 */
export function sameRule(listed: readonly string[], spec: readonly string[]): boolean {
  const normal = (words: readonly string[]) => {
    const pairs: string[] = []
    for (let i = 0; i < words.length; i++) {
      const option = words[i]
      const value = i + 1 < words.length && !words[i + 1].startsWith('-') ? words[++i] : ''
      if (option === '-m' && value === 'tcp') continue
      pairs.push(`${option} ${value.replace(/\/(32|128)$/, '')}`)
    }
    return pairs.sort().join('\n')
  }
  return normal(listed) === normal(spec)
}

export interface RemovedFamily {
  family: IpFamily
  binary: string
  /** Jumps from OUTPUT deleted, and whether a chain was there to delete, over both tables. */
  jumpsRemoved: number
  chainsRemoved: number
}

/** Removes every jump to the chain and the chain itself, in both tables of both families. */
export async function removeInterception(options: {
  iptables: string
  run?: RunCommand
}): Promise<RemovedFamily[]> {
  const run = options.run ?? runCommand
  const removed: RemovedFamily[] = []
  for (const [family, binary] of [
    [4, options.iptables],
    [6, ip6tablesFor(options.iptables)],
  ] as const) {
    const xt = new Xtables(binary, run)
    const done: RemovedFamily = {family, binary, jumpsRemoved: 0, chainsRemoved: 0}
    for (const table of ['nat', 'filter'] as const) {
      const result = await removeTable(xt, table, family === 6)
      done.jumpsRemoved += result.jumps
      done.chainsRemoved += result.chain ? 1 : 0
    }
    if (done.jumpsRemoved || done.chainsRemoved) removed.push(done)
  }
  return removed
}

/**
 * Removes our jumps and chain from one table. A table that does not exist holds nothing of ours;
 * with `optional` (ip6tables), neither does a binary or table that can't be listed.
 */
async function removeTable(
  xt: Xtables,
  table: Table,
  optional = false,
): Promise<{jumps: number; chain: boolean}> {
  const nothing = {jumps: 0, chain: false}
  let result: CommandResult
  try {
    result = await xt.try(['-t', table, '-S'])
  } catch (error) {
    if (optional) return nothing
    throw error
  }
  if (result.code !== 0) {
    if (optional || /does not exist|can't initialize/i.test(result.stderr)) return nothing
    throw new UserError('unavailable', `${xt.binary} -t ${table} -S failed: ${firstLine(result.stderr)}`)
  }
  const listing = parseListing(result.stdout)
  for (const jump of listing.jumps) await xt.must(['-t', table, '-D', 'OUTPUT', ...jump])
  if (listing.chainExists) {
    await xt.must(['-t', table, '-F', CHAIN])
    await xt.must(['-t', table, '-X', CHAIN])
  }
  return {jumps: listing.jumps.length, chain: listing.chainExists}
}

// ---------------------------------------------------------------------------------------------
// Connections opened before the rules

export type ForgottenConnections = {deleted: Partial<Record<IpFamily, number>>} | {skipped: string}

/**
 * Deletes the conntrack entries of tcp connections to IMDS port 80, so that connections opened
 * before the rules are cut (their next packet is redirected, and the daemon resets it) instead
 * of going on to the real IMDS. `conntrack` is looked for beside iptables, then in PATH.
 */
export async function forgetImdsConnections(options: {
  iptables: string
  families: readonly IpFamily[]
  run?: RunCommand
}): Promise<ForgottenConnections> {
  const run = options.run ?? runCommand
  const candidates = [join(dirname(options.iptables), 'conntrack'), 'conntrack']
  const deleted: Partial<Record<IpFamily, number>> = {}
  for (const family of options.families) {
    const args = [
      '-D',
      ...(family === 6 ? ['-f', 'ipv6'] : []),
      '-p',
      'tcp',
      '--orig-dst',
      IMDS_ADDRESS[family],
      '--orig-port-dst',
      '80',
    ]
    let result: CommandResult | null = null
    for (const conntrack of candidates) {
      try {
        result = await run(conntrack, args)
        break
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      }
    }
    if (!result) return {skipped: 'conntrack (conntrack-tools) is not installed'}
    // Exit status 1 with "0 flow entries have been deleted" is the normal "nothing to delete".
    const count = /(\d+) flow entries have been deleted/.exec(result.stderr + result.stdout)
    if (!count) return {skipped: `conntrack ${args.join(' ')} failed: ${firstLine(result.stderr)}`}
    deleted[family] = Number(count[1])
  }
  return {deleted}
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/** An argument vector as one line a shell runs as it stands. */
export function commandLine(binary: string, args: readonly string[]): string {
  return [binary, ...args]
    .map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`))
    .join(' ')
}
