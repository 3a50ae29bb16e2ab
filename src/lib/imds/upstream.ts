// The daemon's own client for the real IMDS: one IMDSv2 session of its own (requests are
// passed on with the daemon's token, never the caller's), a short cache of plain answers, a
// hard deadline on every call so that a hung IMDS costs callers a fast 504 rather than their
// SDK's timeout, and the instance's own credentials for InstanceRole's fail_safe = False
// fallback. Credential paths are fetched only on request (root's passthrough, that fallback)
// and never cached. Its connections are shared fairly among the uids asking (fair.ts): one
// user's flood of distinct paths waits behind its own share, not everyone's. 404s are cached
// like 200s, so that asking the same missing path again costs no upstream call either.
import {Agent, request} from 'node:http'

import {UserError} from '../errors.js'
import type {Credentials} from '../methods/credentials.js'
import {FairLimiter, QueueTimeout} from '../fair.js'
import {isIamName} from '../iam/names.js'
import {foldedPath} from './paths.js'

export const DEFAULT_UPSTREAM = 'http://169.254.169.254'

export interface UpstreamAnswer {
  status: number
  contentType: string | null
  body: Buffer
}

/** The upstream could not answer: `timeout` (504 to the caller) or `failed` (502). */
export class UpstreamError extends Error {
  constructor(
    readonly kind: 'timeout' | 'failed',
    message: string,
  ) {
    super(message)
    this.name = 'UpstreamError'
  }
}

/** What the daemon's HTTP application needs of the upstream. */
export interface UpstreamClient {
  /** `path` is canonical (see paths.ts). Credential paths only with `{credentials: true}`. */
  get(path: string, options?: UpstreamGetOptions): Promise<UpstreamAnswer>
}

export interface UpstreamGetOptions {
  /** Credential paths are refused unless this is set (root's passthrough, InstanceRole's fallback). */
  credentials?: boolean
  /** Who asks: upstream connections are shared fairly among these (the daemon's own calls: none). */
  uid?: number
}

export interface UpstreamOptions {
  /** Default http://169.254.169.254 (`serve --upstream` points tests elsewhere). */
  baseUrl?: string
  /** Deadline of one call, connection included (default 1,000 ms: SDKs give IMDS one second). */
  timeoutMs?: number
  /** How long a 200 or 404 answer is reused (default 5,000 ms). */
  cacheTtlMs?: number
  cacheMaxEntries?: number
  /** Larger answers are refused (default 1 MiB; user data is at most 16 KiB). */
  maxBodyBytes?: number
  /** Connections to the upstream (default 16), and how many one uid may use at once (default 4). */
  maxConnections?: number
  maxConnectionsPerUid?: number
  /** TTL asked for the daemon's own session token (default 21,600 s, IMDS's maximum). */
  tokenTtlSeconds?: number
  now?: () => number
}

/** A credential path of IMDS, however it is spelled (the folded form ignores case and punctuation). */
export const isCredentialPath = (path: string): boolean => foldedPath(path).includes('securitycredentials')

interface Cached {
  answer: UpstreamAnswer
  until: number
}

export class ImdsUpstream implements UpstreamClient {
  private readonly host: string
  private readonly port: number
  private readonly agent: Agent
  private readonly limiter: FairLimiter<number | 'daemon'>
  private readonly now: () => number
  private readonly timeoutMs: number
  private readonly cacheTtlMs: number
  private readonly cacheMaxEntries: number
  private readonly maxBodyBytes: number
  private readonly tokenTtlSeconds: number
  private readonly cache = new Map<string, Cached>()
  private readonly inflight = new Map<string, Promise<UpstreamAnswer>>()
  private session: {token: string; renewAt: number} | null = null
  private sessionFlight: Promise<string> | null = null

  constructor(options: UpstreamOptions = {}) {
    const base = new URL(options.baseUrl ?? DEFAULT_UPSTREAM)
    if (base.protocol !== 'http:')
      throw new UserError('usage', `the upstream IMDS must be an http:// URL, not '${base.href}'`)
    this.host = base.hostname.replace(/^\[(.*)\]$/, '$1')
    this.port = base.port === '' ? 80 : Number(base.port)
    this.now = options.now ?? Date.now
    this.timeoutMs = options.timeoutMs ?? 1000
    this.cacheTtlMs = options.cacheTtlMs ?? 5000
    this.cacheMaxEntries = options.cacheMaxEntries ?? 500
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024
    this.tokenTtlSeconds = options.tokenTtlSeconds ?? 21600
    const maxSockets = options.maxConnections ?? 16
    this.agent = new Agent({keepAlive: true, maxSockets})
    this.limiter = new FairLimiter({
      total: maxSockets,
      perKey: Math.min(maxSockets, options.maxConnectionsPerUid ?? 4),
      maxWaitMs: this.timeoutMs,
      resource: 'upstream connection',
    })
  }

  async get(path: string, options: UpstreamGetOptions = {}): Promise<UpstreamAnswer> {
    const credentials = isCredentialPath(path)
    if (credentials && !options.credentials)
      throw new Error(`refusing to pass the credential path ${path} upstream`)
    const who = options.uid ?? 'daemon'
    if (credentials) return this.fair(who, () => this.fetch(path))
    const cached = this.cache.get(path)
    if (cached && this.now() < cached.until) return cached.answer
    // Someone's request for this path is already on a connection: wait for that answer, taking
    // no share of one's own. One still waiting for a connection is not joined: it waits in its
    // asker's share, which may be full of that asker's own flood.
    const answer = await (this.inflight.get(path) ??
      this.fair(who, () => {
        const started = this.inflight.get(path)
        if (started) return started
        const fetching = this.fetch(path)
        const done = () => {
          if (this.inflight.get(path) === fetching) this.inflight.delete(path)
        }
        fetching.then(done, done)
        this.inflight.set(path, fetching)
        return fetching
      }))
    if ((answer.status === 200 || answer.status === 404) && this.cacheTtlMs > 0) this.remember(path, answer)
    return answer
  }

  /** Runs an upstream call within `who`'s share of the connections; no share free in time: a timeout. */
  private async fair(who: number | 'daemon', call: () => Promise<UpstreamAnswer>): Promise<UpstreamAnswer> {
    try {
      return await this.limiter.run(who, call)
    } catch (error) {
      if (error instanceof QueueTimeout) throw new UpstreamError('timeout', error.message)
      throw error
    }
  }

  /**
   * The instance's own credentials (InstanceRole with fail_safe = False): the role IMDS lists
   * and its credentials document. `arn` is the role's ARN as far as IMDS shows it (account and
   * partition from /iam/info; a role path cannot be seen from the instance).
   */
  async instanceCredentials(): Promise<Credentials> {
    const listing = await this.get('/latest/meta-data/iam/security-credentials/', {credentials: true})
    if (listing.status !== 200)
      throw new UserError(
        'unavailable',
        `the instance metadata service lists no instance role (HTTP ${listing.status})`,
      )
    const role = listing.body.toString('utf8').split('\n')[0].trim()
    if (!isIamName(role))
      throw new UserError(
        'unexpected',
        'the instance metadata service listed an instance role name that is not one',
      )
    const answer = await this.get(`/latest/meta-data/iam/security-credentials/${role}`, {credentials: true})
    if (answer.status !== 200)
      throw new UserError(
        'unavailable',
        `the instance metadata service has no credentials for role ${role} (HTTP ${answer.status})`,
      )
    return {...parseCredentialsDocument(answer.body.toString('utf8'), role), arn: await this.roleArn(role)}
  }

  /** Closes the kept-alive connections (at shutdown). */
  close(): void {
    this.agent.destroy()
  }

  private async roleArn(role: string): Promise<string> {
    try {
      const info = await this.get('/latest/meta-data/iam/info')
      const arn = (JSON.parse(info.body.toString('utf8')) as {InstanceProfileArn?: unknown})
        .InstanceProfileArn
      const [, partition, , , account] = typeof arn === 'string' ? arn.split(':') : []
      if (info.status === 200 && partition && /^\d{12}$/.test(account ?? ''))
        return `arn:${partition}:iam::${account}:role/${role}`
    } catch {
      // The ARN is only shown to people; the credentials stand without it.
    }
    return `role/${role}`
  }

  private remember(path: string, answer: UpstreamAnswer): void {
    this.cache.delete(path)
    while (this.cache.size >= this.cacheMaxEntries) this.cache.delete(this.cache.keys().next().value!)
    this.cache.set(path, {answer, until: this.now() + this.cacheTtlMs})
  }

  /** GET with the daemon's session; a 401 means IMDS forgot the token: one new session, one retry. */
  private async fetch(path: string): Promise<UpstreamAnswer> {
    const token = await this.token()
    const answer = await this.send('GET', path, {'x-aws-ec2-metadata-token': token})
    if (answer.status !== 401) return answer
    if (this.session?.token === token) this.session = null
    return this.send('GET', path, {'x-aws-ec2-metadata-token': await this.token()})
  }

  /** The daemon's session token, renewed well before it expires; one PUT at a time. */
  private token(): Promise<string> {
    if (this.session && this.now() < this.session.renewAt) return Promise.resolve(this.session.token)
    this.sessionFlight ??= (async () => {
      try {
        const ttl = this.tokenTtlSeconds
        const answer = await this.send('PUT', '/latest/api/token', {
          'x-aws-ec2-metadata-token-ttl-seconds': String(ttl),
        })
        const token = answer.body.toString('utf8').trim()
        if (answer.status !== 200 || token === '')
          throw new UpstreamError(
            'failed',
            `the instance metadata service refused a session token (HTTP ${answer.status})`,
          )
        this.session = {token, renewAt: this.now() + Math.max(ttl * 500, ttl * 1000 - 300_000)}
        return token
      } finally {
        this.sessionFlight = null
      }
    })()
    return this.sessionFlight
  }

  private send(method: string, path: string, headers: Record<string, string>): Promise<UpstreamAnswer> {
    return new Promise((resolve, reject) => {
      let settled = false
      const settle = (error: Error | null, answer?: UpstreamAnswer) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (error) reject(error)
        else resolve(answer!)
      }
      const fail = (error: UpstreamError) => {
        settle(error)
        req.destroy()
      }
      const req = request({host: this.host, port: this.port, method, path, headers, agent: this.agent})
      const timer = setTimeout(
        () =>
          fail(
            new UpstreamError(
              'timeout',
              `the instance metadata service did not answer ${method} ${path} within ${this.timeoutMs} ms`,
            ),
          ),
        this.timeoutMs,
      )
      req.on('error', (error) =>
        settle(
          new UpstreamError('failed', `the instance metadata service could not be reached: ${error.message}`),
        ),
      )
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > this.maxBodyBytes)
            fail(
              new UpstreamError(
                'failed',
                `the instance metadata service answered ${method} ${path} with more than ${this.maxBodyBytes} bytes`,
              ),
            )
          else chunks.push(chunk)
        })
        res.on('error', (error) =>
          settle(
            new UpstreamError('failed', `the instance metadata service's answer broke off: ${error.message}`),
          ),
        )
        res.on('close', () => {
          if (!res.complete)
            settle(
              new UpstreamError(
                'failed',
                `the instance metadata service's answer to ${method} ${path} broke off`,
              ),
            )
        })
        res.on('end', () => {
          const type = res.headers['content-type']
          settle(null, {
            status: res.statusCode ?? 502,
            contentType: typeof type === 'string' ? type : null,
            body: Buffer.concat(chunks),
          })
        })
      })
      req.end()
    })
  }
}

/** IMDS's credentials document as the broker's Credentials (less `arn`); anything short of complete is refused. */
export function parseCredentialsDocument(text: string, role: string): Omit<Credentials, 'arn'> {
  let doc: Record<string, unknown>
  try {
    doc = JSON.parse(text) as Record<string, unknown>
  } catch {
    throw new UserError(
      'unexpected',
      `the instance metadata service's credentials for role ${role} are not JSON`,
    )
  }
  const {Code, AccessKeyId, SecretAccessKey, Token, Expiration} = doc ?? {}
  if (Code !== 'Success')
    throw new UserError(
      'unavailable',
      `the instance metadata service's credentials for role ${role} have Code ${JSON.stringify(Code)}`,
    )
  const expiration = typeof Expiration === 'string' ? new Date(Expiration) : new Date(NaN)
  if (
    typeof AccessKeyId !== 'string' ||
    typeof SecretAccessKey !== 'string' ||
    typeof Token !== 'string' ||
    Number.isNaN(expiration.getTime())
  )
    throw new UserError(
      'unexpected',
      `the instance metadata service's credentials for role ${role} are incomplete`,
    )
  return {accessKeyId: AccessKeyId, secretAccessKey: SecretAccessKey, sessionToken: Token, expiration}
}
