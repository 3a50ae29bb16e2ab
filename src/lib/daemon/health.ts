// `serve`'s /healthz: named checks, each {ok, detail}, and the daemon is healthy when every one
// is ok. Checks that cost something (running iptables, asking the real IMDS) run at most once
// per interval and are answered from their last result in between, so a monitor polling every
// second costs the host nothing.
import type {UpstreamClient} from '../imds/upstream.js'
import {
  CHAIN,
  chainSpecs,
  chainStatus,
  InstalledFamily,
  parseListing,
  RuleOptions,
  runCommand,
  RunCommand,
  Table,
} from '../host/iptables.js'

export interface HealthCheck {
  ok: boolean
  detail: string
}

export type HealthProbe = () => HealthCheck | Promise<HealthCheck>

/** The /healthz body: HTTP 200 with status ok, 503 with status failing. */
export interface HealthReport {
  status: 'ok' | 'failing'
  checks: Record<string, HealthCheck>
}

/** How often the costly checks run at most. */
export const HEALTH_PROBE_INTERVAL_MS = 10_000

export class Health {
  private readonly probes = new Map<string, HealthProbe>()

  /** Adds or replaces a check; checks are reported in the order they were first added. */
  set(name: string, probe: HealthProbe): void {
    this.probes.set(name, probe)
  }

  async report(): Promise<HealthReport> {
    const entries = await Promise.all(
      [...this.probes].map(async ([name, probe]): Promise<[string, HealthCheck]> => {
        try {
          return [name, await probe()]
        } catch (error) {
          return [name, {ok: false, detail: message(error)}]
        }
      }),
    )
    const checks = Object.fromEntries(entries)
    return {status: entries.every(([, check]) => check.ok) ? 'ok' : 'failing', checks}
  }
}

/** `probe` run at most once per `intervalMs`; in between, and while it runs, callers get its last result. */
export function throttledProbe(
  probe: HealthProbe,
  options: {intervalMs?: number; now?: () => number} = {},
): HealthProbe {
  const intervalMs = options.intervalMs ?? HEALTH_PROBE_INTERVAL_MS
  const now = options.now ?? Date.now
  let last: {check: HealthCheck; at: number} | null = null
  let running: Promise<HealthCheck> | null = null
  return () => {
    if (last && now() - last.at < intervalMs) return last.check
    running ??= (async () => {
      let check: HealthCheck
      try {
        check = await probe()
      } catch (error) {
        check = {ok: false, detail: message(error)}
      }
      last = {check, at: now()}
      running = null
      return check
    })()
    // The first run is waited for; later ones answer with the previous result meanwhile.
    return last?.check ?? running
  }
}

/** The path the upstream check asks for: always there on an instance with a role, never a credential. */
export const UPSTREAM_PROBE_PATH = '/latest/meta-data/iam/info'

/** Whether the real IMDS answers the daemon (through its own client, session and cache). */
export function upstreamProbe(upstream: Pick<UpstreamClient, 'get'>): HealthProbe {
  return async () => {
    try {
      const answer = await upstream.get(UPSTREAM_PROBE_PATH)
      return answer.status === 200
        ? {ok: true, detail: `the instance metadata service answers (${UPSTREAM_PROBE_PATH}: HTTP 200)`}
        : {
            ok: false,
            detail: `the instance metadata service answers ${UPSTREAM_PROBE_PATH} with HTTP ${answer.status}`,
          }
    } catch (error) {
      return {ok: false, detail: message(error)}
    }
  }
}

/**
 * Whether the interception is still in place, as installInterception left it: in each family's
 * tables, each chain with exactly its rules, and a jump to it as the first rule of OUTPUT (and
 * FORWARD, for the forward guard). Something that flushed a table (a firewall reload, `nft flush
 * ruleset`) took them, or put a rule before them: the detail says what.
 */
export async function checkInterception(
  families: readonly InstalledFamily[],
  rules: Omit<RuleOptions, 'family'>,
  run: RunCommand = runCommand,
): Promise<HealthCheck> {
  const problems: string[] = []
  const seen: string[] = []
  for (const {family, binary, redirect, forwardGuard} of families) {
    const tables: Table[] = redirect ? ['nat', 'filter'] : ['filter']
    for (const table of tables) {
      const where = `${binary} -t ${table}`
      seen.push(where)
      let listed
      try {
        listed = await run(binary, ['-w', '-t', table, '-S'])
      } catch (error) {
        problems.push(`${where}: cannot run it: ${message(error)}`)
        continue
      }
      if (listed.code !== 0) {
        problems.push(`${where} -S failed: ${listed.stderr.trim().split('\n')[0] || `exit ${listed.code}`}`)
        continue
      }
      const listing = parseListing(listed.stdout)
      for (const spec of chainSpecs(table, {...rules, family}, forwardGuard ?? false)) {
        const status = chainStatus(listing, spec)
        if (status.problem) problems.push(`${where}: ${status.problem}`)
      }
    }
  }
  return problems.length === 0
    ? {ok: true, detail: `${CHAIN} in place (${seen.join(', ')})`}
    : {ok: false, detail: problems.join('; ')}
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))
