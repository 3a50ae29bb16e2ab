// The README's option tables, rendered from the schema so documentation cannot drift from code.
import {OptionSpec, SCHEMA} from './schema.js'

function shownDefault(value: unknown): string {
  if (value === null) return '(unset)'
  if (Array.isArray(value)) return value.length === 0 ? '(none)' : `\`${value.join(', ')}\``
  if (typeof value === 'object') return Object.keys(value as object).length === 0 ? '(none)' : `\`${JSON.stringify(value)}\``
  if (typeof value === 'boolean') return value ? '`True`' : '`False`'
  return `\`${String(value)}\``
}

export function renderOptionTable(origin: OptionSpec<unknown>['origin']): string {
  const rows = ['| section | option | default | meaning |', '| --- | --- | --- | --- |']
  for (const [section, options] of Object.entries(SCHEMA))
    for (const [name, spec] of Object.entries(options as Record<string, OptionSpec<unknown>>))
      if (spec.origin === origin) rows.push(`| \`[${section}]\` | \`${name}\` | ${shownDefault(spec.default)} | ${spec.description} |`)
  return rows.join('\n')
}

/** Replaces the blocks between `<!-- options:ORIGIN -->` markers with freshly rendered tables. */
export function updateReadmeOptions(readme: string): string {
  return readme.replace(/(<!-- options:(python|ec2userkeyd) -->\n)[\s\S]*?(\n<!-- \/options:\2 -->)/g, (_m, open: string, origin: 'python' | 'ec2userkeyd', close: string) =>
    `${open}${renderOptionTable(origin)}${close}`,
  )
}

/** Options the production sample turns on: safer than the Python tool's defaults, which configs without them keep. */
export const SAMPLE_OVERRIDES: Record<string, Record<string, string>> = {
  general: {require_imdsv2: 'True', deny_user_data: 'True', deny_instance_identity: 'True'},
}

/** A default as the INI file writes it. */
function iniValue(value: unknown): string {
  if (value === null) return ''
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  if (Array.isArray(value)) return value.every((v) => typeof v === 'string') ? value.join(', ') : ''
  if (typeof value === 'object') return ''
  return String(value)
}

/** A description as comment lines of at most 78 characters (backticks dropped). */
function commentLines(text: string): string[] {
  const lines: string[] = []
  let line = '#'
  for (const word of text.replace(/`/g, '').split(/\s+/)) {
    if (line.length + 1 + word.length > 78 && line !== '#') {
      lines.push(line)
      line = '#'
    }
    line += ` ${word}`
  }
  lines.push(line)
  return lines
}

/**
 * packaging/ec2userkeyd.conf: every option with what it does and its default, commented out, but
 * the safe settings a new host should start with (SAMPLE_OVERRIDES).
 */
export function renderSampleConfig(): string {
  const out = [
    '# /etc/ec2userkeyd.conf: the configuration of ec2userkeyd (INI, read as the Python tool read it).',
    '# Every option is listed with its default, commented out; a new host starts with the three',
    '# settings below that are not: IMDSv2 only, and neither user data nor the signed instance',
    '# identity for anyone but root. After a change: systemctl reload ec2userkeyd.',
    '# Check the effective configuration with: ec2userkeyd config show',
  ]
  for (const [section, options] of Object.entries(SCHEMA)) {
    const entries = Object.entries(options as Record<string, OptionSpec<unknown>>)
    if (entries.length === 0) continue
    out.push('', `[${section}]`)
    for (const [name, spec] of entries) {
      out.push('', ...commentLines(spec.description))
      const override = SAMPLE_OVERRIDES[section]?.[name]
      const value = iniValue(spec.default)
      out.push(override !== undefined ? `${name} = ${override}` : `#${name} =${value === '' ? '' : ` ${value}`}`)
    }
  }
  return `${out.join('\n')}\n`
}
