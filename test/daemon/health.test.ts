// /healthz's parts: the report, costly checks run at most every 10 s, the upstream check, and the
// interception check against what `iptables -S` lists; then the daemon's /healthz itself.
import assert from 'node:assert/strict'

import {loadAccountSnapshot} from '../../src/lib/aws/snapshot.js'
import {parseConfig} from '../../src/lib/config/load.js'
import {Daemon, startDaemon} from '../../src/lib/daemon/daemon.js'
import {
  checkInterception,
  Health,
  HealthCheck,
  throttledProbe,
  upstreamProbe,
} from '../../src/lib/daemon/health.js'
import {createLogger} from '../../src/lib/daemon/log.js'
import {createMetrics} from '../../src/lib/daemon/metrics.js'
import type {InstalledFamily, RunCommand} from '../../src/lib/host/iptables.js'
import {UpstreamError} from '../../src/lib/imds/upstream.js'
import {AwsDouble, startAwsDouble} from '../support/aws-double/index.js'
import {fixture} from '../support/cli.js'
import {FakeImds, startFakeImds} from '../imds/fake-imds.js'
import {freePort, get, useDoubleEnv} from './serve-support.js'

const family = (f: 4 | 6, redirect = true): InstalledFamily => ({
  family: f,
  binary: f === 4 ? '/usr/sbin/iptables' : '/usr/sbin/ip6tables',
  redirect,
  forwardGuard: false,
  duplicateJumpsRemoved: 0,
  staleRulesReplaced: 0,
})
const RULES = {listenPort: 808, daemonUid: 0, listenAddress: '127.0.0.1'}

/** `iptables -S` as iptables-nft 1.8 prints the installed interception (copied from a real run). */
const LISTING: Record<string, string> = {
  'iptables nat': `-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N EC2USERKEYD
-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j EC2USERKEYD
-A EC2USERKEYD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --uid-owner 0 -j RETURN
-A EC2USERKEYD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:808
`,
  'iptables filter': `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N EC2USERKEYD
-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j EC2USERKEYD
-A EC2USERKEYD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --uid-owner 0 -j RETURN
-A EC2USERKEYD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --socket-exists -j REJECT --reject-with tcp-reset
`,
  'ip6tables filter': `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N EC2USERKEYD
-A OUTPUT -d fd00:ec2::254/128 -p tcp -m tcp --dport 80 -j EC2USERKEYD
-A EC2USERKEYD -d fd00:ec2::254/128 -p tcp -m tcp --dport 80 -m owner --uid-owner 0 -j RETURN
-A EC2USERKEYD -d fd00:ec2::254/128 -p tcp -m tcp --dport 80 -m owner --socket-exists -j REJECT --reject-with tcp-reset
`,
}

/** A fake iptables answering -S from `listings` ('iptables nat' → text), recording each run. */
function fakeIptables(listings: Record<string, string>) {
  const runs: string[] = []
  const run: RunCommand = async (file, args) => {
    runs.push([file, ...args].join(' '))
    const table = args[args.indexOf('-t') + 1]
    const text = listings[`${file.split('/').pop()} ${table}`]
    return text === undefined
      ? {code: 3, stdout: '', stderr: `${file} v1.8.9 (nf_tables): table '${table}' does not exist\n`}
      : {code: 0, stdout: text, stderr: ''}
  }
  return {run, runs}
}

describe('/healthz', () => {
  describe('the report', () => {
    it('is ok when every check is, and failing when one is not (a check that throws fails)', async () => {
      const health = new Health()
      health.set('a', () => ({ok: true, detail: 'fine'}))
      health.set('b', async () => ({ok: true, detail: 'fine too'}))
      assert.deepEqual(await health.report(), {
        status: 'ok',
        checks: {a: {ok: true, detail: 'fine'}, b: {ok: true, detail: 'fine too'}},
      })
      health.set('a', () => {
        throw new Error('broke')
      })
      assert.deepEqual(await health.report(), {
        status: 'failing',
        checks: {a: {ok: false, detail: 'broke'}, b: {ok: true, detail: 'fine too'}},
      })
    })
  })

  describe('a costly check', () => {
    it('runs at most once per interval, callers sharing its last result', async () => {
      let now = 0
      let runs = 0
      let answer: HealthCheck = {ok: true, detail: 'one'}
      const probe = throttledProbe(
        async () => {
          runs++
          return answer
        },
        {intervalMs: 10_000, now: () => now},
      )
      // The first call waits for the first run; concurrent ones share it
      assert.deepEqual(await Promise.all([probe(), probe()]), [answer, answer])
      assert.equal(runs, 1)
      // Within the interval: the cached result, even though the truth changed
      answer = {ok: false, detail: 'two'}
      now = 9_999
      assert.deepEqual(await probe(), {ok: true, detail: 'one'})
      assert.equal(runs, 1)
      // Past it: one more run; the caller that starts it gets the last result meanwhile, the next ones the new
      now = 10_000
      assert.deepEqual(await probe(), {ok: true, detail: 'one'})
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(await probe(), {ok: false, detail: 'two'})
      assert.equal(runs, 2)
    })
  })

  describe('the upstream check', () => {
    it("asks the real IMDS for /iam/info, through the daemon's own client", async () => {
      const asked: string[] = []
      const answering = (status: number) =>
        upstreamProbe({
          get: async (path) => {
            asked.push(path)
            return {status, contentType: 'text/plain', body: Buffer.from('{}')}
          },
        })
      assert.deepEqual(await answering(200)(), {
        ok: true,
        detail: 'the instance metadata service answers (/latest/meta-data/iam/info: HTTP 200)',
      })
      assert.deepEqual(await answering(404)(), {
        ok: false,
        detail: 'the instance metadata service answers /latest/meta-data/iam/info with HTTP 404',
      })
      assert.deepEqual(asked, ['/latest/meta-data/iam/info', '/latest/meta-data/iam/info'])
      const silent = upstreamProbe({
        get: async () => {
          throw new UpstreamError(
            'timeout',
            'the instance metadata service did not answer GET /latest/meta-data/iam/info within 1000 ms',
          )
        },
      })
      assert.deepEqual(await silent(), {
        ok: false,
        detail: 'the instance metadata service did not answer GET /latest/meta-data/iam/info within 1000 ms',
      })
    })
  })

  describe('the interception check', () => {
    it('finds the chains, their rules and the jumps as installed', async () => {
      const iptables = fakeIptables(LISTING)
      const check = await checkInterception([family(4), family(6, false)], RULES, iptables.run)
      assert.deepEqual(check, {
        ok: true,
        detail:
          'EC2USERKEYD in place (/usr/sbin/iptables -t nat, /usr/sbin/iptables -t filter, /usr/sbin/ip6tables -t filter)',
      })
      // -w: wait for the xtables lock like every other iptables call of the daemon
      assert.deepEqual(iptables.runs, [
        '/usr/sbin/iptables -w -t nat -S',
        '/usr/sbin/iptables -w -t filter -S',
        '/usr/sbin/ip6tables -w -t filter -S',
      ])
    })

    it('fails, saying what is missing, when a table was flushed or a jump deleted', async () => {
      const withoutJump = LISTING['iptables nat'].replace(/^-A OUTPUT .*\n/m, '')
      const flushed =
        '-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N EC2USERKEYD\n-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j EC2USERKEYD\n'
      const check = await checkInterception(
        [family(4)],
        RULES,
        fakeIptables({'iptables nat': withoutJump, 'iptables filter': flushed}).run,
      )
      assert.equal(check.ok, false)
      assert.equal(
        check.detail,
        '/usr/sbin/iptables -t nat: no jump to EC2USERKEYD from OUTPUT; /usr/sbin/iptables -t filter: chain EC2USERKEYD holds 0 rules, not the 2 it should',
      )
    })

    it('fails when the chain is gone, holds other rules, or iptables cannot list the table', async () => {
      const gone = '-P OUTPUT ACCEPT\n'
      const otherTarget = LISTING['iptables nat'].replace('127.0.0.1:808', '127.0.0.1:9999')
      const a = await checkInterception(
        [family(4)],
        RULES,
        fakeIptables({'iptables nat': otherTarget, 'iptables filter': gone}).run,
      )
      assert.equal(
        a.detail,
        '/usr/sbin/iptables -t nat: chain EC2USERKEYD holds other rules than the 2 it should; /usr/sbin/iptables -t filter: no chain EC2USERKEYD',
      )
      const b = await checkInterception([family(6)], RULES, fakeIptables({}).run)
      assert.match(b.detail, /^\/usr\/sbin\/ip6tables -t nat -S failed: .*table 'nat' does not exist/)
      const c = await checkInterception([family(4)], RULES, async () => {
        throw Object.assign(new Error('spawn /usr/sbin/iptables ENOENT'), {code: 'ENOENT'})
      })
      assert.match(
        c.detail,
        /^\/usr\/sbin\/iptables -t nat: cannot run it: spawn \/usr\/sbin\/iptables ENOENT/,
      )
    })
  })

  describe('on the admin listener', () => {
    let double: AwsDouble
    let upstream: FakeImds
    let restoreEnv = () => {}
    let daemon: Daemon | null = null
    let admin: number

    before(async () => {
      double = await startAwsDouble({
        snapshot: await loadAccountSnapshot(fixture('account.json')),
        instanceRole: 'analytics-host',
      })
      upstream = await startFakeImds()
      restoreEnv = useDoubleEnv(double)
      admin = await freePort()
      daemon = await startDaemon({
        config: parseConfig(
          `[general]\ninstance_role = analytics-host\nadmin_listen = 127.0.0.1:${admin}\n`,
          '/etc/ec2userkeyd.conf',
        ),
        host: '127.0.0.1',
        port: 0,
        upstream: upstream.url,
        env: process.env,
        logger: createLogger({level: 'CRITICAL', sinks: []}),
        metrics: createMetrics(),
      })
    })
    after(async () => {
      await daemon?.close()
      restoreEnv()
      await upstream?.stop()
      await double?.stop()
    })

    it('answers 503 with the upstream check failing when the real IMDS does not answer', async () => {
      // Given an IMDS that stopped answering before anyone asked /healthz
      upstream.hang(true)
      try {
        // When /healthz is asked
        const reply = await get(admin, '/healthz')
        // Then it fails, on upstream alone, in the documented shape
        assert.equal(reply.status, 503)
        assert.equal(reply.headers['content-type'], 'application/json')
        const body = JSON.parse(reply.body)
        assert.deepEqual(Object.keys(body), ['status', 'checks'])
        assert.equal(body.status, 'failing')
        assert.deepEqual(Object.keys(body.checks), ['listener', 'upstream'])
        assert.equal(body.checks.listener.ok, true)
        assert.equal(body.checks.upstream.ok, false)
        assert.match(
          body.checks.upstream.detail,
          /^the instance metadata service did not answer .* within 1000 ms$/,
        )
      } finally {
        upstream.hang(false)
      }
    })
  })
})
