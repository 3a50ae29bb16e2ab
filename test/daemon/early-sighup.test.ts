// `serve` survives a SIGHUP while it is still loading (systemctl reload right after start):
// bin/run.js holds SIGHUP before the CLI framework loads, the lifecycle takes it over.
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {holdEarlySighup, takeEarlySighup} from '../../src/lib/daemon/early-sighup.js'
import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {freePort, spawnServe} from './serve-support.js'
import {startFakeImds} from '../imds/fake-imds.js'
import {childEnv, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'

/** Whether the process has a handler for SIGHUP (signal 1: bit 0 of SigCgt). */
function catchesSighup(pid: number): boolean {
  try {
    const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n
  } catch {
    return false
  }
}

describe('a SIGHUP while serve loads', () => {
  it('is held, and told to whoever takes it over', () => {
    holdEarlySighup()
    process.emit('SIGHUP', 'SIGHUP')
    assert.equal(takeEarlySighup(), true)
    assert.equal(takeEarlySighup(), false, 'taken once')
    assert.equal(process.listenerCount('SIGHUP'), 0, 'the holding handler is gone')
    holdEarlySighup()
    assert.equal(takeEarlySighup(), false, 'none came')
  })

  afterEach(async function () {
    await (this.currentTest?.ctx?.cleanup as (() => Promise<void>) | undefined)?.()
  })

  it('neither ends serve nor is lost: SIGHUPs from its first moments on, then one reload once it serves', async function () {
    this.timeout(60_000)
    const double = await startAwsDouble({
      snapshot: await loadAccountSnapshot(fixture('account.json')),
      instanceRole: 'analytics-host',
    })
    const upstream = await startFakeImds()
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-hup-'))
    const config = join(dir, 'ec2userkeyd.conf')
    writeFileSync(config, '[general]\nlog_console = True\nlog_syslog = False\nlog_level = INFO\n')
    const serve = spawnServe(
      [
        '--no-iptables',
        '--config',
        config,
        '--port',
        String(await freePort()),
        '--upstream',
        upstream.url,
        '--instance-role',
        'analytics-host',
      ],
      childEnv(double),
    )
    this.test!.ctx!.cleanup = async () => {
      if (serve.child.exitCode === null && serve.child.signalCode === null) serve.child.kill('SIGKILL')
      await upstream.stop()
      await double.stop()
      rmSync(dir, {recursive: true, force: true})
    }
    const pid = serve.child.pid!
    const until = Date.now() + 20_000
    while (!catchesSighup(pid)) {
      assert.ok(
        Date.now() < until && serve.child.exitCode === null,
        `serve never caught SIGHUP:\n${serve.log()}`,
      )
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    // From the moment it holds SIGHUP until it serves (or gives up), a SIGHUP every 10 ms.
    let sent = 0
    while (
      !/"msg":"(listening|configuration reloaded)"/.test(serve.log()) &&
      serve.child.exitCode === null &&
      Date.now() < until
    ) {
      serve.child.kill('SIGHUP')
      sent++
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.equal(serve.child.exitCode, null, `serve ended after ${sent} SIGHUPs:\n${serve.log()}`)
    assert.equal(serve.child.signalCode, null)
    assert.match(serve.log(), /"msg":"listening"/)
    await serve.waitForLog(/"msg":"configuration reloaded"/)
    serve.child.kill('SIGTERM')
    assert.equal(await serve.exited, 0, serve.log())
    // SIGHUPs during start-up make one reload once serving (those after it, one or two more).
    assert.ok(sent > 0)
  })
})
