// IMDS's answers, byte for byte where EC2's are known: the credentials document, /iam/info,
// and the error pages. SDKs parse the JSON, but scripts grep it and some tools compare it, so
// the daemon's answers look exactly like the real service's.
import type {Credentials} from '../methods/credentials.js'

/** EC2's timestamps: `2017-05-17T15:09:54Z` (no milliseconds). */
export function imdsTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/**
 * EC2's own pretty-printing: two-space indent, ` : ` between key and value, keys in EC2's
 * order, no newline after the closing brace. Values go through JSON.stringify, so a value can
 * never break out of its string.
 */
function imdsJson(fields: Array<[string, string]>): string {
  return `{\n${fields.map(([key, value]) => `  ${JSON.stringify(key)} : ${JSON.stringify(value)}`).join(',\n')}\n}`
}

/**
 * `meta-data/iam/security-credentials/ROLE`. With `accountId` the document of
 * `security-credentials-extended/ROLE` (newer SDKs ask it first for the account ID), which
 * adds `AccountId` after the legacy keys.
 */
export function credentialsDocument(credentials: Credentials, lastUpdated: Date, accountId?: string): string {
  // Every request for a user's cached credentials asks for the same document: render it once per
  // credentials object (and LastUpdated and account), for each of the two paths. The entry holds
  // every input, so that a changed field or another date renders anew: the answer is always
  // exactly the rendering's.
  let slots = renderedDocuments.get(credentials)
  if (!slots) renderedDocuments.set(credentials, (slots = {}))
  const slot = accountId === undefined ? 'legacy' : 'extended'
  const rendered = slots[slot]
  const time = lastUpdated.getTime()
  if (
    rendered &&
    rendered.lastUpdated === time &&
    rendered.accountId === accountId &&
    rendered.accessKeyId === credentials.accessKeyId &&
    rendered.secretAccessKey === credentials.secretAccessKey &&
    rendered.sessionToken === credentials.sessionToken &&
    rendered.expiration === credentials.expiration.getTime()
  )
    return rendered.document
  const document = renderCredentialsDocument(credentials, lastUpdated, accountId)
  slots[slot] = {
    lastUpdated: time,
    accountId,
    accessKeyId: credentials.accessKeyId,
    secretAccessKey: credentials.secretAccessKey,
    sessionToken: credentials.sessionToken,
    expiration: credentials.expiration.getTime(),
    document,
  }
  return document
}

interface RenderedDocument {
  lastUpdated: number
  accountId: string | undefined
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
  expiration: number
  document: string
}

/** The last document rendered per credentials object and path; they go when the credentials do. */
const renderedDocuments = new WeakMap<Credentials, {legacy?: RenderedDocument; extended?: RenderedDocument}>()

function renderCredentialsDocument(credentials: Credentials, lastUpdated: Date, accountId?: string): string {
  const fields: Array<[string, string]> = [
    ['Code', 'Success'],
    ['LastUpdated', imdsTime(lastUpdated)],
    ['Type', 'AWS-HMAC'],
    ['AccessKeyId', credentials.accessKeyId],
    ['SecretAccessKey', credentials.secretAccessKey],
    ['Token', credentials.sessionToken],
    ['Expiration', imdsTime(credentials.expiration)],
  ]
  if (accountId !== undefined) fields.push(['AccountId', accountId])
  return imdsJson(fields)
}

export interface IamInfo {
  LastUpdated: string
  InstanceProfileArn: string
  InstanceProfileId: string
}

/** `meta-data/iam/info`. */
export function iamInfoDocument(info: IamInfo): string {
  return imdsJson([
    ['Code', 'Success'],
    ['LastUpdated', info.LastUpdated],
    ['InstanceProfileArn', info.InstanceProfileArn],
    ['InstanceProfileId', info.InstanceProfileId],
  ])
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  414: 'URI Too Long',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  504: 'Gateway Timeout',
}

/**
 * IMDS's error page (text/html): EC2's 404 page (345 bytes), and the other statuses in the
 * same shape, as EC2 also answers 400 and 401.
 */
export function errorPage(status: number): string {
  const title = `${status} - ${TITLES[status] ?? 'Error'}`
  return [
    '<?xml version="1.0" encoding="iso-8859-1"?>',
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"',
    '         "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
    ' <head>',
    `  <title>${title}</title>`,
    ' </head>',
    ' <body>',
    `  <h1>${title}</h1>`,
    ' </body>',
    '</html>',
    '',
  ].join('\n')
}
