// The principals the double knows: role sessions, each found by its access key id. The
// instance role's session is created at start; AssumeRole adds one per call.
import {randomBytes, randomInt} from 'node:crypto'

import type {SnapshotRole} from '../../../src/lib/aws/snapshot.js'
import type {PolicyDocument} from '../../../src/lib/iam/document.js'

export interface SessionCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken: string
}

export interface Session extends SessionCredentials {
  /** The role's ARN (with its path): what trust policies and aws:PrincipalArn see. */
  roleArn: string
  roleName: string
  roleId: string
  accountId: string
  sessionName: string
  /** `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`: what GetCallerIdentity answers. */
  arn: string
  /** `ROLEID:SESSION` */
  userId: string
  expiration: Date
  sourceIdentity?: string
  /** The session policies it was issued with (inline and by ARN); undefined: none, the role's permissions. */
  sessionPolicies?: PolicyDocument[]
}

const UPPER_ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

function randomFrom(alphabet: string, length: number): string {
  let out = ''
  for (let i = 0; i < length; i++) out += alphabet[randomInt(alphabet.length)]
  return out
}

/** An IAM-style unique id: a four-letter prefix and 17 upper-case letters/digits. */
export function uniqueId(prefix: string): string {
  return prefix + randomFrom(UPPER_ALNUM, 17)
}

function accountOfArn(arn: string): string | null {
  return /^arn:aws[a-z-]*:iam::(\d{12}):/.exec(arn)?.[1] ?? null
}

export class SessionStore {
  private readonly byKey = new Map<string, Session>()

  constructor(private readonly defaultAccountId: string) {}

  issue(role: SnapshotRole, sessionName: string, expiration: Date, sourceIdentity?: string, sessionPolicies?: PolicyDocument[]): Session {
    const accountId = accountOfArn(role.arn) ?? this.defaultAccountId
    const session: Session = {
      // Temporary credentials always start ASIA; 16 more characters like the real ones.
      accessKeyId: 'ASIA' + randomFrom(UPPER_ALNUM, 16),
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: 'IQoJb3JpZ2luX2Vj' + randomBytes(96).toString('base64'),
      roleArn: role.arn,
      roleName: role.name,
      roleId: role.id,
      accountId,
      sessionName,
      arn: `arn:${role.arn.split(':')[1] || 'aws'}:sts::${accountId}:assumed-role/${role.name}/${sessionName}`,
      userId: `${role.id}:${sessionName}`,
      expiration,
      sourceIdentity,
      sessionPolicies,
    }
    this.byKey.set(session.accessKeyId, session)
    return session
  }

  get(accessKeyId: string): Session | undefined {
    return this.byKey.get(accessKeyId)
  }
}
