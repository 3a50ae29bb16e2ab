import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'

import {parseConfig} from '../src/lib/config/load.js'
import {renderSampleConfig, updateReadmeOptions} from '../src/lib/config/reference.js'
import {defaultConfig, SCHEMA} from '../src/lib/config/schema.js'

describe('README', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

  it('documents every configuration option exactly as the schema defines it', () => {
    // Given the README as committed
    // When its option tables are rendered afresh from the schema
    const regenerated = updateReadmeOptions(readme)
    // Then nothing changes (run `npm run readme:options` after changing an option)
    assert.equal(regenerated, readme)
  })
})

describe('packaging/ec2userkeyd.conf, the production sample', () => {
  const sample = readFileSync(new URL('../packaging/ec2userkeyd.conf', import.meta.url), 'utf8')

  it('is rendered from the schema (run `npm run readme:options` after changing an option)', () => {
    assert.equal(sample, renderSampleConfig())
  })

  it('lists every option, and reads as the defaults with IMDSv2 required and user data and the identity document denied', () => {
    for (const [section, options] of Object.entries(SCHEMA))
      for (const name of Object.keys(options)) assert.match(sample, new RegExp(`^#?${name} =`, 'm'), `[${section}] ${name}`)
    const config = parseConfig(sample, '/etc/ec2userkeyd.conf')
    const expected = defaultConfig()
    expected.file = '/etc/ec2userkeyd.conf'
    expected.general.require_imdsv2 = true
    expected.general.deny_user_data = true
    expected.general.deny_instance_identity = true
    assert.deepEqual(config, expected)
  })
})
