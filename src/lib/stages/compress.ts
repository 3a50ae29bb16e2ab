// `policy compress`: the session policy RestrictedInstanceRole would send for a local user,
// with every compiler stage measured. The typed result is the command's JSON contract.
import {AssumeRoleCommand, STSClient} from '@aws-sdk/client-sts'

import {describeAwsError} from '../aws/errors.js'
import type {IamSource} from '../iam/model.js'
import {applyNamePattern, Config} from '../config/schema.js'
import {NotFoundError, UserError} from '../errors.js'
import type {ActionCatalog} from '../policy/catalog.js'
import {compileSessionPolicy, StepName} from '../policy/compiler.js'
import {sessionNameFor} from '../methods/session.js'

export interface CompressResult {
  user: string
  iamUser: string
  instanceRole: string
  policy: string | null
  policyArns: string[]
  size: {naive: number; compressed: number; limit: number; fits: boolean}
  stages: Array<{name: string; chars: number}>
  warnings: string[]
  /** The roles the session may still assume (their trust policies admit the IAM user alike). */
  assumableRoles: string[]
  /** Only with --live-check: what AWS reported for one real AssumeRole. */
  liveCheck?: {packedPolicySize: number | null} | {error: string}
}

export interface CompressOptions {
  compress?: boolean
  disable?: Partial<Record<StepName, boolean>>
  catalog?: ActionCatalog
}

export async function compressUserPolicy(
  source: IamSource,
  config: Config,
  localUser: string,
  options: CompressOptions = {},
): Promise<CompressResult> {
  const pattern = config.method_RestrictedInstanceRole.iam_name_pattern
  const iamUser = applyNamePattern(pattern, localUser)
  const instanceRole = await source.getInstanceRole()
  const [user, role] = await Promise.all([source.getUserPolicies(iamUser), source.getRolePolicies(instanceRole.name)])
  if (!user)
    throw new NotFoundError(`IAM user '${iamUser}' not found (local user '${localUser}', iam_name_pattern '${pattern}')`, {
      suggestion: 'check the user name and [method_RestrictedInstanceRole] iam_name_pattern',
    })
  if (!role) throw new NotFoundError(`instance role '${instanceRole.name}' not found in IAM`)
  // Without the account's trust policies the session may assume no role (the compiler warns).
  const roles = await source.listRoles().catch(() => null)
  const session = sessionNameFor(localUser)
  const result = await compileSessionPolicy(user, role, {
    compress: options.compress ?? config.method_RestrictedInstanceRole.compress_user_policy,
    disable: options.disable,
    catalog: options.catalog,
    accountId: instanceRole.accountId,
    roles,
    session: {name: session, sourceIdentity: config.general.source_identity ? session : null},
  })
  return {
    user: localUser,
    iamUser,
    instanceRole: instanceRole.arn,
    policy: result.policy,
    policyArns: result.policyArns,
    size: result.size,
    stages: result.stages,
    warnings: result.warnings,
    assumableRoles: result.assumableRoles,
  }
}

/** One real AssumeRole with the compiled policy, to read AWS's PackedPolicySize. */
export async function checkPackedPolicySize(sts: STSClient, result: CompressResult): Promise<CompressResult['liveCheck']> {
  if (result.policy === null && result.policyArns.length === 0) return {error: 'nothing to check: no session policy'}
  try {
    const answer = await sts.send(
      new AssumeRoleCommand({
        RoleArn: result.instanceRole,
        RoleSessionName: `ec2userkeyd-check-${result.user}`.replace(/[^\w+=,.@-]/g, '_').slice(0, 64),
        DurationSeconds: 900,
        ...(result.policy ? {Policy: result.policy} : {}),
        ...(result.policyArns.length > 0 ? {PolicyArns: result.policyArns.map((arn) => ({arn}))} : {}),
      }),
    )
    // The credentials are dropped here on purpose: this is a measurement.
    return {packedPolicySize: answer.PackedPolicySize ?? null}
  } catch (error) {
    const e = describeAwsError(error, `sts:AssumeRole ${result.instanceRole}`)
    if (e instanceof UserError) return {error: e.message}
    throw error
  }
}
