// The IAM role write actions: they mutate the live snapshot after the validation real IAM
// makes that matters to a role-syncing client (names, existence, policy grammar, trust
// principals that must exist, and the default quotas). A failed call changes nothing.
import type {Tags} from '../../../src/lib/iam/model.js'
import type {AccountSnapshot, SnapshotRole} from '../../../src/lib/aws/snapshot.js'
import {statementsOf, PolicyDocument} from '../../../src/lib/iam/document.js'
import {documentSize, readPolicyDocument} from './documents.js'
import {findPolicy, findRole, nameParam, policyArnParam, roleXml} from './iam-entities.js'
import {AwsError, checked, integer, memberList, Params, tagList} from './protocol.js'
import {uniqueId} from './sessions.js'
import type {Handler} from './state.js'

/** IAM's default quotas (all adjustable in real accounts; fixed here). */
export const LIMITS = {
  managedPoliciesPerRole: 10,
  /** Sum of a role's inline policy sizes (as sent). */
  inlineBytesPerRole: 10240,
  trustPolicyBytes: 2048,
  tagsPerRole: 50,
}

const PATH = /^\/$|^\/[\u0021-\u007E]+\/$/

/** A trust policy as IAM accepts it: valid grammar, within quota, naming principals that exist. */
function readTrustPolicy(snapshot: AccountSnapshot, text: string): PolicyDocument {
  const doc = readPolicyDocument(text, 'trust')
  if (text.length > LIMITS.trustPolicyBytes)
    throw new AwsError('LimitExceeded', `Cannot exceed quota for ACLSizePerRole: ${LIMITS.trustPolicyBytes}`)
  const knownArns = new Set([...snapshot.roles.values(), ...snapshot.users.values()].map((e) => e.arn))
  for (const st of statementsOf(doc)) {
    const principal = st.Principal ?? st.NotPrincipal
    if (principal === '*' || principal === null || typeof principal !== 'object') continue
    const aws = (principal as Record<string, unknown>).AWS
    for (const p of aws === undefined ? [] : Array.isArray(aws) ? aws : [aws]) {
      if (typeof p !== 'string') throw new AwsError('MalformedPolicyDocument', 'Invalid principal in policy')
      // IAM resolves role and user principals to unique ids when storing, so they must exist.
      const entity = /^arn:aws[a-z-]*:iam::\d{12}:(role|user)\//.test(p)
      if ((entity && !knownArns.has(p)) || (p !== '*' && p.includes('*')))
        throw new AwsError('MalformedPolicyDocument', `Invalid principal in policy: "AWS":"${p}"`)
    }
  }
  return doc
}

function readTags(params: Params): Tags {
  const tags: Tags = {}
  for (const {Key, Value} of tagList(params)) {
    if (Key.length < 1 || Key.length > 128 || Value.length > 256)
      throw new AwsError(
        'ValidationError',
        `1 validation error detected: Value '${Key}' at 'tags' failed to satisfy constraint: Member must have length between 1 and 128 (values up to 256)`,
      )
    if (Key in tags)
      throw new AwsError(
        'InvalidInput',
        'Duplicate tag keys found. Please note that Tag keys are case insensitive.',
      )
    tags[Key] = Value
  }
  return tags
}

function mergeTags(current: Tags, added: Tags): Tags {
  const merged = {...current, ...added}
  if (Object.keys(merged).length > LIMITS.tagsPerRole)
    throw new AwsError('LimitExceeded', `Cannot exceed quota for TagsPerRole: ${LIMITS.tagsPerRole}`)
  return merged
}

function boundaryParam(snapshot: AccountSnapshot, params: Params): string | null {
  if (params.PermissionsBoundary === undefined) return null
  const arn = policyArnParam(params, 'PermissionsBoundary')
  return findPolicy(snapshot, arn).arn
}

export const iamWrites: Record<string, Handler> = {
  CreateRole: ({params, state}) => {
    const {snapshot} = state
    const name = nameParam(params, 'RoleName')
    const path = checked(params, 'Path', {optional: true, min: 1, max: 512, pattern: PATH}) ?? '/'
    const description = checked(params, 'Description', {optional: true, max: 1000}) ?? ''
    const maxSessionDuration = integer(params, 'MaxSessionDuration', {min: 3600, max: 43200}) ?? 3600
    const trustText = checked(params, 'AssumeRolePolicyDocument', {min: 1, max: 131072})!
    const tags = mergeTags({}, readTags(params))
    const boundary = boundaryParam(snapshot, params)
    // Role names are unique regardless of case.
    if ([...snapshot.roles.keys()].some((n) => n.toLowerCase() === name.toLowerCase()))
      throw new AwsError('EntityAlreadyExists', `Role with name ${name} already exists.`)
    const role: SnapshotRole = {
      name,
      // The account's partition, as its other roles show it.
      arn: `arn:${[...snapshot.roles.values()][0]?.arn.split(':')[1] ?? 'aws'}:iam::${state.accountId}:role${path}${name}`,
      id: uniqueId('AROA'),
      path,
      createDate: state.now().toISOString(),
      description,
      trustPolicy: readTrustPolicy(snapshot, trustText),
      tags,
      inline: new Map(),
      attached: [],
      permissionsBoundaryArn: boundary,
      maxSessionDuration,
    }
    snapshot.roles.set(name, role)
    return {Role: roleXml(role, true)}
  },
  UpdateRole: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const description = checked(params, 'Description', {optional: true, max: 1000})
    const maxSessionDuration = integer(params, 'MaxSessionDuration', {min: 3600, max: 43200})
    if (description !== undefined) role.description = description
    if (maxSessionDuration !== undefined) role.maxSessionDuration = maxSessionDuration
    return {}
  },
  DeleteRole: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    if (role.inline.size > 0)
      throw new AwsError('DeleteConflict', 'Cannot delete entity, must delete policies first.')
    if (role.attached.length > 0)
      throw new AwsError('DeleteConflict', 'Cannot delete entity, must detach all policies first.')
    state.snapshot.roles.delete(role.name)
    return undefined
  },
  UpdateAssumeRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    role.trustPolicy = readTrustPolicy(
      state.snapshot,
      checked(params, 'PolicyDocument', {min: 1, max: 131072})!,
    )
    return undefined
  },

  PutRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const name = nameParam(params, 'PolicyName', 128)
    const doc = readPolicyDocument(checked(params, 'PolicyDocument', {min: 1, max: 131072})!, 'identity')
    let total = documentSize(doc)
    for (const [other, existing] of role.inline) if (other !== name) total += documentSize(existing)
    if (total > LIMITS.inlineBytesPerRole)
      throw new AwsError(
        'LimitExceeded',
        `Maximum policy size of ${LIMITS.inlineBytesPerRole} bytes exceeded for role ${role.name}`,
      )
    role.inline.set(name, doc)
    return undefined
  },
  DeleteRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const name = nameParam(params, 'PolicyName', 128)
    if (!role.inline.delete(name))
      throw new AwsError('NoSuchEntity', `The role policy with name ${name} cannot be found.`)
    return undefined
  },
  AttachRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const policy = findPolicy(state.snapshot, policyArnParam(params))
    if (role.attached.some((a) => a.arn === policy.arn)) return undefined // attaching twice is a no-op in IAM
    if (role.attached.length >= LIMITS.managedPoliciesPerRole)
      throw new AwsError(
        'LimitExceeded',
        `Cannot exceed quota for PoliciesPerRole: ${LIMITS.managedPoliciesPerRole}`,
      )
    role.attached.push({name: policy.name, arn: policy.arn})
    return undefined
  },
  DetachRolePolicy: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const arn = policyArnParam(params)
    const index = role.attached.findIndex((a) => a.arn === arn)
    if (index < 0) throw new AwsError('NoSuchEntity', `Policy ${arn} was not found.`)
    role.attached.splice(index, 1)
    return undefined
  },

  TagRole: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    role.tags = mergeTags(role.tags, readTags(params))
    return undefined
  },
  UntagRole: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    const keys = new Set(memberList(params, 'TagKeys'))
    role.tags = Object.fromEntries(Object.entries(role.tags).filter(([k]) => !keys.has(k)))
    return undefined
  },
  PutRolePermissionsBoundary: ({params, state}) => {
    const role = findRole(state.snapshot, nameParam(params, 'RoleName'))
    role.permissionsBoundaryArn = findPolicy(
      state.snapshot,
      policyArnParam(params, 'PermissionsBoundary'),
    ).arn
    return undefined
  },
  DeleteRolePermissionsBoundary: ({params, state}) => {
    findRole(state.snapshot, nameParam(params, 'RoleName')).permissionsBoundaryArn = null
    return undefined
  },
}
