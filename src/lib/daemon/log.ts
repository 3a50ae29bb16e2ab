// The daemon's log: one JSON object per line (time, level, msg and fields), to standard error
// and/or syslog as [general] log_console / log_syslog say, filtered by log_level. Credential
// requests get one audit line each. Nothing secret is ever passed in: callers log access key
// IDs, never secret keys or session tokens, and `redact` guards against mistakes.
import type {LogLevel} from '../config/schema.js'
import type {AuditRecord} from '../imds/app.js'

const RANK: Record<LogLevel, number> = {DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50}

export type LogFields = Record<string, unknown>

export interface LogSink {
  write(level: LogLevel, line: string): void
  close?(): void
}

export interface Logger {
  log(level: LogLevel, msg: string, fields?: LogFields): void
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  /** An audit record: written whatever the log level (at INFO), since audit is not chatter. */
  audit(msg: string, fields: LogFields): void
  /**
   * A credential request's audit record: the line of `audit('credential request', record)`,
   * built as one literal of AuditRecord's fields (none named like a secret) instead of copied
   * and checked field by field, since `serve` writes one per credential request.
   */
  credentialRequest(record: AuditRecord): void
  /** The minimum level written. */
  readonly level: LogLevel
}

/** A logger whose level and sinks can change while it runs: `serve` applies log_* on reload. */
export interface ReconfigurableLogger extends Logger {
  /** From the next line on: the minimum level, and/or the sinks written to. */
  reconfigure(settings: {level?: LogLevel; sinks?: LogSink[]}): void
}

/** The audit line of a credential request: every field of AuditRecord (a field added there must be written). */
type AuditLine = {time: string; level: LogLevel; msg: string; audit: true} & Record<keyof AuditRecord, unknown>

const SECRET_KEYS = /secret|token|password|sessiontoken/i
/** What marks an audit line: its first field after msg. */
const AUDIT: LogFields = Object.freeze({audit: true})

/** Drops any field whose name suggests a secret (defence in depth: callers never pass one). */
export function redact(fields: LogFields): LogFields {
  return copyFields({}, fields)
}

/** Copies `fields`' own enumerable fields into `into`, as `{...into, ...fields}` would, but those named like a secret. */
function copyFields(into: LogFields, fields: LogFields): LogFields {
  for (const key of Object.keys(fields)) {
    if (SECRET_KEYS.test(key)) continue
    // An assignment to `__proto__` would set the prototype; the spread defines a field.
    if (key === '__proto__')
      Object.defineProperty(into, key, {
        value: fields[key],
        enumerable: true,
        writable: true,
        configurable: true,
      })
    else into[key] = fields[key]
  }
  return into
}

/** An own enumerable field: one the spread copies. */
const hasField = (fields: LogFields, key: string) => Object.prototype.propertyIsEnumerable.call(fields, key)

/**
 * The line `{time, level, msg, ...redact(prefix), ...redact(fields)}`, built in one object rather
 * than four (this runs once per credential request). A `time` field takes the first place's
 * value, as in the spread, so the clock is read only when the fields bring no time of their own.
 */
function lineOf(
  now: () => Date,
  level: LogLevel,
  msg: string,
  fields: LogFields,
  prefix?: LogFields,
): string {
  const line: LogFields = {time: undefined, level, msg}
  if (prefix) copyFields(line, prefix)
  copyFields(line, fields)
  if (!hasField(fields, 'time') && !(prefix && hasField(prefix, 'time'))) line.time = now().toISOString()
  return JSON.stringify(line)
}

/** The audit record's fields between time and latencyMs: all of them (the check below fails to compile otherwise). */
const MIDDLE_FIELDS = ['uid', 'user', 'httpMethod', 'path', 'outcome', 'detail', 'method', 'roleArn', 'accessKeyId', 'expiration', 'cacheHit'] as const
const everyMiddleField: Exclude<keyof AuditRecord, (typeof MIDDLE_FIELDS)[number] | 'time' | 'latencyMs'> extends never ? true : never = true
void everyMiddleField

/** The last credential request's audit line, but its time and latency (see credentialRequestLine). */
interface AuditMemo {
  record?: AuditRecord
  /** Its fields from level to cacheHit, as JSON without the braces. */
  middle?: string
}

/**
 * A credential request's audit line: the line of `audit('credential request', record)`. A user's
 * requests repeat every field but the time and the latency, request after request: that middle
 * is rendered once and reused while each of its fields is the same value.
 */
function credentialRequestLine(r: AuditRecord, last: AuditMemo): string {
  const p = last.record
  if (!p || MIDDLE_FIELDS.some((field) => p[field] !== r[field])) {
    last.middle = JSON.stringify({
      level: 'INFO',
      msg: 'credential request',
      audit: true,
      uid: r.uid,
      user: r.user,
      httpMethod: r.httpMethod,
      path: r.path,
      outcome: r.outcome,
      detail: r.detail,
      method: r.method,
      roleArn: r.roleArn,
      accessKeyId: r.accessKeyId,
      expiration: r.expiration,
      cacheHit: r.cacheHit,
    } satisfies Omit<AuditLine, 'time' | 'latencyMs'>).slice(1, -1)
    last.record = r
  }
  return `{"time":${JSON.stringify(r.time)},${last.middle},"latencyMs":${JSON.stringify(r.latencyMs)}}`
}

export function createLogger(options: {level: LogLevel; sinks: LogSink[]; now?: () => Date}): ReconfigurableLogger {
  let current = options.level
  let min = RANK[current]
  let sinks = options.sinks
  const now = options.now ?? (() => new Date())
  const lastAudit: AuditMemo = {}
  const write = (level: LogLevel, msg: string, fields: LogFields, prefix?: LogFields) => {
    if (sinks.length === 0) return
    const line = lineOf(now, level, msg, fields, prefix)
    for (const sink of sinks) sink.write(level, line)
  }
  const log = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    if (RANK[level] >= min) write(level, msg, fields)
  }
  return {
    get level() {
      return current
    },
    reconfigure(settings) {
      if (settings.level) min = RANK[(current = settings.level)]
      if (settings.sinks) sinks = settings.sinks
    },
    log,
    debug: (m, f) => log('DEBUG', m, f),
    info: (m, f) => log('INFO', m, f),
    warn: (m, f) => log('WARNING', m, f),
    error: (m, f) => log('ERROR', m, f),
    audit: (m, f) => write('INFO', m, f, AUDIT),
    credentialRequest: (r) => {
      if (sinks.length === 0) return
      const line = credentialRequestLine(r, lastAudit)
      for (const sink of sinks) sink.write('INFO', line)
    },
  }
}

export function streamSink(stream: NodeJS.WritableStream): LogSink {
  return {write: (_level, line) => void stream.write(`${line}\n`)}
}
