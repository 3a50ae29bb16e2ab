#!/usr/bin/env node
// The two modules imported first are tiny: a SIGHUP to `serve` is held before the CLI framework
// and the AWS SDK load (see early-sighup.ts), so they are imported after it.
import {holdEarlySighup} from '../dist/cli/early-sighup.js'
import {fromPythonInvocation} from '../dist/cli/python-invocation.js'

const args = fromPythonInvocation(process.argv.slice(2))
// `serve` must survive a SIGHUP (systemctl reload) while it loads.
if (args[0] === 'serve') holdEarlySighup()

// The AWS SDK warns on every run under Node 20 that its releases from January 2027 on need
// Node 22. That is for us to act on (the lockfile pins the SDK), not for every admin's terminal
// or the daemon's log. An explicit setting in the environment still wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url, args})
