// Chooses the IAM source for a command: offline when an account file is given, live otherwise.
// The one place a command gets its AWS clients: the live source's own, handed back for the
// writes and checks the command makes (roles sync's IAM, policy compress --live-check's STS).
import type {Config} from '../config/schema.js'
import {AwsClients, liveAwsClients} from './clients.js'
import {LiveIamSource} from './live.js'
import type {IamSource} from '../iam/model.js'
import {OfflineIamSource} from './offline.js'
import {loadAccountSnapshot} from './snapshot.js'

export interface IamSourceOptions {
  config: Config
  /** --account FILE: read IAM from a get-account-authorization-details snapshot. */
  accountFile?: string
  /** --instance-role NAME|ARN: wins over [general] instance_role and over discovery. */
  instanceRole?: string
  env: Record<string, string | undefined>
  /** Live: use these clients (e.g. instrumented ones) instead of new ones. */
  clients?: AwsClients
}

export function instanceRoleReference(options: Pick<IamSourceOptions, 'config' | 'instanceRole'>): string | null {
  return options.instanceRole ?? options.config.general.instance_role
}

export interface IamAccess {
  source: IamSource
  /** The clients a live source reads through; null with an account file (offline: nothing to call). */
  clients: AwsClients | null
}

export async function openIam(options: IamSourceOptions): Promise<IamAccess> {
  const ref = instanceRoleReference(options)
  if (options.accountFile) return {source: new OfflineIamSource(await loadAccountSnapshot(options.accountFile), ref), clients: null}
  const clients = options.clients ?? (await liveAwsClients({env: options.env}))
  return {source: new LiveIamSource({iam: clients.iam, sts: clients.sts, instanceRoleRef: ref}), clients}
}

export async function createIamSource(options: IamSourceOptions): Promise<IamSource> {
  return (await openIam(options)).source
}
