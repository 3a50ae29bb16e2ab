// Human output of `resolve`.
import type {ResolveResult} from '../stages/resolve.js'
import {renderTable, style} from './text.js'

const SOURCE: Record<ResolveResult['chainSource'], string> = {
  user: 'per_user_credential_methods',
  uid: 'per_uid_credential_methods',
  default: 'credential_methods (the default chain)',
}

const OUTCOME = {issue: style.good('issue'), skip: style.dim('skip'), error: style.bad('error')}

export function renderResolve(r: ResolveResult, rule?: string): string {
  const out = [
    `${style.heading('User')} ${style.name(r.username)} ${style.dim(`(uid ${r.uid})`)}`,
    `${style.heading('Chain')} ${r.chain.join(' → ')} ${style.dim(`from ${SOURCE[r.chainSource]}${rule ? ` (${rule})` : ''}`)}`,
    renderTable(
      ['#', 'method', 'outcome', 'reason'],
      r.steps.map((s, i) => [
        i + 1,
        s.method,
        OUTCOME[s.outcome],
        wrap(s.reason + (s.roleArn ? `\n${style.dim(s.roleArn)}` : '') + (s.warnings ?? []).map((w) => `\n${style.warn('!')} ${w}`).join('')),
      ]),
    ),
  ]
  out.push(
    r.result
      ? `${style.heading('Result:')} ${style.good(r.result.method)} ${style.dim(r.result.roleArn)}`
      : `${style.heading('Result:')} ${style.bad('no credentials')}${r.steps.some((s) => s.outcome === 'error') ? ' (the chain stops at the first error)' : ''}`,
  )
  if (r.issued)
    out.push(
      'error' in r.issued
        ? `${style.heading('Issue:')} ${style.bad(r.issued.error)}`
        : `${style.heading('Issued:')} ${r.issued.accessKeyId} ${style.dim(r.issued.arn)} expires ${r.issued.expiration}`,
    )
  return out.join('\n')
}

/** Long reasons wrap at word boundaries so the table stays readable. */
function wrap(text: string, width = 72): string {
  return text
    .split('\n')
    .map((line) => {
      const lines: string[] = []
      let current = ''
      for (const word of line.split(' ')) {
        if (current && (current + ' ' + word).length > width) {
          lines.push(current)
          current = word
        } else current = current ? `${current} ${word}` : word
      }
      lines.push(current)
      return lines.join('\n')
    })
    .join('\n')
}
