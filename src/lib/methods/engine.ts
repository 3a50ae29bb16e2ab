// Wires the credential engine from configuration: the IAM source (live and cached, or offline),
// the STS client, the action catalog, roles sync for CreateUserRole, and the broker with its
// credential cache. `resolve` and `serve` both start here.
import type {IAMClient} from '@aws-sdk/client-iam'

import {CachedIamSource} from '../aws/cached.js'
import {AwsCallRecord, liveAwsClients} from '../aws/clients.js'
import type {IamSource} from '../iam/model.js'
import {createIamSource} from '../aws/source.js'
import type {Config} from '../config/schema.js'
import {createActionCatalog} from '../policy/catalog.js'
import {syncUserRole} from '../roles/sync.js'
import {CredentialBroker} from './broker.js'
import {CredentialCache} from './cache.js'
import type {Credentials} from './credentials.js'
import type {MethodDeps, RoleSyncOutcome} from './methods.js'

export interface EngineOptions {
  config: Config
  /** --account FILE: offline, explain only. */
  accountFile?: string
  instanceRole?: string
  env: Record<string, string | undefined>
  warn: (message: string) => void
  instanceCredentials?: () => Promise<Credentials>
  now?: () => number
  onAwsCall?: (call: AwsCallRecord) => void
  /** The region (serve: resolved at start from its IMDS); default: resolveRegion's. */
  region?: string
  /** Read IAM through this source, already cached, instead of a new one (serve's reload keeps its warm IAM reads). */
  iamSource?: IamSource
}

export interface Engine {
  deps: MethodDeps
  broker: CredentialBroker
  source: IamSource
}

export async function createEngine(options: EngineOptions): Promise<Engine> {
  const {config} = options
  const clients = options.accountFile ? null : await liveAwsClients({env: options.env, region: options.region, onCall: options.onAwsCall})
  const inner = options.iamSource ?? (await createIamSource({config, accountFile: options.accountFile, instanceRole: options.instanceRole, env: options.env, clients: clients ?? undefined}))
  const live = inner.mode === 'live' && !options.iamSource
  const source = live
    ? new CachedIamSource(inner, {
        ttlMs: config.general.iam_cache_seconds * 1000,
        failureTtlMs: config.general.failure_cache_seconds * 1000,
        maxEntries: config.general.cache_max_entries,
        now: options.now,
      })
    : inner
  const deps: MethodDeps = {
    config,
    source,
    sts: clients?.sts ?? null,
    catalog: createActionCatalog(),
    warn: options.warn,
    instanceCredentials: options.instanceCredentials,
    syncRole: roleSyncer(config, clients?.iam ?? null),
  }
  const cache = new CredentialCache({
    maxEntries: config.general.cache_max_entries,
    failureTtlMs: config.general.failure_cache_seconds * 1000,
    warn: options.warn,
    now: options.now,
  })
  return {deps, broker: new CredentialBroker(deps, cache), source}
}

/** CreateUserRole's link to roles sync: apply (live) or plan, for one local user. */
export function roleSyncer(config: Config, iam: IAMClient | null): NonNullable<MethodDeps['syncRole']> {
  return async (localUser, {dryRun, source}): Promise<RoleSyncOutcome> => {
    // syncUserRole itself tells the IAM read cache what its writes left (or forgets the role).
    const {entry, status} = await syncUserRole({source, iam: dryRun ? null : iam, config}, localUser, {dryRun})
    return {status, roleArn: entry.roleArn, changes: entry.changes.length, error: entry.error}
  }
}
