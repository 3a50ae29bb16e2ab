// Human output of `policy compress`.
import type {CompressResult} from '../stages/compress.js'
import {renderTable, style} from './text.js'

const STAGE_TITLES: Record<string, string> = {
  naive: 'naive (every statement as written)',
  variables: 'a. principal keys decided',
  boundary: 'b. permissions boundary folded in',
  chaining: 'c. role chaining denied',
  prune: 'd. pruned against the instance role',
  merge: 'e. statements merged',
  wildcards: 'f. actions collapsed to wildcards',
  'policy-arns': 'g. managed policies by ARN',
  minify: 'h. minified (final)',
}

export function renderCompress(r: CompressResult): string {
  const pct = (n: number) => `${((100 * n) / r.size.limit).toFixed(1)}%`
  const out = [
    `${style.heading('Session policy for')} ${style.name(r.user)} ${style.dim(`(IAM user ${r.iamUser}, instance role ${r.instanceRole})`)}`,
    renderTable(
      ['stage', 'characters', `of ${r.size.limit}`],
      r.stages.map((s) => [STAGE_TITLES[s.name] ?? s.name, s.chars, pct(s.chars)]),
    ),
  ]
  const verdict = r.size.fits ? style.good('fits') : style.bad('does NOT fit')
  out.push(`${r.size.compressed} of ${r.size.limit} characters: ${verdict} (naive: ${r.size.naive})`)
  const noPolicy =
    r.policyArns.length > 0 ? '(none: the policy ARNs below carry every permission)' : '(none: nothing of the user’s permissions remains within the instance role)'
  out.push('', style.heading('Policy'), r.policy ?? style.dim(noPolicy))
  if (r.policyArns.length > 0) out.push('', style.heading('Policy ARNs'), ...r.policyArns)
  out.push(
    '',
    `${style.heading('Roles the session may assume:')} ${r.assumableRoles.length > 0 ? r.assumableRoles.join(', ') : style.dim('none')}`,
  )
  if (r.liveCheck)
    out.push(
      '',
      'packedPolicySize' in r.liveCheck
        ? `${style.heading('AWS PackedPolicySize:')} ${r.liveCheck.packedPolicySize ?? 'not reported'}%`
        : `${style.heading('Live check failed:')} ${r.liveCheck.error}`,
    )
  if (r.warnings.length > 0) out.push('', style.heading('Warnings'), ...r.warnings.map((w) => `${style.warn('!')} ${w}`))
  return out.join('\n')
}
