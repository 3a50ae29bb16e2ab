// The role an IAM user should have under CreateUserRole: a pure function of the user's
// policies, the config and the instance role. It says what the role must hold (trust, attached
// and inline policies, boundary, tags) and why it cannot be built (problems), before anything
// is read from or written to the role itself.
import {byName, InstanceRole, ManagedPolicy, UserPolicies} from '../iam/model.js'
import type {Config} from '../config/schema.js'
import {resolvePolicyForUser} from '../policy/compiler.js'
import {PolicyDocument, statementsOf} from '../iam/document.js'
import {escapeForSending} from '../policy/size.js'
import {conditionEntries, hasPrincipalVariable, isPrincipalKey} from '../policy/principal.js'

/** The tag that marks a role as ours; a role without it is never touched unless adopted. */
export const MANAGED_TAG = 'ec2userkeyd:managed'
export const MANAGED_TAG_VALUE = 'true'
/** The IAM user a role copies, for admins reading the role in the console. */
export const IAM_USER_TAG = 'ec2userkeyd:iam-user'

/** AWS counts a role's inline policies together, whitespace excluded. */
export const INLINE_POLICIES_LIMIT = 10240
export const POLICY_NAME_LIMIT = 128


export const STS_ACTIONS = ['sts:AssumeRole', 'sts:SetSourceIdentity']

export interface DesiredInline {
  /** `user.NAME`, `group.GROUP.NAME` or `managed.NAME`. */
  name: string
  document: PolicyDocument
  /** The minified JSON sent to IAM (characters above U+00FF escaped); its length is what the inline quota counts. */
  text: string
}

export interface DesiredRole {
  name: string
  /** The ARN the role gets when it is created (path /). */
  arn: string
  iamUser: string
  path: string
  description: string
  trustPolicy: PolicyDocument
  /** Who the trust policy admits, as shown in an update-trust change. */
  trusted: string
  permissionsBoundaryArn: string | null
  /** At most max_attached_policies, in the order they are attached. */
  attached: Array<{name: string; arn: string}>
  inline: DesiredInline[]
  tags: Record<string, string>
  /** Why this role cannot be synced (each one line); empty when it can. */
  problems: string[]
  /** Statements left out or widened by step a, and other things an admin should know. */
  warnings: string[]
}

export interface DesiredRoleContext {
  roleName: string
  config: Config
  instanceRole: InstanceRole
}

export function partitionOf(arn: string): string {
  return arn.split(':')[1] || 'aws'
}

/**
 * The trust policy: only the instance role, or (instance_role_linked = False) any role of the
 * account. IAM rejects wildcards inside principal ARNs, so "any role" is the account with an
 * ArnLike condition on aws:PrincipalArn.
 */
export function trustPolicyFor(
  instanceRole: InstanceRole,
  linked: boolean,
): {document: PolicyDocument; trusted: string} {
  const partition = partitionOf(instanceRole.arn)
  if (linked)
    return {
      document: {
        Version: '2012-10-17',
        Statement: [{Effect: 'Allow', Principal: {AWS: instanceRole.arn}, Action: [...STS_ACTIONS]}],
      },
      trusted: instanceRole.arn,
    }
  const anyRole = `arn:${partition}:iam::${instanceRole.accountId}:role/*`
  return {
    document: {
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: {AWS: `arn:${partition}:iam::${instanceRole.accountId}:root`},
          Action: [...STS_ACTIONS],
          Condition: {ArnLike: {'aws:PrincipalArn': anyRole}},
        },
      ],
    },
    trusted: anyRole,
  }
}

/**
 * Does AWS judge this policy differently for the IAM user and for a session of its role? True
 * when it uses a principal variable (a session has no aws:username, another aws:userid...) or
 * a condition on a principal key. Such a policy is copied in resolved for the user, never
 * attached as it is.
 */
export function judgedByPrincipal(document: PolicyDocument): boolean {
  if (hasPrincipalVariable(JSON.stringify(document))) return true
  return statementsOf(document).some((s) =>
    [...conditionEntries(s.Condition ?? {})].some((c) => isPrincipalKey(c.key)),
  )
}

const thousands = (n: number) => n.toLocaleString('en-US')

export function desiredRole(user: UserPolicies, context: DesiredRoleContext): DesiredRole {
  const {roleName, config, instanceRole} = context
  const settings = config.method_CreateUserRole
  const iamUser = user.user.name
  const problems: string[] = []
  const warnings: string[] = []

  // Step a of the compiler for every copied document: the role session must be judged as the user was.
  const inline: DesiredInline[] = []
  const copy = (name: string, document: PolicyDocument, label: string) => {
    const resolved = resolvePolicyForUser(document, user.user, label)
    warnings.push(...resolved.warnings)
    // null: no statement can ever apply to the user (e.g. a condition on another user name).
    if (resolved.document === null) return
    // As sent: IAM takes policy text only up to U+00FF, so the rest goes as \uXXXX (and counts so).
    inline.push({name, document: resolved.document, text: escapeForSending(JSON.stringify(resolved.document))})
  }

  for (const p of user.inline) copy(`user.${p.name}`, p.document, `user inline policy ${p.name}`)
  const groups = [...user.groups].sort(byName)
  for (const g of groups)
    for (const p of g.inline)
      copy(`group.${g.name}.${p.name}`, p.document, `group ${g.name} inline policy ${p.name}`)

  // Managed policies: the user's, then each group's in name order, once each.
  const managed = new Map<string, ManagedPolicy>()
  for (const p of [...user.managed, ...groups.flatMap((g) => g.managed)])
    if (!managed.has(p.arn)) managed.set(p.arn, p)
  const attached: DesiredRole['attached'] = []
  for (const p of managed.values()) {
    if (!judgedByPrincipal(p.document) && attached.length < settings.max_attached_policies)
      attached.push({name: p.name, arn: p.arn})
    else copy(`managed.${p.name}`, p.document, `managed policy ${p.name}`)
  }

  const seen = new Map<string, number>()
  for (const p of inline) seen.set(p.name, (seen.get(p.name) ?? 0) + 1)
  for (const [name, count] of seen)
    if (count > 1)
      problems.push(
        `${count} of IAM user ${iamUser}'s policies would share the inline policy name '${name}' in role ${roleName}: rename one of them`,
      )
  for (const p of inline)
    if (p.name.length > POLICY_NAME_LIMIT)
      problems.push(
        `the inline policy name '${p.name}' for role ${roleName} is ${p.name.length} characters, over IAM's ${POLICY_NAME_LIMIT}: shorten the group or policy name`,
      )

  const total = inline.reduce((n, p) => n + p.text.length, 0)
  if (total > INLINE_POLICIES_LIMIT) {
    const largest = [...inline]
      .sort((a, b) => b.text.length - a.text.length)
      .slice(0, 3)
      .map((p) => `${p.name} ${thousands(p.text.length)}`)
      .join(', ')
    problems.push(
      `role ${roleName} would need ${thousands(total)} characters of inline policies for IAM user ${iamUser}, over AWS's ${thousands(INLINE_POLICIES_LIMIT)} per role ` +
        `(largest: ${largest}): raise [method_CreateUserRole] max_attached_policies within the account's quota, or trim the user's policies`,
    )
  }

  const boundary = user.permissionsBoundary
  if (boundary && judgedByPrincipal(boundary.document))
    warnings.push(
      `permissions boundary ${boundary.arn} uses principal variables or principal-key conditions, which AWS judges differently for a session of role ${roleName} than for IAM user ${iamUser}: review it`,
    )

  const trust = trustPolicyFor(instanceRole, settings.instance_role_linked)
  return {
    name: roleName,
    arn: `arn:${partitionOf(instanceRole.arn)}:iam::${instanceRole.accountId}:role/${roleName}`,
    iamUser,
    path: '/',
    description: `Managed by ec2userkeyd for IAM user ${iamUser}`,
    trustPolicy: trust.document,
    trusted: trust.trusted,
    permissionsBoundaryArn: boundary?.arn ?? user.user.permissionsBoundaryArn,
    attached,
    inline,
    tags: {[MANAGED_TAG]: MANAGED_TAG_VALUE, [IAM_USER_TAG]: iamUser},
    problems,
    warnings,
  }
}
