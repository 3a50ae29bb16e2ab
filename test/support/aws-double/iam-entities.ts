// IAM entities as the API shows them: finding users, groups, roles and policies in the
// snapshot (with IAM's NoSuchEntity messages) and rendering them as response structures.
import type {
  AccountSnapshot,
  SnapshotGroup,
  SnapshotPolicy,
  SnapshotRole,
  SnapshotUser,
} from '../../../src/lib/aws/snapshot.js'
import type {Tags} from '../../../src/lib/iam/model.js'
import {encodedDocument} from './documents.js'
import {AwsError, checked, Params, XmlValue} from './protocol.js'

type Xml = {[name: string]: XmlValue}

/** User, group, role and policy names: IAM's pattern and length limits. */
export const NAME = /^[\w+=,.@-]+$/
export const nameParam = (params: Params, field: string, max = 64): string =>
  checked(params, field, {pattern: NAME, min: 1, max})!
export const policyArnParam = (params: Params, field = 'PolicyArn'): string =>
  checked(params, field, {min: 20, max: 2048})!

export function findUser(snapshot: AccountSnapshot, name: string): SnapshotUser {
  const user = snapshot.users.get(name)
  if (!user) throw new AwsError('NoSuchEntity', `The user with name ${name} cannot be found.`)
  return user
}

export function findGroup(snapshot: AccountSnapshot, name: string): SnapshotGroup {
  const group = snapshot.groups.get(name)
  if (!group) throw new AwsError('NoSuchEntity', `The group with name ${name} cannot be found.`)
  return group
}

export function findRole(snapshot: AccountSnapshot, name: string): SnapshotRole {
  const role = snapshot.roles.get(name)
  if (!role) throw new AwsError('NoSuchEntity', `The role with name ${name} cannot be found.`)
  return role
}

export function findPolicy(snapshot: AccountSnapshot, arn: string): SnapshotPolicy {
  const policy = snapshot.policies.get(arn)
  if (!policy) throw new AwsError('NoSuchEntity', `Policy ${arn} does not exist or is not attachable.`)
  return policy
}

export const byName = <T extends {name: string}>(items: Iterable<T>): T[] =>
  [...items].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))

export const tagsXml = (tags: Tags): Xml[] => Object.entries(tags).map(([Key, Value]) => ({Key, Value}))

const boundaryXml = (arn: string | null): Xml | undefined =>
  arn === null
    ? undefined
    : {PermissionsBoundaryType: 'PermissionsBoundaryPolicy', PermissionsBoundaryArn: arn}

/** `full` is what GetUser answers; ListUsers leaves out tags and boundary, as IAM does. */
export function userXml(u: SnapshotUser, full: boolean): Xml {
  const base: Xml = {Path: u.path, UserName: u.name, UserId: u.id, Arn: u.arn, CreateDate: u.createDate}
  if (!full) return base
  return {
    ...base,
    PermissionsBoundary: boundaryXml(u.permissionsBoundaryArn),
    Tags: Object.keys(u.tags).length ? tagsXml(u.tags) : undefined,
  }
}

export function groupXml(g: SnapshotGroup): Xml {
  return {Path: g.path, GroupName: g.name, GroupId: g.id, Arn: g.arn, CreateDate: g.createDate}
}

/** `full` is what GetRole and CreateRole answer; ListRoles leaves out tags and boundary. */
export function roleXml(r: SnapshotRole, full: boolean): Xml {
  const base: Xml = {
    Path: r.path,
    RoleName: r.name,
    RoleId: r.id,
    Arn: r.arn,
    CreateDate: r.createDate,
    AssumeRolePolicyDocument: encodedDocument(r.trustPolicy),
    Description: r.description || undefined,
    MaxSessionDuration: r.maxSessionDuration,
  }
  if (!full) return base
  return {
    ...base,
    PermissionsBoundary: boundaryXml(r.permissionsBoundaryArn),
    Tags: Object.keys(r.tags).length ? tagsXml(r.tags) : undefined,
  }
}

export function policyXml(snapshot: AccountSnapshot, p: SnapshotPolicy): Xml {
  const holders = [...snapshot.users.values(), ...snapshot.groups.values(), ...snapshot.roles.values()]
  const bounded = [...snapshot.users.values(), ...snapshot.roles.values()]
  return {
    PolicyName: p.name,
    PolicyId: p.id,
    Arn: p.arn,
    Path: p.path,
    DefaultVersionId: p.defaultVersionId,
    AttachmentCount: holders.filter((h) => h.attached.some((a) => a.arn === p.arn)).length,
    PermissionsBoundaryUsageCount: bounded.filter((b) => b.permissionsBoundaryArn === p.arn).length,
    IsAttachable: true,
    CreateDate: p.createDate,
    UpdateDate: p.versions.get(p.defaultVersionId)?.createDate ?? p.createDate,
  }
}

export function isAwsManaged(arn: string): boolean {
  return /^arn:aws[a-z-]*:iam::aws:policy\//.test(arn)
}
