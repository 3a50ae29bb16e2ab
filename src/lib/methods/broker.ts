// The engine `serve` calls for every credential request: the user's chain, each method in
// order until one issues, through the credential cache. A method that is not for the user
// passes to the next; any other failure ends the chain with no credentials (fail closed).
import type {STSClient} from '@aws-sdk/client-sts'

import {CachedIamSource, ReadLog} from '../aws/cached.js'
import type {MethodName} from '../config/schema.js'
import type {LocalUser} from '../host/users.js'
import {CredentialCache} from './cache.js'
import {Chain, selectChain} from './chain.js'
import {assumeRole, Credentials, NotForUser, requestKey} from './credentials.js'
import {ChainSoFar, MethodDeps, prepare, Prepared} from './methods.js'

export type IssueOutcome =
  | {ok: true; user: LocalUser; chain: Chain; method: MethodName; roleArn: string; credentials: Credentials; skipped: Skip[]; warnings: string[]}
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
  /** Per user name (the first planned goes first past cache_max_entries), each method's last request while its IAM reads hold (see planFor). */
  private readonly plans = new Map<string, {uid: number; byMethod: Map<MethodName, Plan>}>()

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
        const {credentials, roleArn, warnings} = await this.issue(method, user, soFar)
        return {ok: true, user, chain, method, roleArn, credentials, skipped, warnings}
      } catch (error) {
        if (error instanceof NotForUser) {
          if (error.warning) this.deps.warn(error.warning)
          soFar.identified ??= error.identified
          if (method === 'InstanceRole' && !error.identified && !this.deps.config.method_InstanceRole.fail_safe && this.deps.instanceCredentials) {
            // The Python tool's behaviour with fail_safe = False: the instance's own credentials.
            this.deps.warn(`InstanceRole for ${user.name}: ${error.reason}; fail_safe = False, so handing out the instance role's own credentials`)
            const credentials = await this.deps.instanceCredentials()
            return {ok: true, user, chain, method, roleArn: (await this.deps.source.getInstanceRole()).arn, credentials, skipped, warnings: []}
          }
          skipped.push({method, reason: error.reason})
          continue
        }
        return {ok: false, user, chain, skipped, error: {method, message: error instanceof Error ? error.message : String(error)}}
      }
    }
    return {ok: false, user, chain, skipped, error: null}
  }

  private async issue(method: MethodName, user: LocalUser, soFar: ChainSoFar): Promise<{credentials: Credentials; roleArn: string; warnings: string[]}> {
    const sts = this.deps.sts
    if (!sts) throw new NotForUser('offline: no AWS access to issue credentials')
    const plan = this.planFor(method, user, soFar) ?? (await this.plan(sts, method, user, soFar))
    const credentials = await this.cache.get(plan.key, plan.issue)
    return {credentials, roleArn: plan.prepared.request.roleArn, warnings: plan.prepared.compiled?.warnings ?? []}
  }

  /**
   * The method's request for the user as the last request worked it out, while working it out
   * again would give the same: prepare reads the configuration (this broker's, fixed), the user's
   * name (the uid is checked too), what earlier methods of the chain found (soFar: plans are
   * made and used only when they found nothing) and the IAM read cache, which the plan's ReadLog
   * follows. A plan is used for at most PLAN_MS, so that the read cache still sees the entries
   * it skips as recently used (and anything missed here would last a second at most). A warm
   * request thus skips prepare's reads, look-ups and the building of its cache key.
   */
  private planFor(method: MethodName, user: LocalUser, soFar: ChainSoFar): Plan | undefined {
    if (soFar.identified !== undefined) return undefined
    const forUser = this.plans.get(user.name)
    if (forUser?.uid !== user.uid) return undefined
    const plan = forUser.byMethod.get(method)
    if (!plan) return undefined
    if (performance.now() - plan.madeAt < PLAN_MS && plan.reads?.holds()) return plan
    forUser.byMethod.delete(method)
    return undefined
  }

  /** Works out the method's request (prepare), and keeps it for planFor when it can be reused. */
  private async plan(sts: STSClient, method: MethodName, user: LocalUser, soFar: ChainSoFar): Promise<Plan> {
    const reusable = soFar.identified === undefined && this.deps.source instanceof CachedIamSource
    const recording = reusable ? (this.deps.source as CachedIamSource).recording() : undefined
    const deps = recording ? {...this.deps, source: recording.source} : this.deps
    const prepared = await prepare[method](deps, user, soFar)
    const plan: Plan = {
      prepared,
      key: requestKey(method, prepared.request),
      issue: () => this.assume(sts, prepared),
      reads: recording?.log ?? null,
      madeAt: performance.now(),
    }
    if (plan.reads?.holds()) this.keep(method, user, plan)
    return plan
  }

  private keep(method: MethodName, user: LocalUser, plan: Plan): void {
    let forUser = this.plans.get(user.name)
    if (forUser?.uid !== user.uid) {
      // Bounded like the other caches; each plan holds its reads' values (also once the read
      // cache dropped them, until the plan goes).
      if (!forUser && this.plans.size >= this.deps.config.general.cache_max_entries) this.plans.delete(this.plans.keys().next().value!)
      this.plans.set(user.name, (forUser = {uid: user.uid, byMethod: new Map()}))
    }
    forUser.byMethod.set(method, plan)
  }

  /** AssumeRole for a prepared request (several attempts on a role roles sync just changed). */
  private async assume(sts: STSClient, prepared: Prepared): Promise<Credentials> {
    const {request} = prepared
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
  }
}

/** A method's request for one user, worked out, with the IAM reads it was worked out from. */
interface Plan {
  prepared: Prepared
  /** The credential cache's key for the request. */
  key: string
  issue: () => Promise<Credentials>
  /** null when the reads were not recorded (a source without the read cache). */
  reads: ReadLog | null
  /** performance.now() (monotonic) when it was worked out. */
  madeAt: number
}

/** How long a plan is reused at most (see planFor). */
const PLAN_MS = 1000
