// Region and partition (issue 16): with no AWS_REGION, the daemon and the live commands take the
// instance's own region from IMDS and sign for it (STS's regional endpoint), and ARNs use the
// account's partition. The built CLI against the AWS test double, whose account is here in aws-cn.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'

import {parseAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {partitionOf, resolveRegion} from '../../src/lib/aws/region.js'
import {AwsDouble, childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, runCli} from '../support/cli.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {asUser, freePort, isRoot, NOBODY, spawnServe} from '../daemon/serve-support.js'

describe('the AWS region and partition', () => {
  let imds: FakeImds
  before(async () => {
    imds = await startFakeImds({region: 'cn-north-1'})
  })
  after(() => imds.stop())

  it('comes from AWS_REGION, AWS_DEFAULT_REGION, the instance metadata service or the default, in that order', async () => {
    assert.deepEqual(await resolveRegion({env: {AWS_REGION: 'eu-central-1', AWS_DEFAULT_REGION: 'x'}, imds: imds.url}), {region: 'eu-central-1', partition: 'aws', source: 'AWS_REGION'})
    assert.deepEqual(await resolveRegion({env: {AWS_DEFAULT_REGION: 'us-gov-west-1'}}), {region: 'us-gov-west-1', partition: 'aws-us-gov', source: 'AWS_DEFAULT_REGION'})
    assert.deepEqual(await resolveRegion({env: {}, imds: imds.url}), {region: 'cn-north-1', partition: 'aws-cn', source: 'imds'})
    assert.deepEqual(await resolveRegion({env: {AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://127.0.0.1:9'}, timeoutMs: 500}), {region: 'us-east-1', partition: 'aws', source: 'default'})
    assert.equal(partitionOf('cn-northwest-1'), 'aws-cn')
  })

  it('is shown by config show, with where it came from', async () => {
    const shown = await runCli(['config', 'show', '--json', '-f', fixture('ec2userkeyd.conf')], {AWS_EC2_METADATA_DISABLED: 'false', AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url})
    assert.equal(shown.code, 0, shown.stderr)
    assert.deepEqual(JSON.parse(shown.stdout).region, {region: 'cn-north-1', partition: 'aws-cn', source: 'imds'})
    const human = await runCli(['config', 'show', '-f', fixture('ec2userkeyd.conf')], {AWS_REGION: 'ap-south-1'})
    assert.match(human.stdout, /AWS region ap-south-1 \(partition aws; from AWS_REGION\)/)
  })

  describe('in serve', () => {
    let double: AwsDouble
    before(async function () {
      if (!isRoot) return this.skip() // playing another user needs root
      // The demo account as it would be in China: every ARN in the aws-cn partition
      const text = readFileSync(fixture('account.json'), 'utf8').replaceAll('arn:aws:', 'arn:aws-cn:')
      double = await startAwsDouble({snapshot: parseAccountSnapshot(text, 'account-cn.json'), instanceRole: 'analytics-host'})
    })
    after(() => double?.stop())

    it("signs for the instance's region from its IMDS and builds ARNs in the account's partition", async () => {
      const port = await freePort()
      const env = childEnv(double)
      delete env.AWS_REGION
      const serve = spawnServe(['--no-iptables', '--config', fixture('ec2userkeyd.conf'), '--port', String(port), '--upstream', imds.url], {...env, EC2USERKEYD_DATA_DIR: '/nonexistent'})
      try {
        await serve.waitForLog(/"msg":"listening"/)
        assert.match(serve.log(), /"msg":"region","region":"cn-north-1","partition":"aws-cn","source":"imds"/)
        const reply = await asUser(NOBODY, port)
        assert.equal(reply.credentials.status, 200, reply.credentials.body)
        const sts = double.calls.filter((c) => c.service === 'sts')
        assert.ok(sts.length > 0 && sts.every((c) => c.region === 'cn-north-1'), JSON.stringify(sts.map((c) => c.region)))
        assert.ok(double.assumeRoleLog.every((r) => r.roleArn.startsWith('arn:aws-cn:iam::')), JSON.stringify(double.assumeRoleLog.map((r) => r.roleArn)))
      } finally {
        serve.child.kill('SIGKILL')
      }
    })
  })
})
