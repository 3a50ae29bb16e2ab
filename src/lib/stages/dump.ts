// `policy dump`: every policy that applies to the IAM user behind a local user, in one typed
// result that is also the command's JSON contract.
import type {IamSource, ManagedPolicy} from '../iam/model.js'
import type {Config} from '../config/schema.js'
import {applyNamePattern} from '../config/schema.js'
import {NotFoundError} from '../errors.js'
import type {PolicyDocument} from '../iam/document.js'

export type PolicySource = 'user-inline' | 'user-managed' | 'group-inline' | 'group-managed'

export interface DumpedPolicy {
  source: PolicySource
  name: string
  arn?: string
  group?: string
  versionId?: string
  document: PolicyDocument
}

export interface PolicyDump {
  user: {name: string; arn: string; id: string}
  policies: DumpedPolicy[]
  permissionsBoundary: null | {arn: string; versionId: string; document: PolicyDocument}
}

function managed(source: PolicySource, p: ManagedPolicy, group?: string): DumpedPolicy {
  return {source, name: p.name, arn: p.arn, ...(group ? {group} : {}), versionId: p.versionId, document: p.document}
}

export async function dumpUserPolicies(source: IamSource, config: Config, localUser: string): Promise<PolicyDump> {
  const pattern = config.method_RestrictedInstanceRole.iam_name_pattern
  const iamUser = applyNamePattern(pattern, localUser)
  const found = await source.getUserPolicies(iamUser)
  if (!found)
    throw new NotFoundError(`IAM user '${iamUser}' not found (local user '${localUser}', iam_name_pattern '${pattern}')`, {
      suggestion: 'check the user name and [method_RestrictedInstanceRole] iam_name_pattern',
    })
  const policies: DumpedPolicy[] = [
    ...found.inline.map((p): DumpedPolicy => ({source: 'user-inline', name: p.name, document: p.document})),
    ...found.managed.map((p) => managed('user-managed', p)),
  ]
  for (const group of found.groups) {
    policies.push(...group.inline.map((p): DumpedPolicy => ({source: 'group-inline', name: p.name, group: group.name, document: p.document})))
    policies.push(...group.managed.map((p) => managed('group-managed', p, group.name)))
  }
  const b = found.permissionsBoundary
  return {
    user: {name: found.user.name, arn: found.user.arn, id: found.user.id},
    policies,
    permissionsBoundary: b ? {arn: b.arn, versionId: b.versionId, document: b.document} : null,
  }
}
