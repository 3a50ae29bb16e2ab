#!/usr/bin/env -S node --import tsx --no-warnings
// Runs the TypeScript sources directly (no build step), for development.
import {execute} from '@oclif/core'

import {fromPythonInvocation} from '../src/cli/python-invocation.ts'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
await execute({development: true, dir: import.meta.url, args: fromPythonInvocation(process.argv.slice(2))})
