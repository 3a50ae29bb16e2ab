// An IAM account snapshot: the output of `aws iam get-account-authorization-details`, read
// into indexed, normalised entities. The offline source reads it; the AWS test double serves
// (and mutates) the same model, so live and offline answers come from one place.
import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {decodePolicyDocument, DocumentError, PolicyDocument} from '../iam/document.js'
import type {Tags} from '../iam/model.js'

export interface AttachedPolicyRef {
  name: string
  arn: string
}

export interface SnapshotUser {
  name: string
  arn: string
  id: string
  path: string
  createDate: string
  tags: Tags
  inline: Map<string, PolicyDocument>
  attached: AttachedPolicyRef[]
  groups: string[]
  permissionsBoundaryArn: string | null
}

export interface SnapshotGroup {
  name: string
  arn: string
  id: string
  path: string
  createDate: string
  inline: Map<string, PolicyDocument>
  attached: AttachedPolicyRef[]
}

export interface SnapshotRole {
  name: string
  arn: string
  id: string
  path: string
  createDate: string
  description: string
  trustPolicy: PolicyDocument
  tags: Tags
  inline: Map<string, PolicyDocument>
  attached: AttachedPolicyRef[]
  permissionsBoundaryArn: string | null
  maxSessionDuration: number
}

export interface SnapshotPolicyVersion {
  versionId: string
  document: PolicyDocument
  createDate: string
}

export interface SnapshotPolicy {
  name: string
  arn: string
  id: string
  path: string
  createDate: string
  defaultVersionId: string
  versions: Map<string, SnapshotPolicyVersion>
}

export interface AccountSnapshot {
  file: string
  accountId: string | null
  users: Map<string, SnapshotUser>
  groups: Map<string, SnapshotGroup>
  roles: Map<string, SnapshotRole>
  policies: Map<string, SnapshotPolicy>
}

type Json = Record<string, unknown>

class Reader {
  constructor(readonly file: string) {}

  fail(where: string, what: string): never {
    throw new InputError(`account file ${this.file}: ${where} ${what}`, {
      suggestion: 'give the unmodified output of `aws iam get-account-authorization-details`',
    })
  }

  object(value: unknown, where: string): Json {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(where, 'is not a JSON object')
    return value as Json
  }

  list(obj: Json, key: string, where: string): unknown[] {
    const v = obj[key]
    if (v === undefined || v === null) return []
    if (!Array.isArray(v)) this.fail(where, `has ${key} that is not a list`)
    return v as unknown[]
  }

  string(obj: Json, key: string, where: string, fallback?: string): string {
    const v = obj[key]
    if (typeof v === 'string' && v !== '') return v
    if (v === undefined && fallback !== undefined) return fallback
    return this.fail(where, `has no ${key}`)
  }

  date(obj: Json, key: string): string {
    const v = obj[key]
    return typeof v === 'string' ? v : '1970-01-01T00:00:00Z'
  }

  document(value: unknown, where: string): PolicyDocument {
    try {
      return decodePolicyDocument(value)
    } catch (error) {
      if (error instanceof DocumentError) this.fail(where, `has a policy document that ${error.message}`)
      throw error
    }
  }

  inline(obj: Json, key: string, where: string): Map<string, PolicyDocument> {
    const out = new Map<string, PolicyDocument>()
    this.list(obj, key, where).forEach((p, i) => {
      const entry = this.object(p, `${where} ${key}[${i}]`)
      const name = this.string(entry, 'PolicyName', `${where} ${key}[${i}]`)
      out.set(name, this.document(entry.PolicyDocument, `${where} inline policy '${name}'`))
    })
    return out
  }

  attached(obj: Json, where: string): AttachedPolicyRef[] {
    return this.list(obj, 'AttachedManagedPolicies', where).map((p, i) => {
      const entry = this.object(p, `${where} AttachedManagedPolicies[${i}]`)
      return {
        name: this.string(entry, 'PolicyName', `${where} AttachedManagedPolicies[${i}]`),
        arn: this.string(entry, 'PolicyArn', `${where} AttachedManagedPolicies[${i}]`),
      }
    })
  }

  tags(obj: Json, where: string): Tags {
    const tags: Tags = {}
    for (const [i, t] of this.list(obj, 'Tags', where).entries()) {
      const tag = this.object(t, `${where} Tags[${i}]`)
      if (typeof tag.Key !== 'string' || typeof tag.Value !== 'string') this.fail(`${where} Tags[${i}]`, 'needs string Key and Value')
      tags[tag.Key as string] = tag.Value as string
    }
    return tags
  }

  boundary(obj: Json, where: string): string | null {
    if (obj.PermissionsBoundary === undefined || obj.PermissionsBoundary === null) return null
    const b = this.object(obj.PermissionsBoundary, `${where} PermissionsBoundary`)
    return this.string(b, 'PermissionsBoundaryArn', `${where} PermissionsBoundary`)
  }
}

function accountOf(arn: string): string | null {
  return /^arn:aws[a-z-]*:iam::(\d{12}):/.exec(arn)?.[1] ?? null
}

/** Reads and validates an account snapshot; every problem is one line naming the file. */
export function parseAccountSnapshot(text: string, file: string): AccountSnapshot {
  const r = new Reader(file)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw new InputError(`account file ${file} is not valid JSON: ${(error as Error).message}`, {
      suggestion: 'give the output of `aws iam get-account-authorization-details`',
    })
  }
  const root = r.object(json, 'top level')
  const known = ['UserDetailList', 'GroupDetailList', 'RoleDetailList', 'Policies']
  if (!known.some((k) => k in root))
    r.fail('top level', `has none of ${known.join(', ')}: is this the output of get-account-authorization-details?`)

  const snapshot: AccountSnapshot = {file, accountId: null, users: new Map(), groups: new Map(), roles: new Map(), policies: new Map()}

  r.list(root, 'UserDetailList', 'top level').forEach((u, i) => {
    const obj = r.object(u, `UserDetailList[${i}]`)
    const name = r.string(obj, 'UserName', `UserDetailList[${i}]`)
    const where = `user '${name}'`
    const groups = r.list(obj, 'GroupList', where)
    if (!groups.every((g) => typeof g === 'string')) r.fail(where, 'has a GroupList that is not a list of names')
    snapshot.users.set(name, {
      name,
      arn: r.string(obj, 'Arn', where),
      id: r.string(obj, 'UserId', where),
      path: r.string(obj, 'Path', where, '/'),
      createDate: r.date(obj, 'CreateDate'),
      tags: r.tags(obj, where),
      inline: r.inline(obj, 'UserPolicyList', where),
      attached: r.attached(obj, where),
      groups: groups as string[],
      permissionsBoundaryArn: r.boundary(obj, where),
    })
  })

  r.list(root, 'GroupDetailList', 'top level').forEach((g, i) => {
    const obj = r.object(g, `GroupDetailList[${i}]`)
    const name = r.string(obj, 'GroupName', `GroupDetailList[${i}]`)
    const where = `group '${name}'`
    snapshot.groups.set(name, {
      name,
      arn: r.string(obj, 'Arn', where),
      id: r.string(obj, 'GroupId', where),
      path: r.string(obj, 'Path', where, '/'),
      createDate: r.date(obj, 'CreateDate'),
      inline: r.inline(obj, 'GroupPolicyList', where),
      attached: r.attached(obj, where),
    })
  })

  r.list(root, 'RoleDetailList', 'top level').forEach((x, i) => {
    const obj = r.object(x, `RoleDetailList[${i}]`)
    const name = r.string(obj, 'RoleName', `RoleDetailList[${i}]`)
    const where = `role '${name}'`
    snapshot.roles.set(name, {
      name,
      arn: r.string(obj, 'Arn', where),
      id: r.string(obj, 'RoleId', where),
      path: r.string(obj, 'Path', where, '/'),
      createDate: r.date(obj, 'CreateDate'),
      description: typeof obj.Description === 'string' ? obj.Description : '',
      trustPolicy: r.document(obj.AssumeRolePolicyDocument, `${where} AssumeRolePolicyDocument`),
      tags: r.tags(obj, where),
      inline: r.inline(obj, 'RolePolicyList', where),
      attached: r.attached(obj, where),
      permissionsBoundaryArn: r.boundary(obj, where),
      maxSessionDuration: typeof obj.MaxSessionDuration === 'number' ? obj.MaxSessionDuration : 3600,
    })
  })

  r.list(root, 'Policies', 'top level').forEach((p, i) => {
    const obj = r.object(p, `Policies[${i}]`)
    const arn = r.string(obj, 'Arn', `Policies[${i}]`)
    const where = `policy ${arn}`
    const versions = new Map<string, SnapshotPolicyVersion>()
    r.list(obj, 'PolicyVersionList', where).forEach((v, j) => {
      const ver = r.object(v, `${where} PolicyVersionList[${j}]`)
      const versionId = r.string(ver, 'VersionId', `${where} PolicyVersionList[${j}]`)
      versions.set(versionId, {
        versionId,
        document: r.document(ver.Document, `${where} version ${versionId}`),
        createDate: r.date(ver, 'CreateDate'),
      })
    })
    const defaultVersionId = r.string(obj, 'DefaultVersionId', where)
    if (!versions.has(defaultVersionId)) r.fail(where, `has DefaultVersionId ${defaultVersionId} but no such entry in PolicyVersionList`)
    snapshot.policies.set(arn, {
      name: r.string(obj, 'PolicyName', where),
      arn,
      id: r.string(obj, 'PolicyId', where, arn),
      path: r.string(obj, 'Path', where, '/'),
      createDate: r.date(obj, 'CreateDate'),
      defaultVersionId,
      versions,
    })
  })

  for (const user of snapshot.users.values())
    for (const group of user.groups)
      if (!snapshot.groups.has(group)) r.fail(`user '${user.name}'`, `is in group '${group}', which is not in GroupDetailList`)

  const someArn = [...snapshot.users.values(), ...snapshot.roles.values(), ...snapshot.groups.values()][0]?.arn
  snapshot.accountId = someArn ? accountOf(someArn) : null
  return snapshot
}

export async function loadAccountSnapshot(file: string): Promise<AccountSnapshot> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const what = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : code === 'EISDIR' ? 'is a directory' : `could not be read (${(error as Error).message})`
    throw new InputError(`account file ${file} ${what}`, {suggestion: 'check the path given with --account'})
  }
  return parseAccountSnapshot(text, file)
}
