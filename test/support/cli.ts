// Runs the built CLI (bin/run.js → dist/) as a user would, in a clean environment: no AWS
// profile, credentials or region from the machine leak in.
import {execFile} from 'node:child_process'
import {fileURLToPath} from 'node:url'

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
const bin = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
}

/** An environment with nothing of the machine's AWS setup in it (no profile, credentials, IMDS). */
export const CLEAN_ENV: Readonly<Record<string, string>> = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: '/nonexistent-home-for-tests',
  NO_COLOR: '1',
  AWS_CONFIG_FILE: '/nonexistent/aws-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const clean: Record<string, string> = {...CLEAN_ENV, ...env}
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], {cwd: repoRoot, env: clean, timeout: 60_000}, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0
      resolve({code, stdout, stderr})
    })
  })
}

export function fixture(name: string): string {
  return fileURLToPath(new URL(`../../fixtures/${name}`, import.meta.url))
}
