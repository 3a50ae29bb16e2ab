import assert from 'node:assert/strict'

import {IAMClient} from '@aws-sdk/client-iam'
import {STSClient} from '@aws-sdk/client-sts'

import {LiveIamSource} from '../../src/lib/aws/live.js'
import {OfflineIamSource} from '../../src/lib/aws/offline.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {UserError} from '../../src/lib/errors.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'

const accountFile = new URL('../../fixtures/account.json', import.meta.url).pathname

describe('LiveIamSource (real SDK clients against the AWS test double)', () => {
  let double: AwsDouble
  let iam: IAMClient
  let sts: STSClient

  const live = (instanceRoleRef: string | null = null) => new LiveIamSource({iam, sts, instanceRoleRef})

  beforeEach(async () => {
    double = await startAwsDouble({snapshot: await loadAccountSnapshot(accountFile), instanceRole: 'analytics-host', pageSize: 1})
    const common = {endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials, retryMode: 'adaptive', maxAttempts: 4}
    iam = new IAMClient(common)
    sts = new STSClient(common)
  })
  afterEach(async () => {
    iam.destroy()
    sts.destroy()
    await double.stop()
  })

  it('reads every user exactly as the offline source reads the same snapshot', async () => {
    const offline = new OfflineIamSource(await loadAccountSnapshot(accountFile), 'analytics-host')
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      assert.deepEqual(await live().getUserPolicies(name), await offline.getUserPolicies(name), name)
    }
  })

  it('follows every page of a List call', async () => {
    // Given one item per page, When dave (several managed policies) is read
    const dave = await live().getUserPolicies('dave')
    // Then all his policies arrive, over several ListAttachedUserPolicies pages
    const snapshot = await loadAccountSnapshot(accountFile)
    assert.equal(dave!.managed.length, snapshot.users.get('dave')!.attached.length)
    const pages = double.calls.filter((c) => c.action === 'ListAttachedUserPolicies')
    assert.ok(dave!.managed.length >= 2, 'dave has several managed policies')
    assert.equal(pages.length, dave!.managed.length, 'one request per page')
    assert.ok(pages.some((c) => c.params.Marker), 'later pages carry the Marker')
  })

  it('fetches a managed policy version once, however often it is read', async () => {
    const source = live()
    await source.getUserPolicies('alice')
    await source.getUserPolicies('alice')
    const versionCalls = double.calls.filter((c) => c.action === 'GetPolicyVersion')
    const distinct = new Set(versionCalls.map((c) => `${c.params.PolicyArn}#${c.params.VersionId}`))
    assert.ok(distinct.size > 0)
    assert.equal(versionCalls.length, distinct.size)
  })

  it('answers null for an IAM user that does not exist', async () => {
    assert.equal(await live().getUserPolicies('nobody'), null)
  })

  it('discovers the instance role from GetCallerIdentity, path included', async () => {
    const role = await live().getInstanceRole()
    assert.deepEqual(role, {
      name: 'analytics-host',
      arn: 'arn:aws:iam::123456789012:role/service-role/analytics-host',
      accountId: '123456789012',
      source: 'discovered',
    })
  })

  it('prefers an explicitly named instance role over discovery', async () => {
    const role = await live('user-alice').getInstanceRole()
    assert.equal(role.arn, 'arn:aws:iam::123456789012:role/user-alice')
    assert.equal(role.source, 'configured')
    assert.equal(double.calls.filter((c) => c.action === 'GetCallerIdentity').length, 0)
  })

  it('names the call when AWS denies it', async () => {
    double.inject({action: 'GetUser', code: 'AccessDenied', times: 5})
    await assert.rejects(live().getUserPolicies('alice'), (e: unknown) => {
      assert.ok(e instanceof UserError)
      assert.equal(e.kind, 'accessDenied')
      assert.match(e.message, /iam:GetUser alice/)
      return true
    })
  })
})
