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
