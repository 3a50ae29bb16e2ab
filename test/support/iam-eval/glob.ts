// IAM wildcard matching for the referee evaluator: `*` is any run of characters (including none,
// and including `:` and `/`), `?` is exactly one character, and nothing else is special — no
// character classes, no backslash escapes. A literal `*` or `?` can only come from the ${*} and
// ${?} policy variables, so a pattern is a list of parts, each saying whether its wildcards count.

/** One stretch of a pattern; `wild: false` for text that came from a policy variable. */
export interface Part {
  text: string
  wild: boolean
}

export function hasWildcard(text: string): boolean {
  return text.includes('*') || text.includes('?')
}

const regexCache = new Map<string, RegExp>()

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

function regexFor(parts: readonly Part[], ignoreCase: boolean): RegExp {
  // The key names each part's kind and length, so no two patterns share one; the RegExp is
  // built only the first time (building it is most of a probe's cost).
  let cacheKey = ignoreCase ? 'i' : 's'
  for (const part of parts) cacheKey += `${part.wild ? 'w' : 'l'}${part.text.length}:${part.text}`
  let re = regexCache.get(cacheKey)
  if (!re) {
    let source = ''
    for (const part of parts) {
      if (!part.wild) {
        source += escapeRegExp(part.text)
        continue
      }
      for (const ch of part.text)
        source += ch === '*' ? '[\\s\\S]*' : ch === '?' ? '[\\s\\S]' : escapeRegExp(ch)
    }
    re = new RegExp(`^${source}$`, ignoreCase ? 'iu' : 'u')
    regexCache.set(cacheKey, re)
  }
  return re
}

/** Whether `subject` matches the pattern made of `parts`. */
export function matchParts(parts: readonly Part[], subject: string, ignoreCase = false): boolean {
  if (parts.every((p) => !p.wild || !hasWildcard(p.text))) {
    const literal = parts.map((p) => p.text).join('')
    return ignoreCase ? literal.toLowerCase() === subject.toLowerCase() : literal === subject
  }
  return regexFor(parts, ignoreCase).test(subject)
}

const globCache = {exact: new Map<string, RegExp | null>(), ignoringCase: new Map<string, RegExp | null>()}

/** Whether `subject` matches the plain wildcard pattern `pattern` (every `*` and `?` is a wildcard). */
export function matchGlob(pattern: string, subject: string, ignoreCase = false): boolean {
  // The probe generator asks this of thousands of actions per pattern: one RegExp per pattern.
  const cache = ignoreCase ? globCache.ignoringCase : globCache.exact
  let re = cache.get(pattern)
  if (re === undefined) {
    re = hasWildcard(pattern) ? regexFor([{text: pattern, wild: true}], ignoreCase) : null
    if (cache.size > 100_000) cache.clear()
    cache.set(pattern, re)
  }
  if (re === null) return ignoreCase ? pattern.toLowerCase() === subject.toLowerCase() : pattern === subject
  return re.test(subject)
}

/** The text of the parts with wildcards left in, e.g. for StringEquals, where `*` is just a character. */
export function partsText(parts: readonly Part[]): string {
  return parts.map((p) => p.text).join('')
}

/**
 * Splits a pattern at its first `count` colons (wherever they are, variable text included) into
 * `count + 1` components; returns undefined when there are fewer colons. ArnLike compares ARNs
 * component by component, so a `*` in one component never reaches into the next.
 */
export function splitPartsAtColons(parts: readonly Part[], count: number): Part[][] | undefined {
  const components: Part[][] = [[]]
  for (const part of parts) {
    let rest = part.text
    while (components.length <= count) {
      const at = rest.indexOf(':')
      if (at < 0) break
      components[components.length - 1].push({text: rest.slice(0, at), wild: part.wild})
      components.push([])
      rest = rest.slice(at + 1)
    }
    components[components.length - 1].push({text: rest, wild: part.wild})
  }
  return components.length === count + 1 ? components : undefined
}

/** The first `count + 1` colon-separated components of a plain string (the last keeps its colons). */
export function splitAtColons(text: string, count: number): string[] | undefined {
  const out: string[] = []
  let rest = text
  for (let i = 0; i < count; i++) {
    const at = rest.indexOf(':')
    if (at < 0) return undefined
    out.push(rest.slice(0, at))
    rest = rest.slice(at + 1)
  }
  out.push(rest)
  return out
}
