import assert from 'node:assert/strict'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, runCli} from '../support/cli.js'

const offline = ['--config', fixture('ec2userkeyd.conf'), '--account', fixture('account.json'), '--passwd', fixture('passwd')]
const json = async (args: string[], env: Record<string, string> = {}) => {
  const result = await runCli(['resolve', ...args, '--json'], env)
  return {...result, body: JSON.parse(result.stdout || '{}')}
}

describe('ec2userkeyd resolve', () => {
  it('shows a different winning method for different demo users', async () => {
    const winners: Record<string, string | null> = {}
    for (const user of ['alice', 'bob', 'erin', 'svc-backup']) {
      const {code, body, stderr} = await json(['--user', user, ...offline])
      assert.equal(code, 0, stderr)
      winners[user] = body.result?.method ?? null
    }
    assert.deepEqual(winners, {alice: 'UserRole', bob: 'RestrictedInstanceRole', erin: null, 'svc-backup': 'InstanceRole'})
  })

  it('prints exactly the documented JSON shape, with a step for every method of the chain', async () => {
    const {body} = await json(['--uid', '1002', ...offline])
    assert.deepEqual(Object.keys(body), ['uid', 'username', 'chainSource', 'chain', 'steps', 'result'])
    assert.equal(body.uid, 1002)
    assert.equal(body.username, 'bob')
    assert.equal(body.chainSource, 'default')
    assert.deepEqual(body.chain, ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'])
    assert.deepEqual(
      body.steps.map((s: {method: string; outcome: string}) => [s.method, s.outcome]),
      [
        ['UserRole', 'skip'],
        ['RestrictedInstanceRole', 'issue'],
        ['InstanceRole', 'issue'],
      ],
    )
    for (const step of body.steps) assert.deepEqual(Object.keys(step).filter((k) => k !== 'roleArn'), ['method', 'outcome', 'reason'])
    assert.match(body.steps[1].reason, /684 of 2048 characters/)
    assert.deepEqual(body.result, {method: 'RestrictedInstanceRole', roleArn: 'arn:aws:iam::123456789012:role/service-role/analytics-host'})
  })

  it("says where the chain came from: svc-backup's per-user rule, uid ranges for system users", async () => {
    assert.equal((await json(['--user', 'svc-backup', ...offline])).body.chainSource, 'user')
    assert.equal((await json(['--user', 'root', ...offline])).body.chainSource, 'uid')
  })

  it('tells why erin gets nothing: her IAM user may do nothing, so not even the instance role', async () => {
    const {body} = await json(['--user', 'erin', ...offline])
    assert.equal(body.result, null)
    assert.match(body.steps[2].reason, /IAM user erin exists/)
  })

  it('exits with the not-found code and one line for an unknown user or uid', async () => {
    for (const who of [['--user', 'nobody-such'], ['--uid', '4242']]) {
      const result = await runCli(['resolve', ...who, ...offline])
      assert.equal(result.code, 3, result.stderr)
      assert.equal(result.stderr.trim().split('\n').length, 1)
      assert.match(result.stderr, /no local (user 'nobody-such'|uid 4242)/)
    }
  })

  it('looks users up through NSS (getent passwd) without --passwd', async () => {
    const {code, body, stderr} = await json(['--uid', '0', '--config', fixture('ec2userkeyd.conf'), '--account', fixture('account.json')])
    assert.equal(code, 0, stderr)
    assert.equal(body.username, 'root')
  })

  it('refuses --issue offline, and needs exactly one of --uid and --user', async () => {
    assert.equal((await runCli(['resolve', '--user', 'bob', '--issue', ...offline])).code, 2)
    assert.equal((await runCli(['resolve', ...offline])).code, 2)
    assert.equal((await runCli(['resolve', '--user', 'bob', '--uid', '1002', ...offline])).code, 2)
  })

  describe('live', () => {
    let double: AwsDouble
    beforeEach(async () => {
      double = await startAwsDouble({snapshot: await loadAccountSnapshot(fixture('account.json')), instanceRole: 'analytics-host'})
    })
    afterEach(() => double.stop())

    it('agrees with the offline answer', async () => {
      for (const user of ['alice', 'bob', 'erin']) {
        const live = await json(['--user', user, '--config', fixture('ec2userkeyd.conf'), '--passwd', fixture('passwd')], double.env())
        const off = await json(['--user', user, ...offline])
        assert.equal(live.code, 0, live.stderr)
        assert.deepEqual(live.body, off.body, user)
      }
      assert.equal(double.assumeRoleLog.length, 0, 'a dry run issues nothing')
    })

    it('--issue issues once and prints the key id, session ARN and expiry, never the secret or token', async () => {
      const {code, body, stdout, stderr} = await json(['--user', 'bob', '--issue', '--config', fixture('ec2userkeyd.conf'), '--passwd', fixture('passwd')], double.env())
      assert.equal(code, 0, stderr)
      const issued = double.assumeRoleLog.filter((r) => r.result === 'ok')
      assert.equal(issued.length, 1)
      assert.deepEqual(Object.keys(body.issued), ['method', 'accessKeyId', 'arn', 'expiration'])
      assert.equal(body.issued.accessKeyId, issued[0].accessKeyId)
      assert.match(body.issued.arn, /assumed-role\/analytics-host\/bob$/)
      // The double's session tokens start like AWS's; secrets are 40 base64 characters
      assert.doesNotMatch(stdout + stderr, /IQoJb3JpZ2luX2Vj|[A-Za-z0-9+/]{40}|secretAccessKey|sessionToken/)
    })
  })
})
