// Loads /etc/ec2userkeyd.conf (or the file named with -f) into a validated Config. Every
// problem is reported as one line naming the file, line, section, option and value.
import {readFile} from 'node:fs/promises'

import {InputError} from '../errors.js'
import {interpolate, parseIni} from './ini.js'
import {Config, defaultConfig, OptionSpec, SCHEMA, SectionName, ValueError} from './schema.js'

export const DEFAULT_CONFIG_PATH = '/etc/ec2userkeyd.conf'

export interface LoadConfigOptions {
  /** The file named by the user (-f); undefined means the default path, which may be absent. */
  path?: string
  defaultPath?: string
  read?: (path: string) => Promise<string>
}

export async function loadConfig(options: LoadConfigOptions = {}): Promise<Config> {
  const named = options.path !== undefined
  const path = options.path ?? options.defaultPath ?? DEFAULT_CONFIG_PATH
  const read = options.read ?? ((p: string) => readFile(p, 'utf8'))
  let text: string
  try {
    text = await read(path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' && !named) return defaultConfig()
    if (code === 'ENOENT')
      throw new InputError(`config file ${path} does not exist`, {suggestion: 'check the path given with -f/--config'})
    if (code === 'EACCES')
      throw new InputError(`config file ${path} is not readable (permission denied)`, {suggestion: 'run as root or fix its permissions'})
    if (code === 'EISDIR') throw new InputError(`config file ${path} is a directory`, {suggestion: 'name the INI file itself'})
    throw new InputError(`config file ${path} could not be read: ${(error as Error).message}`)
  }
  return parseConfig(text, path)
}

/**
 * The configuration for what must happen even when the file does not load: the interception at
 * boot (`intercept install`), which needs three options of it and must not be kept from the host
 * by a typo in another. Every option that parses is taken; every problem is returned, one line
 * each, and the option it concerns keeps its default (a file that cannot be read or parsed at
 * all: every default).
 */
export async function loadConfigLeniently(options: LoadConfigOptions = {}): Promise<{config: Config; problems: string[]}> {
  const problems: string[] = []
  let strict: InputError
  try {
    return {config: await loadConfig(options), problems}
  } catch (error) {
    if (!(error instanceof InputError)) throw error
    strict = error
  }
  const path = options.path ?? options.defaultPath ?? DEFAULT_CONFIG_PATH
  let text: string
  try {
    text = await (options.read ?? ((p: string) => readFile(p, 'utf8')))(path)
  } catch {
    return {config: {...defaultConfig(), file: path}, problems: [strict.message]}
  }
  try {
    return {config: parseConfig(text, path, (problem) => problems.push(problem.message)), problems}
  } catch (error) {
    if (!(error instanceof InputError)) throw error
    return {config: {...defaultConfig(), file: path}, problems: [error.message]} // not INI at all
  }
}

/**
 * Parses and validates config text; `file` is used in messages and recorded in the result. With
 * `onProblem`, a problem is reported there instead of thrown, and what it concerns is skipped (a
 * bad value keeps the default).
 */
export function parseConfig(text: string, file: string, onProblem?: (problem: InputError) => void): Config {
  const fail = (problem: InputError) => {
    if (!onProblem) throw problem
    onProblem(problem)
  }
  const doc = parseIni(text, file)
  const config = defaultConfig()
  config.file = file

  for (const [name, option] of doc.defaults)
    fail(
      new InputError(`${file}:${option.line}: option '${name}' in [DEFAULT] is not supported`, {
        suggestion: 'move it into the section it belongs to',
      }),
    )

  for (const section of doc.sections.values()) {
    if (!Object.hasOwn(SCHEMA, section.name)) {
      const near = Object.keys(SCHEMA).find((s) => s.toLowerCase() === section.name.toLowerCase())
      fail(
        new InputError(`${file}:${section.line}: unknown section [${section.name}]`, {
          suggestion: near ? `did you mean [${near}]?` : `sections: ${Object.keys(SCHEMA).map((s) => `[${s}]`).join(', ')}`,
        }),
      )
      continue
    }
    const sectionName = section.name as SectionName
    const specs = SCHEMA[sectionName] as Record<string, OptionSpec<unknown>>
    const target = config[sectionName] as Record<string, unknown>
    for (const option of section.options.values()) {
      const where = `${file}:${option.line}: [${section.name}] ${option.name}`
      // hasOwn: an option named like an Object.prototype member ('constructor') is unknown, not a crash.
      const spec = Object.hasOwn(specs, option.name) ? specs[option.name] : undefined
      if (!spec) {
        const known = Object.keys(specs)
        fail(
          new InputError(`${where} = '${option.raw.replace(/\n/g, ' ')}': unknown option '${option.name}' in section [${section.name}]`, {
            suggestion: known.length > 0 ? `options of [${section.name}]: ${known.join(', ')}` : `[${section.name}] takes no options`,
          }),
        )
        continue
      }
      try {
        const value = interpolate(doc, section, option)
        try {
          target[option.name] = spec.parse(value)
        } catch (error) {
          if (!(error instanceof ValueError)) throw error
          throw new InputError(`${where} = '${value.replace(/\n/g, ' ')}': ${error.message}`, {suggestion: error.suggestion})
        }
      } catch (error) {
        if (!(error instanceof InputError)) throw error
        fail(error)
      }
    }
  }
  return config
}
