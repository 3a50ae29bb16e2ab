// Issuing: one AssumeRole with the daemon's conventions (session name, SourceIdentity with a
// single retry without it, duration), and the three-way outcome every method reports.
import {AssumeRoleCommand, STSClient} from '@aws-sdk/client-sts'

import {awsErrorName, describeAwsError} from '../aws/errors.js'
import {UserError} from '../errors.js'

export interface Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
  expiration: Date
  /** The session's ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION), or the instance role's for upstream credentials. */
  arn: string
}

/** Everything that changes the credentials: the credential cache's key is made of it. */
export interface AssumeRequest {
  roleArn: string
  sessionName: string
  policy: string | null
  policyArns: string[]
  durationSeconds: number
  /** Set SourceIdentity (to sessionName) unless the role is known to refuse it. */
  sourceIdentity: boolean
}

export const requestKey = (method: string, r: AssumeRequest): string =>
  JSON.stringify([method, r.roleArn, r.sessionName, r.policy, r.policyArns, r.durationSeconds])

/** Not for this user: the chain goes on to the next method. */
export class NotForUser extends Error {
  constructor(
    readonly reason: string,
    readonly warning?: string,
    /**
     * Set when the method found the user's IAM identity (e.g. "IAM user erin") but can give no
     * credentials for it. InstanceRole then refuses the user too: it would grant more than
     * that identity may do.
     */
    readonly identified?: string,
  ) {
    super(reason)
    this.name = 'NotForUser'
  }
}

/** AWS's answers that mean "this role is not for this caller/user", not a failure of ours. */
const REFUSED = new Set(['AccessDenied', 'AccessDeniedException'])

export interface AssumeDeps {
  sts: STSClient
  /** Called with warnings worth an operator's attention (the SourceIdentity fallback). */
  warn?: (message: string) => void
}

/**
 * One AssumeRole. Refusals become NotForUser (PackedPolicyTooLarge with a warning naming the
 * size); everything else (throttled after the SDK's retries, network, malformed answers) is a
 * UserError, on which the chain stops: a user never silently lands on broader credentials.
 * `sourceIdentityRefused` remembers roles whose trust policy refuses sts:SetSourceIdentity.
 */
export async function assumeRole(deps: AssumeDeps, request: AssumeRequest, sourceIdentityRefused: Set<string>): Promise<Credentials> {
  const withSource = request.sourceIdentity && !sourceIdentityRefused.has(request.roleArn)
  try {
    return await send(deps.sts, request, withSource)
  } catch (error) {
    if (!(withSource && REFUSED.has(awsErrorName(error)))) throw classify(error, request)
  }
  // The refusal may be the trust policy's missing sts:SetSourceIdentity: try once without.
  try {
    const credentials = await send(deps.sts, request, false)
    sourceIdentityRefused.add(request.roleArn)
    deps.warn?.(
      `role ${request.roleArn} refuses sts:SetSourceIdentity; issuing without SourceIdentity (allow it in the role's trust policy, or set [general] source_identity = False)`,
    )
    return credentials
  } catch (error) {
    throw classify(error, request)
  }
}

async function send(sts: STSClient, request: AssumeRequest, withSource: boolean): Promise<Credentials> {
  const answer = await sts.send(
    new AssumeRoleCommand({
      RoleArn: request.roleArn,
      RoleSessionName: request.sessionName,
      DurationSeconds: request.durationSeconds,
      ...(request.policy ? {Policy: request.policy} : {}),
      ...(request.policyArns.length > 0 ? {PolicyArns: request.policyArns.map((arn) => ({arn}))} : {}),
      ...(withSource ? {SourceIdentity: request.sessionName} : {}),
    }),
  )
  const c = answer.Credentials
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !(c.Expiration instanceof Date) || Number.isNaN(c.Expiration.getTime()))
    throw new UserError('unexpected', `sts:AssumeRole ${request.roleArn} answered without complete credentials`)
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.SessionToken,
    expiration: c.Expiration,
    arn: answer.AssumedRoleUser?.Arn ?? request.roleArn,
  }
}

function classify(error: unknown, request: AssumeRequest): Error {
  if (error instanceof UserError) return error
  const name = awsErrorName(error)
  const detail = ((error as Error)?.message ?? String(error)).split('\n')[0]
  if (REFUSED.has(name)) return new NotForUser(`AWS refused sts:AssumeRole on ${request.roleArn}: ${detail}`)
  if (name === 'PackedPolicyTooLarge' || name === 'PackedPolicyTooLargeException') {
    const chars = (request.policy?.length ?? 0) + request.policyArns.reduce((n, a) => n + a.length, 0)
    const warning = `the session policy for ${request.sessionName} (${chars} characters, ${request.policyArns.length} ARNs) is too large once packed by AWS: ${detail}`
    return new NotForUser(warning, warning)
  }
  return describeAwsError(error, `sts:AssumeRole ${request.roleArn}`)
}
