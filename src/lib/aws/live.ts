// The live IAM source: reads IAM through the SDK v3 with paginators for every List call,
// bounded parallel fetches, and a cache of managed policy documents by (ARN, version id),
// since a policy version never changes.
import {
  GetPolicyCommand,
  GetPolicyVersionCommand,
  GetRoleCommand,
  GetUserCommand,
  GetUserPolicyCommand,
  GetGroupPolicyCommand,
  GetRolePolicyCommand,
  IAMClient,
  paginateGetGroup,
  paginateListPolicies,
  paginateListAttachedGroupPolicies,
  paginateListAttachedRolePolicies,
  paginateListAttachedUserPolicies,
  paginateListGroupPolicies,
  paginateListGroupsForUser,
  paginateListRolePolicies,
  paginateListRoles,
  paginateListUserPolicies,
  paginateListUsers,
  Role,
  Tag,
  User,
} from '@aws-sdk/client-iam'
import {GetCallerIdentityCommand, STSClient} from '@aws-sdk/client-sts'
import pLimit, {LimitFunction} from 'p-limit'

import {UserError} from '../errors.js'
import {decodePolicyDocument, DocumentError, PolicyDocument} from '../iam/document.js'
import {describeAwsError, isAccessDenied, isNoSuchEntity} from './errors.js'
import {
  byName,
  IamRole,
  IamSource,
  IamUser,
  InlinePolicy,
  InstanceRole,
  ManagedPolicy,
  parseRoleArn,
  roleFromCallerArn,
  RolePolicies,
  RoleTrust,
  Tags,
  UserPolicies,
} from '../iam/model.js'

export interface LiveIamSourceOptions {
  iam: IAMClient
  sts: STSClient
  /** `--instance-role` or `[general] instance_role`; null means discover it. */
  instanceRoleRef: string | null
  /** Concurrent IAM requests at most (default 8). */
  concurrency?: number
  /** How long the index of attached policies' default versions is reused (default 5 min). */
  indexTtlMs?: number
  now?: () => number
}

function tagsOf(tags: Tag[] | undefined): Tags {
  return Object.fromEntries((tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
}

async function collect<P, T>(pages: AsyncIterable<P>, pick: (page: P) => T[] | undefined): Promise<T[]> {
  const out: T[] = []
  for await (const page of pages) out.push(...(pick(page) ?? []))
  return out
}

export class LiveIamSource implements IamSource {
  readonly mode = 'live' as const
  private readonly iam: IAMClient
  private readonly sts: STSClient
  private readonly limit: LimitFunction
  private readonly versions = new Map<string, Promise<PolicyDocument>>()
  private instanceRole?: Promise<InstanceRole>
  private attached?: {index: Promise<Map<string, {name: string; versionId: string}> | null>; at: number}

  constructor(private readonly options: LiveIamSourceOptions) {
    this.iam = options.iam
    this.sts = options.sts
    this.limit = pLimit(options.concurrency ?? 8)
  }

  /** One AWS request (or one whole pagination) in a concurrency slot, errors named by call. */
  private call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return this.limit(async () => {
      try {
        return await fn()
      } catch (error) {
        if (isNoSuchEntity(error)) throw error
        throw describeAwsError(error, what)
      }
    })
  }

  private decode(raw: string | undefined, what: string): PolicyDocument {
    try {
      return decodePolicyDocument(raw ?? '')
    } catch (error) {
      if (error instanceof DocumentError) throw new UserError('unexpected', `IAM returned a malformed document for ${what}: it ${error.message}`)
      throw error
    }
  }

  /**
   * Every attached policy's default version from one ListPolicies(OnlyAttached) call, so that a
   * cold read goes straight to GetPolicyVersion instead of GetPolicy first: one round trip
   * fewer per level of managed policies. Started with the first user or role read, reused for
   * indexTtlMs; null when the caller may not list policies (then GetPolicy it is).
   */
  private attachedIndex(): Promise<Map<string, {name: string; versionId: string}> | null> {
    const now = (this.options.now ?? Date.now)()
    if (!this.attached || now - this.attached.at > (this.options.indexTtlMs ?? 300_000)) {
      const index = this.call('iam:ListPolicies', () =>
        collect(paginateListPolicies({client: this.iam, pageSize: 1000}, {OnlyAttached: true, Scope: 'All'}), (p) => p.Policies),
      ).then(
        (policies) => new Map(policies.filter((p) => p.Arn && p.PolicyName && p.DefaultVersionId).map((p) => [p.Arn!, {name: p.PolicyName!, versionId: p.DefaultVersionId!}])),
        () => null,
      )
      this.attached = {index, at: now}
    }
    return this.attached.index
  }

  async getManagedPolicy(arn: string): Promise<ManagedPolicy | null> {
    let policy = (await this.attachedIndex())?.get(arn)
    if (!policy) {
      let found
      try {
        found = (await this.call(`iam:GetPolicy ${arn}`, () => this.iam.send(new GetPolicyCommand({PolicyArn: arn})))).Policy
      } catch (error) {
        if (isNoSuchEntity(error)) return null
        throw error
      }
      if (!found?.PolicyName || !found.DefaultVersionId) throw new UserError('unexpected', `iam:GetPolicy ${arn} returned no default version`)
      policy = {name: found.PolicyName, versionId: found.DefaultVersionId}
    }
    const versionId = policy.versionId
    const key = `${arn}#${versionId}`
    let document = this.versions.get(key)
    if (!document) {
      document = this.call(`iam:GetPolicyVersion ${arn} ${versionId}`, () =>
        this.iam.send(new GetPolicyVersionCommand({PolicyArn: arn, VersionId: versionId})),
      ).then((r) => this.decode(r.PolicyVersion?.Document, `policy ${arn} version ${versionId}`))
      this.versions.set(key, document)
      document.catch(() => this.versions.delete(key))
    }
    return {name: policy.name, arn, versionId, document: await document}
  }

  private async requiredManaged(arn: string, owner: string): Promise<ManagedPolicy> {
    const policy = await this.getManagedPolicy(arn)
    if (!policy) throw new UserError('unexpected', `${owner} uses managed policy ${arn}, which IAM says does not exist`)
    return policy
  }

  private async managedList(arns: string[], owner: string): Promise<ManagedPolicy[]> {
    return (await Promise.all(arns.map((arn) => this.requiredManaged(arn, owner)))).sort(byName)
  }

  private async inlineList(names: string[], get: (name: string) => Promise<string | undefined>, owner: string): Promise<InlinePolicy[]> {
    const docs = await Promise.all(names.map(async (name) => ({name, document: this.decode(await get(name), `${owner} inline policy ${name}`)})))
    return docs.sort(byName)
  }

  async getUserPolicies(userName: string): Promise<UserPolicies | null> {
    const iam = this.iam
    const owner = `user ${userName}`
    void this.attachedIndex()
    // The user and its three lists in one round trip; for a missing user all four fail.
    const [user, inlineNames, attached, groups] = await Promise.allSettled([
      this.call(`iam:GetUser ${userName}`, () => iam.send(new GetUserCommand({UserName: userName}))).then((r) => r.User),
      this.call(`iam:ListUserPolicies ${userName}`, () =>
        collect(paginateListUserPolicies({client: iam}, {UserName: userName}), (p) => p.PolicyNames),
      ),
      this.call(`iam:ListAttachedUserPolicies ${userName}`, () =>
        collect(paginateListAttachedUserPolicies({client: iam}, {UserName: userName}), (p) => p.AttachedPolicies),
      ),
      this.call(`iam:ListGroupsForUser ${userName}`, () =>
        collect(paginateListGroupsForUser({client: iam}, {UserName: userName}), (p) => p.Groups),
      ),
    ])
    if (user.status === 'rejected') {
      if (isNoSuchEntity(user.reason)) return null
      throw user.reason
    }
    for (const r of [inlineNames, attached, groups]) if (r.status === 'rejected') throw describeAwsError(r.reason, `reading ${owner}`)
    const u = user.value as User
    const names = (inlineNames as PromiseFulfilledResult<string[]>).value
    const attachedArns = (attached as PromiseFulfilledResult<{PolicyArn?: string}[]>).value.map((p) => p.PolicyArn!)
    const groupList = (groups as PromiseFulfilledResult<{GroupName?: string; Arn?: string}[]>).value

    const [inline, managed, groupPolicies, boundary] = await Promise.all([
      this.inlineList(
        names,
        async (name) =>
          (await this.call(`iam:GetUserPolicy ${userName} ${name}`, () => iam.send(new GetUserPolicyCommand({UserName: userName, PolicyName: name}))))
            .PolicyDocument,
        owner,
      ),
      this.managedList(attachedArns, owner),
      Promise.all(groupList.map((g) => this.groupPolicies(g.GroupName!, g.Arn!))),
      u.PermissionsBoundary?.PermissionsBoundaryArn
        ? this.requiredManaged(u.PermissionsBoundary.PermissionsBoundaryArn, `${owner} (permissions boundary)`)
        : Promise.resolve(null),
    ])
    return {
      user: this.userOf(u),
      inline,
      managed,
      groups: groupPolicies.sort(byName),
      permissionsBoundary: boundary,
    }
  }

  private userOf(u: User): IamUser {
    return {
      name: u.UserName!,
      arn: u.Arn!,
      id: u.UserId!,
      path: u.Path ?? '/',
      tags: tagsOf(u.Tags),
      permissionsBoundaryArn: u.PermissionsBoundary?.PermissionsBoundaryArn ?? null,
    }
  }

  private async groupPolicies(groupName: string, arn: string) {
    const iam = this.iam
    const owner = `group ${groupName}`
    const [names, attached] = await Promise.all([
      this.call(`iam:ListGroupPolicies ${groupName}`, () =>
        collect(paginateListGroupPolicies({client: iam}, {GroupName: groupName}), (p) => p.PolicyNames),
      ),
      this.call(`iam:ListAttachedGroupPolicies ${groupName}`, () =>
        collect(paginateListAttachedGroupPolicies({client: iam}, {GroupName: groupName}), (p) => p.AttachedPolicies),
      ),
    ])
    const [inline, managed] = await Promise.all([
      this.inlineList(
        names,
        async (name) =>
          (await this.call(`iam:GetGroupPolicy ${groupName} ${name}`, () => iam.send(new GetGroupPolicyCommand({GroupName: groupName, PolicyName: name}))))
            .PolicyDocument,
        owner,
      ),
      this.managedList(
        attached.map((p) => p.PolicyArn!),
        owner,
      ),
    ])
    return {name: groupName, arn, inline, managed}
  }

  async getRole(roleName: string): Promise<IamRole | null> {
    try {
      const r = await this.call(`iam:GetRole ${roleName}`, () => this.iam.send(new GetRoleCommand({RoleName: roleName})))
      return this.roleOf(r.Role!)
    } catch (error) {
      if (isNoSuchEntity(error)) return null
      throw error
    }
  }

  private roleOf(r: Role): IamRole {
    return {
      name: r.RoleName!,
      arn: r.Arn!,
      id: r.RoleId!,
      path: r.Path ?? '/',
      trustPolicy: this.decode(r.AssumeRolePolicyDocument, `the trust policy of role ${r.RoleName}`),
      tags: tagsOf(r.Tags),
      permissionsBoundaryArn: r.PermissionsBoundary?.PermissionsBoundaryArn ?? null,
      maxSessionDuration: r.MaxSessionDuration ?? 3600,
    }
  }

  async getRolePolicies(roleName: string): Promise<RolePolicies | null> {
    const iam = this.iam
    const owner = `role ${roleName}`
    void this.attachedIndex()
    const [role, names, attached] = await Promise.allSettled([
      this.getRole(roleName),
      this.call(`iam:ListRolePolicies ${roleName}`, () =>
        collect(paginateListRolePolicies({client: iam}, {RoleName: roleName}), (p) => p.PolicyNames),
      ),
      this.call(`iam:ListAttachedRolePolicies ${roleName}`, () =>
        collect(paginateListAttachedRolePolicies({client: iam}, {RoleName: roleName}), (p) => p.AttachedPolicies),
      ),
    ])
    if (role.status === 'rejected') throw role.reason
    if (role.value === null) return null
    for (const r of [names, attached]) if (r.status === 'rejected') throw describeAwsError(r.reason, `reading ${owner}`)
    const [inline, managed, boundary] = await Promise.all([
      this.inlineList(
        (names as PromiseFulfilledResult<string[]>).value,
        async (name) =>
          (await this.call(`iam:GetRolePolicy ${roleName} ${name}`, () => iam.send(new GetRolePolicyCommand({RoleName: roleName, PolicyName: name}))))
            .PolicyDocument,
        owner,
      ),
      this.managedList(
        (attached as PromiseFulfilledResult<{PolicyArn?: string}[]>).value.map((p) => p.PolicyArn!),
        owner,
      ),
      role.value.permissionsBoundaryArn
        ? this.requiredManaged(role.value.permissionsBoundaryArn, `${owner} (permissions boundary)`)
        : Promise.resolve(null),
    ])
    return {role: role.value, inline, managed, permissionsBoundary: boundary}
  }

  getInstanceRole(): Promise<InstanceRole> {
    this.instanceRole ??= this.findInstanceRole()
    this.instanceRole.catch(() => (this.instanceRole = undefined))
    return this.instanceRole
  }

  private async findInstanceRole(): Promise<InstanceRole> {
    const ref = this.options.instanceRoleRef
    if (ref) {
      const fromArn = parseRoleArn(ref)
      if (fromArn) return {name: fromArn.name, arn: ref, accountId: fromArn.accountId, source: 'configured'}
      const role = await this.getRole(ref)
      if (!role)
        throw new UserError('notFound', `instance role '${ref}' does not exist in IAM`, {
          suggestion: 'check --instance-role / [general] instance_role',
        })
      return {name: role.name, arn: role.arn, accountId: parseRoleArn(role.arn)!.accountId, source: 'configured'}
    }
    const identity = await this.call('sts:GetCallerIdentity', () => this.sts.send(new GetCallerIdentityCommand({})))
    const callerArn = identity.Arn ?? ''
    const role = roleFromCallerArn(callerArn)
    if (!role)
      throw new UserError('usage', `the AWS caller ${callerArn} is not a role session, so the instance role cannot be discovered`, {
        suggestion: 'name it with --instance-role NAME|ARN or [general] instance_role',
      })
    // A session ARN drops the role's path; GetRole by name gives the full ARN.
    try {
      const found = await this.getRole(role.name)
      if (found) return {name: found.name, arn: found.arn, accountId: role.accountId, source: 'discovered'}
    } catch (error) {
      if (!(error instanceof UserError && error.kind === 'accessDenied') && !isAccessDenied(error)) throw error
    }
    return {name: role.name, arn: `arn:${role.partition}:iam::${role.accountId}:role/${role.name}`, accountId: role.accountId, source: 'discovered'}
  }

  async listRoles(): Promise<RoleTrust[]> {
    const roles = await this.call('iam:ListRoles', () => collect(paginateListRoles({client: this.iam, pageSize: 1000}, {}), (p) => p.Roles))
    return roles
      .map((r) => ({name: r.RoleName!, arn: r.Arn!, id: r.RoleId!, trustPolicy: this.decode(r.AssumeRolePolicyDocument, `the trust policy of role ${r.RoleName}`)}))
      .sort(byName)
  }

  async listUsers(): Promise<IamUser[]> {
    const users = await this.call('iam:ListUsers', () => collect(paginateListUsers({client: this.iam}, {}), (p) => p.Users))
    return users.map((u) => this.userOf(u)).sort(byName)
  }

  async listGroupUsers(groupName: string): Promise<IamUser[] | null> {
    let users: User[]
    try {
      users = await this.call(`iam:GetGroup ${groupName}`, () => collect(paginateGetGroup({client: this.iam}, {GroupName: groupName}), (p) => p.Users))
    } catch (error) {
      if (isNoSuchEntity(error)) return null
      throw error
    }
    return users.map((u) => this.userOf(u)).sort(byName)
  }
}
