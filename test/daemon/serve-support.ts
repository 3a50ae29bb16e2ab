// What the tests of `serve` share: free ports, plain requests, the IMDSv2 credential flow run as
// another uid, the built CLI as a child process with its log, and a receiving end for systemd's
// notifications (a unix datagram socket, through koffi: Node's net and dgram cannot make one).
import {ChildProcess, spawn} from 'node:child_process'
import {request} from 'node:http'
import {createServer} from 'node:net'
import {endianness} from 'node:os'

import {AwsDouble, UNSET_ENV} from '../support/aws-double/index.js'
import {repoRoot} from '../support/cli.js'

export const NOBODY = 65534
export const isRoot = process.getuid?.() === 0

/**
 * Points this process's AWS SDK at the double (an in-process daemon: the SDK's credential chain
 * reads process.env itself); returns the function that puts process.env back.
 */
export function useDoubleEnv(double: AwsDouble): () => void {
  const saved = {...process.env}
  Object.assign(process.env, double.env())
  for (const key of UNSET_ENV) delete process.env[key]
  return () => {
    process.env = saved
  }
}

/** A free loopback port (bound and released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

export interface Reply {
  status: number
  body: string
  headers: Record<string, string | string[] | undefined>
}

export function get(port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    request({host: '127.0.0.1', port, path, headers}, (res) => {
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body, headers: res.headers}))
    })
      .on('error', reject)
      .end()
  })
}

/** What the IMDSv2 credential flow got, as another uid: the token it was given included. */
export interface UserReply {
  token: {status: number; value: string}
  list: string
  credentials: {status: number; body: string}
}

/** The IMDSv2 credential flow (token, role listing, credentials), run as `uid` in a child process. */
export function asUser(uid: number, port: number): Promise<UserReply> {
  const script = `
    const http = require('node:http')
    const call = (method, path, headers) => new Promise((resolve, reject) => {
      const req = http.request({host: '127.0.0.1', port: ${port}, method, path, headers}, (res) => {
        let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve({status: res.statusCode, body}))
      }); req.on('error', reject); req.end()
    })
    ;(async () => {
      const token = await call('PUT', '/latest/api/token', {'x-aws-ec2-metadata-token-ttl-seconds': '60'})
      const h = {'x-aws-ec2-metadata-token': token.body}
      const list = await call('GET', '/latest/meta-data/iam/security-credentials/', h)
      const credentials = await call('GET', '/latest/meta-data/iam/security-credentials/' + list.body.trim(), h)
      process.stdout.write(JSON.stringify({token: {status: token.status, value: token.body}, list: list.body, credentials}))
    })().catch((e) => { process.stderr.write(String(e)); process.exit(1) })`
  return runAs<UserReply>(uid, script)
}

/** One plain request (IMDSv1 when no token is given), made as `uid` from a child process. */
export function requestAs(
  uid: number,
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{status: number; body: string}> {
  const script = `
    const req = require('node:http').request({host: '127.0.0.1', port: ${port}, path: ${JSON.stringify(path)}, headers: ${JSON.stringify(headers)}}, (res) => {
      let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => process.stdout.write(JSON.stringify({status: res.statusCode, body})))
    }); req.on('error', (e) => { process.stderr.write(String(e)); process.exit(1) }); req.end()`
  return runAs(uid, script)
}

/** Runs a CommonJS `script` as `uid` (its group too) and parses the JSON it writes to standard output. */
function runAs<T>(uid: number, script: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {uid, gid: uid, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (c) => (out += c))
    child.stderr.on('data', (c) => (err += c))
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child as uid ${uid} failed: ${err}`)),
    )
  })
}

/** The built `serve` as a child process, its standard error (the JSON log) collected. */
export interface ServeChild {
  child: ChildProcess
  log(): string
  /** The log's JSON lines that parse. */
  records(): Array<Record<string, unknown>>
  /** Waits until the log matches `pattern` (`count` times: give it the g flag's sense without the flag). */
  waitForLog(pattern: RegExp, options?: {ms?: number; count?: number}): Promise<void>
  /** Resolves with the exit code (null: killed by a signal). */
  exited: Promise<number | null>
}

export function spawnServe(args: string[], env: NodeJS.ProcessEnv): ServeChild {
  const child = spawn(process.execPath, ['bin/run.js', 'serve', '--allow-unprivileged-port', ...args], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  child.stderr!.on('data', (c) => (log += c))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    log: () => log,
    records: () =>
      log.split('\n').flatMap((line) => {
        try {
          return [JSON.parse(line) as Record<string, unknown>]
        } catch {
          return []
        }
      }),
    async waitForLog(pattern, {ms = 15_000, count = 1} = {}) {
      const until = Date.now() + ms
      const global = new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`)
      while ((log.match(global) ?? []).length < count) {
        if (Date.now() > until) throw new Error(`no ${pattern} in the daemon's log:\n${log}`)
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(
            `serve exited (${child.exitCode ?? child.signalCode}) before ${pattern} was logged:\n${log}`,
          )
        await new Promise((r) => setTimeout(r, 25))
      }
    },
    exited,
  }
}

/**
 * systemd's end of sd_notify: a unix datagram socket bound at `name` (a path, or '@name' in the
 * abstract namespace), read without blocking. The address is built here, not with the code
 * under test, so that a wrong address there cannot go unnoticed.
 */
export class NotifyReceiver {
  readonly messages: string[] = []
  private readonly buffer = Buffer.alloc(4096)
  private timer: NodeJS.Timeout | null = null

  private constructor(
    private readonly libc: NotifyLibc,
    private readonly fd: number,
  ) {}

  static async bind(name: string): Promise<NotifyReceiver> {
    const koffi = (await import('koffi')).default
    const lib = koffi.load(null as unknown as string)
    const libc: NotifyLibc = {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
      recv: lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
      close: lib.func('int close(int fd)'),
      errno: () => koffi.errno(),
    }
    const AF_UNIX = 1
    const SOCK_DGRAM = 2
    const SOCK_NONBLOCK = 0o4000
    const SOCK_CLOEXEC = 0o2000000
    const fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if (fd < 0) throw new Error(`socket(AF_UNIX, SOCK_DGRAM): errno ${libc.errno()}`)
    const abstract = name.startsWith('@')
    const path = abstract
      ? Buffer.concat([Buffer.from([0]), Buffer.from(name.slice(1))])
      : Buffer.from(`${name}\0`)
    const address = Buffer.alloc(110)
    if (endianness() === 'LE') address.writeUInt16LE(AF_UNIX, 0)
    else address.writeUInt16BE(AF_UNIX, 0)
    path.copy(address, 2)
    if (libc.bind(fd, address, 2 + path.length) !== 0) {
      const errno = libc.errno()
      libc.close(fd)
      throw new Error(`bind ${name}: errno ${errno}`)
    }
    const receiver = new NotifyReceiver(libc, fd)
    receiver.timer = setInterval(() => receiver.drain(), 10)
    return receiver
  }

  /** Every datagram waiting, into `messages`. */
  drain(): void {
    for (;;) {
      const n = this.libc.recv(this.fd, this.buffer, this.buffer.length, 0)
      if (n < 0) return // EAGAIN: nothing more for now
      this.messages.push(this.buffer.subarray(0, Number(n)).toString('utf8'))
    }
  }

  /** Waits until `count` messages have come. */
  async waitFor(count: number, ms = 15_000): Promise<string[]> {
    const until = Date.now() + ms
    while (this.messages.length < count) {
      if (Date.now() > until)
        throw new Error(
          `only ${this.messages.length} of ${count} notifications came: ${JSON.stringify(this.messages)}`,
        )
      await new Promise((r) => setTimeout(r, 20))
    }
    return this.messages
  }

  close(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.libc.close(this.fd)
  }
}

interface NotifyLibc {
  socket(domain: number, type: number, protocol: number): number
  bind(fd: number, addr: Buffer, addrlen: number): number
  recv(fd: number, buf: Buffer, len: number, flags: number): number | bigint
  close(fd: number): number
  errno(): number
}

/** A notification's fields, in order: `READY=1\nSTATUS=...` → [['READY', '1'], ['STATUS', '...']]. */
export function fieldsOf(message: string): Array<[string, string]> {
  return message.split('\n').map((line) => {
    const at = line.indexOf('=')
    return [line.slice(0, at), line.slice(at + 1)]
  })
}
