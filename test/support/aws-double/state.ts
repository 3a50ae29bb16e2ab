// What one running double holds and what its handlers are given: the live snapshot, the
// sessions, the settings, and the logs tests read afterwards.
import type {AccountSnapshot} from '../../../src/lib/aws/snapshot.js'
import type {Params, Service, XmlValue} from './protocol.js'
import type {Session, SessionStore} from './sessions.js'

export interface CallRecord {
  service: Service | null
  action: string
  /** Every decoded form field, Action and Version included. */
  params: Params
  /** The caller's principal ARN (a session ARN); null when the key was unknown or missing. */
  caller: string | null
  /** The region the request was signed for; null when unsigned. */
  region: string | null
  at: Date
  /** The HTTP status answered (0 while the call is still in flight). */
  status: number
  /** The error code answered, if any. */
  error?: string
  /** For an unexpected failure (answered InternalFailure): what went wrong in the double. */
  detail?: string
}

export interface AssumeRoleRecord {
  roleArn: string
  roleSessionName: string
  policy?: string
  policyArns: string[]
  sourceIdentity?: string
  durationSeconds?: number
  callerArn: string | null
  /** 'ok' or the error code answered. */
  result: string
  /** Of the issued credentials, when result is 'ok'. */
  accessKeyId?: string
}

export interface Injection {
  /** Only calls of this action fail; omitted, any action does. */
  action?: string
  code: string
  /** Defaults to the status real AWS answers `code` with. */
  status?: number
  message?: string
  /** How many matching calls fail. */
  times: number
}

export interface DoubleState {
  snapshot: AccountSnapshot
  accountId: string
  sessions: SessionStore
  /** Page size of List calls that give no MaxItems. */
  pageSize: number
  /** The denominator of the modelled packed-policy percentage (see sts.ts). */
  packedPolicyLimit: number
  now(): Date
  calls: CallRecord[]
  assumeRoleLog: AssumeRoleRecord[]
}

export interface RequestContext {
  params: Params
  caller: Session
  state: DoubleState
}

/** An action handler: the `<ActionResult>` content, or undefined for actions without one. */
export type Handler = (ctx: RequestContext) => {[name: string]: XmlValue} | undefined
