// The offline IAM source: answers from an account snapshot (--account FILE).
import {InputError, NotFoundError} from '../errors.js'
import {byName, IamRole, IamSource, IamUser, InlinePolicy, InstanceRole, ManagedPolicy, parseRoleArn, RolePolicies, RoleTrust, UserPolicies} from '../iam/model.js'
import type {AccountSnapshot, AttachedPolicyRef, SnapshotRole, SnapshotUser} from './snapshot.js'

function inlineList(map: Map<string, InlinePolicy['document']>): InlinePolicy[] {
  return [...map].map(([name, document]) => ({name, document})).sort(byName)
}

export function userOf(u: SnapshotUser): IamUser {
  return {name: u.name, arn: u.arn, id: u.id, path: u.path, tags: {...u.tags}, permissionsBoundaryArn: u.permissionsBoundaryArn}
}

export function roleOf(r: SnapshotRole): IamRole {
  return {
    name: r.name,
    arn: r.arn,
    id: r.id,
    path: r.path,
    trustPolicy: r.trustPolicy,
    tags: {...r.tags},
    permissionsBoundaryArn: r.permissionsBoundaryArn,
    maxSessionDuration: r.maxSessionDuration,
  }
}

export class OfflineIamSource implements IamSource {
  readonly mode = 'offline' as const

  constructor(
    private readonly snapshot: AccountSnapshot,
    /** `--instance-role` or `[general] instance_role`: a role name or ARN. */
    private readonly instanceRoleRef: string | null,
  ) {}

  async getManagedPolicy(arn: string): Promise<ManagedPolicy | null> {
    const policy = this.snapshot.policies.get(arn)
    if (!policy) return null
    const version = policy.versions.get(policy.defaultVersionId)!
    return {name: policy.name, arn, versionId: version.versionId, document: version.document}
  }

  private async managed(refs: AttachedPolicyRef[], owner: string): Promise<ManagedPolicy[]> {
    const out: ManagedPolicy[] = []
    for (const ref of refs) out.push(await this.required(ref.arn, owner))
    return out.sort(byName)
  }

  private async required(arn: string, owner: string): Promise<ManagedPolicy> {
    const policy = await this.getManagedPolicy(arn)
    if (!policy)
      throw new InputError(`account file ${this.snapshot.file}: ${owner} uses managed policy ${arn}, which is not in Policies`, {
        suggestion: 'export with `aws iam get-account-authorization-details` without a --filter so every attached policy is included',
      })
    return policy
  }

  async getUserPolicies(userName: string): Promise<UserPolicies | null> {
    const user = this.snapshot.users.get(userName)
    if (!user) return null
    const owner = `user '${user.name}'`
    const groups = await Promise.all(
      [...user.groups].sort().map(async (groupName) => {
        const group = this.snapshot.groups.get(groupName)!
        return {
          name: group.name,
          arn: group.arn,
          inline: inlineList(group.inline),
          managed: await this.managed(group.attached, `group '${group.name}'`),
        }
      }),
    )
    return {
      user: userOf(user),
      inline: inlineList(user.inline),
      managed: await this.managed(user.attached, owner),
      groups,
      permissionsBoundary: user.permissionsBoundaryArn ? await this.required(user.permissionsBoundaryArn, `${owner} (permissions boundary)`) : null,
    }
  }

  async getRole(roleName: string): Promise<IamRole | null> {
    const role = this.snapshot.roles.get(roleName)
    return role ? roleOf(role) : null
  }

  async getRolePolicies(roleName: string): Promise<RolePolicies | null> {
    const role = this.snapshot.roles.get(roleName)
    if (!role) return null
    const owner = `role '${role.name}'`
    return {
      role: roleOf(role),
      inline: inlineList(role.inline),
      managed: await this.managed(role.attached, owner),
      permissionsBoundary: role.permissionsBoundaryArn ? await this.required(role.permissionsBoundaryArn, `${owner} (permissions boundary)`) : null,
    }
  }

  async getInstanceRole(): Promise<InstanceRole> {
    const ref = this.instanceRoleRef
    if (!ref)
      throw new InputError('offline mode (--account) needs the instance role', {
        suggestion: 'name it with --instance-role NAME|ARN or [general] instance_role',
      })
    const name = parseRoleArn(ref)?.name ?? ref
    const role = this.snapshot.roles.get(name)
    if (!role || (ref.startsWith('arn:') && role.arn !== ref))
      throw new NotFoundError(`instance role '${ref}' is not in account file ${this.snapshot.file}`, {
        suggestion: `roles in the file: ${[...this.snapshot.roles.keys()].slice(0, 8).join(', ') || 'none'}`,
      })
    return {name: role.name, arn: role.arn, accountId: parseRoleArn(role.arn)?.accountId ?? '', source: 'configured'}
  }

  async listRoles(): Promise<RoleTrust[]> {
    return [...this.snapshot.roles.values()].map((r) => ({name: r.name, arn: r.arn, id: r.id, trustPolicy: r.trustPolicy})).sort(byName)
  }

  async listUsers(): Promise<IamUser[]> {
    return [...this.snapshot.users.values()].map(userOf).sort(byName)
  }

  async listGroupUsers(groupName: string): Promise<IamUser[] | null> {
    if (!this.snapshot.groups.has(groupName)) return null
    return [...this.snapshot.users.values()]
      .filter((u) => u.groups.includes(groupName))
      .map(userOf)
      .sort(byName)
  }
}
