// The layering of src/, as docs/architecture.md draws it: which part may import which, and the
// rules that are never broken (policy is pure; the chain knows no HTTP; libraries never reach up
// into the CLI; host knows no serving). Read from the imports themselves, so a new import that
// breaks a rule fails here with the file and the line.
import assert from 'node:assert/strict'
import {readdirSync, readFileSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const SRC = fileURLToPath(new URL('../src', import.meta.url))

/** The part a file of src/ belongs to: src/lib/X/... is X, src/lib/X.ts is X, src/cli, src/commands. */
function partOf(file: string): string {
  const [top, second] = relative(SRC, file).split('/')
  if (top !== 'lib') return top
  return second.replace(/\.[jt]s$/, '')
}

/** Every part and the parts it may import (itself always). Lower parts come first. */
const ALLOWED: Record<string, readonly string[]> = {
  errors: [],
  iam: [],
  fair: [],
  config: ['errors', 'iam'],
  policy: ['errors', 'iam'],
  host: ['errors', 'fair'],
  aws: ['errors', 'iam', 'config'],
  roles: ['errors', 'iam', 'config', 'aws', 'policy'],
  methods: ['errors', 'iam', 'config', 'aws', 'policy', 'roles', 'host'],
  imds: ['errors', 'iam', 'config', 'fair', 'host', 'methods'],
  daemon: ['errors', 'iam', 'config', 'aws', 'host', 'imds', 'methods'],
  stages: ['errors', 'iam', 'config', 'aws', 'policy', 'roles', 'methods', 'host'],
  render: ['errors', 'iam', 'config', 'aws', 'policy', 'roles', 'methods', 'host', 'imds', 'daemon', 'stages'],
  cli: ['errors', 'config', 'aws', 'daemon', 'render'],
  commands: ['cli', 'errors', 'iam', 'config', 'aws', 'policy', 'roles', 'methods', 'host', 'imds', 'daemon', 'stages', 'render'],
}

/** Packages (and node: modules) a part must never import, and why. */
const NEVER: Array<{parts: readonly string[]; module: RegExp; why: string}> = [
  {parts: ['policy', 'iam'], module: /^(@aws-sdk\/|node:)/, why: 'policy is pure: no AWS SDK, no I/O (the stages call AWS)'},
  {parts: ['methods'], module: /^node:(http|https|net)$/, why: 'the chain knows no HTTP (imds/ serves it)'},
  {parts: ['host'], module: /^node:(http|https)$/, why: 'host knows no serving'},
  {
    parts: ['errors', 'iam', 'fair', 'config', 'policy', 'host', 'aws', 'roles', 'methods', 'imds', 'daemon', 'stages', 'render'],
    module: /^@oclif\//,
    why: 'libraries never reach up into the CLI',
  },
]

interface Import {
  file: string
  line: number
  specifier: string
}

/** The static and dynamic imports (and re-exports) of a TypeScript file. */
function importsOf(file: string, text = readFileSync(file, 'utf8')): Import[] {
  const found: Import[] = []
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm
  for (const match of text.matchAll(pattern)) {
    const line = text.slice(0, match.index).split('\n').length
    found.push({file, line, specifier: match[1]})
  }
  return found
}

/** Every import of `files` that breaks a rule, as one line each. */
function violations(files: Array<{file: string; text?: string}>): string[] {
  const out: string[] = []
  for (const {file, text} of files) {
    const from = partOf(file)
    const allowed = ALLOWED[from]
    const where = (i: Import) => `${relative(SRC, i.file)}:${i.line}`
    if (!allowed) {
      out.push(`${relative(SRC, file)}: part '${from}' is not in docs/architecture.md's drawing (ALLOWED)`)
      continue
    }
    for (const i of importsOf(file, text)) {
      if (i.specifier.startsWith('.')) {
        const to = partOf(resolve(dirname(file), i.specifier))
        if (to !== from && !allowed.includes(to)) out.push(`${where(i)}: ${from} imports ${to} (${i.specifier}): not an allowed arrow`)
      } else {
        for (const rule of NEVER)
          if (rule.parts.includes(from) && rule.module.test(i.specifier)) out.push(`${where(i)}: ${from} imports ${i.specifier}: ${rule.why}`)
      }
    }
  }
  return out
}

function sources(dir: string): string[] {
  return readdirSync(dir, {withFileTypes: true}).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

describe('architecture: the layers of src/ (docs/architecture.md)', () => {
  it('every import follows an allowed arrow and no never-rule is broken', () => {
    assert.deepEqual(violations(sources(SRC).map((file) => ({file}))), [])
  })

  it('the drawing is acyclic: no two parts may import each other, directly or around a loop', () => {
    const visiting = new Set<string>()
    const done = new Set<string>()
    const visit = (part: string, path: string[]): void => {
      if (done.has(part)) return
      assert.ok(!visiting.has(part), `a loop: ${[...path, part].join(' -> ')}`)
      visiting.add(part)
      for (const next of ALLOWED[part]) visit(next, [...path, part])
      visiting.delete(part)
      done.add(part)
    }
    for (const part of Object.keys(ALLOWED)) visit(part, [])
  })

  it('catches what it is meant to: an arrow up, a loop back, the SDK in policy, the CLI in a library', () => {
    const at = (path: string, text: string) => ({file: join(SRC, path), text})
    assert.deepEqual(
      violations([
        at('lib/host/x.ts', "import {ImdsApp} from '../imds/app.js'\n"),
        at('lib/iam/x.ts', "import type {IamSource} from '../aws/live.js'\n"),
        at('lib/policy/x.ts', "\nimport {STSClient} from '@aws-sdk/client-sts'\n"),
        at('lib/methods/x.ts', "const http = await import('node:http')\n"),
        at('lib/daemon/x.ts', "import {Command} from '@oclif/core'\nimport {flags} from '../../cli/flags.js'\n"),
        at('lib/stages/x.ts', "export {x} from '../imds/app.js'\n"),
      ]),
      [
        'lib/host/x.ts:1: host imports imds (../imds/app.js): not an allowed arrow',
        'lib/iam/x.ts:1: iam imports aws (../aws/live.js): not an allowed arrow',
        'lib/policy/x.ts:2: policy imports @aws-sdk/client-sts: policy is pure: no AWS SDK, no I/O (the stages call AWS)',
        'lib/methods/x.ts:1: methods imports node:http: the chain knows no HTTP (imds/ serves it)',
        'lib/daemon/x.ts:1: daemon imports @oclif/core: libraries never reach up into the CLI',
        'lib/daemon/x.ts:2: daemon imports cli (../../cli/flags.js): not an allowed arrow',
        'lib/stages/x.ts:1: stages imports imds (../imds/app.js): not an allowed arrow',
      ],
    )
  })
})
