// The interception on its own, for `ec2userkeyd intercept install | remove | status`: it outlives
// the daemon (installed at boot before any user session, left in place when serve stops, crashes
// or fails to start), and only `intercept remove` (an uninstall) takes it out. The typed results
// are the commands' JSON contracts.
import {Config, defaultConfig} from '../config/schema.js'
import {ExitCode, UserError} from '../errors.js'
import {
  ChainStatus,
  FamilyStatus,
  ForgottenConnections,
  IMDS_ADDRESS,
  inspectInterception,
  installInterception,
  InstalledFamily,
  IpFamily,
  IPV6_LISTENER,
  planInterception,
  redirectAddress,
  removeInterception,
  RemovedFamily,
  RunCommand,
} from '../host/iptables.js'
import {listenerOwner, tcpAnswers} from '../host/reach.js'

export interface InterceptOptions {
  config: Config
  /** --port, else [general] daemon_port. */
  port?: number
  /** --host: the IPv4 listener nat sends to (default 127.0.0.1). */
  host?: string
  /** The uid the daemon runs as (root): its own metadata requests pass. */
  daemonUid: number
  run?: RunCommand
  /** Tests: whether an address answers TCP, who listens there, and where the kernel lists IPv6 addresses. */
  answers?: (host: string, port: number) => Promise<boolean>
  owner?: (host: string, port: number) => Promise<number | null>
  ipv6Proc?: string
}

export interface InstallResult {
  families: InstalledFamily[]
  connections: ForgottenConnections
  /** What could not be installed, and why. */
  notes: string[]
  /** Why the configuration file did not load: the rules went in with the defaults of what it concerns. */
  configProblems: string[]
}

/**
 * `intercept install`: the rules, idempotently and without a gap, with no daemon needed. Given
 * the problems of a configuration that did not load (`configProblems`), it installs anyway, with
 * what did load and the defaults for the rest, and where the configured iptables cannot run, the
 * default one: at boot, a typo must not leave users the real IMDS.
 */
export async function installHostInterception(options: InterceptOptions & {configProblems?: string[]}): Promise<InstallResult> {
  const {config} = options
  const configProblems = [...(options.configProblems ?? [])]
  const planWith = (iptables: string) =>
    planInterception({
      iptables,
      listenPort: options.port ?? config.general.daemon_port,
      daemonUid: options.daemonUid,
      listenAddress: redirectAddress(options.host ?? '127.0.0.1'),
      forwarded: config.general.forwarded_imds,
      run: options.run,
      ipv6Proc: options.ipv6Proc,
    })
  let plan
  try {
    plan = await planWith(config.general.iptables)
  } catch (error) {
    const fallback = defaultConfig().general.iptables
    if (configProblems.length === 0 || config.general.iptables === fallback) throw error
    configProblems.push(`${(error as Error).message}: installed with ${fallback} instead`)
    plan = await planWith(fallback)
  }
  const {families, connections} = await installInterception(plan, {run: options.run})
  return {families, connections, notes: plan.notes, configProblems}
}

/** `intercept remove`: every rule and chain of ours, both families. */
export async function removeHostInterception(options: Pick<InterceptOptions, 'config' | 'run'>): Promise<{removed: RemovedFamily[]}> {
  return {removed: await removeInterception({iptables: options.config.general.iptables, run: options.run})}
}

export interface FamilyReport {
  family: IpFamily
  binary: string
  /** Why the binary cannot list its tables, or null. */
  unavailable: string | null
  /** nat (the redirection), filter (the guard), and the forward guard. */
  chains: ChainStatus[]
  /** The listener nat sends to, whether it accepts a connection now, and the uid that listens there (null: nobody). */
  listener: Listener
  /** What a non-root process's request to this family's IMDS address meets now. */
  meets: string
  /** What a connection to IMDS forwarded from another network namespace meets now. */
  forwarded: string
  /** Neither reaches the real IMDS (forwarded traffic may, where forwarded_imds = passthrough says so). */
  safe: boolean
}

export interface Listener {
  address: string
  answers: boolean
  owner: number | null
}

export interface StatusResult {
  families: FamilyReport[]
  /** Every family is safe: no non-root metadata request reaches the real IMDS. */
  protected: boolean
}

/** `intercept status`: the rules as installed, per family, and what a request would meet now. */
export async function interceptStatus(options: InterceptOptions): Promise<StatusResult> {
  const {config} = options
  const port = options.port ?? config.general.daemon_port
  const answers = options.answers ?? tcpAnswers
  const owner = options.owner ?? listenerOwner
  const statuses = await inspectInterception({
    iptables: config.general.iptables,
    listenPort: port,
    daemonUid: options.daemonUid,
    listenAddress: redirectAddress(options.host ?? '127.0.0.1'),
    forwarded: config.general.forwarded_imds,
    run: options.run,
    ipv6Proc: options.ipv6Proc,
  })
  const families: FamilyReport[] = []
  for (const status of statuses) {
    const listenHost = status.family === 4 ? redirectAddress(options.host ?? '127.0.0.1') : IPV6_LISTENER
    // Who listens, before the probe: a listener that drops on a reset is still seen
    const listenerUid = await owner(listenHost, port)
    const listener = {
      address: status.family === 4 ? `${listenHost}:${port}` : `[${listenHost}]:${port}`,
      answers: await answers(listenHost, port),
      owner: listenerUid,
    }
    families.push({...judge(status, listener, options.daemonUid, config.general.forwarded_imds, status.unavailable ? await answers(IMDS_ADDRESS[status.family], 80) : false), listener})
  }
  return {families, protected: families.every((f) => f.safe)}
}

/** What the rules as found mean for a user's request. */
function judge(status: FamilyStatus, listener: Listener, daemonUid: number, forwarded: Config['general']['forwarded_imds'], imdsAnswers: boolean): Omit<FamilyReport, 'listener'> {
  const chains = [status.nat, status.filter, status.forward].filter((c): c is ChainStatus => c !== null)
  const base = {family: status.family, binary: status.binary, unavailable: status.unavailable, chains}
  const where = `[${IMDS_ADDRESS[status.family]}]:80`
  if (status.unavailable) {
    const meets = imdsAnswers ? `the real IMDS: ${status.binary} cannot run (${status.unavailable})` : `nothing: no metadata endpoint answers at ${where} (${status.binary} cannot run: ${status.unavailable})`
    return {...base, meets, forwarded: imdsAnswers ? 'the real IMDS' : 'nothing', safe: !imdsAnswers}
  }
  const sound = (c: ChainStatus | null) => c !== null && c.problem === null
  let meets: string
  let safe = true
  const squatter = listener.answers && listener.owner !== null && listener.owner !== 0 && listener.owner !== daemonUid
  if (sound(status.nat) && squatter) {
    meets = `uid ${listener.owner}'s process listening on ${listener.address}, not the daemon: a user holding its port answers everyone's metadata requests (find it with \`ss -ltnp\`)`
    safe = false
  } else if (sound(status.nat)) meets = listener.answers ? `the daemon (${listener.address})` : `a refused connection: nothing listens on ${listener.address} (no daemon)`
  else if (sound(status.filter)) meets = `a reset connection (the guard${status.nat?.problem ? `; not redirected: ${status.nat.problem}` : ''})`
  else {
    meets = `the real IMDS: ${[status.nat?.problem, status.filter?.problem].filter(Boolean).join('; ') || 'no interception'}`
    safe = false
  }
  let forwardedMeets: string
  if (forwarded === 'passthrough') forwardedMeets = 'the real IMDS (forwarded_imds = passthrough)'
  else if (sound(status.forward)) forwardedMeets = 'a reset connection (the forward guard)'
  else {
    forwardedMeets = `the real IMDS: ${status.forward?.problem ?? 'no forward guard'}`
    safe = false
  }
  return {...base, meets, forwarded: forwardedMeets, safe}
}

/** Only root can change or list the host's netfilter tables. */
export function requireRoot(uid: number, what: string): void {
  if (uid !== 0) throw new UserError('usage', `intercept ${what} changes or reads the host's iptables and needs root`, {suggestion: 'run it as root (sudo)'})
}

export const EXPOSED_EXIT = ExitCode.exposed
