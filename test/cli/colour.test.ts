// Colour on a terminal, none with NO_COLOR (https://no-color.org), which chalk 5 does not read:
// the CLI run on a pseudo-terminal (util-linux script), its output read back with its escapes.
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {fileURLToPath} from 'node:url'

import {CLEAN_ENV, fixture, repoRoot} from '../support/cli.js'

const bin = fileURLToPath(new URL('../../bin/run.js', import.meta.url))
// eslint-disable-next-line no-control-regex
const ESCAPE = /\u001b\[[0-9;]*m/

function onTerminal(env: Record<string, string>): string {
  const command = [process.execPath, bin, 'policy', 'dump', 'alice', '--account', fixture('account.json'), '--config', fixture('ec2userkeyd.conf'), '--instance-role', 'analytics-host']
  const {NO_COLOR: _, ...base} = CLEAN_ENV
  // script -c runs its command through sh on a new pseudo-terminal; -e: its exit status
  const r = spawnSync('script', ['-qec', command.map((a) => `'${a}'`).join(' '), '/dev/null'], {cwd: repoRoot, env: {...base, ...env}, encoding: 'utf8', timeout: 60_000})
  assert.equal(r.status, 0, r.stderr + r.stdout)
  return r.stdout
}

describe('colour: on a terminal, and NO_COLOR', function () {
  before(function () {
    try {
      execFileSync('script', ['--version'])
    } catch {
      this.skip() // no util-linux script on this host
    }
  })

  it('colours what it prints on a terminal', () => {
    assert.match(onTerminal({TERM: 'xterm-256color'}), ESCAPE)
  })

  it('prints no colour with NO_COLOR set, and colour again with it empty or FORCE_COLOR set', () => {
    const plain = onTerminal({TERM: 'xterm-256color', NO_COLOR: '1'})
    assert.doesNotMatch(plain, ESCAPE)
    assert.match(plain, /alice/)
    assert.match(onTerminal({TERM: 'xterm-256color', NO_COLOR: ''}), ESCAPE)
    assert.match(onTerminal({TERM: 'xterm-256color', NO_COLOR: '1', FORCE_COLOR: '1'}), ESCAPE)
  })
})
