import assert from 'node:assert/strict'

import {CreateRoleCommand, GetRoleCommand, IAMClient} from '@aws-sdk/client-iam'

import {AwsCallRecord, observeCalls, reportQuotasAtOnce} from '../../src/lib/aws/clients.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'

describe('the IAM client', () => {
  let double: AwsDouble
  beforeEach(async () => {
    double = await startAwsDouble({snapshot: await loadAccountSnapshot(new URL('../../fixtures/account.json', import.meta.url).pathname), instanceRole: 'analytics-host'})
  })
  afterEach(() => double.stop())

  it('reports an exhausted IAM quota at once instead of retrying it as throttling', async () => {
    // Given IAM answering LimitExceeded (a quota) to CreateRole
    const iam = new IAMClient({endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials, retryMode: 'adaptive', maxAttempts: 3})
    reportQuotasAtOnce(iam)
    double.inject({action: 'CreateRole', code: 'LimitExceeded', times: 5})
    // When a role is created
    const error = await iam.send(new CreateRoleCommand({RoleName: 'user-x', AssumeRolePolicyDocument: '{}'})).catch((e: Error) => e)
    // Then the one refusal is the answer
    assert.equal((error as Error).name, 'LimitExceeded')
    assert.equal(double.calls.filter((c) => c.action === 'CreateRole').length, 1)
    iam.destroy()
  })

  it('still retries real throttling', async () => {
    const iam = new IAMClient({endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials, retryMode: 'adaptive', maxAttempts: 3})
    reportQuotasAtOnce(iam)
    double.inject({action: 'CreateRole', code: 'Throttling', times: 1})
    await iam.send(new CreateRoleCommand({RoleName: 'user-x', AssumeRolePolicyDocument: JSON.stringify({Version: '2012-10-17', Statement: []})})).catch(() => undefined)
    assert.ok(double.calls.filter((c) => c.action === 'CreateRole').length >= 2)
    iam.destroy()
  })

  it('reports every call once done, with its operation, duration, retries and error', async () => {
    const iam = new IAMClient({endpoint: double.url, region: 'us-east-1', credentials: double.instanceCredentials, retryMode: 'adaptive', maxAttempts: 3})
    const calls: AwsCallRecord[] = []
    observeCalls(iam, 'iam', (c) => calls.push(c))
    double.inject({action: 'GetRole', code: 'Throttling', times: 1})
    await iam.send(new GetRoleCommand({RoleName: 'analytics-host'}))
    await iam.send(new GetRoleCommand({RoleName: 'no-such-role'})).catch(() => undefined)
    assert.deepEqual(
      calls.map((c) => [c.service, c.operation, c.retries, c.error]),
      [
        ['iam', 'GetRole', 1, undefined],
        ['iam', 'GetRole', 0, 'NoSuchEntityException'],
      ],
    )
    assert.ok(calls.every((c) => c.seconds > 0))
    iam.destroy()
  })
})
