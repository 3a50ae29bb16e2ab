// sd_notify(3) for `serve` under systemd (Type=notify): READY=1 once the daemon serves (the
// interception installed), RELOADING=1 and READY=1 around a reload, STOPPING=1 at SIGTERM, and
// STATUS= lines. systemd listens on a unix datagram socket ($NOTIFY_SOCKET: a path, or '@' for
// the abstract namespace), which Node cannot open itself: libc through koffi, as syslog.ts and
// the socket lookup do. Without NOTIFY_SOCKET every call does nothing. Notifying is a courtesy
// to systemd, never a reason to stop serving: a failure is told once (`warn`) and never thrown.
import {endianness} from 'node:os'

const AF_UNIX = 1
const SOCK_DGRAM = 2
const SOCK_CLOEXEC = 0o2000000
/** A full queue on systemd's side loses the message rather than blocking the daemon. */
const MSG_DONTWAIT = 0x40
const MSG_NOSIGNAL = 0x4000
/** sizeof(sockaddr_un.sun_path). */
const SUN_PATH_LENGTH = 108

export type NotifyFields = Record<string, string | number | bigint>

export interface Notifier {
  /** Whether messages go anywhere (NOTIFY_SOCKET was set and the socket could be made). */
  readonly enabled: boolean
  /** Sends one message: `KEY=VALUE` lines, in the order given. */
  notify(fields: NotifyFields): void
  close(): void
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC wants it (libuv's hrtime is CLOCK_MONOTONIC on Linux). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n
}

/** A sockaddr_un for a NOTIFY_SOCKET value and its length; null for a value that names no socket. */
export function notifyAddress(socket: string): {address: Buffer; length: number} | null {
  const abstract = socket.startsWith('@')
  if (!abstract && !socket.startsWith('/')) return null
  const name = Buffer.from(abstract ? `\0${socket.slice(1)}` : socket)
  // A path needs room for its terminating NUL; an abstract name is counted exactly, without one.
  if (name.length > SUN_PATH_LENGTH - (abstract ? 0 : 1)) return null
  const address = Buffer.alloc(2 + SUN_PATH_LENGTH)
  if (endianness() === 'LE') address.writeUInt16LE(AF_UNIX, 0)
  else address.writeUInt16BE(AF_UNIX, 0)
  name.copy(address, 2)
  return {address, length: 2 + name.length + (abstract ? 0 : 1)}
}

const disabled: Notifier = {enabled: false, notify: () => {}, close: () => {}}

/**
 * A notifier for systemd's socket `socket` ($NOTIFY_SOCKET); does nothing when it is unset.
 * Never throws: what goes wrong is passed to `warn`, once.
 */
export async function openNotifier(
  socket: string | undefined,
  warn: (message: string) => void,
): Promise<Notifier> {
  if (!socket) return disabled
  const target = notifyAddress(socket)
  if (!target) {
    warn(
      `NOTIFY_SOCKET '${socket}' is neither an absolute path nor an abstract '@' name: systemd is not told the daemon's state`,
    )
    return disabled
  }
  let libc: {
    socket(domain: number, type: number, protocol: number): number
    sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number
    close(fd: number): number
    errno(): number
    errnoName(errno: number): string
  }
  try {
    const koffi = (await import('koffi')).default
    const lib = koffi.load(null as unknown as string)
    const names = new Map(Object.entries(koffi.os.errno).map(([name, n]) => [n, name]))
    libc = {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      sendto: lib.func(
        'intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
      ),
      close: lib.func('int close(int fd)'),
      errno: () => koffi.errno(),
      errnoName: (n) => names.get(n) ?? `errno ${n}`,
    }
  } catch (error) {
    warn(
      `cannot load libc to notify systemd (${(error as Error).message.split('\n')[0]}): systemd is not told the daemon's state`,
    )
    return disabled
  }
  const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)
  if (fd < 0) {
    warn(
      `socket(AF_UNIX, SOCK_DGRAM) failed (${libc.errnoName(libc.errno())}): systemd is not told the daemon's state`,
    )
    return disabled
  }
  let warned = false
  let open = true
  return {
    enabled: true,
    notify(fields) {
      if (!open) return
      try {
        const message = Buffer.from(
          Object.entries(fields)
            .map(([key, value]) => `${key}=${String(value).replace(/\n/g, ' ')}`)
            .join('\n'),
        )
        const sent = libc.sendto(
          fd,
          message,
          message.length,
          MSG_DONTWAIT | MSG_NOSIGNAL,
          target.address,
          target.length,
        )
        if (sent < 0) throw new Error(`sendto ${socket}: ${libc.errnoName(libc.errno())}`)
      } catch (error) {
        if (!warned)
          warn(
            `cannot notify systemd (${(error as Error).message}); the daemon goes on without telling it (this is said once)`,
          )
        warned = true
      }
    },
    close() {
      if (open) libc.close(fd)
      open = false
    },
  }
}
