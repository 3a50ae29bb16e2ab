// Fail closed through the daemon's whole life (issue 14): a user polling the metadata service
// every 20 ms never gets the instance's credentials, at boot with the interception installed and a
// first start that fails, across SIGTERM and restart, kill -9 and restart, a failed start between
// two good ones, a would-be port squatter, systemd's sockets, a missing ip6tables and a
// configuration that does not load; only `intercept remove` lets it through. Real iptables, a real user made with useradd, the built
// CLI, in a network namespace of its own (lifecycle-script.ts); skipped, saying why, where it
// cannot run (root, unshare, ip, iptables, useradd, systemd-socket-activate).
import assert from 'node:assert/strict'

import {commandPath, netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'
import {RunLock, TestUsers} from './users.js'

const MARK = 'ec2userkeyd lifecycle test'

interface Seen {
  instance: number
  own: number
  refused: number
  other: number
  requests: number
}

describe('end to end: fail closed through the daemon’s whole life (network namespace)', () => {
  it('never gives a polling user the instance’s credentials, whatever the daemon does, and their own once it serves', async function () {
    this.timeout(300_000)
    const missing = netnsMissing(['unshare', 'ip', 'iptables', 'useradd', 'userdel', 'groupdel', 'getent', 'systemd-socket-activate'])
    if (missing) return skipBecause(this, missing)
    const lock = new RunLock()
    const held = lock.take()
    if (held) return skipBecause(this, held)
    const users = new TestUsers([{name: 'e2e-life', uid: 64101}], MARK)
    try {
      const clash = users.clash()
      if (clash) return skipBecause(this, clash)
      users.create()
      // Given the host as an instance, a user polling it, and every phase of the daemon's life
      const result = runInNewNetns(
        "await import('./test/e2e/lifecycle-script.ts')",
        [JSON.stringify({user: users.made[0], iptables: commandPath('iptables')})],
        {tsx: true, timeoutMs: 280_000},
      )
      if ('skipped' in result) return skipBecause(this, result.skipped)
      assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
      const r = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>
      assert.equal(r.error, undefined, String(r.error))
      const phase = (name: string) => r[name] as Seen
      const noInstance = (name: string) => {
        const seen = phase(name)
        assert.ok(seen.requests > 5, `${name}: the user kept asking (${JSON.stringify(seen)})`)
        assert.equal(seen.instance, 0, `${name}: the user got the instance's credentials ${seen.instance} times`)
        assert.ok(seen.own > 0, `${name}: the user got their own credentials again`)
      }

      // Then before any interception the poller does see the instance's credentials (so it can tell)
      assert.ok(phase('beforeInterception').instance > 0, JSON.stringify(r.beforeInterception))
      // At boot: intercept install, a first start that fails (and leaves the rules), then a good one
      assert.equal(r.install, 0)
      // (exit 5: AWS could not be reached; the error names the call)
      assert.deepEqual(r.failedStart, {exit: 5, said: true})
      assert.ok((r.afterFailedFirstStart as {rules: number}).rules > 0, 'the rules outlive a failed start')
      noInstance('boot')
      // SIGTERM and a restart after a second; kill -9 and a restart; a failed start between two good ones
      assert.equal(r.stopped, 0)
      for (const name of ['restart', 'kill9', 'between']) noInstance(name)
      assert.notEqual((r.failedBetween as {exit: number}).exit, 0)
      for (const name of ['restart', 'kill9', 'between', 'squat']) assert.ok(phase(name).refused > 0, `${name}: refused while down`)
      // The daemon's port cannot be taken by a user while it is down, and a daemon on a port a user could take is refused
      assert.equal(r.squatter, 'EACCES')
      noInstance('squat')
      assert.deepEqual(r.unprivileged, {exit: 2, said: true})
      // systemd's sockets: the listeners handed over are the daemon's
      noInstance('activation')
      const activation = r.activation as Seen & {fromSystemd: number; health: number}
      assert.ok(activation.fromSystemd >= 1, JSON.stringify(activation))
      assert.equal(activation.health, 200)
      // intercept status: protected with the daemon up and down; after intercept remove, exposed (exit 7)
      const up = r.statusUp as {code: number; protected: boolean; families: Array<{family: number; meets: string}>}
      assert.equal(up.code, 0)
      assert.equal(up.protected, true)
      assert.match(up.families[0].meets, /^the daemon/)
      const down = r.statusDown as typeof up
      assert.equal(down.code, 0)
      assert.match(down.families[0].meets, /^a refused connection/)
      assert.deepEqual(r.remove, {code: 0, left: []})
      assert.deepEqual(r.statusRemoved, {code: 7, protected: false})
      assert.ok(phase('removed').instance > 0, 'only intercept remove lets the user through to the real IMDS')
      // ip6tables missing, the IPv6 endpoint answering: IPv4 still closed, /healthz not healthy, and what to do
      const v6 = r.noIp6tables as (Seen & {health: number; ipv6: {ok: boolean; detail: string}}) | {skipped: string}
      if ('skipped' in v6) console.log(`      (ip6tables part skipped: ${v6.skipped})`)
      else {
        noInstance('noIp6tables')
        assert.equal(v6.health, 503)
        assert.equal(v6.ipv6.ok, false)
        assert.match(v6.ipv6.detail, /install ip6tables, or turn the instance's IPv6 metadata endpoint off/)
      }
      // A configuration that does not load at boot: the interception goes in anyway, and the exit says why
      const broken = r.brokenConfig as Seen & Record<string, unknown>
      assert.equal(broken.install, 2)
      assert.equal(broken.said, true)
      assert.equal(broken.problems, 1)
      assert.ok((broken.rulesAfterInstall as number) > 0, 'intercept install installed the rules')
      assert.equal(broken.serveExit, 2)
      assert.equal(broken.serveSaid, true)
      assert.ok((broken.rulesAfterServe as number) > 0, 'serve installed the rules before its exit')
      assert.ok(broken.requests > 5 && broken.instance === 0 && broken.refused > 0, JSON.stringify(broken))
      // A user who could take the daemon's port while it was down: intercept status names her, exit 7
      const squatted = r.squatted as {bound: string; code: number; protected: boolean; meets: string; owner: number}
      assert.equal(squatted.bound, 'bound')
      assert.deepEqual({code: squatted.code, protected: squatted.protected, owner: squatted.owner}, {code: 7, protected: false, owner: 64101}, JSON.stringify(r.squatted))
      assert.match(squatted.meets, /^uid 64101's process listening on 127\.0\.0\.1:808, not the daemon/)
    } finally {
      const problems = users.remove()
      lock.release()
      assert.deepEqual(problems, [], 'the test user is removed')
    }
  })
})
