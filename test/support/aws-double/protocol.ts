// The AWS Query wire protocol as IAM and STS speak it: reading form-encoded requests and
// the SigV4 credential scope, writing `<ActionResponse>` / `<ErrorResponse>` XML, and the
// Marker/MaxItems pagination every IAM List call shares. Checked against the SDK's own
// AwsQueryProtocol (node_modules/@aws-sdk/core/dist-cjs/submodules/protocols).
import type {IncomingHttpHeaders} from 'node:http'

export type Service = 'iam' | 'sts'

/** Decoded form fields, e.g. `{Action: 'GetUser', UserName: 'alice'}`. */
export type Params = Record<string, string>

export const API_VERSION: Record<Service, string> = {iam: '2010-05-08', sts: '2011-06-15'}
const NAMESPACE: Record<Service, string> = {
  iam: 'https://iam.amazonaws.com/doc/2010-05-08/',
  sts: 'https://sts.amazonaws.com/doc/2011-06-15/',
}

/** The HTTP status real IAM/STS answer each error code with. */
const ERROR_STATUS: Record<string, number> = {
  AccessDenied: 403,
  DeleteConflict: 409,
  EntityAlreadyExists: 409,
  ExpiredToken: 400,
  InternalFailure: 500,
  InvalidAction: 400,
  InvalidClientTokenId: 403,
  InvalidInput: 400,
  LimitExceeded: 409,
  MalformedPolicyDocument: 400,
  MissingAuthenticationToken: 403,
  NoSuchEntity: 404,
  PackedPolicyTooLarge: 400,
  ServiceFailure: 500,
  ServiceUnavailable: 503,
  Throttling: 400,
  ValidationError: 400,
}

export function statusOf(code: string): number {
  return ERROR_STATUS[code] ?? 400
}

/** An error answered as `<ErrorResponse>`; the SDK surfaces `code` as the error's name. */
export class AwsError extends Error {
  readonly status: number
  constructor(
    readonly code: string,
    message: string,
    status?: number,
  ) {
    super(message)
    this.status = status ?? statusOf(code)
  }
}

export function parseForm(body: string): Params {
  const params: Params = {}
  for (const [key, value] of new URLSearchParams(body)) params[key] = value
  return params
}

export interface RequestCredential {
  accessKeyId: string
  /** The service named in the credential scope, if the request was signed. */
  service: string | null
  /** The region the request was signed for (its credential scope). */
  region: string | null
  sessionToken: string | null
}

/**
 * The access key and service of a request, from the SigV4 Authorization header
 * (`Credential=AKID/20240101/us-east-1/iam/aws4_request`) or a presigned query string.
 * Signatures are not verified: the double trusts loopback.
 */
export function credentialOf(headers: IncomingHttpHeaders, query: URLSearchParams): RequestCredential | null {
  const token = (headers['x-amz-security-token'] as string | undefined) ?? query.get('X-Amz-Security-Token')
  const scope = /Credential=([^,\s]+)/.exec(headers.authorization ?? '')?.[1] ?? query.get('X-Amz-Credential')
  if (!scope) return null
  const [accessKeyId, , region, service] = scope.split('/')
  if (!accessKeyId) return null
  return {accessKeyId, service: service ?? null, region: region ?? null, sessionToken: token ?? null}
}

export function serviceOf(
  credential: RequestCredential | null,
  path: string,
  params: Params,
): Service | null {
  if (credential?.service === 'iam' || credential?.service === 'sts') return credential.service
  if (/^\/(iam|sts)(\/|$)/.test(path)) return path.slice(1, 4) as Service
  if (params.Version === API_VERSION.iam) return 'iam'
  if (params.Version === API_VERSION.sts) return 'sts'
  return null
}

// ---- reading parameters ----

function validation(field: string, constraint: string, value: string | null): AwsError {
  const shown = value === null ? 'null' : `'${value}'`
  const member = field[0].toLowerCase() + field.slice(1)
  return new AwsError(
    'ValidationError',
    `1 validation error detected: Value ${shown} at '${member}' failed to satisfy constraint: Member must ${constraint}`,
  )
}

export function required(params: Params, name: string): string {
  const v = params[name]
  if (v === undefined) throw validation(name, 'not be null', null)
  return v
}

/** A string parameter checked against the API's pattern and length limits. */
export function checked(
  params: Params,
  name: string,
  rule: {pattern?: RegExp; min?: number; max?: number; optional?: boolean},
): string | undefined {
  const v = params[name]
  if (v === undefined) {
    if (rule.optional) return undefined
    throw validation(name, 'not be null', null)
  }
  if (rule.min !== undefined && v.length < rule.min)
    throw validation(name, `have length greater than or equal to ${rule.min}`, v)
  if (rule.max !== undefined && v.length > rule.max)
    throw validation(name, `have length less than or equal to ${rule.max}`, v)
  if (rule.pattern && !rule.pattern.test(v))
    throw validation(name, `satisfy regular expression pattern: ${rule.pattern.source}`, v)
  return v
}

export function integer(params: Params, name: string, range: {min: number; max: number}): number | undefined {
  const v = params[name]
  if (v === undefined) return undefined
  if (!/^-?\d+$/.test(v)) throw validation(name, 'be an integer', v)
  const n = Number(v)
  if (n < range.min) throw validation(name, `have value greater than or equal to ${range.min}`, v)
  if (n > range.max) throw validation(name, `have value less than or equal to ${range.max}`, v)
  return n
}

export function flag(params: Params, name: string): boolean {
  return params[name] === 'true'
}

/**
 * A list parameter: `Name.member.N` (strings) or `Name.member.N.field` (structures), in
 * index order. An empty list arrives as a bare `Name=` and reads as [].
 */
export function memberList(params: Params, name: string, field?: string): string[] {
  const prefix = `${name}.member.`
  const suffix = field ? `.${field}` : ''
  const found: [number, string][] = []
  for (const [key, value] of Object.entries(params)) {
    if (!key.startsWith(prefix) || !key.endsWith(suffix)) continue
    const index = key.slice(prefix.length, key.length - suffix.length)
    if (/^\d+$/.test(index)) found.push([Number(index), value])
  }
  return found.sort((a, b) => a[0] - b[0]).map(([, v]) => v)
}

export function tagList(params: Params, name = 'Tags'): {Key: string; Value: string}[] {
  const keys = memberList(params, name, 'Key')
  const values = memberList(params, name, 'Value')
  return keys.map((Key, i) => ({Key, Value: values[i] ?? ''}))
}

// ---- pagination ----

export interface Page<T> {
  items: T[]
  IsTruncated: boolean
  Marker?: string
}

/**
 * One page of a List call. MaxItems is honoured as asked (1..1000); without it the page is
 * the double's small default, so SDK paginators always see several pages. Markers are
 * opaque to clients, as in IAM.
 */
export function paginate<T>(items: T[], params: Params, defaultPageSize: number): Page<T> {
  const size = integer(params, 'MaxItems', {min: 1, max: 1000}) ?? defaultPageSize
  let start = 0
  if (params.Marker !== undefined) {
    const m = /^offset:(\d+)$/.exec(Buffer.from(params.Marker, 'base64url').toString('utf8'))
    if (!m) throw validation('Marker', 'be a marker returned by a previous call', params.Marker)
    start = Number(m[1])
  }
  const end = start + size
  const truncated = end < items.length
  return {
    items: items.slice(start, end),
    IsTruncated: truncated,
    Marker: truncated ? Buffer.from(`offset:${end}`, 'utf8').toString('base64url') : undefined,
  }
}

// ---- XML ----

/** What a response body is built from: objects become elements, arrays `<member>` lists. */
export type XmlValue = string | number | boolean | null | undefined | XmlValue[] | {[name: string]: XmlValue}

export function escapeXml(text: string): string {
  return text.replace(
    /[&<>"'\r]/g,
    (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\r': '&#13;'})[c]!,
  )
}

function element(name: string, value: XmlValue): string {
  if (value === undefined || value === null) return ''
  if (Array.isArray(value)) return `<${name}>${value.map((v) => element('member', v)).join('')}</${name}>`
  if (typeof value === 'object')
    return `<${name}>${Object.entries(value)
      .map(([k, v]) => element(k, v))
      .join('')}</${name}>`
  return `<${name}>${escapeXml(String(value))}</${name}>`
}

/** `<ActionResponse><ActionResult>..</ActionResult><ResponseMetadata>..` — no Result element for void actions. */
export function xmlResponse(
  service: Service,
  action: string,
  result: {[name: string]: XmlValue} | undefined,
  requestId: string,
): string {
  const body = result === undefined ? '' : element(`${action}Result`, result)
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<${action}Response xmlns="${NAMESPACE[service]}">${body}` +
    `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`
  )
}

export function xmlError(service: Service, error: AwsError, requestId: string): string {
  const type = error.status >= 500 ? 'Receiver' : 'Sender'
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<ErrorResponse xmlns="${NAMESPACE[service]}"><Error><Type>${type}</Type>` +
    `<Code>${escapeXml(error.code)}</Code><Message>${escapeXml(error.message)}</Message></Error>` +
    `<RequestId>${requestId}</RequestId></ErrorResponse>`
  )
}
