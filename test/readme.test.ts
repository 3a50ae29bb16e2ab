import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'

import {updateReadmeOptions} from '../src/lib/config/reference.js'

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
