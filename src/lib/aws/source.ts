// Chooses the IAM source for a command: offline when an account file is given, live otherwise.
import type {Config} from '../config/schema.js'
import {AwsClients, liveAwsClients} from './clients.js'
import {LiveIamSource} from './live.js'
import type {IamSource} from './model.js'
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

export async function createIamSource(options: IamSourceOptions): Promise<IamSource> {
  const ref = instanceRoleReference(options)
  if (options.accountFile) return new OfflineIamSource(await loadAccountSnapshot(options.accountFile), ref)
  const {iam, sts} = options.clients ?? (await liveAwsClients({env: options.env}))
  return new LiveIamSource({iam, sts, instanceRoleRef: ref})
}
