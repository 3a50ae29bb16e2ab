#!/usr/bin/env node
import {execute} from '@oclif/core'

import {fromPythonInvocation} from '../dist/cli/python-invocation.js'

// The AWS SDK warns on every run under Node 20 that its releases from January 2027 on need
// Node 22. That is for us to act on (the lockfile pins the SDK), not for every admin's terminal
// or the daemon's log. An explicit setting in the environment still wins.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

await execute({dir: import.meta.url, args: fromPythonInvocation(process.argv.slice(2))})
