// serve's interception needs conntrack's original tuples (ctnetlink): without them a DNAT'd client
// whose source port NAT changed could be taken for another socket's owner. A daemon asked to
// intercept refuses to start where ctnetlink cannot be asked; here, as nobody (EPERM).
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {pathToFileURL} from 'node:url'

import {repoRoot} from '../support/cli.js'

const SCRIPT = `
const {startDaemon} = await import(process.argv[1])
const {parseConfig} = await import(process.argv[2])
const {createLogger} = await import(process.argv[3])
const {createMetrics} = await import(process.argv[4])
const base = {
  config: parseConfig('[general]\\n', 'test.conf'),
  host: '127.0.0.1',
  port: 0,
  upstream: 'http://127.0.0.1:9',
  instanceRole: 'arn:aws:iam::123456789012:role/analytics-host',
  env: {},
  logger: createLogger({level: 'ERROR', sinks: []}),
  metrics: createMetrics(),
}
try {
  await startDaemon({...base, requireConntrack: true})
  console.log('started')
} catch (error) {
  console.log(JSON.stringify({kind: error.kind, message: error.message}))
}
process.exit(0)
`

describe('serve without conntrack (ctnetlink)', () => {
  it('refuses to start with its interception, naming why and what to do', function () {
    this.timeout(60_000)
    if (process.getuid?.() !== 0) {
      console.log('      (skipped: needs root, to run the daemon as nobody)')
      return this.skip()
    }
    const module = (path: string) => pathToFileURL(`${repoRoot}/src/lib/${path}`).href
    const result = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        SCRIPT,
        module('daemon/daemon.ts'),
        module('config/load.ts'),
        module('daemon/log.ts'),
        module('daemon/metrics.ts'),
      ],
      {
        cwd: repoRoot,
        uid: 65534,
        gid: 65534,
        encoding: 'utf8',
        timeout: 50_000,
        env: {...process.env, HOME: '/nonexistent'},
      },
    )
    assert.equal(result.status, 0, result.stderr)
    const outcome = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {kind: string; message: string}
    assert.equal(outcome.kind, 'unavailable')
    assert.match(
      outcome.message,
      /^cannot intercept safely: conntrack cannot be asked through ctnetlink \(.*EPERM/,
    )
  })
})
