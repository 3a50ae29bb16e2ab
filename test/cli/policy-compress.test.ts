import assert from 'node:assert/strict'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, runCli} from '../support/cli.js'

const account = fixture('account.json')
const config = fixture('ec2userkeyd.conf')
const offline = ['-f', config, '--account', account, '--instance-role', 'analytics-host']

describe('ec2userkeyd policy compress', () => {
  it('prints the documented JSON shape, the same live (through the AWS test double) as offline', async () => {
    const double: AwsDouble = await startAwsDouble({snapshot: await loadAccountSnapshot(account), instanceRole: 'analytics-host'})
    try {
      const here = await runCli(['policy', 'compress', 'bob', '--compress', '--json', ...offline])
      const live = await runCli(['policy', 'compress', 'bob', '--compress', '--json', '-f', config], double.env())
      assert.equal(here.code, 0, here.stdout + here.stderr)
      assert.equal(live.code, 0, live.stdout + live.stderr)
      const result = JSON.parse(here.stdout)
      assert.deepEqual(Object.keys(result), ['user', 'iamUser', 'instanceRole', 'policy', 'policyArns', 'size', 'stages', 'warnings', 'assumableRoles'])
      assert.deepEqual(
        result.stages.map((s: {name: string}) => s.name),
        ['naive', 'variables', 'boundary', 'chaining', 'prune', 'merge', 'wildcards', 'policy-arns', 'minify'],
      )
      assert.deepEqual(JSON.parse(live.stdout), result)
    } finally {
      await double.stop()
    }
  })

  it('exits 6, after printing it whole, when the session policy does not fit', async () => {
    // dave's four AWS managed policies are far over the limit without compression
    const result = await runCli(['policy', 'compress', 'dave', '--no-compress', '--json', ...offline])
    assert.equal(result.code, 6, result.stderr)
    const printed = JSON.parse(result.stdout)
    assert.equal(printed.size.fits, false)
    assert.equal(printed.policy.length + printed.policyArns.join('').length, printed.size.compressed)
    assert.match(printed.warnings.join('\n'), /over AWS's limit of 2048/)
    const human = await runCli(['policy', 'compress', 'dave', '--no-compress', ...offline])
    assert.equal(human.code, 6)
    assert.match(human.stdout, /does NOT fit/)
  })

  it("shows the compiler's warnings", async () => {
    const result = await runCli(['policy', 'compress', 'dave', '--compress', '--no-policy-arns', ...offline])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /Warnings\n! left out \d+ Allow statements/)
  })
})
