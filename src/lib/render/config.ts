// Human output of `config show`.
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

export function renderConfig(config: Config): string {
  const rows: string[][] = []
  for (const [section, options] of Object.entries(SCHEMA)) {
    for (const [name, spec] of Object.entries(options as Record<string, {default: unknown}>)) {
      const value = (config as unknown as Record<string, Record<string, unknown>>)[section][name]
      const isDefault = JSON.stringify(value) === JSON.stringify(spec.default)
      rows.push([section, name, formatConfigValue(value) || style.dim('(unset)'), isDefault ? style.dim('default') : 'file'])
    }
  }
  const from = config.file ? `from ${config.file}` : 'defaults (no config file)'
  return `${style.heading('Effective configuration')} ${style.dim(from)}\n${renderTable(['section', 'option', 'value', 'from'], rows)}`
}
