import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {loadAccountSnapshot, parseAccountSnapshot} from '../src/lib/aws/snapshot.js'
import {InputError} from '../src/lib/errors.js'
import {statementsOf} from '../src/lib/iam/document.js'

const accountUrl = new URL('../fixtures/account.json', import.meta.url)
const accountText = readFileSync(accountUrl, 'utf8')

/** The parts of a get-account-authorization-details document these tests touch. */
interface RawInline {
  PolicyName: string
  PolicyDocument: unknown
}
interface RawAccount {
  UserDetailList: Array<{UserName?: string; GroupList: string[]; UserPolicyList?: RawInline[]}>
  GroupDetailList: Array<{GroupName: string; GroupPolicyList: RawInline[]}>
  RoleDetailList: Array<{RoleName: string; RolePolicyList: RawInline[]}>
  Policies: Array<{Arn: string; DefaultVersionId: string}>
}

const rawAccount = (): RawAccount => JSON.parse(accountText) as RawAccount

function named<T>(list: T[], key: keyof T, name: string): T {
  const found = list.find((item) => item[key] === name)
  assert.ok(found, `the fixture has ${String(key)} ${name}`)
  return found
}

const BAD_FILE = '/srv/demo/bad-account.json'

/** Parses `text` as the account file BAD_FILE and expects one line of InputError matching `what`. */
function assertRejected(text: string, what: RegExp): void {
  assert.throws(
    () => parseAccountSnapshot(text, BAD_FILE),
    (error: unknown) => {
      assert.ok(error instanceof InputError, `an InputError, not ${String(error)}`)
      assert.ok(error.message.includes(`account file ${BAD_FILE}`), `names the file: ${error.message}`)
      assert.doesNotMatch(error.message, /\n/, 'one line')
      assert.match(error.message, what)
      return true
    },
  )
}

function edited(edit: (account: RawAccount) => void): string {
  const account = rawAccount()
  edit(account)
  return JSON.stringify(account)
}

describe('account snapshot (get-account-authorization-details)', () => {
  describe('the bundled demo account', () => {
    it('reads every user, group, role and managed policy of account 123456789012', async () => {
      // Given the demo account file
      // When it is loaded
      const snapshot = await loadAccountSnapshot(fileURLToPath(accountUrl))
      // Then everything in it is there, under its name or ARN
      assert.equal(snapshot.accountId, '123456789012')
      assert.equal(snapshot.file, fileURLToPath(accountUrl))
      assert.deepEqual([...snapshot.users.keys()], ['alice', 'bob', 'carol', 'dave', 'erin'])
      assert.deepEqual([...snapshot.groups.keys()], ['data-science', 'engineering', 'genomics'])
      assert.deepEqual([...snapshot.roles.keys()], ['analytics-host', 'unrelated-lambda-role', 'user-alice'])
      assert.deepEqual([...snapshot.policies.keys()].sort(), [
        'arn:aws:iam::123456789012:policy/acme-shared-read',
        'arn:aws:iam::123456789012:policy/developer-boundary',
        'arn:aws:iam::aws:policy/AWSGlueConsoleFullAccess',
        'arn:aws:iam::aws:policy/AmazonAthenaFullAccess',
        'arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess',
        'arn:aws:iam::aws:policy/CloudWatchLogsReadOnlyAccess',
        'arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
      ])
      assert.equal(snapshot.users.has('svc-backup'), false, 'svc-backup is a local account only')
    })

    it('decodes carol’s URL-encoded documents as the raw API returns them', () => {
      // Given carol's inline policies and the genomics group's, stored URL-encoded
      const raw = rawAccount()
      const carolRaw = named(raw.UserDetailList, 'UserName', 'carol').UserPolicyList!
      const genomicsRaw = named(raw.GroupDetailList, 'GroupName', 'genomics').GroupPolicyList
      for (const p of [...carolRaw, ...genomicsRaw])
        assert.equal(typeof p.PolicyDocument, 'string', `${p.PolicyName} is stored as a string`)
      // When the file is parsed
      const snapshot = parseAccountSnapshot(accountText, 'account.json')
      // Then each is the JSON document the string encodes, policy variables untouched
      for (const p of carolRaw)
        assert.deepEqual(
          snapshot.users.get('carol')!.inline.get(p.PolicyName),
          JSON.parse(decodeURIComponent(p.PolicyDocument as string)),
        )
      const teamBucket = snapshot.users.get('carol')!.inline.get('team-bucket')!
      assert.equal(
        statementsOf(teamBucket)[0].Resource,
        'arn:aws:s3:::acme-analytics-${aws:PrincipalTag/team}/*',
      )
      assert.deepEqual(snapshot.groups.get('genomics')!.inline.get('genomics-reference-read'), {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'GenomicsReference',
            Effect: 'Allow',
            Action: 's3:GetObject',
            Resource: 'arn:aws:s3:::acme-analytics-genomics/*',
          },
        ],
      })
    })

    it('reads a URL-encoded document exactly as the same document given as JSON', () => {
      // Given the account once as the CLI prints it, and once with every user, group and role
      // inline document URL-encoded
      const encoded = edited((account) => {
        const lists = [
          ...account.UserDetailList.map((u) => u.UserPolicyList ?? []),
          ...account.GroupDetailList.map((g) => g.GroupPolicyList),
          ...account.RoleDetailList.map((r) => r.RolePolicyList),
        ]
        for (const list of lists)
          for (const p of list)
            if (typeof p.PolicyDocument !== 'string')
              p.PolicyDocument = encodeURIComponent(JSON.stringify(p.PolicyDocument))
      })
      assert.notEqual(encoded, JSON.stringify(rawAccount()), 'some documents were re-encoded')
      // When both are parsed
      const asJson = parseAccountSnapshot(accountText, 'account.json')
      const asEncoded = parseAccountSnapshot(encoded, 'account.json')
      // Then the snapshots are the same
      assert.deepEqual(asEncoded, asJson)
    })

    it('chooses each managed policy’s default version and keeps the older ones', () => {
      // Given acme-shared-read with v1 (old) and v2 (default), and AmazonS3ReadOnlyAccess with v1 and v3
      const snapshot = parseAccountSnapshot(accountText, 'account.json')
      const shared = snapshot.policies.get('arn:aws:iam::123456789012:policy/acme-shared-read')!
      const s3 = snapshot.policies.get('arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess')!
      // Then the defaults are the newest versions, and the versions really differ
      assert.equal(shared.defaultVersionId, 'v2')
      assert.deepEqual([...shared.versions.keys()].sort(), ['v1', 'v2'])
      assert.notDeepEqual(shared.versions.get('v1')!.document, shared.versions.get('v2')!.document)
      assert.equal(s3.defaultVersionId, 'v3')
      assert.deepEqual(statementsOf(s3.versions.get('v3')!.document)[0].Action, [
        's3:Get*',
        's3:List*',
        's3:Describe*',
        's3-object-lambda:Get*',
        's3-object-lambda:List*',
      ])
      assert.equal(s3.path, '/')
    })

    it('reads tags, group memberships and the permissions boundary of each user', () => {
      const snapshot = parseAccountSnapshot(accountText, 'account.json')
      assert.deepEqual(snapshot.users.get('carol')!.tags, {team: 'genomics', 'cost-center': 'cc-42'})
      assert.deepEqual(snapshot.users.get('bob')!.groups, ['data-science', 'engineering'])
      assert.equal(
        snapshot.users.get('bob')!.permissionsBoundaryArn,
        'arn:aws:iam::123456789012:policy/developer-boundary',
      )
      assert.equal(snapshot.users.get('alice')!.permissionsBoundaryArn, null)
      const erin = snapshot.users.get('erin')!
      assert.deepEqual([erin.inline.size, erin.attached.length, erin.groups.length], [0, 0, 0])
    })

    it('reads the instance role with its path and its trust in EC2 and in itself', () => {
      const role = parseAccountSnapshot(accountText, 'account.json').roles.get('analytics-host')!
      assert.equal(role.path, '/service-role/')
      assert.equal(role.arn, 'arn:aws:iam::123456789012:role/service-role/analytics-host')
      assert.deepEqual(
        statementsOf(role.trustPolicy).map((s) => s.Principal),
        [{Service: 'ec2.amazonaws.com'}, {AWS: 'arn:aws:iam::123456789012:role/service-role/analytics-host'}],
      )
      assert.equal(role.maxSessionDuration, 3600, 'the export has no MaxSessionDuration: IAM’s default')
    })
  })

  describe('a malformed account file', () => {
    it('is rejected when it is not JSON', () => {
      assertRejected('{"UserDetailList": [{"UserName": "alice"', /is not valid JSON/)
    })

    it('is rejected when its top level is an array', () => {
      assertRejected(JSON.stringify([rawAccount()]), /top level is not a JSON object/)
    })

    it('is rejected when it has none of the keys get-account-authorization-details writes', () => {
      // Given the output of a different command (aws iam list-users)
      assertRejected(
        JSON.stringify({Users: [{UserName: 'alice'}]}),
        /has none of UserDetailList, GroupDetailList, RoleDetailList, Policies/,
      )
    })

    it('is rejected when a user has no UserName', () => {
      const text = edited((account) => delete account.UserDetailList[1].UserName)
      assertRejected(text, /UserDetailList\[1\] has no UserName/)
    })

    it('is rejected when a policy document is a broken URL escape, naming the policy', () => {
      const text = edited((account) => {
        named(account.UserDetailList, 'UserName', 'carol').UserPolicyList![0].PolicyDocument =
          '%7B%22Version%22%3A%E0%A4%A'
      })
      assertRejected(
        text,
        /user 'carol' inline policy 'genomics-workgroup' has a policy document that is neither JSON nor URL-encoded JSON/,
      )
    })

    it('is rejected when a policy document is plain text, without calling it URL-encoded', () => {
      // Given a document that is prose: neither JSON nor any URL encoding of it
      const text = edited((account) => {
        named(account.GroupDetailList, 'GroupName', 'engineering').GroupPolicyList[0].PolicyDocument =
          'Allow logs:Get* on everything'
      })
      // Then the message says so, and does not claim the text was URL-encoded
      assertRejected(
        text,
        /group 'engineering' inline policy 'read-logs' has a policy document that is neither JSON nor URL-encoded JSON/,
      )
    })

    it('is rejected when DefaultVersionId names no version in PolicyVersionList', () => {
      const text = edited((account) => {
        named(account.Policies, 'Arn', 'arn:aws:iam::123456789012:policy/acme-shared-read').DefaultVersionId =
          'v3'
      })
      assertRejected(
        text,
        /policy arn:aws:iam::123456789012:policy\/acme-shared-read has DefaultVersionId v3 but no such entry in PolicyVersionList/,
      )
    })

    it('is rejected when a user is in a group that GroupDetailList does not list', () => {
      const text = edited((account) =>
        named(account.UserDetailList, 'UserName', 'bob').GroupList.push('finance'),
      )
      assertRejected(text, /user 'bob' is in group 'finance', which is not in GroupDetailList/)
    })

    it('is rejected when a statement’s Effect is neither Allow nor Deny', () => {
      // Given the instance role's third analytics statement spelled "deny"
      const text = edited((account) => {
        const doc = named(
          named(account.RoleDetailList, 'RoleName', 'analytics-host').RolePolicyList,
          'PolicyName',
          'analytics-data',
        ).PolicyDocument as {Statement: Array<{Effect: string}>}
        doc.Statement[2].Effect = 'deny'
      })
      assertRejected(
        text,
        /role 'analytics-host' inline policy 'analytics-data' has a policy document that statement 3 has Effect "deny" \(Allow or Deny expected\)/,
      )
    })
  })
})
