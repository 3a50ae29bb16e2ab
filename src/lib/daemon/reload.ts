// What a reload of `serve`'s configuration keeps and what starts over. The credential cache saves
// every active user an AssumeRole (on a big host, a reload that drops it is a burst of STS calls
// that can be throttled), and the IAM read cache saves the IAM reads behind every session policy;
// but a user must never be handed credentials a changed configuration would no longer give them.
// So the rule is one of exclusion: every option decides credentials unless it is listed below.
import {isDeepStrictEqual} from 'node:util'

import {Config, SCHEMA, SectionName} from '../config/schema.js'

/** An option as `section.option`, e.g. `general.log_level`. */
export type OptionPath = `${SectionName}.${string}`

/**
 * The options the IMDS application does not read: logging, the listeners and the interception.
 * A reload that changes only these keeps the application too, and with it what it remembers:
 * when each set of credentials was first handed out (their LastUpdated, and the audit's
 * cacheHit). Any other change builds it anew.
 */
export const OPTIONS_OUTSIDE_APPLICATION: readonly OptionPath[] = [
  'general.log_level',
  'general.log_console',
  'general.log_syslog',
  'general.daemon_port',
  'general.admin_listen',
  'general.admin_group',
  'general.iptables',
  'general.forwarded_imds',
  'general.keep_rules_on_exit',
]

/**
 * The options that decide neither which credentials a user gets nor how credentials are cached:
 * a reload that changes only these keeps the credential engine whole (its credential cache and
 * its IAM read cache). Any other option, including any option added later, counts as deciding
 * credentials: when it changes, the credential cache is dropped. Keep this list short.
 * - log_level, log_console, log_syslog: the logger (reconfigured on reload).
 * - daemon_port, admin_listen, admin_group, iptables, forwarded_imds: the listeners and the
 *   interception, fixed until the next start (RESTART_ONLY_OPTIONS).
 * - keep_rules_on_exit: what happens to the rules at exit.
 * - require_imdsv2, deny_user_data, deny_instance_identity: whether a request is answered (the
 *   IMDS application is built anew when they change, so they take effect at once); a user who is
 *   answered gets the same credentials either way.
 * Deliberately not listed: the chains, instance_role, session_duration and source_identity (they
 * shape every AssumeRole), failure_cache_seconds and cache_max_entries (they configure the
 * credential cache itself), iam_cache_seconds (it configures the IAM read cache the engine
 * reads through), and every [method_*] option.
 */
export const OPTIONS_OUTSIDE_CREDENTIALS: readonly OptionPath[] = [
  ...OPTIONS_OUTSIDE_APPLICATION,
  'general.require_imdsv2',
  'general.deny_user_data',
  'general.deny_instance_identity',
]

/**
 * The options the IAM read cache depends on: when one changed, it starts over too. Its entries
 * are IAM's own answers, keyed by IAM names, whatever the chains say; but `instance_role` names
 * what 'the instance role' is, the three numbers configure the cache, and session policies are
 * compiled once per set of IAM answers (methods.ts keeps them by object), with
 * `compress_user_policy` as it was then. (The region comes from the environment, fixed for the
 * process's life.)
 */
export const IAM_READ_CACHE_OPTIONS: readonly OptionPath[] = [
  'general.instance_role',
  'general.iam_cache_seconds',
  'general.failure_cache_seconds',
  'general.cache_max_entries',
  'method_RestrictedInstanceRole.compress_user_policy',
]


/** The options that take effect only when the daemon starts: a reload keeps the running values and warns. */
export const RESTART_ONLY_OPTIONS: readonly OptionPath[] = [
  'general.daemon_port',
  'general.admin_listen',
  'general.admin_group',
  'general.iptables',
  'general.forwarded_imds',
]

/** Every option whose value differs between two configurations (the file's path is not an option). */
export function changedOptions(a: Config, b: Config): OptionPath[] {
  const changed: OptionPath[] = []
  for (const section of Object.keys(SCHEMA) as SectionName[]) {
    const left = a[section] as Record<string, unknown>
    const right = b[section] as Record<string, unknown>
    for (const option of new Set([...Object.keys(left), ...Object.keys(right)]))
      if (!isDeepStrictEqual(left[option], right[option])) changed.push(`${section}.${option}`)
  }
  return changed
}

/** How an option reads in the log: `log_level` for [general], `[method_UserRole] role_name_pattern` otherwise. */
export function optionLabel(option: OptionPath): string {
  const [section, name] = option.split('.')
  return section === 'general' ? name : `[${section}] ${name}`
}

export interface ReloadPlan {
  /**
   * engine: nothing that decides credentials changed, the engine and both its caches stay;
   * iam-reads: a new engine and credential cache, the IAM read cache stays;
   * nothing: both caches start over.
   */
  keep: 'engine' | 'iam-reads' | 'nothing'
  /** Whether the IMDS application stays too (only options outside it changed). */
  keepApplication: boolean
  /** The changed options that decide credentials (empty when keep is 'engine'). */
  credentialOptions: OptionPath[]
  /** Changed since the start, but effective only at the next one. */
  restartOnly: OptionPath[]
}

/**
 * What reloading `next` over the `running` configuration keeps; `started` is the one the daemon
 * started with (restart-only options keep its values whatever reloads came since).
 */
export function planReload(options: {started: Config; running: Config; next: Config}): ReloadPlan {
  const changed = changedOptions(options.running, options.next)
  const credentialOptions = changed.filter((option) => !OPTIONS_OUTSIDE_CREDENTIALS.includes(option))
  const restartOnly = changedOptions(options.started, options.next).filter((option) =>
    RESTART_ONLY_OPTIONS.includes(option),
  )
  const keep =
    credentialOptions.length === 0
      ? 'engine'
      : credentialOptions.some((option) => IAM_READ_CACHE_OPTIONS.includes(option))
        ? 'nothing'
        : 'iam-reads'
  const keepApplication = changed.every((option) => OPTIONS_OUTSIDE_APPLICATION.includes(option))
  return {keep, keepApplication, credentialOptions, restartOnly}
}
