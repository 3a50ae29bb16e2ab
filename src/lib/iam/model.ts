// What the IAM data sources return: plain data about users, groups, roles and their policies,
// the same whether it was read live from IAM or from an account snapshot.
import type {PolicyDocument} from './document.js'

export type Tags = Record<string, string>

export interface InlinePolicy {
  name: string
  document: PolicyDocument
}

/** A managed policy at its default version. */
export interface ManagedPolicy {
  name: string
  arn: string
  versionId: string
  document: PolicyDocument
}

export interface IamUser {
  name: string
  arn: string
  id: string
  path: string
  tags: Tags
  permissionsBoundaryArn: string | null
}

export interface GroupPolicies {
  name: string
  arn: string
  inline: InlinePolicy[]
  managed: ManagedPolicy[]
}

/** Everything that determines an IAM user's permissions. Lists are sorted by name. */
export interface UserPolicies {
  user: IamUser
  inline: InlinePolicy[]
  managed: ManagedPolicy[]
  groups: GroupPolicies[]
  permissionsBoundary: ManagedPolicy | null
}

export interface IamRole {
  name: string
  arn: string
  id: string
  path: string
  trustPolicy: PolicyDocument
  tags: Tags
  permissionsBoundaryArn: string | null
  maxSessionDuration: number
}

/** A role as iam:ListRoles gives it: enough to judge who its trust policy admits. */
export interface RoleTrust {
  name: string
  arn: string
  id: string
  trustPolicy: PolicyDocument
}

export interface RolePolicies {
  role: IamRole
  inline: InlinePolicy[]
  managed: ManagedPolicy[]
  permissionsBoundary: ManagedPolicy | null
}

export interface InstanceRole {
  name: string
  arn: string
  accountId: string
  /** How it was found: named in config/flags, or discovered with sts:GetCallerIdentity. */
  source: 'configured' | 'discovered'
}

/** The one interface every command (and later `serve`) reads IAM through. */
export interface IamSource {
  readonly mode: 'live' | 'offline'
  /** null when no IAM user has that name. */
  getUserPolicies(userName: string): Promise<UserPolicies | null>
  getRole(roleName: string): Promise<IamRole | null>
  getRolePolicies(roleName: string): Promise<RolePolicies | null>
  getManagedPolicy(arn: string): Promise<ManagedPolicy | null>
  /** Every role of the account with its trust policy (one paginated iam:ListRoles live). */
  listRoles(): Promise<RoleTrust[]>
  getInstanceRole(): Promise<InstanceRole>
  listUsers(): Promise<IamUser[]>
  /** The members of an IAM group, sorted by name; null when no group has that name. */
  listGroupUsers(groupName: string): Promise<IamUser[] | null>
}

export const byName = <T extends {name: string}>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

/** The role name and account of a role ARN (`arn:aws:iam::123456789012:role/path/name`). */
export function parseRoleArn(arn: string): {accountId: string; name: string; path: string} | null {
  const m = /^arn:aws[a-z-]*:iam::(\d{12}):role(\/(?:.*\/)?)([^/]+)$/.exec(arn)
  return m ? {accountId: m[1], path: m[2], name: m[3]} : null
}

/**
 * The role behind a caller identity: a role session (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`)
 * or a role ARN. null for IAM users, root and federated users.
 */
export function roleFromCallerArn(arn: string): {partition: string; accountId: string; name: string} | null {
  const session = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/[^/]+$/.exec(arn)
  if (session) return {partition: session[1], accountId: session[2], name: session[3]}
  const role = parseRoleArn(arn)
  return role ? {partition: arn.split(':')[1], accountId: role.accountId, name: role.name} : null
}
