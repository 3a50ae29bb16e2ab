// The AWS SDK clients, configured once: the standard credential chain and environment
// (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_IAM, AWS_ENDPOINT_URL_STS, ...) and adaptive
// retry, which backs off on throttling and rate-limits the client as a whole.
import {IAMClient} from '@aws-sdk/client-iam'
import {STSClient} from '@aws-sdk/client-sts'

import {FALLBACK_REGION, resolveRegion} from './region.js'

export interface AwsClients {
  iam: IAMClient
  sts: STSClient
}

export interface AwsClientOptions {
  /** The process environment (passed in so library code never reads process.env itself). */
  env: Record<string, string | undefined>
  /** The region (resolveRegion's); default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  region?: string
  maxAttempts?: number
  /** Told of every AWS call once it is done (retries included), e.g. for metrics. */
  onCall?: (call: AwsCallRecord) => void
}

export interface AwsCallRecord {
  service: 'iam' | 'sts'
  operation: string
  seconds: number
  /** The error name, when the call failed. */
  error?: string
  /** The SDK's retry count for this call. */
  retries: number
}

export function createAwsClients(options: AwsClientOptions): AwsClients {
  const region = options.region || options.env.AWS_REGION || options.env.AWS_DEFAULT_REGION || FALLBACK_REGION
  // AWS_MAX_ATTEMPTS as the SDK documents it (the SDK reads it only when maxAttempts is not given).
  const fromEnv = Number(options.env.AWS_MAX_ATTEMPTS)
  const maxAttempts = options.maxAttempts ?? (Number.isInteger(fromEnv) && fromEnv >= 1 ? fromEnv : 6)
  const common = {region, retryMode: 'adaptive', maxAttempts}
  const iam = new IAMClient(common)
  const sts = new STSClient(common)
  reportQuotasAtOnce(iam)
  if (options.onCall) {
    observeCalls(iam, 'iam', options.onCall)
    observeCalls(sts, 'sts', options.onCall)
  }
  return {iam, sts}
}

type Handler = (args: unknown) => Promise<{output: unknown}>
/** The part of an SDK client's middleware stack this module uses, for IAM and STS alike. */
interface MiddlewareAdder {
  add(middleware: (next: Handler, context: {commandName?: string}) => Handler, options: {step: 'initialize'; priority: 'high'; name: string}): void
}

/** Reports each call's operation, duration (retries included), outcome and retry count. */
export function observeCalls(client: IAMClient | STSClient, service: AwsCallRecord['service'], onCall: (call: AwsCallRecord) => void): void {
  ;(client.middlewareStack as unknown as MiddlewareAdder).add(
    (next, context) => async (args) => {
      const start = performance.now()
      const operation = String(context.commandName ?? 'unknown').replace(/Command$/, '')
      try {
        const result = await next(args)
        const retries = (result.output as {$metadata?: {attempts?: number}})?.$metadata?.attempts ?? 1
        onCall({service, operation, seconds: (performance.now() - start) / 1000, retries: retries - 1})
        return result
      } catch (error) {
        const e = error as {name?: string; $metadata?: {attempts?: number}}
        onCall({service, operation, seconds: (performance.now() - start) / 1000, error: e?.name ?? 'Error', retries: (e?.$metadata?.attempts ?? 1) - 1})
        throw error
      }
    },
    {step: 'initialize', priority: 'high', name: 'observeCalls'},
  )
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

/** Clients for the live commands: the region resolved as resolveRegion does (the instance's own, from IMDS, when none is set). */
export async function liveAwsClients(options: AwsClientOptions): Promise<AwsClients> {
  return createAwsClients({...options, region: options.region ?? (await resolveRegion({env: options.env})).region})
}
