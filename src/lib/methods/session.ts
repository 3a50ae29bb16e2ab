// What every AssumeRole of the daemon carries for a user: the session name (and
// SourceIdentity), and the InstanceRole method's small deny policy.
import {createHash} from 'node:crypto'

import type {Config} from '../config/schema.js'

const VALID = /^[\w+=,.@-]{2,64}$/

/**
 * The UNIX user name as a RoleSessionName / SourceIdentity (`[\w+=,.@-]`, 2–64 characters).
 * A name that needs changing keeps a readable stem and gets a short hash of the original, so
 * two different users never share a session name (CloudTrail names the right person).
 */
export function sessionNameFor(username: string): string {
  if (VALID.test(username)) return username
  const stem = username.replace(/[^\w+=,.@-]/g, '_').slice(0, 55)
  const hash = createHash('sha256').update(username).digest('hex').slice(0, 8)
  return `${stem}-${hash}`
}

/**
 * The InstanceRole method's session policy: everything the role allows except what the
 * options deny. A session policy only ever narrows, so the Allow is needed for the role's
 * own permissions to remain at all. null when nothing is denied.
 */
export function instanceRoleDenyPolicy(config: Config): string | null {
  const denied = [
    ...(config.method_InstanceRole.deny_assumerole ? ['sts:AssumeRole'] : []),
    ...(config.method_InstanceRole.deny_secretsmanager ? ['secretsmanager:*'] : []),
  ]
  if (denied.length === 0) return null
  return JSON.stringify({
    Version: '2012-10-17',
    Statement: [
      {Effect: 'Allow', Action: '*', Resource: '*'},
      {Effect: 'Deny', Action: denied.length === 1 ? denied[0] : denied, Resource: '*'},
    ],
  })
}
