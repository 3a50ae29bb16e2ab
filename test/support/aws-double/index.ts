// The AWS test double: an in-process loopback HTTP server speaking the IAM and STS Query
// protocols well enough for the real SDK v3 clients, backed by (and mutating) an account
// snapshot. This module wires the server: request → caller → latency → injected failure →
// route table → XML. The actions live in iam-reads.ts, iam-writes.ts and sts.ts.
//
//   const double = await startAwsDouble({snapshot, instanceRole: 'analytics-host'})
//   const iam = new IAMClient({endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials})
//   spawn('ec2userkeyd', args, {env: {...process.env, ...double.env()}})
import {randomUUID} from 'node:crypto'
import {createServer, IncomingMessage, ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'

import type {AccountSnapshot} from '../../../src/lib/aws/snapshot.js'
import {CONTROL_PREFIX, handleControl} from './control.js'
import {iamReads} from './iam-reads.js'
import {iamWrites} from './iam-writes.js'
import {
  AwsError,
  credentialOf,
  parseForm,
  Params,
  Service,
  serviceOf,
  xmlError,
  xmlResponse,
} from './protocol.js'
import {Session, SessionCredentials, SessionStore} from './sessions.js'
import type {AssumeRoleRecord, CallRecord, DoubleState, Handler, Injection} from './state.js'
import {assumeRoleRecord, stsActions} from './sts.js'

export type {AssumeRoleRecord, CallRecord, Injection} from './state.js'
export type {SessionCredentials} from './sessions.js'

/** Every action the double answers, by service. */
const ROUTES: Record<Service, Record<string, Handler>> = {
  iam: {...iamReads, ...iamWrites},
  sts: stsActions,
}

export interface AwsDoubleOptions {
  /** The live model: read and mutated in place. */
  snapshot: AccountSnapshot
  /** Name of the role (in the snapshot) whose session instanceCredentials belong to. */
  instanceRole: string
  /** Session name of the instance credentials, as EC2 names it after the instance id. */
  instanceId?: string
  /** Page size of List calls without MaxItems (default 2, so paginators turn pages). */
  pageSize?: number
  /** Default: the snapshot's account, else 123456789012. */
  accountId?: string
  /** Denominator of the modelled packed-policy percentage (default 2048; see sts.ts). */
  packedPolicyLimit?: number
  /** Delay added to every call, in ms (setLatency changes it later). */
  latencyMs?: number
  /** Default 0: any free port on 127.0.0.1. */
  port?: number
  /** The clock for credential expiry and CreateDate (default: real time). */
  now?: () => Date
}

/**
 * Environment for a child process that should talk to the double. AWS_CONFIG_FILE and
 * AWS_SHARED_CREDENTIALS_FILE point at /dev/null so the developer's ~/.aws cannot interfere.
 * When spreading it over process.env, also delete UNSET_ENV: each of those would redirect
 * or override these settings (AWS_PROFILE, for one, makes the SDK skip the
 * AWS_ACCESS_KEY_ID credentials altogether).
 */
export interface AwsDoubleEnv extends Record<string, string> {
  AWS_ENDPOINT_URL_IAM: string
  AWS_ENDPOINT_URL_STS: string
  AWS_ACCESS_KEY_ID: string
  AWS_SECRET_ACCESS_KEY: string
  AWS_SESSION_TOKEN: string
  AWS_REGION: string
  AWS_CONFIG_FILE: string
  AWS_SHARED_CREDENTIALS_FILE: string
  AWS_EC2_METADATA_DISABLED: string
}

/** Variables a child talking to the double must not have (see AwsDoubleEnv). */
export const UNSET_ENV = [
  'AWS_PROFILE',
  'AWS_DEFAULT_REGION',
  'AWS_ENDPOINT_URL',
  'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS',
  'AWS_CREDENTIAL_EXPIRATION',
] as const

/** process.env (or another base) minus UNSET_ENV, plus the double's env(). */
export function childEnv(double: AwsDouble, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = {...base, ...double.env()}
  for (const key of UNSET_ENV) delete env[key]
  return env
}

export interface AwsDouble {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** The instance role's session: caller `arn:aws:sts::ACCOUNT:assumed-role/ROLE/INSTANCE_ID`. */
  readonly instanceCredentials: SessionCredentials
  readonly instanceSession: Readonly<Session>
  env(): AwsDoubleEnv
  /** Every request, in arrival order. */
  readonly calls: CallRecord[]
  /** Every AssumeRole request, admitted or not. */
  readonly assumeRoleLog: AssumeRoleRecord[]
  readonly snapshot: AccountSnapshot
  /** The next `times` calls matching `action` (any action if omitted) fail with `code`. */
  inject(injection: Injection): void
  /** Delay per call in ms; with `action`, for that action only (0 clears). */
  setLatency(ms: number, action?: string): void
  /** Credentials for a session of any snapshot role, issued without a trust check. */
  sessionFor(roleName: string, sessionName: string, durationSeconds?: number): SessionCredentials
  /** Clears calls, the assume-role log, pending injections and latencies. */
  reset(): void
  stop(): Promise<void>
}

const MAX_BODY_BYTES = 1 << 20

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) req.destroy(new Error('request body too large'))
      else chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

export async function startAwsDouble(options: AwsDoubleOptions): Promise<AwsDouble> {
  const {snapshot} = options
  const now = options.now ?? (() => new Date())
  const accountId = options.accountId ?? snapshot.accountId ?? '123456789012'
  const state: DoubleState = {
    snapshot,
    accountId,
    sessions: new SessionStore(accountId),
    pageSize: options.pageSize ?? 2,
    packedPolicyLimit: options.packedPolicyLimit ?? 2048,
    now,
    calls: [],
    assumeRoleLog: [],
  }

  const role = snapshot.roles.get(options.instanceRole)
  if (!role)
    throw new Error(
      `aws double: instance role '${options.instanceRole}' is not in the snapshot (roles: ${[...snapshot.roles.keys()].join(', ')})`,
    )
  // Instance-profile credentials rotate in reality; here they simply outlive any test.
  const yearAhead = new Date(now().getTime() + 365 * 24 * 3600 * 1000)
  const instanceSession = state.sessions.issue(role, options.instanceId ?? 'i-0123456789abcdef0', yearAhead)

  let injections: Injection[] = []
  let defaultLatency = options.latencyMs ?? 0
  let latencies = new Map<string, number>()
  const timers = new Set<NodeJS.Timeout>()

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        timers.delete(timer)
        resolve()
      }, ms)
      timers.add(timer)
    })

  /** Consumes one matching injection, if any, as the error to answer. */
  function injected(action: string): AwsError | null {
    const found = injections.find((i) => i.times > 0 && (i.action === undefined || i.action === action))
    if (!found) return null
    found.times--
    injections = injections.filter((i) => i.times > 0)
    return new AwsError(found.code, found.message ?? `Injected ${found.code} for ${action}`, found.status)
  }

  /** Who is calling: the session behind the access key, or the error real AWS would answer. */
  function authenticate(credential: ReturnType<typeof credentialOf>): Session {
    if (!credential)
      throw new AwsError('MissingAuthenticationToken', 'Request is missing Authentication Token')
    const session = state.sessions.get(credential.accessKeyId)
    if (!session || (credential.sessionToken !== null && credential.sessionToken !== session.sessionToken))
      throw new AwsError('InvalidClientTokenId', 'The security token included in the request is invalid.')
    if (credential.sessionToken === null)
      throw new AwsError(
        'InvalidClientTokenId',
        'The security token included in the request is invalid: temporary credentials need their session token.',
      )
    if (now() >= session.expiration)
      throw new AwsError('ExpiredToken', 'The security token included in the request is expired')
    return session
  }

  async function handleAws(req: IncomingMessage, url: URL, body: string, res: ServerResponse): Promise<void> {
    const params: Params = {...Object.fromEntries(url.searchParams), ...parseForm(body)}
    const credential = credentialOf(req.headers, url.searchParams)
    const service = serviceOf(credential, url.pathname, params)
    const action = params.Action ?? ''
    const caller = credential ? state.sessions.get(credential.accessKeyId) : undefined
    const call: CallRecord = {service, action, params, caller: caller?.arn ?? null, region: credential?.region ?? null, at: now(), status: 0}
    state.calls.push(call)
    const requestId = randomUUID()
    const delay = latencies.get(action) ?? defaultLatency
    if (delay > 0) await sleep(delay)

    let status = 200
    let xml: string
    try {
      if (!service)
        throw new AwsError('InvalidAction', 'Cannot tell IAM from STS: sign the request or send Version')
      let handled = false
      try {
        const session = authenticate(credential)
        const failure = injected(action)
        if (failure) throw failure
        const handler = ROUTES[service][action]
        if (!handler)
          throw new AwsError(
            'InvalidAction',
            `Could not find operation ${action} for version ${params.Version ?? '(none)'}`,
          )
        handled = true
        xml = xmlResponse(service, action, handler({params, caller: session, state}), requestId)
      } catch (error) {
        // The AssumeRole handler logs its own outcomes; refusals before it runs are logged here.
        if (!handled && service === 'sts' && action === 'AssumeRole')
          state.assumeRoleLog.push({
            ...assumeRoleRecord(params, caller?.arn ?? null),
            result: error instanceof AwsError ? error.code : 'InternalFailure',
          })
        throw error
      }
    } catch (error) {
      const known = error instanceof AwsError
      // As in AWS, a 5xx body hides the detail; the call log keeps it.
      const answered = known
        ? error
        : new AwsError('InternalFailure', 'We encountered an internal error. Please try again.')
      if (!known) call.detail = error instanceof Error ? (error.stack ?? error.message) : String(error)
      status = answered.status
      call.error = answered.code
      xml = xmlError(service ?? 'iam', answered, requestId)
    }
    call.status = status
    res.writeHead(status, {'content-type': 'text/xml', 'x-amzn-requestid': requestId})
    res.end(xml)
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    readBody(req)
      .then((body) =>
        url.pathname.startsWith(CONTROL_PREFIX)
          ? handleControl(req, url.pathname, body, res, double)
          : handleAws(req, url, body, res),
      )
      .catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, {'content-type': 'text/plain'})
        res.end(String(error))
      })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve())
  })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const double: AwsDouble = {
    url,
    instanceCredentials: {
      accessKeyId: instanceSession.accessKeyId,
      secretAccessKey: instanceSession.secretAccessKey,
      sessionToken: instanceSession.sessionToken,
    },
    instanceSession,
    env: () => ({
      AWS_ENDPOINT_URL_IAM: url,
      AWS_ENDPOINT_URL_STS: url,
      AWS_ACCESS_KEY_ID: instanceSession.accessKeyId,
      AWS_SECRET_ACCESS_KEY: instanceSession.secretAccessKey,
      AWS_SESSION_TOKEN: instanceSession.sessionToken,
      AWS_REGION: 'us-east-1',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
    calls: state.calls,
    assumeRoleLog: state.assumeRoleLog,
    snapshot,
    inject: (injection) => {
      if (injection.times > 0) injections.push({...injection})
    },
    setLatency: (ms, action) => {
      if (action === undefined) defaultLatency = ms
      else latencies.set(action, ms)
    },
    sessionFor: (roleName, sessionName, durationSeconds = 3600) => {
      const target = snapshot.roles.get(roleName)
      if (!target) throw new Error(`aws double: no role '${roleName}' in the snapshot`)
      const s = state.sessions.issue(target, sessionName, new Date(now().getTime() + durationSeconds * 1000))
      return {accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, sessionToken: s.sessionToken}
    },
    reset: () => {
      state.calls.length = 0
      state.assumeRoleLog.length = 0
      injections = []
      latencies = new Map()
      defaultLatency = 0
    },
    stop: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer)
        timers.clear()
        server.close((error) => (error ? reject(error) : resolve()))
        // Keep-alive sockets from SDK clients would otherwise hold close() open.
        server.closeAllConnections()
      }),
  }
  return double
}
