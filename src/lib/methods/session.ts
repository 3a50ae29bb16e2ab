// What every AssumeRole of the daemon carries for a user: the session name (and
// SourceIdentity), and the InstanceRole method's small deny policy.
import {createHash} from 'node:crypto'

import type {Config} from '../config/schema.js'
import {CHAINING_ACTIONS} from '../policy/trust.js'

const VALID = /^[\w+=,.@-]{2,64}$/

/**
 * The UNIX user name as a RoleSessionName / SourceIdentity (`[\w+=,.@-]`, 2–64 characters).
 * A name that needs changing keeps a readable stem and gets a short hash of the original, so
 * two different users never share a session name (CloudTrail names the right person).
 */
export function sessionNameFor(username: string): string {
  // A valid name that looks like a changed one (stem-8 hex digits) is changed too, so that
  // `a.b$` (→ a.b_-HASH) and a user actually named `a.b_-HASH` never share a session name.
  if (VALID.test(username) && !/-[0-9a-f]{8}$/.test(username)) return username
  const stem = username.replace(/[^\w+=,.@-]/g, '_').slice(0, 55)
  const hash = createHash('sha256').update(username).digest('hex').slice(0, 8)
  return `${stem}-${hash}`
}

/**
 * Every IAM write, by the verbs IAM's actions begin with (from AWS's Service Authorization
 * Reference: every IAM action of access level Write, Permissions management or Tagging starts
 * with one of these; the reads begin with Get, List, Generate or Simulate). A test holds the
 * list against the action catalog. iam:PassRole is among them.
 */
export const IAM_WRITES = [
  'Accept', 'Add', 'Associate', 'Attach', 'Change', 'Create', 'Deactivate', 'Delete', 'Detach', 'Disable', 'Enable', 'Pass',
  'Put', 'Reject', 'Remove', 'Reset', 'Resync', 'Send', 'Set', 'Tag', 'Untag', 'Update', 'Upload',
].map((verb) => `iam:${verb}*`)

/** What the InstanceRole method's session is denied, by its options. */
export function instanceRoleDenied(config: Config): string[] {
  const options = config.method_InstanceRole
  return [
    ...(options.deny_assumerole ? CHAINING_ACTIONS : []),
    ...(options.deny_iam_writes ? IAM_WRITES : []),
    ...(options.deny_secretsmanager ? ['secretsmanager:*'] : []),
    ...options.deny_actions,
  ].filter((a, i, all) => all.indexOf(a) === i)
}

/** The denied actions in words, for `resolve`. */
export function describeInstanceRoleDenied(config: Config): string {
  const options = config.method_InstanceRole
  const parts = [
    options.deny_assumerole && 'role chaining (sts:AssumeRole)',
    options.deny_iam_writes && 'IAM writes (iam:PassRole among them)',
    options.deny_secretsmanager && 'secretsmanager:*',
    options.deny_actions.length > 0 && options.deny_actions.join(', '),
  ].filter((p): p is string => typeof p === 'string')
  return parts.length <= 1 ? (parts[0] ?? '') : `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)}`
}

/**
 * The InstanceRole method's session policy: everything the role allows except what the
 * options deny. A session policy only ever narrows, so the Allow is needed for the role's
 * own permissions to remain at all. null when nothing is denied.
 */
export function instanceRoleDenyPolicy(config: Config): string | null {
  const denied = instanceRoleDenied(config)
  if (denied.length === 0) return null
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {Effect: 'Allow', Action: '*', Resource: '*'},
      {Effect: 'Deny', Action: denied.length === 1 ? denied[0] : denied, Resource: '*'},
    ],
  })
}
