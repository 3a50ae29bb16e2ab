// Which AWS region (and so which partition and regional STS endpoint) the live commands and the
// daemon use: AWS_REGION or AWS_DEFAULT_REGION when set, else the instance's own region from the
// instance metadata service (placement/region, with an IMDSv2 token), else us-east-1. The AWS
// SDK v3 does not ask IMDS for the region itself, and in a private subnet whose only STS
// endpoint is the VPC's regional one, us-east-1 cannot be reached.
import {request} from 'node:http'

export interface RegionChoice {
  region: string
  /** aws, aws-cn, aws-us-gov, ... (from the region's name). */
  partition: string
  source: 'AWS_REGION' | 'AWS_DEFAULT_REGION' | 'imds' | 'default'
}

export const FALLBACK_REGION = 'us-east-1'

/** The partition a region belongs to. */
export function partitionOf(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn'
  if (region.startsWith('us-gov-')) return 'aws-us-gov'
  if (region.startsWith('us-iso-')) return 'aws-iso'
  if (region.startsWith('us-isob-')) return 'aws-iso-b'
  if (region.startsWith('eu-isoe-')) return 'aws-iso-e'
  if (region.startsWith('us-isof-')) return 'aws-iso-f'
  return 'aws'
}

export interface RegionOptions {
  env: Record<string, string | undefined>
  /** The instance metadata service (the daemon's --upstream); default AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254. */
  imds?: string
  timeoutMs?: number
}

/** The region to use, and where it came from. */
export async function resolveRegion(options: RegionOptions): Promise<RegionChoice> {
  const {env} = options
  const pick = (region: string, source: RegionChoice['source']): RegionChoice => ({region, partition: partitionOf(region), source})
  if (env.AWS_REGION) return pick(env.AWS_REGION, 'AWS_REGION')
  if (env.AWS_DEFAULT_REGION) return pick(env.AWS_DEFAULT_REGION, 'AWS_DEFAULT_REGION')
  // An IMDS named by the caller (the daemon's own upstream) is asked whatever the environment says.
  if (options.imds !== undefined || env.AWS_EC2_METADATA_DISABLED?.toLowerCase() !== 'true') {
    const region = await imdsRegion(options.imds ?? env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? 'http://169.254.169.254', options.timeoutMs ?? 1000)
    if (region) return pick(region, 'imds')
  }
  return pick(FALLBACK_REGION, 'default')
}

/** placement/region from IMDS with an IMDSv2 token; null when it does not answer in time. */
async function imdsRegion(base: string, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs
  const ask = (method: 'PUT' | 'GET', path: string, headers: Record<string, string>) =>
    new Promise<{status: number; body: string}>((resolve, reject) => {
      const url = new URL(path, base)
      const req = request(url, {method, headers, timeout: Math.max(1, deadline - Date.now())}, (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c.length + body.length > 4096 ? '' : c))
        res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
      })
      req.on('timeout', () => req.destroy(new Error('timeout')))
      req.on('error', reject)
      req.end()
    })
  try {
    const token = await ask('PUT', '/latest/api/token', {'X-aws-ec2-metadata-token-ttl-seconds': '60'})
    if (token.status !== 200) return null
    const answer = await ask('GET', '/latest/meta-data/placement/region', {'X-aws-ec2-metadata-token': token.body})
    const region = answer.body.trim()
    return answer.status === 200 && /^[a-z]{2}(-[a-z]+)+-\d+$/.test(region) ? region : null
  } catch {
    return null
  }
}
