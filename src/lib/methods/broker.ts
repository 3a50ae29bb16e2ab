// The engine `serve` calls for every credential request: the user's chain, each method in
// order until one issues, through the credential cache. A method that is not for the user
// passes to the next; any other failure ends the chain with no credentials (fail closed).
import type {MethodName} from '../config/schema.js'
import type {LocalUser} from '../host/users.js'
import {CredentialCache} from './cache.js'
import {Chain, selectChain} from './chain.js'
import {AssumeRequest, assumeRole, Credentials, NotForUser, requestKey} from './credentials.js'
import {ChainSoFar, MethodDeps, prepare} from './methods.js'

export type IssueOutcome =
  | {ok: true; user: LocalUser; chain: Chain; method: MethodName; roleArn: string; credentials: Credentials; skipped: Skip[]}
  | {ok: false; user: LocalUser; chain: Chain; skipped: Skip[]; error: {method: MethodName; message: string} | null}

export interface Skip {
  method: MethodName
  reason: string
}

export interface BrokerOptions {
  /** Waits between AssumeRole attempts on a role roles sync just created or changed. */
  sleep?: (ms: number) => Promise<void>
  /** Attempts on such a role before it counts as not for the user (IAM needs seconds to see a new role). */
  newRoleAttempts?: number
  newRoleDelayMs?: number
}

export class CredentialBroker {
  /** Roles whose trust policy refuses sts:SetSourceIdentity (found at the first refusal). */
  private readonly sourceIdentityRefused = new Set<string>()
  private readonly sleep: (ms: number) => Promise<void>
  /** The last cache key built per session policy (see keyFor). */
  private readonly keys = new Map<string | null, KeyMemo>()

  constructor(
    private readonly deps: MethodDeps,
    readonly cache: CredentialCache,
    private readonly options: BrokerOptions = {},
  ) {
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)))
  }

  async credentialsFor(user: LocalUser): Promise<IssueOutcome> {
    const chain = selectChain(this.deps.config, user)
    const skipped: Skip[] = []
    const soFar: ChainSoFar = {}
    for (const method of chain.methods) {
      try {
        const {credentials, roleArn} = await this.issue(method, user, soFar)
        return {ok: true, user, chain, method, roleArn, credentials, skipped}
      } catch (error) {
        if (error instanceof NotForUser) {
          if (error.warning) this.deps.warn(error.warning)
          soFar.identified ??= error.identified
          if (method === 'InstanceRole' && !error.identified && !this.deps.config.method_InstanceRole.fail_safe && this.deps.instanceCredentials) {
            // The Python tool's behaviour with fail_safe = False: the instance's own credentials.
            this.deps.warn(`InstanceRole for ${user.name}: ${error.reason}; fail_safe = False, so handing out the instance role's own credentials`)
            const credentials = await this.deps.instanceCredentials()
            return {ok: true, user, chain, method, roleArn: (await this.deps.source.getInstanceRole()).arn, credentials, skipped}
          }
          skipped.push({method, reason: error.reason})
          continue
        }
        return {ok: false, user, chain, skipped, error: {method, message: error instanceof Error ? error.message : String(error)}}
      }
    }
    return {ok: false, user, chain, skipped, error: null}
  }

  private async issue(method: MethodName, user: LocalUser, soFar: ChainSoFar): Promise<{credentials: Credentials; roleArn: string}> {
    const sts = this.deps.sts
    if (!sts) throw new NotForUser('offline: no AWS access to issue credentials')
    const prepared = await prepare[method](this.deps, user, soFar)
    const {request} = prepared
    const credentials = await this.cache.get(this.keyFor(method, request), async () => {
      const attempts = prepared.roleChanged ? (this.options.newRoleAttempts ?? 6) : 1
      for (let attempt = 1; ; attempt++) {
        try {
          return await assumeRole({sts, warn: this.deps.warn}, request, this.sourceIdentityRefused)
        } catch (error) {
          if (!(error instanceof NotForUser) || attempt >= attempts) {
            // A refusal on behalf of a known IAM identity still bars the broader InstanceRole.
            if (error instanceof NotForUser && prepared.identity && !error.identified) throw new NotForUser(error.reason, error.warning, prepared.identity)
            throw error
          }
          await this.sleep(this.options.newRoleDelayMs ?? 2000)
        }
      }
    })
    return {credentials, roleArn: request.roleArn}
  }

  /**
   * requestKey(method, request), the very string of the last request with the same fields. A
   * key holds the whole session policy: building it and hashing it anew (V8 keeps a string's
   * hash) took longer than the rest of a warm lookup. Remembered per policy string, for a
   * bounded number of policies.
   */
  private keyFor(method: MethodName, request: AssumeRequest): string {
    const memo = this.keys.get(request.policy)
    if (
      memo &&
      memo.method === method &&
      memo.roleArn === request.roleArn &&
      memo.sessionName === request.sessionName &&
      memo.durationSeconds === request.durationSeconds &&
      sameList(memo.policyArns, request.policyArns)
    )
      return memo.key
    const key = requestKey(method, request)
    if (!memo && this.keys.size >= MAX_KEY_MEMOS) this.keys.delete(this.keys.keys().next().value!)
    const {roleArn, sessionName, durationSeconds, policyArns} = request
    this.keys.set(request.policy, {method, roleArn, sessionName, durationSeconds, policyArns: [...policyArns], key})
    return key
  }
}

interface KeyMemo {
  method: MethodName
  roleArn: string
  sessionName: string
  durationSeconds: number
  policyArns: string[]
  key: string
}

/** Session policies whose last cache key is remembered (the oldest goes first). */
const MAX_KEY_MEMOS = 1024

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
