// IAM wildcard patterns (`*` any run of characters, `?` one character; nothing else is
// special) and the set questions the compiler asks of them. Actions compare case-insensitively,
// ARNs case-sensitively: callers lower-case actions before asking. A character is a code point
// (`?` matches 𠀀, which JavaScript strings hold as two units).

const cache = new Map<string, RegExp>()

function toRegExp(pattern: string): RegExp {
  let re = cache.get(pattern)
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]')
    re = new RegExp(`^${body}$`, 'u')
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
  if (!hasWildcard(outer)) return false // a literal covers only itself
  if (!hasWildcard(inner)) return globMatches(outer, inner)
  const trimmed = trimLiterals([...outer], [...inner])
  if (!trimmed) return false
  const [o, inn] = trimmed
  if (o.join('') === inn.join('') || (o.length === 1 && o[0] === '*')) return true
  return coversPoints(o, inn)
}

function coversPoints(outer: string[], inner: string[]): boolean {
  // next[j] / row[j]: outer[i+1..] / outer[i..] covers inner[j..], filled from the ends.
  const n = outer.length
  const m = inner.length
  let next = new Uint8Array(m + 1)
  let row = new Uint8Array(m + 1)
  next[m] = 1
  for (let i = n - 1; i >= 0; i--) {
    const o = outer[i]
    for (let j = m; j >= 0; j--) {
      if (o === '*') row[j] = next[j] || (j < m ? row[j + 1] : 0)
      else if (j === m) row[j] = 0
      else if (inner[j] === '*') row[j] = 0 // only an outer `*` absorbs an inner `*`
      else if (o === '?') row[j] = next[j + 1]
      else row[j] = inner[j] !== '?' && o === inner[j] ? next[j + 1] : 0
    }
    ;[next, row] = [row, next]
  }
  return next[0] === 1
}

/** Is there a string both patterns match? Exact. */
export function globIntersects(a: string, b: string): boolean {
  if (a === '*' || b === '*' || a === b) return true
  if (!hasWildcard(a)) return globMatches(b, a)
  if (!hasWildcard(b)) return globMatches(a, b)
  const trimmed = trimLiterals([...a], [...b])
  if (!trimmed) return false
  return intersectsPoints(...trimmed)
}

function intersectsPoints(a: string[], b: string[]): boolean {
  // next[j] / row[j]: a[i+1..] / a[i..] and b[j..] share a string.
  const n = a.length
  const m = b.length
  let next = new Uint8Array(m + 1)
  let row = new Uint8Array(m + 1)
  for (let i = n; i >= 0; i--) {
    for (let j = m; j >= 0; j--) {
      if (i === n && j === m) row[j] = 1
      else if (i < n && a[i] === '*') row[j] = next[j] || (j < m ? row[j + 1] : 0)
      else if (j < m && b[j] === '*') row[j] = row[j + 1] || (i < n ? next[j] : 0)
      else if (i === n || j === m) row[j] = 0
      else row[j] = a[i] === '?' || b[j] === '?' || a[i] === b[j] ? next[j + 1] : 0
    }
    ;[next, row] = [row, next]
  }
  return next[0] === 1
}

const isWild = (c: string) => c === '*' || c === '?'

/**
 * Strips the literal prefix and suffix two patterns share (a fixed affix changes neither
 * question), or null when their literal ends differ, so no string can match both.
 */
function trimLiterals(a: string[], b: string[]): [string[], string[]] | null {
  let start = 0
  while (start < a.length && start < b.length && !isWild(a[start]) && !isWild(b[start])) {
    if (a[start] !== b[start]) return null
    start++
  }
  let end = 0
  while (end < a.length - start && end < b.length - start) {
    const x = a[a.length - 1 - end]
    const y = b[b.length - 1 - end]
    if (isWild(x) || isWild(y)) break
    if (x !== y) return null
    end++
  }
  return [a.slice(start, a.length - end), b.slice(start, b.length - end)]
}

export const hasWildcard = (s: string): boolean => s.includes('*') || s.includes('?')
