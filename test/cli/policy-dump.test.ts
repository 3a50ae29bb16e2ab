import assert from 'node:assert/strict'
import {readFileSync, writeFileSync, mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, repoRoot, runCli} from '../support/cli.js'

const account = fixture('account.json')
const config = fixture('ec2userkeyd.conf')

describe('ec2userkeyd policy dump', () => {
  let double: AwsDouble

  beforeEach(async () => {
    double = await startAwsDouble({snapshot: await loadAccountSnapshot(account), instanceRole: 'analytics-host', pageSize: 1})
  })
  afterEach(async () => {
    await double.stop()
  })

  it('runs the README quick start as written', async () => {
    // Given the quick start's command, after `npm ci &&`
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
    const command = /npm ci && \.\/bin\/run\.js (.*)/.exec(readme)?.[1]
    assert.ok(command, 'README quick start has an `npm ci && ./bin/run.js ...` line')
    // When it runs
    const result = await runCli(command.split(' '))
    // Then it lists alice's policies, the table first
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /IAM user alice arn:aws:iam::123456789012:user\/alice/)
    assert.match(result.stdout, /user-inline\s+│ home-prefix/)
    assert.match(result.stdout, /group-managed/)
  })

  it('gives the same policies live (through the AWS test double) and offline for the same snapshot', async () => {
    for (const user of ['alice', 'bob', 'carol', 'dave', 'erin']) {
      // Given the same account offline and behind the test double (one item per page)
      // When both are dumped as JSON
      const offline = await runCli(['policy', 'dump', user, '--json', '-f', config, '--account', account])
      const live = await runCli(['policy', 'dump', user, '--json', '-f', config], double.env())
      // Then they agree exactly
      assert.equal(offline.code, 0, offline.stdout + offline.stderr)
      assert.equal(live.code, 0, live.stdout + live.stderr)
      assert.deepEqual(JSON.parse(live.stdout), JSON.parse(offline.stdout), `dump of ${user}`)
    }
  })

  it('prints exactly the documented JSON shape', async () => {
    const result = await runCli(['policy', 'dump', 'bob', '--json', '-f', config, '--account', account])
    const dump = JSON.parse(result.stdout)
    assert.deepEqual(Object.keys(dump), ['user', 'policies', 'permissionsBoundary'])
    assert.deepEqual(Object.keys(dump.user), ['name', 'arn', 'id'])
    assert.equal(dump.user.name, 'bob')
    for (const p of dump.policies) {
      assert.ok(['user-inline', 'user-managed', 'group-inline', 'group-managed'].includes(p.source))
      const expected = ['source', 'name']
      if (p.source.endsWith('managed')) expected.push('arn')
      if (p.source.startsWith('group')) expected.push('group')
      if (p.source.endsWith('managed')) expected.push('versionId')
      expected.push('document')
      assert.deepEqual(Object.keys(p), expected, `keys of ${p.source} ${p.name}`)
      assert.ok(p.document.Statement, 'document is an object with statements')
    }
    assert.deepEqual(Object.keys(dump.permissionsBoundary), ['arn', 'versionId', 'document'])
    assert.equal(dump.permissionsBoundary.arn, 'arn:aws:iam::123456789012:policy/developer-boundary')
  })

  it('shows managed policies at their default version', async () => {
    const result = await runCli(['policy', 'dump', 'alice', '--json', '-f', config, '--account', account])
    const shared = JSON.parse(result.stdout).policies.find((p: {name: string}) => p.name === 'acme-shared-read')
    const snapshot = await loadAccountSnapshot(account)
    const policy = snapshot.policies.get(shared.arn)!
    assert.equal(shared.versionId, policy.defaultVersionId)
    assert.deepEqual(shared.document, policy.versions.get(policy.defaultVersionId)!.document)
    assert.ok(policy.versions.size > 1, 'the fixture has more than one version to choose from')
  })

  it('finds the IAM user through iam_name_pattern', async () => {
    // Given a config whose pattern maps local user "ice" to IAM user "alice"
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-'))
    const conf = join(dir, 'pattern.conf')
    writeFileSync(conf, '[general]\ninstance_role = analytics-host\n[method_RestrictedInstanceRole]\niam_name_pattern: al{username}\n')
    // When "ice" is dumped
    const result = await runCli(['policy', 'dump', 'ice', '--json', '-f', conf, '--account', account])
    // Then it is alice's IAM user
    assert.equal(result.code, 0, result.stderr)
    assert.equal(JSON.parse(result.stdout).user.name, 'alice')
  })

  it('exits with the not-found code and one line for an unknown IAM user', async () => {
    const human = await runCli(['policy', 'dump', 'nobody', '-f', config, '--account', account])
    assert.equal(human.code, 3)
    assert.equal(human.stdout, '')
    assert.equal(human.stderr.trim().split('\n').length, 1, human.stderr)
    assert.match(human.stderr, /IAM user 'nobody' not found \(local user 'nobody', iam_name_pattern '\{username\}'\)/)

    const json = await runCli(['policy', 'dump', 'nobody', '--json', '-f', config], double.env())
    assert.equal(json.code, 3)
    assert.equal(JSON.parse(json.stdout).error.code, 'notFound')
  })

  it('rejects a malformed account file with one line naming the file, and no stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-'))
    const bad = join(dir, 'account.json')
    writeFileSync(bad, '{"UserDetailList": [{"UserName": "alice"')
    const result = await runCli(['policy', 'dump', 'alice', '-f', config, '--account', bad])
    assert.equal(result.code, 2)
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr)
    assert.ok(result.stderr.includes(bad), 'names the file')
    assert.match(result.stderr, /not valid JSON/)
    assert.doesNotMatch(result.stderr, /\n\s+at /)

    const debug = await runCli(['policy', 'dump', 'alice', '-f', config, '--account', bad, '--debug'])
    assert.match(debug.stderr, /\n\s+at /, '--debug shows the stack')
  })

  it('rejects an account file that does not exist', async () => {
    const result = await runCli(['policy', 'dump', 'alice', '-f', config, '--account', '/nonexistent/account.json'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /account file \/nonexistent\/account.json does not exist/)
  })

  it('succeeds when IAM throttles a call and the retry gets through', async () => {
    // Given IAM throttles the next two GetUser calls
    double.inject({action: 'GetUser', code: 'Throttling', times: 2})
    // When alice is dumped live
    const result = await runCli(['policy', 'dump', 'alice', '--json', '-f', config], double.env())
    // Then the SDK's retry absorbed it
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.equal(JSON.parse(result.stdout).user.name, 'alice')
    assert.equal(double.calls.filter((c) => c.action === 'GetUser').length, 3)
  })

  it('reports AWS throttling that outlasts the retries as unavailable (exit 5)', async () => {
    double.inject({action: 'GetUser', code: 'Throttling', times: 50})
    const result = await runCli(['policy', 'dump', 'alice', '-f', config], {...double.env()})
    assert.equal(result.code, 5, result.stderr)
    assert.match(result.stderr, /throttled iam:GetUser alice/)
  })

  it('reports AccessDenied as exit 4 naming the call', async () => {
    double.inject({action: 'ListGroupsForUser', code: 'AccessDenied', times: 10})
    const result = await runCli(['policy', 'dump', 'alice', '-f', config], double.env())
    assert.equal(result.code, 4, result.stderr)
    assert.match(result.stderr, /iam:ListGroupsForUser alice/)
  })
})
