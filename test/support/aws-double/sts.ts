// The STS actions: GetCallerIdentity, and AssumeRole with the parameter limits, trust-policy
// check (trust.ts), session-duration rules and packed-policy limit a per-user credential
// broker runs into. Every AssumeRole, admitted or not, is written to the assume-role log.
import {parseRoleArn} from '../../../src/lib/iam/model.js'
import {readPolicyDocument} from './documents.js'
import {AwsError, checked, integer, memberList, Params, tagList} from './protocol.js'
import type {AssumeRoleRecord, Handler, RequestContext} from './state.js'
import {evaluateTrust, TrustCaller} from './trust.js'
import type {PolicyDocument} from '../../../src/lib/iam/document.js'
import {evaluatePolicies} from '../iam-eval/index.js'
import type {Session} from './sessions.js'

/** A session assumed by another role session (and instance credentials are one) lasts an hour at most. */
export const ROLE_CHAINING_LIMIT_SECONDS = 3600
/** The plain-text limit on Policy and PolicyArns together. */
export const SESSION_POLICY_CHARS = 2048
const SESSION_NAME = /^[\w+=,.@-]*$/
const POLICY_ARN = /^arn:aws[a-z-]*:iam::(\d{12}|aws):policy\/.+/

/** The log entry for an AssumeRole request, before its outcome is known. */
export function assumeRoleRecord(params: Params, callerArn: string | null): AssumeRoleRecord {
  const duration = params.DurationSeconds
  return {
    roleArn: params.RoleArn ?? '',
    roleSessionName: params.RoleSessionName ?? '',
    policy: params.Policy,
    policyArns: memberList(params, 'PolicyArns', 'arn'),
    sourceIdentity: params.SourceIdentity,
    durationSeconds: duration !== undefined && /^\d+$/.test(duration) ? Number(duration) : undefined,
    callerArn,
    result: 'pending',
  }
}

/**
 * A stand-in for STS's packed (compressed) size of the session policy, policy ARNs and
 * session tags, as a percentage of `packedPolicyLimit`. The real packing is not public;
 * this model is deterministic and rewards what real packing rewards (minified JSON, fewer
 * ARNs). With the default limit of 2048 a request within the plain-text limit stays below
 * 100%, so tests lower the limit to provoke PackedPolicyTooLarge.
 */
export function packedPolicyPercent(
  minifiedPolicyChars: number,
  arnChars: number,
  tagChars: number,
  packedPolicyLimit: number,
): number {
  return Math.ceil((100 * (0.6 * minifiedPolicyChars + 0.3 * arnChars + 0.3 * tagChars)) / packedPolicyLimit)
}

function notAuthorized(callerArn: string, action: string, roleArn: string): AwsError {
  return new AwsError(
    'AccessDenied',
    `User: ${callerArn} is not authorized to perform: ${action} on resource: ${roleArn}`,
  )
}

function assumeRole({params, caller, state}: RequestContext) {
  // Parameter validation, as STS does it before looking at the role.
  const roleArn = checked(params, 'RoleArn', {min: 20, max: 2048})!
  const target = parseRoleArn(roleArn)
  if (!target) throw new AwsError('ValidationError', `${roleArn} is invalid`)
  const sessionName = checked(params, 'RoleSessionName', {pattern: SESSION_NAME, min: 2, max: 64})!
  const duration = integer(params, 'DurationSeconds', {min: 900, max: 43200}) ?? 3600
  const sourceIdentity = checked(params, 'SourceIdentity', {
    optional: true,
    pattern: SESSION_NAME,
    min: 2,
    max: 64,
  })
  const policyArns = memberList(params, 'PolicyArns', 'arn')
  if (policyArns.length > 10)
    throw new AwsError(
      'ValidationError',
      `1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10`,
    )
  for (const arn of policyArns)
    if (!POLICY_ARN.test(arn)) throw new AwsError('ValidationError', `${arn} is invalid`)
  const policyText = checked(params, 'Policy', {optional: true, min: 1})
  const arnChars = policyArns.reduce((n, a) => n + a.length, 0)
  const plainChars = (policyText?.length ?? 0) + arnChars
  if (plainChars > SESSION_POLICY_CHARS)
    throw new AwsError(
      'ValidationError',
      `The combined size of Policy and PolicyArns (${plainChars} characters) exceeds the limit of ${SESSION_POLICY_CHARS}.`,
    )
  const policy = policyText === undefined ? undefined : readPolicyDocument(policyText, 'session')
  const tags = tagList(params)
  if (tags.length > 50)
    throw new AwsError(
      'ValidationError',
      `1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50`,
    )

  // Authorisation: the role must exist at that exact ARN and its trust policy admit the caller
  // for every sts action the request implies. (STS answers AccessDenied for missing roles too.)
  const role = state.snapshot.roles.get(target.name)
  if (!role || role.arn !== roleArn) throw notAuthorized(caller.arn, 'sts:AssumeRole', roleArn)
  const who: TrustCaller = {roleArn: caller.roleArn, sessionArn: caller.arn, accountId: caller.accountId}
  const actions = [
    'sts:AssumeRole',
    // A caller with a SourceIdentity passes it on, which needs the permission as setting one does.
    ...(sourceIdentity !== undefined || caller.sourceIdentity !== undefined ? ['sts:SetSourceIdentity'] : []),
    ...(tags.length ? ['sts:TagSession'] : []),
  ]
  for (const action of actions)
    if (evaluateTrust(role.trustPolicy, action, who) !== 'allowed')
      throw notAuthorized(caller.arn, action, roleArn)
  // A caller that is itself a session with session policies may do only what they allow: role
  // chaining from a RestrictedInstanceRole session is judged here (the role's own permissions
  // are taken as allowing it, as a trust policy naming the role would).
  if (caller.sessionPolicies)
    for (const action of actions)
      if (!sessionPoliciesAllow(caller, action, roleArn))
        throw new AwsError(
          'AccessDenied',
          `User: ${caller.arn} is not authorized to perform: ${action} on resource: ${roleArn} because no session policy allows the ${action} action`,
        )

  // Every caller the double knows is a role session, so every AssumeRole is role chaining.
  if (duration > ROLE_CHAINING_LIMIT_SECONDS)
    throw new AwsError(
      'ValidationError',
      'The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.',
    )
  if (duration > role.maxSessionDuration)
    throw new AwsError(
      'ValidationError',
      'The requested DurationSeconds exceeds the MaxSessionDuration set for this role.',
    )

  let packed: number | undefined
  if (policy !== undefined || policyArns.length > 0 || tags.length > 0) {
    const tagChars = tags.reduce((n, t) => n + t.Key.length + t.Value.length, 0)
    packed = packedPolicyPercent(
      policy ? JSON.stringify(policy).length : 0,
      arnChars,
      tagChars,
      state.packedPolicyLimit,
    )
    if (packed > 100)
      throw new AwsError(
        'PackedPolicyTooLarge',
        `Packed policy consumes ${packed}% of allotted space, please use smaller policy.`,
      )
  }

  const expiration = new Date(state.now().getTime() + duration * 1000)
  // A source identity, once set, carries into every chained session.
  const sessionPolicies =
    policy !== undefined || policyArns.length > 0
      ? [...(policy ? [policy] : []), ...policyArns.map((arn) => managedDocument(state, arn))]
      : undefined
  const session = state.sessions.issue(role, sessionName, expiration, sourceIdentity ?? caller.sourceIdentity, sessionPolicies)
  return {
    Credentials: {
      AccessKeyId: session.accessKeyId,
      SecretAccessKey: session.secretAccessKey,
      SessionToken: session.sessionToken,
      Expiration: expiration.toISOString(),
    },
    AssumedRoleUser: {AssumedRoleId: session.userId, Arn: session.arn},
    PackedPolicySize: packed,
    SourceIdentity: sourceIdentity,
  }
}

function managedDocument(state: RequestContext['state'], arn: string): PolicyDocument {
  const found = state.snapshot.policies.get(arn)
  if (!found) throw new AwsError('NoSuchEntity', `Policy ${arn} does not exist or is not attachable.`)
  return found.versions.get(found.defaultVersionId)!.document
}

/** The referee's evaluation of the caller's session policies, with the session's own context keys; anything it cannot read refuses. */
function sessionPoliciesAllow(caller: Session, action: string, resource: string): boolean {
  try {
    return (
      evaluatePolicies(caller.sessionPolicies!, {
        action,
        resource,
        context: {
          'aws:userid': caller.userId,
          'aws:PrincipalArn': caller.roleArn,
          'aws:PrincipalType': 'AssumedRole',
          'aws:PrincipalAccount': caller.accountId,
          'aws:MultiFactorAuthPresent': 'false',
          'aws:TokenIssueTime': new Date(caller.expiration.getTime() - 3_600_000).toISOString(),
          ...(caller.sourceIdentity ? {'aws:SourceIdentity': caller.sourceIdentity} : {}),
        },
      }) === 'Allow'
    )
  } catch {
    return false
  }
}

export const stsActions: Record<string, Handler> = {
  GetCallerIdentity: ({caller}) => ({UserId: caller.userId, Account: caller.accountId, Arn: caller.arn}),
  AssumeRole: (ctx) => {
    const record = assumeRoleRecord(ctx.params, ctx.caller.arn)
    ctx.state.assumeRoleLog.push(record)
    try {
      const result = assumeRole(ctx)
      record.result = 'ok'
      record.accessKeyId = result.Credentials.AccessKeyId
      return result
    } catch (error) {
      record.result = error instanceof AwsError ? error.code : 'InternalFailure'
      throw error
    }
  },
}
