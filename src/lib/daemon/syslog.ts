// syslog(3) for the daemon's log lines, through the C library (koffi, the FFI the socket lookup
// already uses): the system logger's socket is a datagram socket Node cannot open itself.
import type {LogLevel} from '../config/schema.js'
import type {LogSink} from './log.js'

const LOG_PID = 0x01
const LOG_NDELAY = 0x08
const LOG_DAEMON = 3 << 3
const PRIORITY: Record<LogLevel, number> = {DEBUG: 7, INFO: 6, WARNING: 4, ERROR: 3, CRITICAL: 2}

/** A sink writing to syslog as `ec2userkeyd[PID]`, facility daemon; throws when libc cannot be reached. */
export async function syslogSink(ident = 'ec2userkeyd'): Promise<LogSink> {
  const koffi = (await import('koffi')).default
  const libc = koffi.load(null as unknown as string)
  const openlog = libc.func('void openlog(const char *ident, int option, int facility)')
  const syslog = libc.func('void syslog(int priority, const char *format, ...)')
  const closelog = libc.func('void closelog(void)')
  // openlog keeps the pointer: keep the string alive for the process's life.
  const identBuffer = Buffer.from(`${ident}\0`)
  openlog(identBuffer, LOG_PID | LOG_NDELAY, LOG_DAEMON)
  return {
    write: (level, line) => syslog(LOG_DAEMON | PRIORITY[level], '%s', 'str', line),
    close: () => closelog(),
  }
}
