import assert from 'node:assert/strict'

import {AccountSnapshot, loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture, runCli} from '../support/cli.js'

const account = fixture('account.json')
const config = fixture('ec2userkeyd.conf')
const OPS = [
  'create-role',
  'update-trust',
  'attach-policy',
  'detach-policy',
  'put-inline',
  'delete-inline',
  'set-boundary',
  'delete-boundary',
  'tag-role',
]
const WRITES = /^(Create|Update|Delete|Put|Attach|Detach|Tag|Untag)\w*Role/

describe('ec2userkeyd roles sync', () => {
  let snapshot: AccountSnapshot
  let double: AwsDouble
  const writes = () => double.calls.filter((c) => WRITES.test(c.action))

  beforeEach(async () => {
    snapshot = await loadAccountSnapshot(account)
    // State alice's role explicitly: ours, holding less than her IAM user.
    snapshot.roles.get('user-alice')!.tags = {'ec2userkeyd:managed': 'true'}
    double = await startAwsDouble({snapshot, instanceRole: 'analytics-host'})
  })
  afterEach(async () => {
    await double.stop()
  })

  it('refuses to apply with --account, in one line, before reading anything', async () => {
    const human = await runCli(['roles', 'sync', 'bob', '-f', config, '--account', account])
    assert.equal(human.code, 2)
    assert.equal(human.stdout, '')
    assert.equal(human.stderr.trim().split('\n').length, 1, human.stderr)
    assert.match(human.stderr, /with --account, roles sync can only plan: add --dry-run/)

    const json = await runCli(['roles', 'sync', 'bob', '--json', '-f', config, '--account', account])
    assert.equal(json.code, 2)
    assert.equal(JSON.parse(json.stdout).error.code, 'usage')
  })

  it('is a usage error without users, --all or --group', async () => {
    const result = await runCli(['roles', 'sync', '-f', config, '--account', account, '--dry-run'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /name the users whose roles to sync, or use --all or --group NAME/)
  })

  it('prints exactly the documented JSON shape for a plan', async () => {
    // When bob and erin are planned offline
    const result = await runCli([
      'roles',
      'sync',
      'bob',
      'erin',
      '--dry-run',
      '--json',
      '-f',
      config,
      '--account',
      account,
    ])
    // Then the JSON is {dryRun, roles: [{user, iamUser, role, roleArn, exists, changes: [{op, target}], error}]}
    assert.equal(result.code, 0, result.stderr)
    const out = JSON.parse(result.stdout)
    assert.deepEqual(Object.keys(out), ['dryRun', 'roles'])
    assert.equal(out.dryRun, true)
    assert.deepEqual(
      out.roles.map((r: {user: string}) => r.user),
      ['bob', 'erin'],
    )
    for (const r of out.roles) {
      assert.deepEqual(Object.keys(r), ['user', 'iamUser', 'role', 'roleArn', 'exists', 'changes', 'error'])
      assert.equal(r.error, null)
      assert.equal(r.exists, false)
      for (const c of r.changes) {
        assert.deepEqual(Object.keys(c), ['op', 'target'])
        assert.ok(OPS.includes(c.op), c.op)
        assert.equal(typeof c.target, 'string')
      }
    }
    assert.deepEqual(out.roles[1], {
      user: 'erin',
      iamUser: 'erin',
      role: 'user-erin',
      roleArn: 'arn:aws:iam::123456789012:role/user-erin',
      exists: false,
      changes: [
        {op: 'create-role', target: 'user-erin'},
        {op: 'tag-role', target: 'ec2userkeyd:managed=true'},
        {op: 'tag-role', target: 'ec2userkeyd:iam-user=erin'},
      ],
      error: null,
    })
  })

  it('plans the members of a group offline', async () => {
    // (--adopt: whether the demo account's user-alice carries our tag is beside the point here)
    const result = await runCli([
      'roles',
      'sync',
      '--group',
      'data-science',
      '--dry-run',
      '--adopt',
      '--json',
      '-f',
      config,
      '--account',
      account,
    ])
    assert.equal(result.code, 0, result.stderr)
    assert.deepEqual(
      JSON.parse(result.stdout).roles.map((r: {user: string}) => r.user),
      ['alice', 'bob'],
    )
  })

  it('exits with the not-found code for a group that does not exist', async () => {
    const result = await runCli([
      'roles',
      'sync',
      '--group',
      'nope',
      '--dry-run',
      '-f',
      config,
      '--account',
      account,
    ])
    assert.equal(result.code, 3)
    assert.match(result.stderr, /IAM group 'nope' not found/)
  })

  it('makes no write call with --dry-run live', async () => {
    const result = await runCli(['roles', 'sync', '--all', '--dry-run', '--json', '-f', config], double.env())
    assert.equal(result.code, 0, result.stdout + result.stderr)
    assert.ok(JSON.parse(result.stdout).roles.some((r: {changes: unknown[]}) => r.changes.length > 0))
    assert.deepEqual(writes(), [])
    assert.equal(snapshot.roles.has('user-bob'), false)
  })

  it('syncs every role live, and a second run changes nothing', async () => {
    // When every user is synced
    const first = await runCli(['roles', 'sync', '--all', '--json', '-f', config], double.env())
    // Then each role is created or updated
    assert.equal(first.code, 0, first.stdout + first.stderr)
    const roles = JSON.parse(first.stdout).roles as Array<{
      user: string
      changes: {op: string}[]
      error: null
    }>
    assert.deepEqual(
      roles.map((r) => [r.user, r.changes[0]?.op]),
      [
        ['alice', 'delete-inline'],
        ['bob', 'create-role'],
        ['carol', 'create-role'],
        ['dave', 'create-role'],
        ['erin', 'create-role'],
      ],
    )
    assert.equal(
      JSON.stringify(snapshot.roles.get('user-alice')!.inline.get('user.home-prefix')).includes(
        'acme-analytics-home/alice/*',
      ),
      true,
    )
    double.reset()
    // When run again
    const second = await runCli(['roles', 'sync', '--all', '--json', '-f', config], double.env())
    // Then nothing changes and nothing is written
    assert.equal(second.code, 0, second.stdout + second.stderr)
    assert.deepEqual(
      JSON.parse(second.stdout).roles.map((r: {changes: unknown[]}) => r.changes),
      [[], [], [], [], []],
    )
    assert.deepEqual(writes(), [])
  })

  it('prints every user and exits non-zero when one failed', async () => {
    // Given a role user-carol that is not ours
    snapshot.roles.set('user-carol', {
      ...structuredClone(snapshot.roles.get('unrelated-lambda-role')!),
      name: 'user-carol',
      arn: 'arn:aws:iam::123456789012:role/user-carol',
    })
    // When bob, carol and erin are synced
    const json = await runCli(['roles', 'sync', 'bob', 'carol', 'erin', '--json', '-f', config], double.env())
    // Then the full result is printed, carol's entry has the error, the others are done, and the exit is 1
    assert.equal(json.code, 1, json.stderr)
    const roles = JSON.parse(json.stdout).roles
    assert.deepEqual(
      roles.map((r: {user: string; error: string | null}) => [r.user, r.error === null]),
      [
        ['bob', true],
        ['carol', false],
        ['erin', true],
      ],
    )
    assert.match(roles[1].error, /not managed by ec2userkeyd/)
    assert.ok(snapshot.roles.has('user-bob') && snapshot.roles.has('user-erin'))
    assert.equal(snapshot.roles.get('user-carol')!.inline.size, 0, 'the foreign role is untouched')
  })

  it('exits with the not-found code when the only failure is a missing IAM user, after the table', async () => {
    const result = await runCli([
      'roles',
      'sync',
      'nobody',
      'erin',
      '--dry-run',
      '-f',
      config,
      '--account',
      account,
    ])
    assert.equal(result.code, 3, result.stderr)
    assert.match(result.stdout, /nobody\s+│ user-nobody/)
    assert.match(result.stdout, /no IAM user 'nobody'/)
  })

  it('shows a table of users and their changes, one per line', async () => {
    const result = await runCli([
      'roles',
      'sync',
      'bob',
      'alice',
      '--dry-run',
      '--adopt',
      '-f',
      config,
      '--account',
      account,
    ])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /│ user\s+│ role\s+│ changes\s+│ error\s+│/)
    assert.match(result.stdout, /│ bob\s+│ user-bob \(new\)\s+│ create-role user-bob\s+│/)
    assert.match(
      result.stdout,
      /│\s+│\s+│ set-boundary arn:aws:iam::123456789012:policy\/developer-boundary\s+│/,
    )
    assert.match(result.stdout, /│ alice\s+│ user-alice\s+│ delete-inline home-prefix\s+│/)
    assert.match(result.stdout, /│\s+│\s+│ put-inline user\.home-prefix\s+│/)
    assert.match(result.stdout, /2 roles would change, 0 in sync \(dry run: nothing was changed\)/)
  })
})
