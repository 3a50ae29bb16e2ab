// Human output of `config show`.
import type {RegionChoice} from '../aws/region.js'
import type {Config} from '../config/schema.js'
import {SCHEMA} from '../config/schema.js'
import {renderTable, style} from './text.js'

export function formatConfigValue(value: unknown): string {
  if (value === null) return ''
  if (Array.isArray(value)) {
    if (value.length > 0 && typeof value[0] === 'object')
      return value.map((r: {key: string; methods: string[]}) => `${r.key}: ${r.methods.join(', ')}`).join(', ')
    return value.join(', ')
  }
  if (typeof value === 'object')
    return Object.entries(value as Record<string, string[]>)
      .map(([k, v]) => `${k}: ${v.join(', ')}`)
      .join(', ')
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  return String(value)
}

const REGION_SOURCE: Record<RegionChoice['source'], string> = {
  AWS_REGION: 'from AWS_REGION',
  AWS_DEFAULT_REGION: 'from AWS_DEFAULT_REGION',
  imds: "the instance's, from the instance metadata service",
  default: 'the default: no AWS_REGION, and no instance metadata service answered',
}

export function renderConfig(config: Config, region: RegionChoice): string {
  const rows: string[][] = []
  for (const [section, options] of Object.entries(SCHEMA)) {
    for (const [name, spec] of Object.entries(options as Record<string, {default: unknown}>)) {
      const value = (config as unknown as Record<string, Record<string, unknown>>)[section][name]
      const isDefault = JSON.stringify(value) === JSON.stringify(spec.default)
      rows.push([section, name, formatConfigValue(value) || style.dim('(unset)'), isDefault ? style.dim('default') : 'file'])
    }
  }
  const from = config.file ? `from ${config.file}` : 'defaults (no config file)'
  return (
    `${style.heading('Effective configuration')} ${style.dim(from)}\n${renderTable(['section', 'option', 'value', 'from'], rows)}\n` +
    `${style.heading('AWS region')} ${region.region} ${style.dim(`(partition ${region.partition}; ${REGION_SOURCE[region.source]})`)}`
  )
}
