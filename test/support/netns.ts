// For the tests that run in a network namespace of their own (unshare --net): which commands the
// host has, and a module script run by node in a new namespace, its result on standard output.
// Such a test is skipped, with the reason, where it cannot run: not root, a command missing, or
// unshare itself refused (a container without the capability).
import {spawnSync, SpawnSyncReturns} from 'node:child_process'

import {repoRoot} from './cli.js'

/** Where a command is on PATH; '' when it is not there. */
export function commandPath(tool: string): string {
  return spawnSync('sh', ['-c', `command -v ${tool}`], {encoding: 'utf8'}).stdout.trim()
}

/** Why a namespace test cannot run here (it needs root and every one of `tools`), or null. */
export function netnsMissing(tools: string[]): string | null {
  if (process.getuid?.() === 0 && tools.every((tool) => commandPath(tool) !== '')) return null
  const needs = ['root', ...tools]
  return `needs ${needs.slice(0, -1).join(', ')} and ${needs.at(-1)}`
}

/** Says why, and skips the test. */
export function skipBecause(test: Mocha.Context, why: string): never {
  console.log(`      (skipped: ${why})`)
  return test.skip()
}

/**
 * Runs `script` (an ES module; through tsx with `tsx`, to import the TypeScript sources) with
 * `args` in a new network namespace, from the repository's root; `{skipped}` with unshare's
 * reason when unshare itself was refused.
 */
export function runInNewNetns(
  script: string,
  args: string[],
  options: {tsx?: boolean; env?: NodeJS.ProcessEnv; timeoutMs: number},
): SpawnSyncReturns<string> | {skipped: string} {
  const node = [process.execPath, ...(options.tsx ? ['--import', 'tsx'] : []), '--input-type=module', '-e', script]
  const result = spawnSync('unshare', ['--net', '--', ...node, ...args], {
    cwd: repoRoot,
    env: options.env,
    encoding: 'utf8',
    timeout: options.timeoutMs,
  })
  if (result.status !== 0 && /unshare: /.test(result.stderr)) return {skipped: result.stderr.trim().split('\n')[0]}
  return result
}
