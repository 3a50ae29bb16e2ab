// The wildcard set questions, checked by brute force over small alphabets: every string up to a
// length long enough to witness any difference between the patterns involved.
import assert from 'node:assert/strict'

import fc from 'fast-check'

import {globCovers, globIntersects, globMatches} from '../../src/lib/policy/glob.js'

const pattern = fc.array(fc.constantFrom('a', 'b', '*', '?'), {maxLength: 5}).map((cs) => cs.join(''))

function stringsUpTo(length: number, letters: string[]): string[] {
  const out = ['']
  for (let l = 1, layer = ['']; l <= length; l++) {
    layer = layer.flatMap((s) => letters.map((c) => s + c))
    out.push(...layer)
  }
  return out
}
// A common string of two patterns of up to 5 characters needs at most 10 characters, and only
// their own letters (a wildcard can always take an `a`).
const TWO_LETTERS = stringsUpTo(10, ['a', 'b'])
// A string of the inner pattern that the outer one misses may need a third letter.
const WORLD = stringsUpTo(7, ['a', 'b', 'c'])

describe('IAM wildcard patterns', () => {
  it('intersect exactly when some string matches both', () => {
    fc.assert(
      fc.property(pattern, pattern, (a, b) => {
        const witness = TWO_LETTERS.some((s) => globMatches(a, s) && globMatches(b, s))
        assert.equal(globIntersects(a, b), witness, `${a} ∩ ${b}`)
      }),
      {numRuns: 3000},
    )
  })

  it('cover only when every string of the inner pattern matches the outer one', () => {
    let trueAnswers = 0
    fc.assert(
      fc.property(pattern, pattern, (outer, inner) => {
        if (!globCovers(outer, inner)) return
        trueAnswers++
        for (const s of WORLD) if (globMatches(inner, s)) assert.ok(globMatches(outer, s), `${outer} ⊇ ${inner} but not for '${s}'`)
      }),
      {numRuns: 3000},
    )
    assert.ok(trueAnswers > 100, 'the property saw enough covering pairs')
  })

  it('answer the common cases of the compiler', () => {
    assert.ok(globCovers('s3:get*', 's3:getobject'))
    assert.ok(globCovers('s3:*', 's3:get*'))
    assert.ok(!globCovers('s3:get*', 's3:*'))
    assert.ok(globCovers('arn:aws:s3:::data/*', 'arn:aws:s3:::data/private/*'))
    assert.ok(!globCovers('arn:aws:s3:::data/*', 'arn:aws:s3:::data'))
    assert.ok(globCovers('arn:aws:s3:::d?ta/*', 'arn:aws:s3:::data/x?'))
    assert.ok(!globCovers('arn:aws:s3:::data/x', 'arn:aws:s3:::data/?'))
    assert.ok(globIntersects('arn:aws:s3:::d?ta/*', 'arn:aws:s3:::*/private'))
    assert.ok(globIntersects('aaaa*', '*baaa'), 'witness aaaabaaa, longer than either pattern')
    assert.ok(!globIntersects('s3:get*', 's3:put*'))
    assert.ok(!globIntersects('arn:aws:s3:::data', 'arn:aws:s3:::data/*'))
  })
})
