// The Python tool was started as `ec2userkeyd [-f FILE] [-d] [-v] daemon` (click: global options
// before the command; -d DEBUG logging, -v INFO logging to the console). Admins who switch keep
// their unit files: that form is rewritten to `serve` with the equivalent flags. Anything that
// is not exactly that form is left alone for oclif to parse.
export function fromPythonInvocation(argv: string[]): string[] {
  const flags: string[] = []
  let level: string | undefined
  let verbose = false
  let i = 0
  for (; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === 'daemon') break
    if ((arg === '-f' || arg === '--config') && i + 1 < argv.length) flags.push('--config', argv[++i])
    else if (arg.startsWith('--config=')) flags.push('--config', arg.slice('--config='.length))
    else if (arg.startsWith('-f') && arg.length > 2) flags.push('--config', arg.slice(2))
    else if (arg === '-d' || arg === '--debug') level = 'DEBUG'
    else if (arg === '-v' || arg === '--verbose') verbose = true
    else if (arg === '-dv' || arg === '-vd') {
      level = 'DEBUG'
      verbose = true
    } else return argv
  }
  if (i >= argv.length) return argv
  // As in the Python tool, -v means INFO on the console, and -d wins for the level.
  if (verbose) flags.push('--log-console')
  if (level ?? verbose) flags.push('--log-level', level ?? 'INFO')
  return ['serve', ...argv.slice(i + 1), ...flags]
}
