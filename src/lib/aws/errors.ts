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
  const status = e?.$metadata?.httpStatusCode
  if (status !== undefined && status >= 500)
    return new UserError('unavailable', `AWS failed ${call} (HTTP ${status}, ${name}): ${detail}`, {cause: error})
  if (['TimeoutError', 'ECONNREFUSED', 'ENOTFOUND', 'ECONNRESET', 'EAI_AGAIN'].includes(name) || /ECONN|ETIMEDOUT/.test(detail))
    return new UserError('unavailable', `could not reach AWS for ${call}: ${detail}`, {cause: error})
  return new UserError('unexpected', `${call} failed (${name}): ${detail}`, {cause: error})
}
