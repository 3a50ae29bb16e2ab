// The daemon's log: one JSON object per line (time, level, msg and fields), to standard error
// and/or syslog as [general] log_console / log_syslog say, filtered by log_level. Credential
// requests get one audit line each. Nothing secret is ever passed in: callers log access key
// IDs, never secret keys or session tokens, and `redact` guards against mistakes.
import type {LogLevel} from '../config/schema.js'

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
  /** The minimum level written. */
  readonly level: LogLevel
}

const SECRET_KEYS = /secret|token|password|sessiontoken/i

/** Drops any field whose name suggests a secret (defence in depth: callers never pass one). */
export function redact(fields: LogFields): LogFields {
  return Object.fromEntries(Object.entries(fields).filter(([k]) => !SECRET_KEYS.test(k)))
}

export function createLogger(options: {level: LogLevel; sinks: LogSink[]; now?: () => Date}): Logger {
  const min = RANK[options.level]
  const now = options.now ?? (() => new Date())
  const write = (level: LogLevel, msg: string, fields: LogFields) => {
    if (options.sinks.length === 0) return
    const line = JSON.stringify({time: now().toISOString(), level, msg, ...redact(fields)})
    for (const sink of options.sinks) sink.write(level, line)
  }
  const log = (level: LogLevel, msg: string, fields: LogFields = {}) => {
    if (RANK[level] >= min) write(level, msg, fields)
  }
  return {
    level: options.level,
    log,
    debug: (m, f) => log('DEBUG', m, f),
    info: (m, f) => log('INFO', m, f),
    warn: (m, f) => log('WARNING', m, f),
    error: (m, f) => log('ERROR', m, f),
    audit: (m, f) => write('INFO', m, {audit: true, ...f}),
  }
}

export function streamSink(stream: NodeJS.WritableStream): LogSink {
  return {write: (_level, line) => void stream.write(`${line}\n`)}
}
