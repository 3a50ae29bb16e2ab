// The principal half of a request context, for the two sides the harness compares.
//
// The harness asks, for one probe (action, resource, non-principal context): does the IAM user
// get in, and does the role session that RestrictedInstanceRole would create get in? Those are
// two different principals, so the principal keys differ — per the IAM User Guide's "Principal
// key values" table and the aws:PrincipalArn / aws:PrincipalTag entries of the global keys:
//
// | key                  | IAM user                     | role session (AssumeRole)                         |
// | -------------------- | ---------------------------- | ------------------------------------------------- |
// | aws:username         | the user name                | ABSENT                                            |
// | aws:userid           | the user's unique id (AIDA…) | `ROLEID:session-name` (role id = AROA…)           |
// | aws:PrincipalArn     | the user ARN                 | the ROLE ARN (not the assumed-role session ARN)   |
// | aws:PrincipalType    | `User`                       | `AssumedRole`                                     |
// | aws:PrincipalAccount | the account                  | the account                                       |
// | aws:PrincipalTag/K   | the user's tags              | the role's tags, overridden by session tags       |
// | aws:TokenIssueTime   | absent (long-term keys)      | present (temporary credentials) — only if given   |
//
// So a user policy that says `arn:aws:s3:::home/${aws:username}/*` means nothing in the session
// (the variable has no value there): the compiler has to substitute the user's values into the
// session policy itself. `probePair` builds both request contexts for one probe.
import {type ContextMap, type RequestContext} from './types.js'

export interface IamUserIdentity {
  name: string
  /** Unique id, `AIDA...`. */
  id: string
  arn: string
  tags?: Record<string, string>
  /** Further keys to set, e.g. aws:MultiFactorAuthPresent for a scenario that needs it. */
  extra?: ContextMap
}

export interface RoleSessionIdentity {
  roleArn: string
  /** The role's unique id, `AROA...`. */
  roleId: string
  sessionName: string
  roleTags?: Record<string, string>
  /** Tags passed to AssumeRole; they override role tags with the same key. */
  sessionTags?: Record<string, string>
  /** aws:TokenIssueTime (ISO 8601); left out unless given, so the default comparison ignores it. */
  tokenIssueTime?: string
  extra?: ContextMap
}

/**
 * Whether a condition key describes the principal or its credentials, and so is fixed for a
 * harness run rather than varied per probe.
 */
export function isPrincipalKey(key: string): boolean {
  const k = key.toLowerCase()
  return (
    k.startsWith('aws:principal') ||
    k === 'aws:username' ||
    k === 'aws:userid' ||
    k === 'aws:tokenissuetime' ||
    k.startsWith('aws:multifactorauth') ||
    k === 'aws:sourceidentity' ||
    k === 'aws:federatedprovider'
  )
}

function accountOf(arn: string): string | undefined {
  const account = arn.split(':')[4]
  return account || undefined
}

function tagKeys(tags: Record<string, string>): ContextMap {
  return Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:PrincipalTag/${k}`, v]))
}

/** The principal keys of a request made by the IAM user with its own (long-term) credentials. */
export function userPrincipalContext(user: IamUserIdentity): ContextMap {
  return {
    'aws:username': user.name,
    'aws:userid': user.id,
    'aws:PrincipalArn': user.arn,
    'aws:PrincipalType': 'User',
    'aws:PrincipalAccount': accountOf(user.arn),
    ...tagKeys(user.tags ?? {}),
    ...user.extra,
  }
}

/** The principal keys of a request made with the role session's temporary credentials. */
export function sessionPrincipalContext(session: RoleSessionIdentity): ContextMap {
  return {
    'aws:userid': `${session.roleId}:${session.sessionName}`,
    'aws:PrincipalArn': session.roleArn,
    'aws:PrincipalType': 'AssumedRole',
    'aws:PrincipalAccount': accountOf(session.roleArn),
    ...tagKeys({...session.roleTags, ...session.sessionTags}),
    ...(session.tokenIssueTime ? {'aws:TokenIssueTime': session.tokenIssueTime} : {}),
    ...session.extra,
  }
}

/**
 * The IAM user signing every way it can, each a context of its own: long-term access keys (no
 * MFA or token keys at all: "not present in requests made with long-term credentials"), a
 * session token from GetSessionToken without MFA, and MFA sessions a minute and a day old.
 */
export function userCredentialContexts(user: IamUserIdentity): Array<{label: string; context: ContextMap}> {
  const base = userPrincipalContext(user)
  return [
    {label: 'long-term keys', context: base},
    {label: 'a session token', context: {...base, 'aws:MultiFactorAuthPresent': 'false', 'aws:TokenIssueTime': '2026-12-02T09:00:00Z'}},
    {label: 'MFA a minute ago', context: {...base, 'aws:MultiFactorAuthPresent': 'true', 'aws:MultiFactorAuthAge': '60', 'aws:TokenIssueTime': '2026-12-02T09:59:00Z'}},
    {label: 'MFA a day ago', context: {...base, 'aws:MultiFactorAuthPresent': 'true', 'aws:MultiFactorAuthAge': '86400', 'aws:TokenIssueTime': '2026-12-01T10:00:00Z'}},
  ]
}

/**
 * The session RestrictedInstanceRole creates, with everything its temporary credentials carry:
 * a token issue time, no MFA (aws:MultiFactorAuthPresent false) and, when the daemon sets it,
 * its SourceIdentity.
 */
export function roleSessionContext(session: RoleSessionIdentity & {sourceIdentity?: string}): ContextMap {
  return {
    ...sessionPrincipalContext({...session, tokenIssueTime: session.tokenIssueTime ?? '2026-12-02T10:00:00Z'}),
    'aws:MultiFactorAuthPresent': 'false',
    ...(session.sourceIdentity ? {'aws:SourceIdentity': session.sourceIdentity} : {}),
  }
}

function withPrincipal(probe: RequestContext, principal: ContextMap): RequestContext {
  // Principal keys are the principal's, whatever the probe carried under the same name.
  const context: ContextMap = {}
  const principalNames = new Set(Object.keys(principal).map((k) => k.toLowerCase()))
  for (const [k, v] of Object.entries(probe.context))
    if (!principalNames.has(k.toLowerCase()) && !isPrincipalKey(k)) context[k] = v
  for (const [k, v] of Object.entries(principal)) if (v !== undefined) context[k] = v
  return {action: probe.action, resource: probe.resource, context}
}

/**
 * The two requests the harness compares for one probe: the same action, resource and
 * non-principal context, once as the IAM user and once as the role session. Any principal key the
 * probe carries is dropped in favour of the side's own.
 *
 *     const sides = {user: userPrincipalContext(u), session: sessionPrincipalContext(s)}
 *     for (const probe of await generateRequests(allDocs, {principalContext: [sides.user, sides.session]})) {
 *       const {user, session} = probePair(probe, sides)
 *       // "exactly what the user may do, within the role": session ⇔ user ∧ role alone
 *       const expected = userAllows(iamUser, user) && sessionAllows(role, [], session)
 *       assert.equal(sessionAllows(role, compiled, session), expected, JSON.stringify(probe))
 *     }
 */
export function probePair(
  probe: RequestContext,
  sides: {user: ContextMap; session: ContextMap},
): {user: RequestContext; session: RequestContext} {
  return {user: withPrincipal(probe, sides.user), session: withPrincipal(probe, sides.session)}
}
