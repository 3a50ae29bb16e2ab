// Human output of `intercept install | remove | status`.
import type {InstallResult, StatusResult} from '../daemon/intercept.js'
import type {RemovedFamily} from '../host/iptables.js'
import {renderTable, style} from './text.js'

export function renderInstall(r: InstallResult): string {
  const out = r.families.map(
    (f) =>
      `${style.good('installed')} IPv${f.family} (${f.binary}): ${f.redirect ? 'redirected to the daemon' : 'refused (no nat table)'}` +
      `${f.forwardGuard ? ', forwarded connections refused' : ', forwarded connections passed (forwarded_imds = passthrough)'}` +
      (f.staleRulesReplaced || f.duplicateJumpsRemoved ? style.dim(` (replaced ${f.staleRulesReplaced} rules, ${f.duplicateJumpsRemoved} jumps of an earlier run)`) : ''),
  )
  if ('deleted' in r.connections) out.push(style.dim(`connections to IMDS opened before, cut: ${Object.values(r.connections.deleted).reduce((a, b) => a + (b ?? 0), 0)}`))
  else out.push(style.warn(`connections opened before are not cut: ${r.connections.skipped}`))
  for (const note of r.notes) out.push(`${style.warn('!')} ${note}`)
  return out.join('\n')
}

export function renderRemove(r: {removed: RemovedFamily[]}): string {
  if (r.removed.length === 0) return 'nothing to remove: no rule or chain of ec2userkeyd is installed'
  return r.removed.map((f) => `removed IPv${f.family} (${f.binary}): ${f.jumpsRemoved} jumps, ${f.chainsRemoved} chains`).join('\n')
}

export function renderStatus(r: StatusResult): string {
  const out: string[] = []
  for (const f of r.families) {
    out.push(`${style.heading(`IPv${f.family}`)} ${style.dim(f.binary)} ${f.safe ? style.good('protected') : style.bad('EXPOSED')}`)
    if (f.unavailable) out.push(`  ${style.warn('!')} ${f.binary} cannot run: ${f.unavailable}`)
    else
      out.push(
        renderTable(
          ['table', 'chain', 'from', 'rules', 'first', 'problem'],
          f.chains.map((c) => [c.table, c.chain, c.parent, c.rulesInPlace ? 'in place' : 'missing', c.jumps === 0 ? 'no jump' : c.first ? 'yes' : `after ${c.ahead.length}`, c.problem ?? '']),
        ),
      )
    for (const c of f.chains.filter((c) => c.ahead.length > 0 && c.problem === null))
      out.push(style.dim(`  ahead of the jump to ${c.chain} in ${c.parent}, none letting a connection to IMDS past: ${c.ahead.map((r) => `-A ${c.parent} ${r}`).join('; ')}`))
    out.push(`  listener ${f.listener.address}: ${f.listener.answers ? style.good('answers') : style.dim('nothing listens')}${f.listener.owner === null ? '' : ` (uid ${f.listener.owner})`}`)
    out.push(`  a non-root request meets: ${f.safe || f.meets.startsWith('the daemon') ? f.meets : style.bad(f.meets)}`)
    out.push(`  a forwarded one (containers) meets: ${f.forwarded}`)
  }
  out.push(r.protected ? style.good('No non-root metadata request reaches the real IMDS.') : style.bad('Some non-root metadata requests reach the real IMDS: see above.'))
  return out.join('\n')
}
