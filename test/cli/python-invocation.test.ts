import assert from 'node:assert/strict'

import {fromPythonInvocation} from '../../src/cli/python-invocation.js'
import {runCli} from '../support/cli.js'

describe("the Python tool's invocation", () => {
  const cases: Array<[string[], string[]]> = [
    [['daemon'], ['serve']],
    [['-f', '/etc/x.conf', 'daemon'], ['serve', '--config', '/etc/x.conf']],
    [['--config=/etc/x.conf', '-d', 'daemon'], ['serve', '--config', '/etc/x.conf', '--log-level', 'DEBUG']],
    [['-v', 'daemon'], ['serve', '--log-console', '--log-level', 'INFO']],
    [['-d', '-v', '-f', 'a.conf', 'daemon'], ['serve', '--config', 'a.conf', '--log-console', '--log-level', 'DEBUG']],
    [['-dv', 'daemon'], ['serve', '--log-console', '--log-level', 'DEBUG']],
  ]
  for (const [argv, expected] of cases)
    it(`runs \`${argv.join(' ')}\` as \`${expected.join(' ')}\``, () => assert.deepEqual(fromPythonInvocation(argv), expected))

  it('leaves every other command line alone', () => {
    for (const argv of [['serve'], ['policy', 'dump', 'daemon'], ['resolve', '--user', 'daemon'], ['-x', 'daemon'], ['-f'], []])
      assert.deepEqual(fromPythonInvocation(argv), argv)
  })

  it('reaches serve from the command line as the Python tool was run', async () => {
    // Given a config file that does not exist, `-f FILE daemon` fails as serve would, naming it
    const result = await runCli(['-f', '/nonexistent/ec2userkeyd.conf', '-v', 'daemon'])
    assert.equal(result.code, 2, result.stderr)
    assert.match(result.stderr, /\/nonexistent\/ec2userkeyd\.conf/)
  })
})
