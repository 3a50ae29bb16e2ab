// The IAM read actions, answered from the live snapshot. Every List call is paginated
// (see paginate in protocol.ts). IAM requests are not authorised against the caller's
// identity policies: inject AccessDenied to test that path.
import type {AccountSnapshot} from '../../../src/lib/aws/snapshot.js'
import type {PolicyDocument} from '../../../src/lib/iam/document.js'
import {encodedDocument} from './documents.js'
import {
  byName,
  findGroup,
  findPolicy,
  findRole,
  findUser,
  groupXml,
  isAwsManaged,
  nameParam,
  policyArnParam,
  policyXml,
  roleXml,
  tagsXml,
  userXml,
} from './iam-entities.js'
import {AwsError, checked, flag, paginate, Params} from './protocol.js'
import type {Handler} from './state.js'

function pathPrefix(params: Params): string {
  return checked(params, 'PathPrefix', {optional: true, min: 1, max: 512}) ?? '/'
}

function inlineDocument(
  owner: {inline: Map<string, PolicyDocument>},
  name: string,
  what: string,
): PolicyDocument {
  const doc = owner.inline.get(name)
  if (!doc) throw new AwsError('NoSuchEntity', `The ${what} policy with name ${name} cannot be found.`)
  return doc
}

/** A List...Policies answer: inline policy names, sorted, one page. */
function policyNames(owner: {inline: Map<string, PolicyDocument>}, params: Params, pageSize: number) {
  const page = paginate([...owner.inline.keys()].sort(), params, pageSize)
  return {PolicyNames: page.items, IsTruncated: page.IsTruncated, Marker: page.Marker}
}

function attachedPolicies(
  owner: {attached: {name: string; arn: string}[]},
  params: Params,
  pageSize: number,
) {
  const page = paginate(
    owner.attached.map((a) => ({PolicyName: a.name, PolicyArn: a.arn})),
    params,
    pageSize,
  )
  return {AttachedPolicies: page.items, IsTruncated: page.IsTruncated, Marker: page.Marker}
}

function listPolicies(snapshot: AccountSnapshot, params: Params, pageSize: number) {
  const scope = checked(params, 'Scope', {optional: true, pattern: /^(All|AWS|Local)$/}) ?? 'All'
  const prefix = pathPrefix(params)
  const all = [...snapshot.policies.values()]
    .filter((p) => scope === 'All' || (scope === 'AWS') === isAwsManaged(p.arn))
    .filter((p) => p.path.startsWith(prefix))
    .map((p) => policyXml(snapshot, p))
    .filter((p) => !flag(params, 'OnlyAttached') || (p.AttachmentCount as number) > 0)
    .sort((a, b) => ((a.PolicyName as string) < (b.PolicyName as string) ? -1 : 1))
  const page = paginate(all, params, pageSize)
  return {Policies: page.items, IsTruncated: page.IsTruncated, Marker: page.Marker}
}

export const iamReads: Record<string, Handler> = {
  GetUser: ({params, state, caller}) => {
    // Without UserName, GetUser describes the caller, which for a role session IAM refuses.
    if (params.UserName === undefined)
      throw new AwsError(
        'ValidationError',
        `Must specify userName when calling with non-User credentials (caller ${caller.arn}).`,
      )
    return {User: userXml(findUser(state.snapshot, nameParam(params, 'UserName')), true)}
  },
  ListUsers: ({params, state}) => {
    const prefix = pathPrefix(params)
    const users = byName(state.snapshot.users.values()).filter((u) => u.path.startsWith(prefix))
    const page = paginate(users, params, state.pageSize)
    return {
      Users: page.items.map((u) => userXml(u, false)),
      IsTruncated: page.IsTruncated,
      Marker: page.Marker,
    }
  },
  ListUserPolicies: ({params, state}) =>
    policyNames(findUser(state.snapshot, nameParam(params, 'UserName')), params, state.pageSize),
  GetUserPolicy: ({params, state}) => {
    const user = findUser(state.snapshot, nameParam(params, 'UserName'))
    const name = nameParam(params, 'PolicyName', 128)
    return {
      UserName: user.name,
      PolicyName: name,
      PolicyDocument: encodedDocument(inlineDocument(user, name, 'user')),
    }
  },
  ListAttachedUserPolicies: ({params, state}) =>
    attachedPolicies(findUser(state.snapshot, nameParam(params, 'UserName')), params, state.pageSize),
  ListGroupsForUser: ({params, state}) => {
    const user = findUser(state.snapshot, nameParam(params, 'UserName'))
    const page = paginate([...user.groups].sort(), params, state.pageSize)
    return {
      Groups: page.items.map((g) => groupXml(findGroup(state.snapshot, g))),
      IsTruncated: page.IsTruncated,
      Marker: page.Marker,
    }
  },

  GetGroup: ({params, state}) => {
    const group = findGroup(state.snapshot, nameParam(params, 'GroupName', 128))
    const members = byName(state.snapshot.users.values()).filter((u) => u.groups.includes(group.name))
    const page = paginate(members, params, state.pageSize)
    return {
      Group: groupXml(group),
      Users: page.items.map((u) => userXml(u, false)),
      IsTruncated: page.IsTruncated,
      Marker: page.Marker,
    }
  },
  ListGroupPolicies: ({params, state}) =>
    policyNames(findGroup(state.snapshot, nameParam(params, 'GroupName', 128)), params, state.pageSize),
  GetGroupPolicy: ({params, state}) => {
    const group = findGroup(state.snapshot, nameParam(params, 'GroupName', 128))
    const name = nameParam(params, 'PolicyName', 128)
    return {
      GroupName: group.name,
      PolicyName: name,
      PolicyDocument: encodedDocument(inlineDocument(group, name, 'group')),
    }
  },
  ListAttachedGroupPolicies: ({params, state}) =>
    attachedPolicies(findGroup(state.snapshot, nameParam(params, 'GroupName', 128)), params, state.pageSize),

  GetRole: ({params, state}) => ({
    Role: roleXml(findRole(state.snapshot, nameParam(params, 'RoleName')), true),
  }),
  ListRoles: ({params, state}) => {
    const prefix = pathPrefix(params)
    const roles = byName(state.snapshot.roles.values()).filter((r) => r.path.startsWith(prefix))
    const page = paginate(roles, params, state.pageSize)
    return {
      Roles: page.items.map((r) => roleXml(r, false)),
      IsTruncated: page.IsTruncated,
      Marker: page.Marker,
    }
  },
  ListRolePolicies: ({params, state}) =>
    policyNames(findRole(state.snapshot, nameParam(params, 'RoleName')), params, state.pageSize),
  GetRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const name = nameParam(params, 'PolicyName', 128)
    return {
      RoleName: role.name,
      PolicyName: name,
      PolicyDocument: encodedDocument(inlineDocument(role, name, 'role')),
    }
  },
  ListAttachedRolePolicies: ({params, state}) =>
    attachedPolicies(findRole(state.snapshot, nameParam(params, 'RoleName')), params, state.pageSize),
  ListRoleTags: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const page = paginate(tagsXml(role.tags), params, state.pageSize)
    return {Tags: page.items, IsTruncated: page.IsTruncated, Marker: page.Marker}
  },

  GetPolicy: ({params, state}) => ({
    Policy: policyXml(state.snapshot, findPolicy(state.snapshot, policyArnParam(params))),
  }),
  GetPolicyVersion: ({params, state}) => {
    const policy = findPolicy(state.snapshot, policyArnParam(params))
    const versionId = checked(params, 'VersionId', {pattern: /^v[1-9][0-9]*(\.[A-Za-z0-9-]*)?$/})!
    const version = policy.versions.get(versionId)
    if (!version)
      throw new AwsError(
        'NoSuchEntity',
        `Policy ${policy.arn} version ${versionId} does not exist or is not attachable.`,
      )
    return {
      PolicyVersion: {
        Document: encodedDocument(version.document),
        VersionId: version.versionId,
        IsDefaultVersion: version.versionId === policy.defaultVersionId,
        CreateDate: version.createDate,
      },
    }
  },
  ListPolicies: ({params, state}) => listPolicies(state.snapshot, params, state.pageSize),
}
