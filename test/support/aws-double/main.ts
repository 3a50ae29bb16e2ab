// Runs the AWS test double as a process of its own, for end-to-end tests:
//   node --import tsx test/support/aws-double/main.ts --account FILE --instance-role NAME [--port N] [--latency MS] [--page-size N]
// prints one JSON line {url, env, unset} on stdout once listening, and serves until SIGTERM
// or SIGINT. `unset` lists the variables the child must not inherit (see AwsDoubleEnv).
// Logs and failure injection are reached over HTTP at /__double/ (see control.ts).
import {parseArgs} from 'node:util'

import {loadAccountSnapshot} from '../../../src/lib/aws/snapshot.js'
import {startAwsDouble, UNSET_ENV} from './index.js'

function fail(message: string): never {
  process.stderr.write(`aws-double: ${message}\n`)
  process.exit(2)
}

const {values} = parseArgs({
  options: {
    account: {type: 'string'},
    'instance-role': {type: 'string'},
    port: {type: 'string'},
    latency: {type: 'string'},
    'page-size': {type: 'string'},
  },
  strict: true,
})

const number = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v)) fail(`--${name} must be a whole number, not '${v}'`)
  return Number(v)
}

if (!values.account || !values['instance-role'])
  fail('usage: main.ts --account FILE --instance-role NAME [--port N] [--latency MS] [--page-size N]')

const options = {
  instanceRole: values['instance-role'],
  port: number('port', values.port),
  latencyMs: number('latency', values.latency),
  pageSize: number('page-size', values['page-size']),
}
const double = await loadAccountSnapshot(values.account)
  .then((snapshot) => startAwsDouble({...options, snapshot}))
  .catch((error: unknown) => fail((error as Error).message))

process.stdout.write(JSON.stringify({url: double.url, env: double.env(), unset: UNSET_ENV}) + '\n')

for (const signal of ['SIGTERM', 'SIGINT'] as const)
  process.once(signal, () => {
    double.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  })
