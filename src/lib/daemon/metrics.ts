// Prometheus metrics of `serve`, on the admin listener only: credential requests by outcome and
// method, the credential cache's hits and misses, AWS call latency, retries and throttles.
import {Counter, Gauge, Histogram, Registry} from 'prom-client'

import type {AwsCallRecord} from '../aws/clients.js'
import type {CacheStats} from '../methods/cache.js'

const THROTTLES = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException'])

export interface DaemonMetrics {
  readonly registry: Registry
  credentialRequest(outcome: string, method: string | null, seconds: number): void
  awsCall(call: AwsCallRecord): void
  /** Where the credential cache's counters are read from at scrape time. */
  watchCache(stats: () => CacheStats): void
  /** serve found its rules gone or changed and installed them again. */
  interceptionReinstalled(): void
}

export function createMetrics(): DaemonMetrics {
  const registry = new Registry()
  const requests = new Counter({
    name: 'ec2userkeyd_credential_requests_total',
    help: 'Credential requests answered, by outcome (issued, none, error, denied) and the method that issued.',
    labelNames: ['outcome', 'method'] as const,
    registers: [registry],
  })
  const requestSeconds = new Histogram({
    name: 'ec2userkeyd_credential_request_seconds',
    help: 'Time to answer a credential request.',
    labelNames: ['outcome'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  const awsSeconds = new Histogram({
    name: 'ec2userkeyd_aws_call_seconds',
    help: 'AWS API call latency (retries included), by service, operation and outcome.',
    labelNames: ['service', 'operation', 'outcome'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  })
  const awsRetries = new Counter({name: 'ec2userkeyd_aws_retries_total', help: 'AWS API call retries, by service and operation.', labelNames: ['service', 'operation'] as const, registers: [registry]})
  const throttles = new Counter({
    name: 'ec2userkeyd_aws_throttled_total',
    help: 'AWS API calls that failed throttled after the SDK retries, by service and operation.',
    labelNames: ['service', 'operation'] as const,
    registers: [registry],
  })
  const reinstalls = new Counter({
    name: 'ec2userkeyd_interception_reinstalls_total',
    help: 'Times serve found its iptables rules gone or changed (a firewall reload, a flush) and installed them again.',
    registers: [registry],
  })
  let cacheStats: (() => CacheStats) | null = null
  const cache = new Gauge({
    name: 'ec2userkeyd_credential_cache_events',
    help: 'Credential cache events since start (hits, misses, refreshes, failures).',
    labelNames: ['event'] as const,
    registers: [registry],
    collect() {
      if (!cacheStats) return
      for (const [event, n] of Object.entries(cacheStats())) this.set({event}, n)
    },
  })
  void cache
  return {
    registry,
    credentialRequest(outcome, method, seconds) {
      requests.inc({outcome, method: method ?? 'none'})
      requestSeconds.observe({outcome}, seconds)
    },
    awsCall(call) {
      awsSeconds.observe({service: call.service, operation: call.operation, outcome: call.error ? 'error' : 'ok'}, call.seconds)
      if (call.retries > 0) awsRetries.inc({service: call.service, operation: call.operation}, call.retries)
      if (call.error && THROTTLES.has(call.error)) throttles.inc({service: call.service, operation: call.operation})
    },
    watchCache(stats) {
      cacheStats = stats
    },
    interceptionReinstalled() {
      reinstalls.inc()
    },
  }
}
