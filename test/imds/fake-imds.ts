// Test doubles for the IMDS application: a fake upstream IMDS on a loopback port (IMDSv2
// only, recording every request), a fake credential broker, and the app served on a loopback
// port with an injected connection owner, so no root and no iptables are needed.
import {once} from 'node:events'
import {createServer, IncomingMessage, request, Server, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import {AuditRecord, createImdsApp, Identity, ImdsAppDeps, RequestRecord} from '../../src/lib/imds/app.js'
import {createImdsServer, ImdsServerLimits} from '../../src/lib/imds/server.js'
import {TokenStore} from '../../src/lib/imds/tokens.js'
import {ImdsUpstream, isCredentialPath, UpstreamOptions} from '../../src/lib/imds/upstream.js'
import type {LocalUser} from '../../src/lib/host/users.js'
import type {IssueOutcome} from '../../src/lib/methods/broker.js'
import type {Credentials} from '../../src/lib/methods/credentials.js'

export const ROLE = 'analytics-host'
export const INSTANCE_KEY = 'ASIAINSTANCEROLEKEY0'
export const INSTANCE_SECRET = 'instance/secret/never/for/users'

export interface UpstreamRequest {
  method: string
  path: string
  token: string | undefined
}

export interface FakeImds {
  url: string
  requests: UpstreamRequest[]
  /** GETs of any credential path the fake knows, by a non-daemon spelling or not. */
  credentialRequests(): UpstreamRequest[]
  /** Stop answering (requests hang) until `false`. */
  hang(on: boolean): void
  /** Answer requests for `path` (as sent, e.g. `/latest/meta-data/ami-id`) `ms` late; 0 clears. */
  delay(path: string, ms: number): void
  /** Forget every session token (as IMDS does after its TTL). */
  forgetTokens(): void
  setUserData(text: string): void
  stop(): Promise<void>
}

export interface FakeImdsOptions {
  /** Where to listen: default 127.0.0.1 on a free port (the end-to-end test: 169.254.169.254:80). */
  host?: string
  port?: number
  /** The instance role's credentials to serve (default: fixed fakes, INSTANCE_KEY, that no AWS double accepts). */
  instanceCredentials?: {accessKeyId: string; secretAccessKey: string; sessionToken: string; expiration: Date}
  /** The instance's region (placement/region; default eu-west-1). */
  region?: string
}

/**
 * A lenient IMDS: a trailing slash is ignored (the spelling that leaked credentials through the
 * Python tool), dates and `latest` are both versions. It demands an IMDSv2 token on every GET,
 * so every passed-through request shows whether the daemon used its own session.
 */
export async function startFakeImds(options: FakeImdsOptions = {}): Promise<FakeImds> {
  const requests: UpstreamRequest[] = []
  const tokens = new Set<string>()
  let hanging = false
  const delays = new Map<string, number>()
  let minted = 0
  let userData = '#!/bin/bash\necho "bootstrap password: hunter2"\n'
  const instanceCredentials = {
    Code: 'Success',
    LastUpdated: '2026-11-23T10:00:00Z',
    Type: 'AWS-HMAC',
    AccessKeyId: options.instanceCredentials?.accessKeyId ?? INSTANCE_KEY,
    SecretAccessKey: options.instanceCredentials?.secretAccessKey ?? INSTANCE_SECRET,
    Token: options.instanceCredentials?.sessionToken ?? 'instance-session-token',
    Expiration: options.instanceCredentials?.expiration.toISOString().replace(/\.\d{3}Z$/, 'Z') ?? '2026-11-23T16:00:00Z',
  }
  const pretty = (o: object) => JSON.stringify(o, null, 2).replace(/": /g, '" : ')
  const documents: Record<string, [string, string]> = {
    '': ['text/plain', 'dynamic\nmeta-data\nuser-data'],
    'meta-data': ['text/plain', 'ami-id\niam/\ninstance-id\nplacement/'],
    'meta-data/ami-id': ['text/plain', 'ami-0123456789abcdef0'],
    'meta-data/instance-id': ['text/plain', 'i-0123456789abcdef0'],
    'meta-data/placement/region': ['text/plain', options.region ?? 'eu-west-1'],
    'meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/vpc-id': ['text/plain', 'vpc-d295a6a7'],
    'meta-data/tags/instance/team:name': ['text/plain', 'analytics'],
    'meta-data/iam': ['text/plain', 'info\nsecurity-credentials/'],
    'meta-data/iam/info': [
      'text/plain',
      pretty({
        Code: 'Success',
        LastUpdated: '2026-11-23T10:00:00Z',
        InstanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/analytics-host',
        InstanceProfileId: 'AIPAEXAMPLEPROFILEID0',
      }),
    ],
    'meta-data/iam/security-credentials': ['text/plain', ROLE],
    [`meta-data/iam/security-credentials/${ROLE}`]: ['text/plain', pretty(instanceCredentials)],
    'meta-data/iam/security-credentials-extended': ['text/plain', ROLE],
    [`meta-data/iam/security-credentials-extended/${ROLE}`]: [
      'text/plain',
      pretty({...instanceCredentials, AccountId: '123456789012'}),
    ],
    'meta-data/identity-credentials/ec2/security-credentials/ec2-instance': [
      'text/plain',
      pretty(instanceCredentials),
    ],
    'dynamic/instance-identity/document': [
      'application/json',
      '{"accountId" : "123456789012", "region" : "eu-west-1"}',
    ],
  }
  const credentialPaths = new Set(Object.keys(documents).filter((p) => p.includes('credentials/')))

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? ''
    const token = req.headers['x-aws-ec2-metadata-token'] as string | undefined
    requests.push({method: req.method ?? '', path, token})
    if (hanging) return // never answers
    const late = delays.get(path) ?? 0
    const send = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      const answer = () => {
        res.writeHead(status, {'Content-Type': type, Server: 'EC2ws', ...headers})
        res.end(body)
      }
      if (late > 0) setTimeout(answer, late)
      else answer()
    }
    if (req.method === 'PUT' && path === '/latest/api/token') {
      const ttl = req.headers['x-aws-ec2-metadata-token-ttl-seconds']
      if (!ttl) return send(400, 'text/html', 'no ttl')
      const value = `upstream-session-${++minted}`
      tokens.add(value)
      return send(200, 'text/plain', value, {'X-aws-ec2-metadata-token-ttl-seconds': String(ttl)})
    }
    if (req.method !== 'GET') return send(405, 'text/plain', '')
    if (!token || !tokens.has(token)) return send(401, 'text/html', 'unauthorized')
    if (path === '/') return send(200, 'text/plain', '1.0\n2021-01-03\nlatest')
    const m = /^\/(latest|\d{4}-\d{2}-\d{2})(?:\/(.*?))?\/*$/.exec(path)
    if (!m) return send(404, 'text/html', 'not found')
    const rest = m[2] ?? ''
    if (rest === 'user-data') return send(200, 'application/octet-stream', userData)
    const doc = documents[rest]
    return doc ? send(200, doc[0], doc[1]) : send(404, 'text/html', 'not found')
  })
  const host = options.host ?? '127.0.0.1'
  server.listen(options.port ?? 0, host)
  await once(server, 'listening')
  const {port} = server.address() as AddressInfo
  return {
    url: `http://${host}:${port}`,
    requests,
    credentialRequests: () =>
      requests.filter((r) => {
        const m = /^\/[^/]+\/(.*?)\/*$/.exec(r.path)
        return isCredentialPath(r.path) || (m !== null && credentialPaths.has(m[1]))
      }),
    hang: (on) => (hanging = on),
    delay: (path, ms) => (ms > 0 ? delays.set(path, ms) : delays.delete(path)),
    forgetTokens: () => tokens.clear(),
    setUserData: (text) => (userData = text),
    stop: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** Fixed credentials per uid: each uid's set is one object, as the credential cache hands it out. */
export function userCredentials(uid: number): Credentials {
  return {
    accessKeyId: `ASIAUSER${uid}KEY`,
    secretAccessKey: `secret-of-${uid}`,
    sessionToken: `session-token-of-${uid}`,
    expiration: new Date('2026-11-23T11:30:00.123Z'),
    arn: `arn:aws:sts::123456789012:assumed-role/user-${uid}/user${uid}`,
  }
}

/** 'warned': issues, with the warnings a session policy's compiler gives. */
export type BrokerBehaviour = 'issue' | 'warned' | 'none' | 'error' | 'throw'

export interface FakeBroker {
  credentialsFor(user: LocalUser): Promise<IssueOutcome>
  calls: LocalUser[]
  behaviour: Map<number, BrokerBehaviour>
}

export function fakeBroker(): FakeBroker {
  const held = new Map<number, Credentials>()
  const calls: LocalUser[] = []
  const behaviour = new Map<number, BrokerBehaviour>()
  const chain = {methods: ['UserRole' as const, 'InstanceRole' as const], source: 'default' as const}
  return {
    calls,
    behaviour,
    async credentialsFor(user) {
      calls.push(user)
      switch (behaviour.get(user.uid) ?? 'issue') {
        case 'issue':
        case 'warned': {
          if (!held.has(user.uid)) held.set(user.uid, userCredentials(user.uid))
          const credentials = held.get(user.uid)!
          return {
            ok: true,
            user,
            chain,
            method: 'UserRole',
            roleArn: `arn:aws:iam::123456789012:role/user-${user.uid}`,
            credentials,
            skipped: [],
            warnings: behaviour.get(user.uid) === 'warned' ? ['the session may not assume role shared', 'left out 2 Allow statements'] : [],
          }
        }
        case 'none':
          return {
            ok: false,
            user,
            chain,
            skipped: [{method: 'UserRole', reason: 'role user-x does not exist'}],
            error: null,
          }
        case 'error':
          return {
            ok: false,
            user,
            chain,
            skipped: [],
            error: {method: 'UserRole', message: 'sts:AssumeRole throttled'},
          }
        case 'throw':
          throw new Error('the broker broke')
      }
    },
  }
}

export const users: Record<string, LocalUser> = {
  root: {name: 'root', uid: 0},
  alice: {name: 'alice', uid: 1001},
  bob: {name: 'bob', uid: 1002},
}

export interface Harness {
  url: string
  port: number
  fake: FakeImds
  broker: FakeBroker
  audits: AuditRecord[]
  /** The records the app's `audited` hook (serve: metrics) was told of. */
  counted: AuditRecord[]
  /** Makes the `audited` hook throw. */
  failCounting(fail: boolean): void
  /** Makes writing an audit record throw (a log that cannot be written). */
  failAudit(fail: boolean): void
  logs: RequestRecord[]
  warnings: string[]
  tokens: TokenStore
  upstream: ImdsUpstream
  /** Who the next connections belong to (null: the owner cannot be found; an Error: the lookup fails). */
  as(identity: Identity | null | Error): void
  /** How many times a connection's owner was looked up. */
  lookups(): number
  /** Moves the clock of the token store, the app and the upstream cache. */
  advance(ms: number): void
  stop(): Promise<void>
}

export interface HarnessOptions {
  config?: Partial<ImdsAppDeps['config']['general']>
  upstream?: UpstreamOptions
  limits?: ImdsServerLimits
}

/** The app on a loopback port in front of a fake upstream; connections belong to `as(...)`. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const fake = await startFakeImds()
  let clock = Date.parse('2026-11-23T11:00:00Z')
  const now = () => clock
  let owner: Identity | null | Error = {uid: users.alice.uid, user: users.alice}
  const broker = fakeBroker()
  const audits: AuditRecord[] = []
  const counted: AuditRecord[] = []
  let countingFails = false
  let auditFails = false
  const logs: RequestRecord[] = []
  const warnings: string[] = []
  const tokens = new TokenStore({now})
  const upstream = new ImdsUpstream({baseUrl: fake.url, now, timeoutMs: 300, ...options.upstream})
  const app = createImdsApp({
    broker,
    instanceRoleName: async () => ROLE,
    upstream,
    tokens,
    config: {general: {require_imdsv2: false, deny_user_data: false, deny_instance_identity: false, ...options.config}},
    audit: (r) => {
      if (auditFails) throw new Error('the audit log cannot be written')
      audits.push(r)
    },
    audited: (r) => {
      if (countingFails) throw new Error('the metrics broke')
      counted.push(r)
    },
    log: (r) => logs.push(r),
    warn: (m) => warnings.push(m),
    now,
  })
  let lookups = 0
  const server = createImdsServer(
    app,
    async () => {
      lookups++
      if (owner instanceof Error) throw owner
      return owner
    },
    options.limits,
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const {port} = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    fake,
    broker,
    audits,
    counted,
    failCounting: (fail) => (countingFails = fail),
    failAudit: (fail) => (auditFails = fail),
    logs,
    warnings,
    tokens,
    upstream,
    as: (identity) => (owner = identity),
    lookups: () => lookups,
    advance: (ms) => (clock += ms),
    stop: async () => {
      upstream.close()
      server.closeAllConnections()
      server.close()
      await Promise.all([once(server, 'close'), fake.stop()])
    },
  }
}

export interface Reply {
  status: number
  headers: IncomingMessage['headers']
  body: string
}

/**
 * One request on a new connection (so that each request's owner is the one set just before),
 * with the path sent exactly as written: no client-side normalisation.
 */
export function call(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method,
      path,
      agent: false,
      headers: {Host: '169.254.169.254', ...headers},
    })
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      )
      res.on('error', reject)
    })
    req.end()
  })
}
