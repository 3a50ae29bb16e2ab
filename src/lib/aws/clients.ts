// The AWS SDK clients, configured once: the standard credential chain and environment
// (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL_STS, ...) and adaptive
// retry, which backs off on throttling and rate-limits the client as a whole.
import {IAMClient} from '@aws-sdk/client-iam'
import {STSClient} from '@aws-sdk/client-sts'

export interface AwsClients {
  iam: IAMClient
  sts: STSClient
}

export interface AwsClientOptions {
  /** The process environment (passed in so library code never reads process.env itself). */
  env: Record<string, string | undefined>
  maxAttempts?: number
}

/** IAM is a global service: without a configured region, use the partition's home region. */
export const FALLBACK_REGION = 'us-east-1'

export function createAwsClients(options: AwsClientOptions): AwsClients {
  const region = options.env.AWS_REGION || options.env.AWS_DEFAULT_REGION || FALLBACK_REGION
  const common = {region, retryMode: 'adaptive', maxAttempts: options.maxAttempts ?? 6}
  const iam = new IAMClient(common)
  reportQuotasAtOnce(iam)
  return {iam, sts: new STSClient(common)}
}

/**
 * IAM answers an exhausted quota (too many roles, attached policies...) with LimitExceeded,
 * which the SDK names LimitExceededException and retries as throttling for some 20 seconds.
 * A quota does not clear by waiting: rename the error inside the retry loop so it is reported
 * at once (describeAwsError knows both names).
 */
export function reportQuotasAtOnce(iam: IAMClient): void {
  iam.middlewareStack.add(
    (next) => async (args) => {
      try {
        return await next(args)
      } catch (error) {
        if ((error as {name?: string})?.name === 'LimitExceededException') (error as {name: string}).name = 'LimitExceeded'
        throw error
      }
    },
    {step: 'finalizeRequest', priority: 'low', name: 'reportQuotasAtOnce'},
  )
}
