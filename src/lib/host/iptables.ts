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
// Forwarded traffic (containers on bridges: docker0, CNI, podman) never passes OUTPUT: a third
// chain, EC2USERKEYD-FWD in filter, jumped to from FORWARD, resets it (forwarded_imds = refuse,
// the default), or is left out (passthrough: such hosts mean containers to use the instance role).
//
// Installation is idempotent and never opens a gap: the chain's new rules go in at its top before
// whatever a crashed run left below them is deleted, and each jump is made the first rule of its
// chain (a new copy at the top before the others go). The rules are never removed but by
// removeInterception (`ec2userkeyd intercept remove`): a daemon that stops, crashes or fails to
// start leaves them, so that a user's request meets a refused connection, never the real IMDS.
// Commands run through execFile (never a shell) with `-w`, so a concurrent iptables user waits
// instead of failing us.
import {execFile} from 'node:child_process'
import {access} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {isIPv4, isIPv6} from 'node:net'

import {InputError, UserError} from '../errors.js'

export const CHAIN = 'EC2USERKEYD'
/** The guard of forwarded traffic, in filter, jumped to from FORWARD. */
export const FORWARD_CHAIN = 'EC2USERKEYD-FWD'

/** [general] forwarded_imds: what connections to IMDS routed from other network namespaces meet. */
export type ForwardedImds = 'refuse' | 'passthrough'

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
  options: RuleOptions & {forwarded?: ForwardedImds},
  tables: readonly Table[] = ['nat', 'filter'],
): string[][] {
  return [
    ...tables.flatMap((table) => [
      ['-t', table, '-N', CHAIN],
      ...chainRules(table, options).map((rule) => ['-t', table, '-A', CHAIN, ...rule]),
      ['-t', table, '-I', 'OUTPUT', '1', ...jumpRule(options.family)],
    ]),
    ...((options.forwarded ?? 'refuse') === 'refuse'
      ? [
          ['-t', 'filter', '-N', FORWARD_CHAIN],
          ...forwardRules(options.family).map((rule) => ['-t', 'filter', '-A', FORWARD_CHAIN, ...rule]),
          ['-t', 'filter', '-I', 'FORWARD', '1', ...forwardJumpRule(options.family)],
        ]
      : []),
  ]
}

/** The forward guard: every forwarded connection to IMDS is reset (no socket there to own it). */
export function forwardRules(family: IpFamily): string[][] {
  return [[...imdsMatch(family), '-j', 'REJECT', '--reject-with', 'tcp-reset']]
}

/** The jump from FORWARD to the forward guard. */
export function forwardJumpRule(family: IpFamily): string[] {
  return [...imdsMatch(family), '-j', FORWARD_CHAIN]
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
  /** Every chain the table lists (built-in and user-defined). */
  chains: Set<string>
  /** Every chain's rules in order, as rule specifications (what follows `-A CHAIN`). */
  rules: Map<string, string[][]>
}

/** Reads `iptables -t TABLE -S`. */
export function parseListing(text: string): TableListing {
  const listing: TableListing = {chainExists: false, chainRules: 0, jumps: [], chains: new Set(), rules: new Map()}
  for (const line of text.split('\n')) {
    const tokens = tokenize(line)
    if ((tokens[0] === '-N' || tokens[0] === '-P') && tokens[1]) listing.chains.add(tokens[1])
    if (tokens[0] === '-A' && tokens[1]) {
      const rules = listing.rules.get(tokens[1]) ?? []
      rules.push(tokens.slice(2))
      listing.rules.set(tokens[1], rules)
    }
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
  /** [general] forwarded_imds. */
  forwarded: ForwardedImds
  /** Why part of the interception is left out (logged as warnings). */
  notes: string[]
  /** IPv6 could not be intercepted at all (no working ip6tables): why. */
  ipv6Problem?: string
}

export interface PlanOptions extends Omit<RuleOptions, 'family'> {
  /** [general] iptables. */
  iptables: string
  forwarded?: ForwardedImds
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
  const {iptables, run = runCommand, ipv6Proc = '/proc/net/if_inet6', listenPort, daemonUid, listenAddress} = options
  const v4 = new Xtables(iptables, run)
  for (const table of ['nat', 'filter'] as const) await v4.listing(table)
  const plan: InterceptionPlan = {
    listenPort,
    daemonUid,
    listenAddress,
    forwarded: options.forwarded ?? 'refuse',
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
    plan.ipv6Problem = filterProblem
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
  /** Forwarded connections to IMDS are reset (forwarded_imds = refuse). */
  forwardGuard: boolean
  /** Jumps left by an earlier run beyond the one kept (a crash, `kill -9`), or moved to the top. */
  duplicateJumpsRemoved: number
  /** Rules of an earlier run replaced in the chains. */
  staleRulesReplaced: number
}

export interface InstallOptions {
  run?: RunCommand
}

export interface InstallReport {
  families: InstalledFamily[]
  /** The conntrack entries of connections to IMDS opened before the rules, deleted per family. */
  connections: ForgottenConnections
}

/**
 * Installs (or brings up to date) the plan's rules, family by family: nat, then the guard, then
 * the forward guard; then forgets the connections to IMDS opened before them. IPv6 is redirected
 * to [::1] whether or not a daemon listens there yet: until one does, the connection is refused.
 */
export async function installInterception(plan: InterceptionPlan, options: InstallOptions = {}): Promise<InstallReport> {
  const run = options.run ?? runCommand
  const installed: InstalledFamily[] = []
  for (const {family, binary, redirect} of plan.families) {
    const xt = new Xtables(binary, run)
    const forwardGuard = plan.forwarded === 'refuse'
    const done: InstalledFamily = {family, binary, redirect, forwardGuard, duplicateJumpsRemoved: 0, staleRulesReplaced: 0}
    const options = {...plan, family}
    if (redirect) await installChain(xt, {table: 'nat', chain: CHAIN, rules: chainRules('nat', options), parent: 'OUTPUT', jump: jumpRule(family)}, done)
    await installChain(xt, {table: 'filter', chain: CHAIN, rules: chainRules('filter', options), parent: 'OUTPUT', jump: jumpRule(family)}, done)
    if (forwardGuard)
      await installChain(xt, {table: 'filter', chain: FORWARD_CHAIN, rules: forwardRules(family), parent: 'FORWARD', jump: forwardJumpRule(family)}, done)
    else await removeChain(xt, 'filter', FORWARD_CHAIN, 'FORWARD')
    installed.push(done)
  }
  const connections = await forgetImdsConnections({
    iptables: plan.families[0].binary,
    families: installed.map((f) => f.family),
    run,
  })
  return {families: installed, connections}
}

export interface ChainSpec {
  table: Table
  chain: string
  rules: string[][]
  /** The built-in chain that jumps to it, and the jump. */
  parent: 'OUTPUT' | 'FORWARD'
  jump: string[]
}

/** The chains of ours one table should hold for a family: its interception chain, and in filter the forward guard when there is one. */
export function chainSpecs(table: Table, options: RuleOptions, forwardGuard: boolean): ChainSpec[] {
  const specs: ChainSpec[] = [{table, chain: CHAIN, rules: chainRules(table, options), parent: 'OUTPUT', jump: jumpRule(options.family)}]
  if (table === 'filter' && forwardGuard)
    specs.push({table, chain: FORWARD_CHAIN, rules: forwardRules(options.family), parent: 'FORWARD', jump: forwardJumpRule(options.family)})
  return specs
}

async function installChain(xt: Xtables, spec: ChainSpec, done: InstalledFamily): Promise<void> {
  const {table, chain, rules, parent, jump} = spec
  const before = await xt.listing(table)
  const stale = before.rules.get(chain)?.length ?? 0
  if (!before.chains.has(chain)) await xt.must(['-t', table, '-N', chain])
  // New rules first, then whatever followed them goes: the chain is never without its rules.
  for (const [i, rule] of rules.entries()) await xt.must(['-t', table, '-I', chain, String(i + 1), ...rule])
  for (let n = rules.length + stale; n > rules.length; n--) await xt.must(['-t', table, '-D', chain, String(n)])
  done.staleRulesReplaced += stale

  // The jump must be the first rule of its chain: a firewall's ACCEPT before it would let a
  // connection past. A copy goes in at the top before the others (ours, of this shape) go.
  const positions = (listing: TableListing) =>
    (listing.rules.get(parent) ?? []).flatMap((rule, i) => (sameRule(rule, jump) ? [i + 1] : []))
  let found = positions(before)
  if (found[0] !== 1) {
    await xt.must(['-t', table, '-I', parent, '1', ...jump])
    found = positions(await xt.listing(table))
  }
  // Highest first, each checked again just before: another tool may have changed the chain.
  for (const n of found.filter((n) => n !== 1).reverse()) {
    const rule = (await xt.listing(table)).rules.get(parent)?.[n - 1]
    if (rule && sameRule(rule, jump)) {
      await xt.must(['-t', table, '-D', parent, String(n)])
      done.duplicateJumpsRemoved++
    }
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
  /** Jumps deleted, and chains deleted, over both tables. */
  jumpsRemoved: number
  chainsRemoved: number
}

/** Removes every jump to our chains and the chains themselves, in both tables of both families. */
export async function removeInterception(options: {iptables: string; run?: RunCommand}): Promise<RemovedFamily[]> {
  const run = options.run ?? runCommand
  const removed: RemovedFamily[] = []
  for (const [family, binary] of [
    [4, options.iptables],
    [6, ip6tablesFor(options.iptables)],
  ] as const) {
    const xt = new Xtables(binary, run)
    const done: RemovedFamily = {family, binary, jumpsRemoved: 0, chainsRemoved: 0}
    for (const [table, chain, parent] of [
      ['nat', CHAIN, 'OUTPUT'],
      ['filter', CHAIN, 'OUTPUT'],
      ['filter', FORWARD_CHAIN, 'FORWARD'],
    ] as const) {
      const result = await removeChain(xt, table, chain, parent, family === 6)
      done.jumpsRemoved += result.jumps
      done.chainsRemoved += result.chain ? 1 : 0
    }
    if (done.jumpsRemoved || done.chainsRemoved) removed.push(done)
  }
  return removed
}

/**
 * Removes our jumps (any shape) from `parent` and our chain from one table. A table that does not
 * exist holds nothing of ours; with `optional` (ip6tables), neither does a binary or table that
 * can't be listed.
 */
async function removeChain(
  xt: Xtables,
  table: Table,
  chain: string,
  parent: 'OUTPUT' | 'FORWARD',
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
  const jumps = (listing.rules.get(parent) ?? []).filter((rule) => rule.at(-2) === '-j' && rule.at(-1) === chain)
  for (const jump of jumps) await xt.must(['-t', table, '-D', parent, ...jump])
  const exists = listing.chains.has(chain)
  if (exists) {
    await xt.must(['-t', table, '-F', chain])
    await xt.must(['-t', table, '-X', chain])
  }
  return {jumps: jumps.length, chain: exists}
}

// ---------------------------------------------------------------------------------------------
// What is in place now

export interface ChainStatus {
  table: Table
  chain: string
  parent: 'OUTPUT' | 'FORWARD'
  /** The chain exists and holds exactly the rules it should. */
  rulesInPlace: boolean
  /** Jumps to it from its parent chain. */
  jumps: number
  /** One of them is the parent chain's first rule. */
  first: boolean
  /**
   * The rules of the parent chain before the first jump (as `iptables -S` lists them, without
   * `-A PARENT`): another tool's (docker's DOCKER-USER, kube-proxy's KUBE-*) that keeps its own
   * first. None may let a connection to IMDS past, or `problem` says which could.
   */
  ahead: string[]
  /** What is wrong, for a human; null when nothing is. */
  problem: string | null
}

export interface FamilyStatus {
  family: IpFamily
  binary: string
  /** Why the binary cannot list its tables (not installed, no such table...), or null. */
  unavailable: string | null
  nat: ChainStatus | null
  filter: ChainStatus | null
  forward: ChainStatus | null
}

/** The interception as the tables hold it now, per family (IPv6 where the kernel has it). */
export async function inspectInterception(
  options: Omit<RuleOptions, 'family'> & {iptables: string; forwarded: ForwardedImds; run?: RunCommand; ipv6Proc?: string},
): Promise<FamilyStatus[]> {
  const run = options.run ?? runCommand
  const families: Array<[IpFamily, string]> = [[4, options.iptables]]
  if (await exists(options.ipv6Proc ?? '/proc/net/if_inet6')) families.push([6, ip6tablesFor(options.iptables)])
  const out: FamilyStatus[] = []
  for (const [family, binary] of families) {
    const xt = new Xtables(binary, run)
    const status: FamilyStatus = {family, binary, unavailable: null, nat: null, filter: null, forward: null}
    const list = async (table: Table): Promise<TableListing | string> => {
      try {
        const result = await xt.try(['-t', table, '-S'])
        return result.code === 0 ? parseListing(result.stdout) : firstLine(result.stderr)
      } catch (error) {
        return (error as Error).message
      }
    }
    const filter = await list('filter')
    if (typeof filter === 'string') {
      status.unavailable = filter
      out.push(status)
      continue
    }
    const nat = await list('nat')
    const rules = {...options, family}
    if (typeof nat !== 'string') status.nat = chainStatus(nat, {table: 'nat', chain: CHAIN, rules: chainRules('nat', rules), parent: 'OUTPUT', jump: jumpRule(family)})
    status.filter = chainStatus(filter, {table: 'filter', chain: CHAIN, rules: chainRules('filter', rules), parent: 'OUTPUT', jump: jumpRule(family)})
    status.forward = chainStatus(filter, {table: 'filter', chain: FORWARD_CHAIN, rules: forwardRules(family), parent: 'FORWARD', jump: forwardJumpRule(family)})
    out.push(status)
  }
  return out
}

export function chainStatus(listing: TableListing, spec: ChainSpec): ChainStatus {
  const {table, chain, parent, jump} = spec
  const held = listing.rules.get(chain) ?? []
  const parentRules = listing.rules.get(parent) ?? []
  const jumps = parentRules.filter((rule) => sameRule(rule, jump)).length
  const at = parentRules.findIndex((rule) => sameRule(rule, jump))
  const first = at === 0
  const ahead = at > 0 ? parentRules.slice(0, at) : []
  const address = jump[jump.indexOf('-d') + 1]
  const passing = ahead.find((rule) => mayPass(listing, table, rule, address, 'builtin', new Set()))
  const rulesInPlace = listing.chains.has(chain) && held.length === spec.rules.length && held.every((rule, i) => sameRule(rule, spec.rules[i]))
  const problem = !listing.chains.has(chain)
    ? `no chain ${chain}`
    : held.length !== spec.rules.length
      ? `chain ${chain} holds ${held.length} rules, not the ${spec.rules.length} it should`
      : !rulesInPlace
        ? `chain ${chain} holds other rules than the ${spec.rules.length} it should`
        : jumps === 0
          ? `no jump to ${chain} from ${parent}`
          : passing
            ? `the jump to ${chain} is not the first rule of ${parent}, and the rule before it may let connections past: -A ${parent} ${passing.join(' ')}`
            : null
  return {table, chain, parent, rulesInPlace, jumps, first, ahead: ahead.map((rule) => rule.join(' ')), problem}
}

// Targets that never end a packet's way through the chain: it goes on to the next rule.
const CONTINUING = new Set(['LOG', 'NFLOG', 'ULOG', 'MARK', 'CONNMARK', 'CLASSIFY', 'DSCP', 'TOS', 'TCPMSS', 'TTL', 'HL', 'AUDIT', 'TRACE', 'SECMARK', 'CONNSECMARK', 'IDLETIMER'])
// Targets that end it refused: in filter, a connection they take never reaches anyone.
const REFUSING = new Set(['DROP', 'REJECT'])

/**
 * Whether a rule ahead of our jump could take a tcp connection to `address`, port 80, away from
 * it: ACCEPT it, send it elsewhere (DNAT, REDIRECT...), or RETURN it from a built-in chain (to
 * the chain's policy). A rule whose matches exclude such a connection (another protocol,
 * destination or port) cannot, nor one whose target lets the packet go on (LOG, MARK...),
 * refuses it (DROP, REJECT in filter), or jumps to a chain whose every rule is as harmless
 * (RETURN there goes back to the rule after the jump). Whatever is not understood may pass:
 * the answer errs on the side of an alarm. Matches the rule has beyond these only narrow it.
 */
function mayPass(listing: TableListing, table: Table, rule: readonly string[], address: string, where: 'builtin' | 'user', visiting: Set<string>): boolean {
  if (excludesImds(rule, address)) return false
  const goto = rule.indexOf('-g')
  if (goto >= 0) return true // RETURN from a chain gone to returns past the jump
  const j = rule.indexOf('-j')
  if (j < 0) return false // counts packets, ends nothing
  const target = rule[j + 1]
  if (CONTINUING.has(target)) return false
  if (table === 'filter' && REFUSING.has(target)) return false
  if (target === 'RETURN') return where === 'builtin'
  const rules = listing.rules.get(target)
  if (!listing.chains.has(target) || !rules) return !listing.chains.has(target) // an empty user chain returns at once
  if (visiting.has(target) || visiting.size > 16) return true
  visiting.add(target)
  const passes = rules.some((r) => mayPass(listing, table, r, address, 'user', visiting))
  visiting.delete(target)
  return passes
}

/** Whether a rule's protocol, destination or port match leaves out every tcp connection to `address`:80. */
function excludesImds(rule: readonly string[], address: string): boolean {
  for (let i = 0; i < rule.length; i++) {
    const negated = rule[i] === '!'
    const option = negated ? rule[i + 1] : rule[i]
    const value = negated ? rule[i + 2] : rule[i + 1]
    if (value === undefined) continue
    let matchesImds: boolean | null = null
    if (option === '-p' || option === '--protocol') matchesImds = ['tcp', '6', 'all', '0'].includes(value.toLowerCase())
    else if (option === '-d' || option === '--destination') matchesImds = value.split(',').some((cidr) => inCidr(address, cidr))
    else if (option === '--dport' || option === '--destination-port') matchesImds = inPorts(80, value)
    else if (option === '--dports' || option === '--destination-ports') matchesImds = value.split(',').some((p) => inPorts(80, p))
    // root's connections pass our chains anyway
    else if (option === '--uid-owner') matchesImds = !['0', 'root', '0-0'].includes(value)
    if (matchesImds !== null && matchesImds === negated) return true
    if (negated) i++ // the option's own turn is this one
  }
  return false
}

function inPorts(port: number, spec: string): boolean {
  const [from, to = from] = spec.split(':')
  const low = from === '' ? 0 : Number(from)
  const high = to === '' ? 65535 : Number(to)
  return !Number.isInteger(low) || !Number.isInteger(high) || (port >= low && port <= high)
}

/** Whether `address` is in `cidr` (one address, or address/prefix); anything unparsable counts as in. */
function inCidr(address: string, cidr: string): boolean {
  const [net, prefixText] = cidr.split('/')
  const a = addressBits(address)
  const n = addressBits(net)
  if (a === null || n === null) return true
  if (a.length !== n.length) return false
  const prefix = prefixText === undefined ? a.length : Number(prefixText)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > a.length) return true
  return a.slice(0, prefix) === n.slice(0, prefix)
}

function addressBits(address: string): string | null {
  if (isIPv4(address)) return address.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('')
  if (!isIPv6(address)) return null
  const [head, tail = ''] = address.includes('::') ? address.split('::') : [address, '']
  const groups = (part: string) => (part === '' ? [] : part.split(':'))
  const h = groups(head)
  const t = groups(tail)
  if (t.some((g) => g.includes('.')) || h.some((g) => g.includes('.'))) return null // IPv4-mapped forms: not ours
  const all = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h
  return all.map((g) => parseInt(g, 16).toString(2).padStart(16, '0')).join('')
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
