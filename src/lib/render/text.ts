// Terminal rendering primitives: the only place that imports chalk and table. chalk honours
// FORCE_COLOR and non-TTY output but not NO_COLOR (https://no-color.org: set and not empty, no
// colour), which is set here; FORCE_COLOR wins over it, as in Node.js itself.
import chalk, {chalkStderr} from 'chalk'
import {getBorderCharacters, table} from 'table'

if ((process.env.NO_COLOR ?? '') !== '' && process.env.FORCE_COLOR === undefined) chalk.level = chalkStderr.level = 0

export const style = {
  heading: (s: string) => chalk.bold(s),
  dim: (s: string) => chalk.dim(s),
  good: (s: string) => chalk.green(s),
  warn: (s: string) => chalk.yellow(s),
  bad: (s: string) => chalk.red(s),
  name: (s: string) => chalk.cyan(s),
}

/** A table with a bold header row and light borders. */
export function renderTable(header: string[], rows: Array<Array<string | number>>): string {
  const data = [header.map((h) => chalk.bold(h)), ...rows.map((r) => r.map(String))]
  return table(data, {
    border: getBorderCharacters('norc'),
    drawHorizontalLine: (i, size) => i === 0 || i === 1 || i === size,
  }).trimEnd()
}

/** The single error line printed on stderr. */
export function renderErrorLine(message: string, suggestion?: string): string {
  return `${chalkStderr.red.bold('Error:')} ${message}${suggestion ? chalkStderr.dim(` (${suggestion})`) : ''}`
}

export function renderWarningLine(message: string): string {
  return `${chalkStderr.yellow.bold('Warning:')} ${message}`
}

export function indent(text: string, by = 2): string {
  const pad = ' '.repeat(by)
  return text
    .split('\n')
    .map((l) => pad + l)
    .join('\n')
}
