// Human output of `policy dump`: a summary table, then each document.
import type {PolicyDump} from '../stages/dump.js'
import {statementsOf} from '../iam/document.js'
import {indent, renderTable, style} from './text.js'

export function renderPolicyDump(dump: PolicyDump): string {
  const rows = dump.policies.map((p) => [
    p.source,
    p.name + (p.versionId ? style.dim(` (${p.versionId})`) : ''),
    p.group ?? '',
    statementsOf(p.document).length,
    JSON.stringify(p.document).length,
  ])
  if (dump.permissionsBoundary) {
    const b = dump.permissionsBoundary
    rows.push(['boundary', b.arn.split('/').pop()! + style.dim(` (${b.versionId})`), '', statementsOf(b.document).length, JSON.stringify(b.document).length])
  }
  const out = [
    `${style.heading('IAM user')} ${style.name(dump.user.name)} ${style.dim(dump.user.arn)}`,
    rows.length > 0 ? renderTable(['source', 'name', 'group', 'statements', 'characters'], rows) : style.dim('No policies apply to this user.'),
  ]
  for (const p of dump.policies) {
    const title = [p.source, p.group ? `group ${p.group}` : '', p.arn ?? p.name].filter(Boolean).join(' · ')
    out.push('', style.heading(title), indent(JSON.stringify(p.document, null, 2)))
  }
  if (dump.permissionsBoundary) {
    out.push('', style.heading(`permissions boundary · ${dump.permissionsBoundary.arn}`), indent(JSON.stringify(dump.permissionsBoundary.document, null, 2)))
  }
  return out.join('\n')
}
