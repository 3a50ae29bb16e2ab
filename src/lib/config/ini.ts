// Reads INI text the way Python's configparser.ConfigParser() does with its defaults, because
// configuration written for the Python ec2userkeyd must keep working unchanged: `=` or `:`
// delimiters, full-line `#`/`;` comments, indented continuation lines, case-insensitive option
// names, strict duplicate checks and `%`-interpolation. General-purpose INI packages differ on
// several of these (`key: value`, continuation lines, `%%`), which is why this is not one.
import {InputError} from '../errors.js'

export interface IniOption {
  /** Option name, lower-cased as configparser's optionxform does. */
  name: string
  /** Raw value after continuation lines are joined (before interpolation). */
  raw: string
  line: number
}

export interface IniSection {
  name: string
  line: number
  options: Map<string, IniOption>
}

export interface IniDocument {
  file: string
  sections: Map<string, IniSection>
  defaults: Map<string, IniOption>
}

const SECTION = /^\[(?<header>.+)\]/
const OPTION = /^(?<option>.*?)\s*(?<delimiter>[=:])\s*(?<value>.*)$/
const COMMENT_PREFIXES = ['#', ';']
const DEFAULT_SECTION = 'DEFAULT'

function indentOf(line: string): number {
  return line.length - line.trimStart().length
}

export function parseIni(text: string, file: string): IniDocument {
  const doc: IniDocument = {file, sections: new Map(), defaults: new Map()}
  let current: Map<string, IniOption> | undefined
  let currentName = ''
  let option: {opt: IniOption; lines: string[]; indent: number} | undefined

  const finishOption = () => {
    if (!option) return
    while (option.lines.length > 1 && option.lines.at(-1) === '') option.lines.pop()
    option.opt.raw = option.lines.join('\n')
    option = undefined
  }
  const fail = (line: number, what: string): never => {
    throw new InputError(`${file}:${line}: ${what}`, {suggestion: 'fix the line (INI syntax as Python configparser reads it)'})
  }

  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  lines.forEach((line, index) => {
    const lineNo = index + 1
    const stripped = line.trim()
    if (COMMENT_PREFIXES.some((p) => stripped.startsWith(p))) return
    if (stripped === '') {
      // configparser keeps blank lines inside a value (empty_lines_in_values) and trims
      // trailing ones when the value ends.
      if (option) option.lines.push('')
      return
    }
    const indent = indentOf(line)
    if (option && current && indent > option.indent) {
      option.lines.push(stripped)
      return
    }
    finishOption()
    const header = SECTION.exec(stripped)
    if (header?.groups) {
      const name = header.groups.header
      if (name === DEFAULT_SECTION) {
        current = doc.defaults
      } else {
        if (doc.sections.has(name)) fail(lineNo, `section [${name}] appears twice (first on line ${doc.sections.get(name)!.line})`)
        const section: IniSection = {name, line: lineNo, options: new Map()}
        doc.sections.set(name, section)
        current = section.options
      }
      currentName = name
      return
    }
    if (!current) fail(lineNo, `option line before any [section] header: '${stripped}'`)
    const match = OPTION.exec(stripped)
    if (!match?.groups || match.groups.option.trim() === '')
      fail(lineNo, `expected 'option = value' in section [${currentName}], found '${stripped}'`)
    const name = match!.groups!.option.trimEnd().toLowerCase()
    if (current!.has(name))
      fail(lineNo, `option '${name}' = '${match!.groups!.value.trim()}' appears twice in section [${currentName}] (first on line ${current!.get(name)!.line})`)
    const opt: IniOption = {name, raw: '', line: lineNo}
    current!.set(name, opt)
    option = {opt, lines: [match!.groups!.value.trim()], indent}
  })
  finishOption()
  return doc
}

/**
 * Expands `%(name)s` references and `%%` as configparser's BasicInterpolation does: names are
 * looked up in the same section, then in [DEFAULT].
 */
export function interpolate(
  doc: IniDocument,
  section: IniSection,
  option: IniOption,
  depth = 0,
): string {
  const raw = option.raw
  // Same shape as the loader's value errors, on one line even for a continued value.
  const where = `${doc.file}:${option.line}: [${section.name}] ${option.name} = '${raw.replace(/\n/g, ' ')}'`
  if (depth > 10) throw new InputError(`${where}: interpolation nests too deeply (a %(name)s loop?)`)
  let out = ''
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]
    if (ch !== '%') {
      out += ch
      continue
    }
    const next = raw[i + 1]
    if (next === '%') {
      out += '%'
      i++
      continue
    }
    const ref = /^%\(([^)]+)\)s/.exec(raw.slice(i))
    if (!ref)
      throw new InputError(`${where}: '%' must be followed by '%' or '(name)s'`, {
        suggestion: "write a literal percent sign as '%%'",
      })
    const refName = ref[1].toLowerCase()
    const target = section.options.get(refName) ?? doc.defaults.get(refName)
    if (!target) throw new InputError(`${where}: '%(${ref[1]})s' names no option of section [${section.name}]`)
    out += interpolate(doc, section, target, depth + 1)
    i += ref[0].length - 1
  }
  return out
}
