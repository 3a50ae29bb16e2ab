#!/usr/bin/env node
// The two modules imported first are tiny: a SIGHUP to `serve` is held before the CLI framework
// and the AWS SDK load (see early-sighup.ts), so they are imported after it.
import {holdEarlySighup} from '../dist/lib/daemon/early-sighup.js'
import {fromPythonInvocation} from '../dist/cli/python-invocation.js'

const args = fromPythonInvocation(process.argv.slice(2))
// `serve` must survive a SIGHUP (systemctl reload) while it loads.
if (args[0] === 'serve') holdEarlySighup()

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url, args})
