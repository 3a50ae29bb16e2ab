// The failures a command can report, and the exit code each maps to. Library code throws
// these; BaseCommand turns them into one line (or one JSON object) and the exit status.

/** The documented exit-code map (README "Exit codes"). */
export const ExitCode = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  notFound: 3,
  accessDenied: 4,
  unavailable: 5,
  /** The result is printed in full, but the session policy does not fit AWS's limit (`policy compress`). */
  tooLarge: 6,
  /** `intercept status`: a non-root metadata request would reach the real IMDS. */
  exposed: 7,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

export type ErrorKind = Exclude<keyof typeof ExitCode, 'ok'>

/** An error whose message is already the one line a user should read. */
export class UserError extends Error {
  readonly kind: ErrorKind
  readonly suggestion?: string

  constructor(kind: ErrorKind, message: string, options: {suggestion?: string; cause?: unknown} = {}) {
    super(message, {cause: options.cause})
    this.name = 'UserError'
    this.kind = kind
    this.suggestion = options.suggestion
  }

  get exitCode(): ExitCode {
    return ExitCode[this.kind]
  }
}

/** Bad input: config file, account file, flags. */
export class InputError extends UserError {
  constructor(message: string, options: {suggestion?: string; cause?: unknown} = {}) {
    super('usage', message, options)
    this.name = 'InputError'
  }
}

export class NotFoundError extends UserError {
  constructor(message: string, options: {suggestion?: string; cause?: unknown} = {}) {
    super('notFound', message, options)
    this.name = 'NotFoundError'
  }
}
