// The base of every command: shared flags, `--json` (the returned result is the JSON
// contract), and error handling that prints one line (or one compact JSON object) and exits
// with the documented code.
import {Command, Errors, Flags, Interfaces} from '@oclif/core'

import {IamAccess, openIam} from '../lib/aws/source.js'
import {loadConfig} from '../lib/config/load.js'
import type {Config} from '../lib/config/schema.js'
import {ExitCode, UserError} from '../lib/errors.js'
import {renderErrorLine} from '../lib/render/text.js'

export type CommandError = {error: {code: string; exitCode: number; message: string; suggestion?: string}}

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    config: Flags.string({
      char: 'f',
      summary: 'Configuration file (INI, as the Python ec2userkeyd reads it). [default: /etc/ec2userkeyd.conf]',
      description: 'A missing default file means all defaults; a missing named file is an error.',
      helpValue: 'FILE',
    }),
    debug: Flags.boolean({summary: 'Show stack traces on errors.', helpGroup: 'GLOBAL'}),
  }

  protected async loadConfig(flags: {config?: string}): Promise<Config> {
    return loadConfig({path: flags.config})
  }

  /** The IAM source of --account, or live with the clients it reads through. */
  protected async iam(flags: {account?: string; 'instance-role'?: string}, config: Config): Promise<IamAccess> {
    return openIam({config, accountFile: flags.account, instanceRole: flags['instance-role'], env: process.env})
  }

  protected override async catch(error: Interfaces.CommandError): Promise<void> {
    const failure = classify(error)
    process.exitCode = failure.exitCode
    if (this.jsonEnabled()) {
      this.logJson({
        error: {code: failure.code, exitCode: failure.exitCode, message: failure.message, ...(failure.suggestion ? {suggestion: failure.suggestion} : {})},
      } satisfies CommandError)
    } else {
      this.logToStderr(renderErrorLine(failure.message, failure.suggestion))
    }
    if (this.argv.includes('--debug') && error.stack) this.logToStderr(error.stack)
    // Exit through oclif without a second message.
    throw new Errors.ExitError(failure.exitCode)
  }
}

interface Failure {
  code: string
  exitCode: number
  message: string
  suggestion?: string
}

function classify(error: Interfaces.CommandError): Failure {
  if (error instanceof UserError)
    return {code: error.kind, exitCode: error.exitCode, message: error.message, suggestion: error.suggestion}
  const oclif = (error as {oclif?: {exit?: number}}).oclif
  // oclif's own failures (unknown flag, missing argument, bad flag value) are usage errors.
  if (error instanceof Errors.CLIError && (oclif?.exit === undefined || oclif.exit === 2))
    return {code: 'usage', exitCode: ExitCode.usage, message: oneLine(stripAnsi(error.message)), suggestion: 'see --help'}
  return {
    code: 'unexpected',
    exitCode: ExitCode.unexpected,
    message: `unexpected error: ${error.message.split('\n')[0]}`,
    suggestion: 'run again with --debug and report it',
  }
}

/** oclif's parse errors span lines ("Missing 1 required arg:\nuser  Local user name\nSee more help with --help"). */
function oneLine(message: string): string {
  return message
    .split('\n')
    .filter((l) => !/^See more help/.test(l.trim()))
    .map((l) => l.trim().replace(/\s{2,}/g, ' - '))
    .filter(Boolean)
    .join(' ')
}

function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\u001b\[[0-9;]*m/g, '')
}
