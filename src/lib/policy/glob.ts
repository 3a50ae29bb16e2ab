// IAM wildcard patterns (`*` any run of characters, `?` one character; nothing else is
// special) and the set questions the compiler asks of them. Actions compare case-insensitively,
// ARNs case-sensitively: callers lower-case actions before asking.

const cache = new Map<string, RegExp>()

function toRegExp(pattern: string): RegExp {
  let re = cache.get(pattern)
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]')
    re = new RegExp(`^${body}$`)
    if (cache.size > 10_000) cache.clear()
    cache.set(pattern, re)
  }
  return re
}

/** Does `pattern` match the concrete string `value`? */
export function globMatches(pattern: string, value: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === value
  return toRegExp(pattern).test(value)
}

/**
 * Does every string matched by `inner` also match `outer`? Sound (a true answer is always
 * right); it may answer false for a few exotic pattern pairs where the inclusion holds, which
 * only makes callers more conservative.
 */
export function globCovers(outer: string, inner: string): boolean {
  if (outer === inner || outer === '*') return true
  const n = outer.length
  const m = inner.length
  // covered[i][j]: outer[i..] covers inner[j..]
  const memo = new Map<number, boolean>()
  const go = (i: number, j: number): boolean => {
    const key = i * (m + 1) + j
    const hit = memo.get(key)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === n) r = j === m
    else if (outer[i] === '*') r = go(i + 1, j) || (j < m && go(i, j + 1))
    else if (j === m) r = false
    else if (inner[j] === '*') r = false // only an outer `*` absorbs an inner `*`
    else if (outer[i] === '?') r = go(i + 1, j + 1)
    else r = inner[j] !== '?' && outer[i] === inner[j] && go(i + 1, j + 1)
    memo.set(key, r)
    return r
  }
  return go(0, 0)
}

/** Is there a string both patterns match? Exact. */
export function globIntersects(a: string, b: string): boolean {
  if (a === '*' || b === '*' || a === b) return true
  const n = a.length
  const m = b.length
  const memo = new Map<number, boolean>()
  const go = (i: number, j: number): boolean => {
    const key = i * (m + 1) + j
    const hit = memo.get(key)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === n && j === m) r = true
    else if (i < n && a[i] === '*') r = go(i + 1, j) || (j < m && go(i, j + 1))
    else if (j < m && b[j] === '*') r = go(i, j + 1) || (i < n && go(i + 1, j))
    else if (i === n || j === m) r = false
    else r = (a[i] === '?' || b[j] === '?' || a[i] === b[j]) && go(i + 1, j + 1)
    memo.set(key, r)
    return r
  }
  return go(0, 0)
}

export const hasWildcard = (s: string): boolean => s.includes('*') || s.includes('?')
