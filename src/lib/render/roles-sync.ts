// Human output of `roles sync`: one row per user (its role, the changes one per line, the
// error), a summary line, and the progress bar drawn on a terminal while users are synced.
import {getBorderCharacters, table} from 'table'

import type {RoleSyncResult} from '../roles/sync.js'
import {renderWarningLine, style} from './text.js'

export function renderRolesSync(result: RoleSyncResult): string {
  if (result.roles.length === 0) return style.dim('No users selected: nothing to sync.')
  const longest = (lines: string[], header: string, max: number) =>
    Math.min(max, Math.max(header.length, ...lines.map((l) => l.length)))
  const changesWidth = longest(
    result.roles.flatMap((r) => r.changes.map((c) => `${c.op} ${c.target}`)),
    'in sync',
    72,
  )
  const errorWidth = longest(
    result.roles.flatMap((r) => (r.error ? [r.error] : [])),
    'error',
    48,
  )
  const rows = result.roles.map((r) => [
    r.user,
    r.role + (r.exists ? '' : style.dim(' (new)')),
    r.changes.length > 0
      ? r.changes.map((c) => `${c.op} ${c.target}`).join('\n')
      : r.error
        ? ''
        : style.dim('in sync'),
    r.error ? style.bad(r.error) : '',
  ])
  const grid = table([['user', 'role', 'changes', 'error'].map(style.heading), ...rows], {
    border: getBorderCharacters('norc'),
    drawHorizontalLine: (i, size) => i <= 1 || i === size,
    columns: {2: {width: changesWidth, wrapWord: true}, 3: {width: errorWidth, wrapWord: true}},
  }).trimEnd()
  return [grid, summary(result)].join('\n')
}

function summary(result: RoleSyncResult): string {
  const failed = result.roles.filter((r) => r.error !== null).length
  const changed = result.roles.filter((r) => r.error === null && r.changes.length > 0).length
  const inSync = result.roles.length - failed - changed
  const roles = (n: number) => `${n} role${n === 1 ? '' : 's'}`
  const parts = [
    result.dryRun ? `${roles(changed)} would change` : `${roles(changed)} changed`,
    `${inSync} in sync`,
    ...(failed > 0 ? [style.bad(`${failed} failed`)] : []),
  ]
  return `${parts.join(', ')}${result.dryRun ? style.dim(' (dry run: nothing was changed)') : ''}`
}

export function renderRoleSyncWarning(user: string, message: string): string {
  return renderWarningLine(`${user}: ${message}`)
}

/** One frame of the progress bar, drawn over the previous one (`\r`). */
export function renderProgress(done: number, total: number, width = 30): string {
  const filled = total === 0 ? width : Math.round((width * done) / total)
  return `\r${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${done}/${total} users`
}

/** Erases the progress bar's line. */
export const clearProgress = '\r\u001b[2K'
