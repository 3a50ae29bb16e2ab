// The canonical form of a request path, computed once before routing. The daemon routes on it
// and sends exactly it (never the raw spelling) to the upstream IMDS, so no spelling can mean
// one thing to the route table and another to the real metadata service: that is how the
// Python tool leaked the instance's credentials (its routes missed a trailing slash, the
// upstream did not).

export interface CanonicalPath {
  /** `latest`, a date such as `2021-01-03`, or `1.0`; null when the path names no version. */
  version: string | null
  /** What follows the version, without leading or trailing slash: `meta-data/iam/info`. */
  path: string
  /** The request ended in a slash (kept for the upstream, where listings are spelled so). */
  trailingSlash: boolean
  /** The one path sent upstream: `/${version}/${path}` (+ `/` when the request had one). */
  upstreamPath: string
}

export type CanonicalResult = CanonicalPath | {error: string}

/** How many rounds of percent-decoding a path may need before it is stable. */
export const MAX_DECODE_ROUNDS = 5

const VERSION = /^(latest|\d{4}-\d{2}-\d{2}|1\.0)$/i

/**
 * The characters a decoded path segment may hold. Every real IMDS path fits in it: names,
 * dates, MAC addresses and IPv6 addresses (`:`), instance tag keys (letters, digits and
 * `+ - = . , _ : @`). Everything else is refused rather than escaped, because each has been
 * read differently by some server or parser, and the daemon's reading must be the upstream's:
 * NUL and control characters (C strings end at NUL; CR/LF split requests), whitespace (trimmed
 * by some servers), `\` (a path separator to WHATWG URL parsers and Windows-minded servers),
 * `;` (path parameters, dropped by some routers), `%` left after decoding, `?` and `#` decoded
 * from `%3F`/`%23`, and non-ASCII (case-folding and normalisation differ between parsers).
 * With only these, the canonical path needs no escaping at all on its way upstream.
 */
const SEGMENT = /^[A-Za-z0-9._~:@!$&'()*+,=-]+$/

/** Request targets whose canonical form is remembered (the most recently used). */
export const CANONICAL_MEMO_MAX = 256
/** Longer targets are computed each time: the memo holds at most 256 × 256 characters of keys. */
export const CANONICAL_MEMO_KEY_MAX = 256

/**
 * The last few targets' results: SDKs ask the same few paths again and again. Bounded in
 * entries and key length, since a user can send any number of distinct targets; the least
 * recently used goes first. Results are frozen, so no caller can change another's.
 */
const memo = new Map<string, CanonicalResult>()

/** The path of a request target (`req.url`), canonical, or why it cannot be. */
export function canonicalPath(rawUrl: string): CanonicalResult {
  if (rawUrl.length > CANONICAL_MEMO_KEY_MAX) return computeCanonicalPath(rawUrl)
  let result = memo.get(rawUrl)
  if (result) {
    memo.delete(rawUrl) // to the back: most recently used
  } else {
    result = computeCanonicalPath(rawUrl)
    if (memo.size >= CANONICAL_MEMO_MAX) memo.delete(memo.keys().next().value!)
  }
  memo.set(rawUrl, result)
  return result
}

/** The memo, to look at (tests: it stays bounded). */
export const canonicalPathMemo: Pick<ReadonlyMap<string, CanonicalResult>, 'size' | 'has'> = memo

/** canonicalPath without the memo. */
export function computeCanonicalPath(rawUrl: string): CanonicalResult {
  return Object.freeze(canonicalize(rawUrl))
}

function canonicalize(rawUrl: string): CanonicalResult {
  if (!rawUrl.startsWith('/'))
    return {error: 'the request target is not an absolute path (IMDS is not a proxy)'}
  let path = rawUrl.replace(/[?#].*$/s, '')

  // Percent-decode until nothing changes: `%252F` is `%2F` is `/`. A path that still changes
  // after a few rounds is built to outlast someone's loop; refuse it.
  for (let round = 0; ; round++) {
    let next: string
    try {
      next = decodeURIComponent(path)
    } catch {
      return {error: 'malformed percent-encoding'}
    }
    if (next === path) break
    if (round + 1 >= MAX_DECODE_ROUNDS)
      return {error: `still percent-encoded after ${MAX_DECODE_ROUNDS} rounds of decoding`}
    path = next
  }

  const segments: string[] = []
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue // duplicate slashes, `/./`, the trailing slash
    if (segment === '..') {
      if (segments.length === 0) return {error: "'..' above the root"}
      segments.pop()
      continue
    }
    if (!SEGMENT.test(segment)) return {error: `a character IMDS paths never hold in '${printable(segment)}'`}
    segments.push(segment)
  }

  const trailingSlash = segments.length > 0 && /\/\.{0,2}$/.test(path)
  const version = segments.length > 0 && VERSION.test(segments[0]) ? segments.shift()!.toLowerCase() : null
  const rest = segments.join('/')
  const all = version === null ? rest : rest === '' ? version : `${version}/${rest}`
  const upstreamPath = all === '' ? '/' : `/${all}${trailingSlash ? '/' : ''}`
  return {version, path: rest, trailingSlash, upstreamPath}
}

/**
 * The path folded to lower-case letters and digits: `meta-data/IAM/Security_Credentials;x`
 * becomes `metadataiamsecuritycredentialsx`. The route table matches the credential paths
 * exactly (case aside); this is the net behind it, so that no near-spelling of a credential
 * path is ever passed upstream for a non-root user, whatever the upstream makes of it.
 */
export function foldedPath(path: string): string {
  return path.toLowerCase().replace(/[^a-z0-9]/g, '')
}

/** Shown in errors: control characters and non-ASCII as escapes, at most 64 characters. */
function printable(s: string): string {
  const shown = s.length > 64 ? `${s.slice(0, 64)}...` : s
  return shown.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}
