// Applies a role plan with IAM write calls, one change at a time in the plan's order. Stops at
// the first failure and says which changes were made before it; throttling is absorbed by the
// client's adaptive retry.
import {
  AttachRolePolicyCommand,
  CreateRoleCommand,
  DeleteRolePermissionsBoundaryCommand,
  DeleteRolePolicyCommand,
  DetachRolePolicyCommand,
  IAMClient,
  PutRolePermissionsBoundaryCommand,
  PutRolePolicyCommand,
  TagRoleCommand,
  UpdateAssumeRolePolicyCommand,
} from '@aws-sdk/client-iam'

import {describeAwsError, isNoSuchEntity} from '../aws/errors.js'
import {UserError} from '../errors.js'
import type {DesiredRole} from './desired.js'
import type {RoleChange, RolePlan} from './plan.js'

export interface ApplyOutcome {
  /** The changes made, in order: all of the plan's unless error is set. */
  applied: RoleChange[]
  error: UserError | null
  /** The role as CreateRole answered (its ID, ARN...); null when the plan created none. */
  created: CreatedRole | null
}

export interface CreatedRole {
  arn: string
  id: string
  path: string
  maxSessionDuration: number
}

/** What one change sends; null when an earlier call already made it (CreateRole, TagRole). */
type Call = {label: string; send: () => Promise<unknown>; goneIsDone?: boolean} | null

export async function applyRolePlan(
  iam: IAMClient,
  desired: DesiredRole,
  plan: RolePlan,
): Promise<ApplyOutcome> {
  if (plan.error !== null)
    throw new Error(`applyRolePlan: the plan for ${plan.role} has an error and cannot be applied`)
  const role = plan.role
  const created = !plan.exists
  // Every tag of the plan goes in one TagRole call, at the first tag-role change.
  const tags = plan.changes
    .filter((c) => c.op === 'tag-role')
    .map((c) => {
      const key = c.target.slice(0, c.target.indexOf('='))
      return {Key: key, Value: desired.tags[key]}
    })
  let tagged = false
  let createdRole: CreatedRole | null = null

  const callFor = (change: RoleChange): Call => {
    const target = change.target
    switch (change.op) {
      case 'create-role':
        return {
          label: `iam:CreateRole ${role}`,
          send: async () => {
            const answer = await iam.send(
              new CreateRoleCommand({
                RoleName: role,
                Path: desired.path,
                Description: desired.description,
                AssumeRolePolicyDocument: JSON.stringify(desired.trustPolicy),
                ...(desired.permissionsBoundaryArn
                  ? {PermissionsBoundary: desired.permissionsBoundaryArn}
                  : {}),
                Tags: Object.entries(desired.tags).map(([Key, Value]) => ({Key, Value})),
              }),
            )
            const r = answer.Role
            if (r?.Arn && r.RoleId)
              createdRole = {
                arn: r.Arn,
                id: r.RoleId,
                path: r.Path ?? desired.path,
                maxSessionDuration: r.MaxSessionDuration ?? 3600,
              }
          },
        }
      case 'update-trust':
        return {
          label: `iam:UpdateAssumeRolePolicy ${role}`,
          send: () =>
            iam.send(
              new UpdateAssumeRolePolicyCommand({
                RoleName: role,
                PolicyDocument: JSON.stringify(desired.trustPolicy),
              }),
            ),
        }
      case 'set-boundary':
        if (created) return null
        return {
          label: `iam:PutRolePermissionsBoundary ${role} ${target}`,
          send: () =>
            iam.send(new PutRolePermissionsBoundaryCommand({RoleName: role, PermissionsBoundary: target})),
        }
      case 'delete-boundary':
        return {
          label: `iam:DeleteRolePermissionsBoundary ${role}`,
          send: () => iam.send(new DeleteRolePermissionsBoundaryCommand({RoleName: role})),
        }
      case 'attach-policy':
        return {
          label: `iam:AttachRolePolicy ${role} ${target}`,
          send: () => iam.send(new AttachRolePolicyCommand({RoleName: role, PolicyArn: target})),
        }
      case 'detach-policy':
        return {
          label: `iam:DetachRolePolicy ${role} ${target}`,
          send: () => iam.send(new DetachRolePolicyCommand({RoleName: role, PolicyArn: target})),
          goneIsDone: true,
        }
      case 'put-inline': {
        const policy = desired.inline.find((p) => p.name === target)
        if (!policy) throw new Error(`applyRolePlan: no desired inline policy ${target}`)
        return {
          label: `iam:PutRolePolicy ${role} ${target}`,
          send: () =>
            iam.send(
              new PutRolePolicyCommand({RoleName: role, PolicyName: target, PolicyDocument: policy.text}),
            ),
        }
      }
      case 'delete-inline':
        return {
          label: `iam:DeleteRolePolicy ${role} ${target}`,
          send: () => iam.send(new DeleteRolePolicyCommand({RoleName: role, PolicyName: target})),
          goneIsDone: true,
        }
      case 'tag-role':
        if (created || tagged) return null
        tagged = true
        return {
          label: `iam:TagRole ${role}`,
          send: () => iam.send(new TagRoleCommand({RoleName: role, Tags: tags})),
        }
    }
  }

  const applied: RoleChange[] = []
  for (const change of plan.changes) {
    const call = callFor(change)
    if (call) {
      try {
        await call.send()
      } catch (error) {
        // Already gone (removed by someone else meanwhile) is what the change wanted.
        if (!(call.goneIsDone && isNoSuchEntity(error))) {
          // The boundary and tags of a role created here came with CreateRole.
          const withCreate = applied.length > 0 && created
          const madeByCreate = plan.changes.filter(
            (c) => withCreate && (c.op === 'set-boundary' || c.op === 'tag-role') && !applied.includes(c),
          )
          return {
            applied: [...applied, ...madeByCreate],
            error: describeAwsError(error, call.label),
            created: createdRole,
          }
        }
      }
    }
    applied.push(change)
  }
  return {applied, error: null, created: createdRole}
}
