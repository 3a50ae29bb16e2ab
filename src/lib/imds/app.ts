// The IMDS-exact HTTP application of `serve`, built without a socket: `handle(req, res, who)`
// answers one request, and `who` tells it the local user behind the connection (server.ts
// finds it once per TCP connection). The protections are steps in front of the routes, in
// this order; each may answer and end the request:
//
//   limits    a request target of at most 2 KiB, and no request body (IMDS takes none)
//   host      the Host header names IMDS or this listener (a DNS-rebinding guard)
//   path      the canonical path (paths.ts); what cannot be made canonical is a 400
//   owner     the connection's owner; none found, or a uid no local user has: 404 to
//             everything (below)
//   route     the route table (first match); a known path with another method: 405
//   tokens    IMDSv2: the token PUT refuses X-Forwarded-For; a token given must be good for
//             this uid (else 401); none given is IMDSv1, refused under require_imdsv2
//
// A connection whose owner cannot be found gets 404 for every path, not only the credential
// paths. Passing its other requests upstream would be safe for credentials (the route table
// and upstream.ts keep those in), but it would make the daemon an open relay to the instance's
// IMDS with the daemon's own session: a caller the kernel cannot place (another network
// namespace, a forwarded connection) would get past IMDSv2's hop limit to user data, the
// identity document and tags. Such a caller gets nothing. The same for a uid that the user
// database does not know (a container's process on the host network, a deleted user's
// leftover job): no user, no metadata.
//
// Every request for a credential path is audited, also when a step refuses it (a bad token, no
// owner, 405...): outcome `denied` and the reason.
//
// Non-root users get their own credentials from the broker on the credential paths, and
// everything else from the upstream; root (uid 0) gets everything, credential paths included,
// from the upstream, as the Python tool did. Tokens are always the daemon's own.
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {MethodName} from '../config/schema.js'
import type {LocalUser} from '../host/users.js'
import type {CredentialBroker} from '../methods/broker.js'
import type {Credentials} from '../methods/credentials.js'
import {credentialsDocument, errorPage, iamInfoDocument, IamInfo} from './format.js'
import {CanonicalPath, canonicalPath, foldedPath, MAX_DECODE_ROUNDS} from './paths.js'
import {TOKEN_TTL_MAX, TOKEN_TTL_MIN, TokenStore} from './tokens.js'
import {isCredentialPath, UpstreamClient, UpstreamError, UpstreamGetOptions} from './upstream.js'

/** The local user behind a connection; `user` is null for a uid the user database does not know. */
export interface Identity {
  uid: number
  user: LocalUser | null
}

/**
 * Finds the connection's owner: null when the kernel does not say (fail closed). Once it is
 * known (a connection's later requests), the answer may come at once rather than as a promise.
 */
export type WhoAsks = () => Promise<Identity | null> | Identity | null

/** One record per credential request. Never a secret key, session token or IMDSv2 token. */
export interface AuditRecord {
  time: string
  /** null when the connection's owner could not be found (or the request was refused before). */
  uid: number | null
  user: string | null
  httpMethod: string
  /** The canonical path asked for. */
  path: string
  /** The chain's method that issued; null when none did (or for root's passthrough). */
  method: MethodName | null
  roleArn: string | null
  accessKeyId: string | null
  expiration: string | null
  /** These exact credentials were handed out before (see `served`); null when none were issued. */
  cacheHit: boolean | null
  /**
   * issued: the chain gave credentials; none: no method of the chain was for the user;
   * error: the chain (or the daemon) failed; denied: refused before the chain was asked (no
   * owner found, no local user for the uid, a bad or missing IMDSv2 token, a bad request,
   * another role's name, a path that only looks like a credential path); upstream: root's
   * request, passed to the real IMDS.
   */
  outcome: 'issued' | 'none' | 'error' | 'denied' | 'upstream'
  latencyMs: number
  /**
   * Why, for every outcome but issued: the chain's skip reasons or error message. For issued:
   * what the session policy's compiler warned of (statements left out, denied or changed), or null.
   */
  detail: string | null
}

/** What the chain issued, as the audit record names it. */
interface Issued {
  method: MethodName
  roleArn: string
  accessKeyId: string
  expiration: string
  cacheHit: boolean
}

/** A set of credentials handed out: when first (its LastUpdated), and its expiration as audited. */
interface Served {
  lastUpdated: Date
  expirationMs: number
  expiration: string
}

/** One record per request, for the access log. */
export interface RequestRecord {
  time: string
  uid: number | null
  httpMethod: string
  path: string
  route: string | null
  status: number
  latencyMs: number
}

export interface ImdsAppDeps {
  broker: Pick<CredentialBroker, 'credentialsFor'>
  /** The instance role's name: what `security-credentials/` lists. */
  instanceRoleName: () => Promise<string>
  upstream: UpstreamClient
  tokens: Pick<TokenStore, 'mint' | 'remainingSeconds'>
  config: {general: {require_imdsv2: boolean; deny_user_data: boolean; deny_instance_identity: boolean}}
  /** Written before the request is answered: a failure here answers 500, never credentials. */
  audit: (record: AuditRecord) => void
  /** Told every audit record once its request was answered (metrics: nothing to wait for). */
  audited?: (record: AuditRecord) => void
  log?: (record: RequestRecord) => void
  /** Told the details behind every 5xx (the caller only sees a generic page). */
  warn?: (message: string) => void
  now?: () => number
  /** Host header values accepted besides IMDS's addresses and the listener's own address. */
  extraHosts?: string[]
}

/** An answer is built whole before anything is written: never a partial document. */
export interface Answer {
  status: number
  body: string | Buffer
  contentType?: string
  headers?: Record<string, string>
  /** Close the connection after answering (a request whose body was refused). */
  close?: boolean
  /** Why a step refused the request: the audit record's detail. */
  why?: string
}

interface Context {
  req: IncomingMessage
  who: WhoAsks
  started: number
  path?: CanonicalPath
  identity?: Identity
  route?: Route
  /** The route's match: [path, ...groups]. */
  match?: string[]
  /** Seconds left on the request's IMDSv2 token (IMDS echoes them). */
  tokenSecondsLeft?: number
  /** The audit record written for this request (null: writing it failed). */
  audited?: AuditRecord | null
}

type Step = (ctx: Context) => Promise<Answer | undefined> | Answer | undefined
/** A request that went through every step: its path, owner and route match are known. */
type Routed = Context & Required<Pick<Context, 'path' | 'identity' | 'match'>>
type Handler = (ctx: Routed) => Promise<Answer>

interface Route {
  name: string
  methods: readonly string[]
  /** Tested on the canonical path without its version (`meta-data/iam/info`). */
  path: RegExp | ((path: string) => boolean)
  /**
   * Only under `/latest/`: IMDS takes the token PUT there alone. Elsewhere the path goes on
   * down the table (and a PUT finds only GET routes: 405).
   */
  latestOnly?: boolean
  handler: Handler
}

const GET = ['GET', 'HEAD'] as const
const PUT = ['PUT'] as const

/** A path whose folded form holds `securitycredentials`, however spelled (paths.ts foldedPath). */
const CREDENTIAL_LOOKALIKE = isCredentialPath

/** `user-data` and everything under it, spelled in any case or punctuation (deny_user_data). */
const USER_DATA = (path: string) => foldedPath(path.split('/')[0]) === 'userdata'

/** The token PUT's path (under `latest` only: see the route's `latestOnly`). */
const TOKEN = /^api\/token$/i

/** `dynamic/instance-identity` and everything under it, however spelled (deny_instance_identity). */
const INSTANCE_IDENTITY = (path: string) => foldedPath(path).startsWith('dynamicinstanceidentity')

/** IMDS's own addresses, as a Host header names them. */
const IMDS_HOSTS = ['169.254.169.254', '169.254.169.254:80', '[fd00:ec2::254]', '[fd00:ec2::254]:80']

const MAX_TARGET = 2048

export const page = (status: number, headers?: Record<string, string>): Answer => ({
  status,
  body: errorPage(status),
  contentType: 'text/html',
  headers,
})
/** A step's refusal: the page, and why (audited when the path is a credential path). */
const refusal = (status: number, why: string, extra?: Partial<Answer>): Answer => ({...page(status), why, ...extra})
const text = (body: string | Buffer, contentType = 'text/plain'): Answer => ({status: 200, body, contentType})

export class ImdsApp {
  private readonly now: () => number
  /** When each set of credentials was first handed out: their LastUpdated, and cacheHit. */
  private readonly served = new WeakMap<Credentials, Served>()
  /** The last audit time written, as a time and as text (requests come many a millisecond). */
  private lastTime = {ms: NaN, text: ''}
  /** Host header values accepted on every listener (IMDS's, and extraHosts). */
  private readonly hosts: ReadonlySet<string>

  // ------------------------------------------------------------------ the route tables
  // Credential routes match case-insensitively: AWS's paths are case-sensitive, so no SDK
  // spells them otherwise, but `IAM/Security-Credentials/` must still never go upstream.

  /** Non-root users. First match wins. */
  // prettier-ignore
  private readonly userRoutes: Route[] = [
    {name: 'token', methods: PUT, path: TOKEN, latestOnly: true, handler: (ctx) => this.mintToken(ctx)},
    {name: 'role-name', methods: GET, path: /^meta-data\/iam\/security-credentials(?:-extended)?$/i, handler: (ctx) => this.roleName(ctx)},
    {name: 'credentials', methods: GET, path: /^meta-data\/iam\/security-credentials(-extended)?\/([^/]+)$/i, handler: (ctx) => this.credentials(ctx)},
    {name: 'iam-info', methods: GET, path: /^meta-data\/iam\/info$/i, handler: (ctx) => this.iamInfo(ctx)},
    {name: 'instance-identity', methods: GET, path: /^meta-data\/identity-credentials\/ec2\/security-credentials(?:\/|$)/i, handler: (ctx) => this.refuse(ctx, 'the instance identity credentials are for root only')},
    {name: 'credential-lookalike', methods: GET, path: CREDENTIAL_LOOKALIKE, handler: (ctx) => this.refuse(ctx, 'not a credential path of IMDS, but spelled like one')},
    {name: 'user-data', methods: GET, path: USER_DATA, handler: (ctx) => this.userData(ctx)},
    {name: 'instance-identity-document', methods: GET, path: INSTANCE_IDENTITY, handler: (ctx) => this.instanceIdentity(ctx)},
    {name: 'upstream', methods: GET, path: /^/, handler: (ctx) => this.passThrough(ctx)},
  ]

  /** root (uid 0): everything upstream, credential paths included. */
  // prettier-ignore
  private readonly rootRoutes: Route[] = [
    {name: 'token', methods: PUT, path: TOKEN, latestOnly: true, handler: (ctx) => this.mintToken(ctx)},
    {name: 'root-credentials', methods: GET, path: CREDENTIAL_LOOKALIKE, handler: (ctx) => this.rootCredentials(ctx)},
    {name: 'upstream', methods: GET, path: /^/, handler: (ctx) => this.passThrough(ctx)},
  ]

  // ------------------------------------------------------------------ the steps before them

  private readonly steps: Step[] = [
    (ctx) => this.limits(ctx),
    (ctx) => this.host(ctx),
    (ctx) => this.path(ctx),
    (ctx) => this.owner(ctx),
    (ctx) => this.route(ctx),
    (ctx) => this.tokenRules(ctx),
  ]

  constructor(private readonly deps: ImdsAppDeps) {
    this.now = deps.now ?? Date.now
    this.hosts = new Set([...IMDS_HOSTS, ...(deps.extraHosts ?? []).map((h) => h.toLowerCase())])
  }

  /** Answers one request. Never throws: a failure is a generic 500, its details go to `warn`. */
  async handle(req: IncomingMessage, res: ServerResponse, who: WhoAsks): Promise<void> {
    const ctx: Context = {req, who, started: this.now()}
    let answer: Answer | undefined
    try {
      // Most steps answer at once: wait only for those that do not.
      for (const step of this.steps) {
        const result = step(ctx)
        if ((answer = result instanceof Promise ? await result : result)) break
      }
      if (!answer) answer = await ctx.route!.handler(ctx as Routed)
    } catch (error) {
      this.deps.warn?.(
        `IMDS ${req.method} ${ctx.path?.upstreamPath ?? '(unparsed path)'} for uid ${ctx.identity?.uid ?? '?'}: ${message(error)}`,
      )
      answer = refusal(500, `the daemon failed: ${message(error)}`)
    }
    this.send(res, ctx, answer)
    // A credential request a step refused (outcome denied), or that failed before its handler (error).
    if (ctx.audited === undefined && answer.why !== undefined && asksForCredentials(ctx))
      this.audit(ctx, answer.status === 500 ? 'error' : 'denied', `HTTP ${answer.status}: ${answer.why}`)
    if (ctx.audited && this.deps.audited)
      try {
        this.deps.audited(ctx.audited)
      } catch (error) {
        this.deps.warn?.(`counting a credential request failed: ${message(error)}`)
      }
    // A failing access log must not take the daemon down (handle's promise is not awaited).
    this.logRequest(ctx, answer)
  }

  private logRequest(ctx: Context, answer: Answer): void {
    const {req} = ctx
    try {
      this.deps.log?.({
        time: new Date(this.now()).toISOString(),
        uid: ctx.identity?.uid ?? null,
        httpMethod: req.method ?? '',
        path: ctx.path?.upstreamPath ?? '(unparsed)',
        route: ctx.route?.name ?? null,
        status: answer.status,
        latencyMs: this.now() - ctx.started,
      })
    } catch (error) {
      this.deps.warn?.(`the IMDS access log failed: ${message(error)}`)
    }
  }

  private limits(ctx: Context): Promise<Answer | undefined> | Answer | undefined {
    const {req} = ctx
    if ((req.url ?? '').length > MAX_TARGET)
      return refusal(414, `a request target longer than ${MAX_TARGET} bytes`, {close: true})
    // IMDS takes no request body. An empty one (Content-Length: 0, or chunked with no data,
    // as some clients send with PUT) is fine; any byte of one is a 400.
    const length = req.headers['content-length']
    if (length !== undefined && length !== '0') return refusal(400, 'a request body', {close: true})
    if (req.headers['transfer-encoding'] !== undefined)
      return bodyIsEmpty(req).then((empty) => {
        if (!empty) return refusal(400, 'a request body', {close: true})
        req.resume()
        return undefined
      })
    req.resume()
    return undefined
  }

  private host(ctx: Context): Answer | undefined {
    const host = ctx.req.headers.host?.toLowerCase()
    if (host !== undefined && (this.hosts.has(host) || host === ownHost(ctx.req))) return undefined
    return refusal(400, `Host ${host === undefined ? 'missing' : JSON.stringify(host.slice(0, 100))} is not the metadata service's`)
  }

  private path(ctx: Context): Answer | undefined {
    const result = canonicalPath(ctx.req.url ?? '')
    if ('error' in result) return refusal(400, `the path cannot be made canonical: ${result.error}`)
    ctx.path = result
    return undefined
  }

  private owner(ctx: Context): Promise<Answer | undefined> | Answer | undefined {
    const found = ctx.who()
    if (found instanceof Promise) return found.then((identity) => this.ownerIs(ctx, identity))
    return this.ownerIs(ctx, found)
  }

  private ownerIs(ctx: Context, identity: Identity | null): Answer | undefined {
    // Closed meanwhile by the listener: over its owner's connection cap (server.ts).
    if (ctx.req.socket.destroyed) return refusal(503, 'the connection was closed (over its owner’s connection limit)')
    if (!identity) return refusal(404, "the connection's owner could not be found")
    ctx.identity = identity
    if (identity.uid !== 0 && !identity.user) return refusal(404, `no local user has uid ${identity.uid}`)
    return undefined
  }

  private route(ctx: Context): Answer | undefined {
    const routes = ctx.identity!.uid === 0 ? this.rootRoutes : this.userRoutes
    const path = ctx.path!.path
    for (const route of routes) {
      if (route.latestOnly && ctx.path!.version !== 'latest') continue
      const match =
        typeof route.path === 'function' ? (route.path(path) ? [path] : null) : route.path.exec(path)
      if (!match) continue
      ctx.route = route
      ctx.match = match
      return route.methods.includes(ctx.req.method ?? '')
        ? undefined
        : refusal(405, `method ${ctx.req.method} (${route.methods.join(', ')} only)`, {
            headers: {Allow: route.methods.join(', ')},
          })
    }
    throw new Error('no route matched (the last route matches every path)')
  }

  private tokenRules(ctx: Context): Answer | undefined {
    const {req} = ctx
    if (ctx.route!.name === 'token')
      return req.headers['x-forwarded-for'] !== undefined ? refusal(403, 'a token PUT with X-Forwarded-For') : undefined
    const token = req.headers['x-aws-ec2-metadata-token']
    if (token === undefined)
      return this.deps.config.general.require_imdsv2 ? refusal(401, 'no IMDSv2 token (require_imdsv2)') : undefined
    const left =
      typeof token === 'string' ? this.deps.tokens.remainingSeconds(token, ctx.identity!.uid) : null
    if (left === null) return refusal(401, "an IMDSv2 token that is unknown, expired or another uid's")
    ctx.tokenSecondsLeft = left
    return undefined
  }

  // ------------------------------------------------------------------ the handlers

  private async mintToken(ctx: Routed): Promise<Answer> {
    const raw = ctx.req.headers['x-aws-ec2-metadata-token-ttl-seconds']
    const ttl = typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : NaN
    if (!(ttl >= TOKEN_TTL_MIN && ttl <= TOKEN_TTL_MAX)) return page(400)
    const token = this.deps.tokens.mint(ctx.identity.uid, ttl)
    return {...text(token), headers: {'X-aws-ec2-metadata-token-ttl-seconds': String(ttl)}}
  }

  private async roleName(ctx: Routed): Promise<Answer> {
    if (!ctx.identity.user) return page(404)
    return text(await this.deps.instanceRoleName())
  }

  private async credentials(ctx: Routed): Promise<Answer> {
    const [, extended, name] = ctx.match
    const {user} = ctx.identity
    const record = (outcome: AuditRecord['outcome'], detail: string | null, issued?: Issued) =>
      this.audit(ctx, outcome, detail, issued)

    if (!user) {
      record('denied', `no local user has uid ${ctx.identity.uid}`)
      return page(404)
    }
    try {
      const role = await this.deps.instanceRoleName()
      if (name !== role) {
        record('denied', `'${name}' is not the instance role (${role})`)
        return page(404)
      }
      const outcome = await this.deps.broker.credentialsFor(user)
      if (!outcome.ok) {
        if (outcome.error) record('error', `${outcome.error.method}: ${outcome.error.message}`)
        else
          record(
            'none',
            outcome.skipped.map((s) => `${s.method}: ${s.reason}`).join('; ') || 'the chain is empty',
          )
        return page(outcome.error ? 500 : 404)
      }
      const {credentials} = outcome
      const firstServed = this.served.get(credentials)
      let served = firstServed
      if (!served || served.expirationMs !== credentials.expiration.getTime()) {
        served = {
          lastUpdated: firstServed?.lastUpdated ?? new Date(this.now()),
          expirationMs: credentials.expiration.getTime(),
          expiration: credentials.expiration.toISOString(),
        }
        this.served.set(credentials, served)
      }
      const body = credentialsDocument(
        credentials,
        served.lastUpdated,
        extended ? accountOf(credentials.arn, outcome.roleArn) : undefined,
      )
      record('issued', outcome.warnings.length > 0 ? outcome.warnings.join('; ') : null, {
        method: outcome.method,
        roleArn: outcome.roleArn,
        accessKeyId: credentials.accessKeyId,
        expiration: served.expiration,
        cacheHit: firstServed !== undefined,
      })
      return text(body)
    } catch (error) {
      record('error', message(error))
      return page(500)
    }
  }

  /** IMDS's /iam/info: the instance profile as the upstream tells it, in EC2's exact format. */
  private async iamInfo(ctx: Routed): Promise<Answer> {
    if (!ctx.identity.user) return page(404)
    const answer = await this.upstream(`/${ctx.path.version ?? 'latest'}/meta-data/iam/info`, {uid: ctx.identity.uid})
    if (answer.status !== 200) return answer
    let info: Partial<IamInfo>
    try {
      info = JSON.parse(answer.body.toString()) as Partial<IamInfo>
    } catch {
      info = {}
    }
    if (
      typeof info.LastUpdated !== 'string' ||
      typeof info.InstanceProfileArn !== 'string' ||
      typeof info.InstanceProfileId !== 'string'
    ) {
      this.deps.warn?.('the instance metadata service answered /iam/info with a document that is not one')
      return page(502)
    }
    return text(iamInfoDocument(info as IamInfo))
  }

  private async refuse(ctx: Routed, why: string): Promise<Answer> {
    this.audit(ctx, 'denied', why)
    return page(404)
  }

  private async userData(ctx: Routed): Promise<Answer> {
    return this.deps.config.general.deny_user_data ? page(404) : this.passThrough(ctx)
  }

  private async instanceIdentity(ctx: Routed): Promise<Answer> {
    return this.deps.config.general.deny_instance_identity ? page(404) : this.passThrough(ctx)
  }

  private async rootCredentials(ctx: Routed): Promise<Answer> {
    const answer = await this.upstream(ctx.path.upstreamPath, {credentials: true, uid: 0})
    this.audit(ctx, 'upstream', `HTTP ${answer.status}`)
    return answer
  }

  private async passThrough(ctx: Routed): Promise<Answer> {
    return this.upstream(ctx.path.upstreamPath, {uid: ctx.identity.uid})
  }

  /** The upstream's answer as it is (status, content type, body), or 504/502 when it has none. */
  private async upstream(path: string, options?: UpstreamGetOptions): Promise<Answer & {body: Buffer}> {
    try {
      const answer = await this.deps.upstream.get(path, options)
      return {status: answer.status, body: answer.body, contentType: answer.contentType ?? undefined}
    } catch (error) {
      this.deps.warn?.(`upstream IMDS, GET ${path}: ${message(error)}`)
      const status = error instanceof UpstreamError && error.kind === 'timeout' ? 504 : 502
      return {...page(status), body: Buffer.from(errorPage(status))}
    }
  }

  // ------------------------------------------------------------------ answering

  /** Writes the request's audit record (one literal, in the log's field order: it runs once per credential request). */
  private audit(ctx: Context, outcome: AuditRecord['outcome'], detail: string | null, issued?: Issued): void {
    const now = this.now()
    if (now !== this.lastTime.ms) this.lastTime = {ms: now, text: new Date(now).toISOString()}
    const record: AuditRecord = {
      time: this.lastTime.text,
      uid: ctx.identity?.uid ?? null,
      user: ctx.identity?.user?.name ?? null,
      httpMethod: ctx.req.method ?? '',
      path: ctx.path?.upstreamPath ?? `(raw) ${printableTarget(ctx.req.url ?? '')}`,
      outcome,
      detail,
      method: issued?.method ?? null,
      roleArn: issued?.roleArn ?? null,
      accessKeyId: issued?.accessKeyId ?? null,
      expiration: issued?.expiration ?? null,
      cacheHit: issued?.cacheHit ?? null,
      latencyMs: now - ctx.started,
    }
    ctx.audited = null // one attempt per request: a failed one answers 500 and is not counted
    this.deps.audit(record)
    ctx.audited = record
  }

  private send(res: ServerResponse, ctx: Context, answer: Answer): void {
    if (res.headersSent || res.destroyed) return
    // One writeHead with the headers as a list (no header appears twice: answer.headers holds
    // only Allow or the token PUT's TTL); a string body goes out as it is, with the headers.
    const {body} = answer
    const headers = ['Server', 'EC2ws'] // as IMDS: some tools look for it to recognise IMDS
    if (answer.contentType) headers.push('Content-Type', answer.contentType)
    // Also for HEAD, whose body Node leaves out. res.end writes a string as UTF-8.
    headers.push('Content-Length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length))
    if (ctx.tokenSecondsLeft !== undefined && answer.status === 200)
      headers.push('X-aws-ec2-metadata-token-ttl-seconds', String(ctx.tokenSecondsLeft))
    if (answer.headers) for (const [name, value] of Object.entries(answer.headers)) headers.push(name, value)
    if (answer.close) headers.push('Connection', 'close')
    res.writeHead(answer.status, headers)
    res.end(body)
  }
}

export function createImdsApp(deps: ImdsAppDeps): ImdsApp {
  return new ImdsApp(deps)
}

/** The account of the issued credentials: from the session's ARN, else the role's. */
function accountOf(sessionArn: string, roleArn: string): string | undefined {
  return [sessionArn, roleArn]
    .map((arn) => arn.split(':')[4])
    .find((account) => /^\d{12}$/.test(account ?? ''))
}

/** The listener's own address as a Host header names it (`127.0.0.1:808`, `[::1]:808`). */
function ownHost(req: IncomingMessage): string | undefined {
  const {localAddress, localPort} = req.socket
  if (!localAddress) return undefined
  const own = localAddress.replace(/^::ffff:(?=\d+\.)/, '')
  return own.includes(':') ? `[${own}]:${localPort}` : `${own}:${localPort}`
}

/**
 * The request asks for a credential path, or something spelled like one: its canonical path,
 * or, when it has none (refused before), its raw target decoded as far as it goes, with the
 * escapes left dropped (foldedPath drops the rest of the punctuation).
 */
function asksForCredentials(ctx: Context): boolean {
  if (ctx.path) return isCredentialPath(ctx.path.path)
  let target = ctx.req.url ?? ''
  for (let round = 0; round < MAX_DECODE_ROUNDS; round++)
    try {
      const next = decodeURIComponent(target)
      if (next === target) break
      target = next
    } catch {
      break
    }
  return isCredentialPath(target.replace(/%[0-9a-f]{2}/gi, ''))
}

/** A request target as an audit record shows it: printable ASCII, at most 200 characters. */
function printableTarget(target: string): string {
  const shown = target.length > 200 ? `${target.slice(0, 200)}...` : target
  return shown.replace(/[^\x21-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/** Reads a chunked body far enough to know whether it holds anything. */
function bodyIsEmpty(req: IncomingMessage): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (empty: boolean) => {
      req.off('data', onData).off('end', onEnd).off('error', onError)
      if (!empty) req.pause()
      resolve(empty)
    }
    const onData = (chunk: Buffer) => chunk.length > 0 && done(false)
    const onEnd = () => done(true)
    const onError = () => done(false)
    req.on('data', onData).on('end', onEnd).on('error', onError)
  })
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error))
