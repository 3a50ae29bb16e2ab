// Every configuration option: its section, type, default, where it comes from (the Python
// tool or this project) and what it does. The loader, `config show` and the README's option
// table are all driven from here, so an option exists in exactly one place.
import {isIamName} from '../iam/names.js'

export const METHOD_NAMES = ['UserRole', 'CreateUserRole', 'RestrictedInstanceRole', 'InstanceRole'] as const
export type MethodName = (typeof METHOD_NAMES)[number]

export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/** One entry of per_uid_credential_methods: a single uid (from === to) or an inclusive range. */
export interface UidRule {
  key: string
  from: number
  to: number
  methods: MethodName[]
}

/** Thrown by a value parser; the loader adds file, line, section and option. */
export class ValueError extends Error {
  constructor(
    message: string,
    readonly suggestion?: string,
  ) {
    super(message)
  }
}

export interface OptionSpec<T> {
  parse(raw: string): T
  default: T
  /** 'python': the option exists in the Python ec2userkeyd; 'ec2userkeyd': added by this project. */
  origin: 'python' | 'ec2userkeyd'
  description: string
  /** How the default reads in documentation and `config show`. */
  shown?: string
}

function option<T>(
  parse: (raw: string) => T,
  defaultValue: T,
  origin: OptionSpec<T>['origin'],
  description: string,
): OptionSpec<T> {
  return {parse, default: defaultValue, origin, description}
}

// ---------------------------------------------------------------- value types

const TRUE = new Set(['1', 'yes', 'true', 'on'])
const FALSE = new Set(['0', 'no', 'false', 'off'])

/** Booleans exactly as configparser.getboolean reads them. */
export function parseBoolean(raw: string): boolean {
  const v = raw.trim().toLowerCase()
  if (TRUE.has(v)) return true
  if (FALSE.has(v)) return false
  throw new ValueError('not a boolean', 'use true/false, yes/no, on/off or 1/0')
}

function parsePort(raw: string): number {
  const v = raw.trim()
  if (!/^\+?\d+$/.test(v)) throw new ValueError('not a port number', 'use an integer from 1 to 65535')
  const n = Number(v)
  if (n < 1 || n > 65535) throw new ValueError('port out of range', 'use an integer from 1 to 65535')
  return n
}

/** A whole number within [min, max]; `what` names the unit in the message. */
function integerIn(min: number, max: number, what: string): (raw: string) => number {
  return (raw) => {
    const v = raw.trim()
    if (!/^\+?\d+$/.test(v)) throw new ValueError(`not a whole number of ${what}`, `use an integer from ${min} to ${max}`)
    const n = Number(v)
    if (n < min || n > max) throw new ValueError(`${n} ${what} is out of range`, `use an integer from ${min} to ${max}`)
    return n
  }
}

/** A unix socket path, or a loopback host:port: the admin listener must not face the network. */
function parseAdminListen(raw: string): string | null {
  const v = raw.trim()
  if (v === '') return null
  if (v.startsWith('/')) return v
  const m = /^(127\.0\.0\.1|\[::1\]|localhost):(\d+)$/.exec(v)
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535) return v
  throw new ValueError('not a unix socket path or a loopback address', 'use e.g. /run/ec2userkeyd/admin.sock or 127.0.0.1:9808')
}

function parseGroupName(raw: string): string | null {
  const v = raw.trim()
  if (v === '') return null
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(v) || v.length > 32) throw new ValueError(`'${v}' is not a group name`, 'give a group from /etc/group, e.g. prometheus')
  return v
}

function parseForwarded(raw: string): 'refuse' | 'passthrough' {
  const v = raw.trim().toLowerCase()
  if (v === 'refuse' || v === 'passthrough') return v
  throw new ValueError('not refuse or passthrough', 'use refuse (the default) or passthrough')
}

function parseExecutablePath(raw: string): string {
  const v = raw.trim()
  if (!v.startsWith('/')) throw new ValueError('not an absolute path', 'give the full path, e.g. /sbin/iptables')
  return v
}

/** A name pattern with `{username}` placeholders, as Python's str.format reads it. */
export function parseNamePattern(raw: string): string {
  const v = raw.trim()
  if (v === '') throw new ValueError('empty pattern', "use a pattern such as 'user-{username}'")
  applyNamePattern(v, 'username') // throws ValueError on unknown fields or stray braces
  return v
}

/** Fills a name pattern for one user (`{username}`, with `{{`/`}}` for literal braces). */
export function applyNamePattern(pattern: string, username: string): string {
  return pattern.replace(/\{\{|\}\}|\{([^{}]*)\}|[{}]/g, (token, field: string | undefined) => {
    if (token === '{{') return '{'
    if (token === '}}') return '}'
    if (field === 'username') return username
    if (field === undefined) throw new ValueError(`stray '${token}' in pattern '${pattern}'`, "write a literal brace as '{{' or '}}'")
    throw new ValueError(`unknown placeholder '{${field}}' in pattern '${pattern}'`, 'the only placeholder is {username}')
  })
}

function parseLogLevel(raw: string): LogLevel {
  const v = raw.trim().toUpperCase()
  // The Python tool read log_level with getint (logging.DEBUG = 10 ... CRITICAL = 50).
  const numeric: Record<string, LogLevel> = {'10': 'DEBUG', '20': 'INFO', '30': 'WARNING', '40': 'ERROR', '50': 'CRITICAL'}
  if (numeric[v]) return numeric[v]
  if (v === 'WARN') return 'WARNING'
  if (v === 'FATAL') return 'CRITICAL'
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel
  throw new ValueError('not a log level', 'use DEBUG, INFO, WARNING, ERROR or CRITICAL (or 10, 20, 30, 40, 50)')
}

/** `kms:Decrypt, ssm:GetParameter*`: IAM action names, as a policy's Action takes them. */
function parseActionList(raw: string): string[] {
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  for (const item of items)
    if (!/^[a-z0-9-]+:[A-Za-z0-9*?]+$/.test(item))
      throw new ValueError(`'${item}' is not an IAM action`, 'write actions as service:Action, e.g. kms:Decrypt or ssm:GetParameter*')
  return [...new Set(items)]
}

function closest(name: string): string | undefined {
  const lower = name.toLowerCase()
  if (lower === '') return undefined
  return METHOD_NAMES.find((m) => m.toLowerCase() === lower || m.toLowerCase().startsWith(lower.slice(0, 4)))
}

export function parseMethodName(raw: string): MethodName {
  const v = raw.trim()
  if ((METHOD_NAMES as readonly string[]).includes(v)) return v as MethodName
  const near = closest(v)
  throw new ValueError(
    v === '' ? 'empty method name' : `unknown method '${v}'`,
    near ? `did you mean '${near}'? (methods: ${METHOD_NAMES.join(', ')})` : `methods: ${METHOD_NAMES.join(', ')}`,
  )
}

/** `UserRole, InstanceRole` (the Python tool split on commas and stripped). */
export function parseMethodList(raw: string): MethodName[] {
  const items = raw.split(',').map((s) => s.trim())
  if (items.length === 1 && items[0] === '') throw new ValueError('empty method list', `list methods from: ${METHOD_NAMES.join(', ')}`)
  return items.map(parseMethodName)
}

/**
 * `alice: UserRole, InstanceRole, bob: InstanceRole` — keys are the non-blank words ending in a
 * colon, as the Python tool's `re.split(r'(?:,\s+)?(\S+):', value)` found them.
 */
function parseKeyedMethods(raw: string, what: string): Array<[string, MethodName[]]> {
  const v = raw.trim()
  if (v === '') return []
  const parts = v.split(/(?:,\s+)?(\S+):/)
  if (parts[0].trim() !== '')
    throw new ValueError(`expected '${what}: Method, Method, ...' but found '${parts[0].trim()}' first`, `e.g. '${what === 'uid' ? '0-499' : 'alice'}: UserRole, InstanceRole'`)
  const entries: Array<[string, MethodName[]]> = []
  const seen = new Set<string>()
  for (let i = 1; i < parts.length; i += 2) {
    const key = parts[i]
    const list = parts[i + 1].trim().replace(/,$/, '')
    if (seen.has(key)) throw new ValueError(`${what} '${key}' is listed twice`)
    seen.add(key)
    try {
      entries.push([key, parseMethodList(list)])
    } catch (error) {
      if (error instanceof ValueError) throw new ValueError(`${what} '${key}': ${error.message}`, error.suggestion)
      throw error
    }
  }
  return entries
}

function parsePerUser(raw: string): Record<string, MethodName[]> {
  return Object.fromEntries(parseKeyedMethods(raw, 'user'))
}

function parsePerUid(raw: string): UidRule[] {
  return parseKeyedMethods(raw, 'uid').map(([key, methods]) => {
    const m = /^(\d+)(?:-(\d+))?$/.exec(key)
    if (!m) throw new ValueError(`malformed uid range '${key}'`, "use a single uid such as '1001' or an inclusive range such as '0-499'")
    const from = Number(m[1])
    const to = m[2] === undefined ? from : Number(m[2])
    if (from > to) throw new ValueError(`malformed uid range '${key}': start is after end`, `write it as '${to}-${from}'`)
    if (to > 4294967294) throw new ValueError(`uid range '${key}' is beyond the largest uid 4294967294`)
    return {key, from, to, methods}
  })
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/(?:[\u0021-\u007e]+\/)?[\w+=,.@-]{1,64}$/

/** An instance role given as a role name or a role ARN (with or without a path). */
export function parseRoleReference(raw: string): string {
  const v = raw.trim()
  if (ROLE_ARN.test(v) || isIamName(v)) return v
  throw new ValueError(`not a role name or role ARN: '${v}'`, 'use e.g. my-instance-role or arn:aws:iam::123456789012:role/my-instance-role')
}

function optionalRole(raw: string): string | null {
  return raw.trim() === '' ? null : parseRoleReference(raw)
}

// ---------------------------------------------------------------- the options

export const SCHEMA = {
  general: {
    daemon_port: option(parsePort, 808, 'python', 'TCP port the daemon listens on (127.0.0.1).'),
    iptables: option(parseExecutablePath, '/sbin/iptables', 'python', 'The iptables binary used to install the interception rules.'),
    credential_methods: option(
      parseMethodList,
      ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'] as MethodName[],
      'python',
      'The default chain of credential methods, tried in order.',
    ),
    per_user_credential_methods: option(
      parsePerUser,
      {} as Record<string, MethodName[]>,
      'python',
      "Chains for individual users: `alice: UserRole, InstanceRole, bob: InstanceRole`.",
    ),
    per_uid_credential_methods: option(
      parsePerUid,
      [] as UidRule[],
      'python',
      "Chains for uids and inclusive uid ranges: `0-499: InstanceRole, 1001: UserRole`. When several match, the last one listed wins (as in the Python tool).",
    ),
    log_level: option(parseLogLevel, 'ERROR' as LogLevel, 'python', '`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL` (the Python tool\'s numbers 10–50 also work).'),
    log_console: option(parseBoolean, false, 'python', 'Log to standard error.'),
    log_syslog: option(parseBoolean, true, 'python', 'Log to syslog.'),
    instance_role: option(
      optionalRole,
      null as string | null,
      'ec2userkeyd',
      'The instance role (name or ARN). Unset: discovered with `sts:GetCallerIdentity`. Set: wins over discovery; needed offline (`--account`).',
    ),
    session_duration: option(
      integerIn(1800, 3600, 'seconds'),
      3600,
      'ec2userkeyd',
      'DurationSeconds of every AssumeRole (1800–3600). The daemon calls AssumeRole with the instance role\'s own session, which is role chaining, and AWS caps chained sessions at one hour; SDKs refresh credentials in their last 15 minutes, so the daemon hands a set out only while more than max(15 min, 25% of its lifetime) remains, and shorter sessions would leave almost no time to serve them.',
    ),
    source_identity: option(
      parseBoolean,
      true,
      'ec2userkeyd',
      'Set the session\'s SourceIdentity to the UNIX user name (shown in CloudTrail, kept through further role chaining). Needs `sts:SetSourceIdentity` in the role\'s trust policy; where that is refused the daemon retries once without it and warns.',
    ),
    iam_cache_seconds: option(
      integerIn(0, 86400, 'seconds'),
      300,
      'ec2userkeyd',
      'How long IAM reads (users, roles, their policies) are reused before they are read again. Managed policy versions never change and are kept for good.',
    ),
    failure_cache_seconds: option(
      integerIn(0, 3600, 'seconds'),
      30,
      'ec2userkeyd',
      'How long a user\'s failed or refused lookup is remembered, so that one user cannot make the daemon hammer IAM and STS.',
    ),
    keep_rules_on_exit: option(
      parseBoolean,
      true,
      'ec2userkeyd',
      "True: the iptables rules stay when `serve` exits, cleanly, by a crash or after a failed start, so that users' metadata requests are refused instead of reaching the real IMDS while no daemon serves (fail closed); only `ec2userkeyd intercept remove` takes them out. False: `serve` removes them when it stops after serving (the behaviour before; users then reach the real IMDS while it is down), and warns of that at every start. Never after a failed start: that start is retried, and users meet refused connections meanwhile.",
    ),
    require_imdsv2: option(
      parseBoolean,
      false,
      'ec2userkeyd',
      'Answer only IMDSv2 requests (with a token from `PUT /latest/api/token`); IMDSv1 requests get 401, as on an instance with HttpTokens = required.',
    ),
    deny_user_data: option(
      parseBoolean,
      false,
      'ec2userkeyd',
      'Answer 404 to `/latest/user-data` for every user but root (user data often holds bootstrap secrets).',
    ),
    deny_instance_identity: option(
      parseBoolean,
      false,
      'ec2userkeyd',
      "Answer 404 to `/latest/dynamic/instance-identity/` (the signed identity document, its `pkcs7`, `signature` and `rsa2048`) for every user but root: the signed document proves to other services (such as Vault's AWS auth method) that the caller is this instance.",
    ),
    admin_listen: option(
      parseAdminListen,
      '/run/ec2userkeyd/admin.sock' as string | null,
      'ec2userkeyd',
      'Where `serve` offers `/metrics` (Prometheus) and `/healthz`: a unix socket path (mode 0600, root only; see `admin_group`) or a loopback `127.0.0.1:PORT` (a port below 1024, so that no user can take it). Empty (`admin_listen =`): no admin listener. It never stops the metadata listener: when it cannot listen, `serve` says so and goes on without it.',
    ),
    admin_group: option(
      parseGroupName,
      null as string | null,
      'ec2userkeyd',
      'A group whose members may read the admin socket too (mode 0660, that group), e.g. for a Prometheus agent. Unset: root only.',
    ),
    forwarded_imds: option(
      parseForwarded,
      'refuse' as 'refuse' | 'passthrough',
      'ec2userkeyd',
      "What connections to IMDS routed from other network namespaces (containers on bridges: docker0, CNI, podman) meet: `refuse` (reset, in iptables' FORWARD chain) or `passthrough` (the real IMDS, for hosts that mean containers to use the instance role).",
    ),
    cache_max_entries: option(
      integerIn(1, 10_000_000, 'entries'),
      10000,
      'ec2userkeyd',
      'Upper bound on each cache (credentials, IAM reads, the users whose worked-out requests a warm request reuses); the least recently used entries go first.',
    ),
  },
  method_UserRole: {
    role_name_pattern: option(parseNamePattern, 'user-{username}', 'python', 'Name of the role to assume for a user.'),
  },
  method_CreateUserRole: {
    iam_name_pattern: option(parseNamePattern, '{username}', 'python', 'Name of the IAM user whose policies the role copies.'),
    role_name_pattern: option(parseNamePattern, 'user-{username}', 'python', 'Name of the per-user role to create and assume.'),
    instance_role_linked: option(parseBoolean, true, 'python', 'True: only the instance role may assume the user role; False: any role of the account.'),
    max_attached_policies: option(
      integerIn(1, 20, 'policies'),
      10,
      'ec2userkeyd',
      "The account's quota of managed policies attached to one role (AWS's default is 10). Past it, the rest are copied into the role as inline policies.",
    ),
  },
  method_RestrictedInstanceRole: {
    iam_name_pattern: option(parseNamePattern, '{username}', 'python', 'Name of the IAM user whose policies restrict the instance role.'),
    compress_user_policy: option(parseBoolean, false, 'python', 'Compress the session policy to fit the 2,048-character limit.'),
  },
  method_InstanceRole: {
    fail_safe: option(parseBoolean, false, 'python', 'If the restricted self-assume is refused: True gives no credentials, False the instance role itself.'),
    deny_assumerole: option(
      parseBoolean,
      true,
      'python',
      'Deny role chaining in the issued session: `sts:AssumeRole`, and `sts:TagSession` and `sts:SetSourceIdentity`, which AssumeRole may carry.',
    ),
    deny_secretsmanager: option(parseBoolean, true, 'python', 'Deny `secretsmanager:*` in the issued session.'),
    deny_iam_writes: option(
      parseBoolean,
      true,
      'ec2userkeyd',
      'Deny `iam:PassRole` and every IAM write (`iam:Create*`, `iam:Put*`, `iam:Attach*`, `iam:Update*`, ...; only `iam:Get*`, `iam:List*`, `iam:Generate*` and `iam:Simulate*` stay) in the issued session: where CreateUserRole is deployed the instance role may write roles, and a session that could would give itself any role.',
    ),
    deny_actions: option(
      parseActionList,
      [] as string[],
      'ec2userkeyd',
      'More actions to deny in the issued session, comma-separated (`service:Action`, wildcards allowed), e.g. `kms:Decrypt, ssm:GetParameter*`.',
    ),
  },
  // The Python tool declared this section for an unfinished method; configs may carry it empty.
  method_UserKeysSecretsManager: {},
} as const

type Schema = typeof SCHEMA
type ValueOf<S> = S extends OptionSpec<infer T> ? T : never
export type SectionName = keyof Schema

export type Config = {
  /** The file the config came from; null when the default file is absent (all defaults). */
  file: string | null
} & {-readonly [S in SectionName]: {-readonly [O in keyof Schema[S]]: ValueOf<Schema[S][O]>}}

export function defaultConfig(): Config {
  const config = {file: null} as Record<string, unknown>
  for (const [section, options] of Object.entries(SCHEMA)) {
    config[section] = Object.fromEntries(
      Object.entries(options as Record<string, OptionSpec<unknown>>).map(([name, spec]) => [name, structuredClone(spec.default)]),
    )
  }
  return config as Config
}
