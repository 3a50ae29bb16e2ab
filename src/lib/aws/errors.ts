// Classifies errors coming back from the AWS SDK, so that every caller agrees on what is
// "access denied", "throttled" or "not found", and so that user-facing messages name the call.
import {UserError} from '../errors.js'

interface AwsLikeError {
  name?: string
  message?: string
  Code?: string
  $metadata?: {httpStatusCode?: number}
  $retryable?: unknown
}

const ACCESS_DENIED = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'UnauthorizedOperation',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'ExpiredTokenException',
])
const THROTTLED = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException'])
const NOT_FOUND = new Set(['NoSuchEntity', 'NoSuchEntityException'])
const NO_CREDENTIALS = new Set(['CredentialsProviderError', 'ProviderError'])

export function awsErrorName(error: unknown): string {
  const e = error as AwsLikeError
  return e?.name ?? e?.Code ?? 'Error'
}

export function isNoSuchEntity(error: unknown): boolean {
  return NOT_FOUND.has(awsErrorName(error))
}

export function isAccessDenied(error: unknown): boolean {
  return ACCESS_DENIED.has(awsErrorName(error))
}

export function isThrottled(error: unknown): boolean {
  return THROTTLED.has(awsErrorName(error))
}

/** Which quota a LimitExceeded answer names, and what to do about it. */
function quotaAdvice(detail: string): string {
  if (/PoliciesPerRole/i.test(detail))
    return "the role is at the account's quota of attached managed policies: set [method_CreateUserRole] max_attached_policies to that quota (the rest are then copied inline), or raise the quota in Service Quotas"
  if (/policy size|PolicySize/i.test(detail))
    return "a role's inline policies may total 10,240 characters: raise [method_CreateUserRole] max_attached_policies (within the account's quota) so fewer are copied inline, or trim the IAM user's policies"
  if (/RolesPerAccount/i.test(detail)) return 'the account is at its quota of roles: delete unused roles or raise the quota in Service Quotas'
  if (/TagsPerRole/i.test(detail)) return 'the role has too many tags: remove some of its tags'
  return 'raise the quota named above in Service Quotas, or lower [method_CreateUserRole] max_attached_policies'
}

/** IAM's refusals of a write (roles sync): one line each, saying what to do. */
function describeIamRefusal(name: string, call: string, detail: string, cause: unknown): UserError | null {
  switch (name) {
    case 'LimitExceeded':
    case 'LimitExceededException':
      return new UserError('unexpected', `AWS quota reached for ${call}: ${detail}`, {suggestion: quotaAdvice(detail), cause})
    case 'EntityAlreadyExists':
    case 'EntityAlreadyExistsException':
      return new UserError('unexpected', `${call} found it already exists: ${detail}`, {
        suggestion: 'something else created it meanwhile: run roles sync again',
        cause,
      })
    case 'DeleteConflict':
    case 'DeleteConflictException':
      return new UserError('unexpected', `${call} was refused because something still depends on it: ${detail}`, {
        suggestion: 'remove what depends on it first, then run again',
        cause,
      })
    case 'MalformedPolicyDocument':
    case 'MalformedPolicyDocumentException':
      return new UserError('unexpected', `IAM rejected the policy document of ${call}: ${detail}`, {
        suggestion: "check the IAM user's policies with `ec2userkeyd policy dump` (and that the instance role still exists), fix them, and run again",
        cause,
      })
    case 'UnmodifiableEntity':
    case 'UnmodifiableEntityException':
      return new UserError('unexpected', `IAM refused ${call}: the role is protected and cannot be modified (${detail})`, {
        suggestion: 'it is a service-linked or otherwise protected role: choose another [method_CreateUserRole] role_name_pattern',
        cause,
      })
    default:
      return null
  }
}

/** Turns an SDK error into a UserError naming the call that failed and what to do. */
export function describeAwsError(error: unknown, call: string): UserError {
  if (error instanceof UserError) return error
  const e = error as AwsLikeError
  const name = awsErrorName(error)
  const detail = (e?.message ?? String(error)).split('\n')[0]
  if (ACCESS_DENIED.has(name))
    return new UserError('accessDenied', `AWS denied ${call}: ${detail}`, {
      suggestion: 'grant the caller the IAM permission named above (see the README, "IAM permissions")',
      cause: error,
    })
  if (THROTTLED.has(name))
    return new UserError('unavailable', `AWS throttled ${call} after retries: ${detail}`, {
      suggestion: 'try again later, or lower the concurrency',
      cause: error,
    })
  if (NO_CREDENTIALS.has(name))
    return new UserError('accessDenied', `no AWS credentials for ${call}: ${detail}`, {
      suggestion: 'run on an EC2 instance with a role, set AWS_PROFILE, or use --account FILE for offline mode',
      cause: error,
    })
  const refused = describeIamRefusal(name, call, detail, error)
  if (refused) return refused
  const status = e?.$metadata?.httpStatusCode
  if (status !== undefined && status >= 500)
    return new UserError('unavailable', `AWS failed ${call} (HTTP ${status}, ${name}): ${detail}`, {cause: error})
  if (['TimeoutError', 'ECONNREFUSED', 'ENOTFOUND', 'ECONNRESET', 'EAI_AGAIN'].includes(name) || /ECONN|ETIMEDOUT/.test(detail))
    return new UserError('unavailable', `could not reach AWS for ${call}: ${detail}`, {cause: error})
  return new UserError('unexpected', `${call} failed (${name}): ${detail}`, {cause: error})
}
