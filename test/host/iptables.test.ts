// The interception rules: their shape, the install and remove sequences against a model of
// iptables (idempotency, no gap while stale rules are replaced), and the real thing in network
// namespaces of their own, with the nf_tables and the legacy iptables.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {UserError} from '../../src/lib/errors.js'
import {
  CHAIN,
  chainStatus,
  FORWARD_CHAIN,
  forwardJumpRule,
  forwardRules,
  inspectInterception,
  InterceptionPlan,
  RunCommand,
  chainRules,
  commandLine,
  forgetImdsConnections,
  installInterception,
  interceptionRules,
  ip6tablesFor,
  jumpRule,
  parseListing,
  planInterception,
  redirectAddress,
  removeInterception,
  sameRule,
} from '../../src/lib/host/iptables.js'
import {fakeHost} from '../support/fake-iptables.js'
import {commandPath, netnsMissing, runInNewNetns, skipBecause} from '../support/netns.js'

const IPTABLES_MODULE = new URL('../../src/lib/host/iptables.ts', import.meta.url)
const V4 = ['-p', 'tcp', '-d', '169.254.169.254', '--dport', '80']
const V6 = ['-p', 'tcp', '-d', 'fd00:ec2::254', '--dport', '80']

const RULES = {listenPort: 808, daemonUid: 0}

/** A plan for the fake host, as planInterception makes it there. */
async function planFor(
  host: ReturnType<typeof fakeHost>,
  options: {ipv6?: boolean; forwarded?: 'refuse' | 'passthrough'} = {},
): Promise<InterceptionPlan> {
  const dir = mkdtempSync(join(tmpdir(), 'if-inet6-'))
  const ipv6Proc = join(dir, 'if_inet6')
  if (options.ipv6 ?? true) writeFileSync(ipv6Proc, '00000000000000000000000000000001 01 80 10 80       lo\n')
  try {
    return await planInterception({iptables: '/sbin/iptables', ...RULES, run: host.run, ipv6Proc, forwarded: options.forwarded})
  } finally {
    rmSync(dir, {recursive: true})
  }
}

describe('host/iptables', () => {
  describe('the rules', () => {
    it('lets root pass and sends everyone else to the listener, in the nat table', () => {
      assert.deepEqual(chainRules('nat', {family: 4, ...RULES}), [
        [...V4, '-m', 'owner', '--uid-owner', '0', '-j', 'RETURN'],
        [...V4, '-j', 'DNAT', '--to-destination', '127.0.0.1:808'],
      ])
    })

    it("lets the daemon's own uid pass too, when it is not root", () => {
      const rules = chainRules('nat', {
        family: 4,
        listenPort: 8080,
        daemonUid: 992,
        listenAddress: '10.0.0.5',
      })
      assert.deepEqual(
        rules.map((r) => r.slice(V4.length).join(' ')),
        [
          '-m owner --uid-owner 0 -j RETURN',
          '-m owner --uid-owner 992 -j RETURN',
          '-j DNAT --to-destination 10.0.0.5:8080',
        ],
      )
    })

    it('sends IPv6 requests for [fd00:ec2::254]:80 to [::1]', () => {
      assert.deepEqual(chainRules('nat', {family: 6, ...RULES}).at(-1), [
        ...V6,
        '-j',
        'DNAT',
        '--to-destination',
        '[::1]:808',
      ])
    })

    it('resets, in the filter table, any non-root connection to IMDS that nat did not redirect', () => {
      assert.deepEqual(chainRules('filter', {family: 4, ...RULES}), [
        [...V4, '-m', 'owner', '--uid-owner', '0', '-j', 'RETURN'],
        [...V4, '-m', 'owner', '--socket-exists', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
      ])
    })

    it('writes the whole installation out as iptables argument vectors', () => {
      const lines = interceptionRules({family: 4, ...RULES}).map((args) => args.join(' '))
      assert.deepEqual(lines, [
        `-t nat -N ${CHAIN}`,
        `-t nat -A ${CHAIN} ${V4.join(' ')} -m owner --uid-owner 0 -j RETURN`,
        `-t nat -A ${CHAIN} ${V4.join(' ')} -j DNAT --to-destination 127.0.0.1:808`,
        `-t nat -I OUTPUT 1 ${V4.join(' ')} -j ${CHAIN}`,
        `-t filter -N ${CHAIN}`,
        `-t filter -A ${CHAIN} ${V4.join(' ')} -m owner --uid-owner 0 -j RETURN`,
        `-t filter -A ${CHAIN} ${V4.join(' ')} -m owner --socket-exists -j REJECT --reject-with tcp-reset`,
        `-t filter -I OUTPUT 1 ${V4.join(' ')} -j ${CHAIN}`,
        `-t filter -N ${FORWARD_CHAIN}`,
        `-t filter -A ${FORWARD_CHAIN} ${V4.join(' ')} -j REJECT --reject-with tcp-reset`,
        `-t filter -I FORWARD 1 ${V4.join(' ')} -j ${FORWARD_CHAIN}`,
      ])
      assert.ok(interceptionRules({family: 4, ...RULES, forwarded: 'passthrough'}).every((args) => !args.includes(FORWARD_CHAIN)))
    })

    it('finds the ip6tables of the same directory and variant', () => {
      assert.equal(ip6tablesFor('/sbin/iptables'), '/sbin/ip6tables')
      assert.equal(ip6tablesFor('/usr/sbin/iptables-legacy'), '/usr/sbin/ip6tables-legacy')
      assert.equal(ip6tablesFor('/usr/sbin/iptables-nft'), '/usr/sbin/ip6tables-nft')
      assert.equal(ip6tablesFor('/opt/fw/xt'), '/opt/fw/ip6tables')
    })

    it('redirects to the IPv4 listener, to loopback for 0.0.0.0, and refuses anything else', () => {
      assert.equal(redirectAddress('127.0.0.1'), '127.0.0.1')
      assert.equal(redirectAddress('0.0.0.0'), '127.0.0.1')
      assert.equal(redirectAddress('10.0.0.5'), '10.0.0.5')
      assert.throws(
        () => redirectAddress('::1'),
        (e: UserError) => e.kind === 'usage' && /--no-iptables/.test(e.suggestion!),
      )
    })

    it('writes command lines a shell runs as they stand', () => {
      assert.equal(
        commandLine('/sbin/ip6tables', ['--to-destination', '[::1]:808']),
        "/sbin/ip6tables --to-destination '[::1]:808'",
      )
      assert.equal(commandLine('x', ["it's"]), `x 'it'\\''s'`)
    })

    it('recognises its jump as iptables -S lists it', () => {
      const listed = parseListing(
        [
          '-P OUTPUT ACCEPT',
          `-N ${CHAIN}`,
          `-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j ${CHAIN}`,
          `-A OUTPUT -d 10.1.2.3/32 -p udp -m comment --comment "not \\"ours\\"" -j ${CHAIN}`,
          '-A OUTPUT -d 169.254.169.254/32 -j ACCEPT',
          `-A ${CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:808`,
        ].join('\n'),
      )
      assert.equal(listed.chainExists, true)
      assert.equal(listed.chainRules, 1)
      assert.equal(listed.jumps.length, 2)
      assert.deepEqual(listed.jumps[1].slice(-4), ['--comment', 'not "ours"', '-j', CHAIN])
      assert.equal(sameRule(listed.jumps[0], jumpRule(4)), true)
      assert.equal(sameRule(listed.jumps[1], jumpRule(4)), false)
      assert.equal(
        sameRule(
          ['-d', 'fd00:ec2::254/128', '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', CHAIN],
          jumpRule(6),
        ),
        true,
      )
      assert.equal(
        sameRule(
          ['-d', 'fd00:ec2::254/128', '-p', 'tcp', '-m', 'tcp', '--dport', '81', '-j', CHAIN],
          jumpRule(6),
        ),
        false,
      )
    })
  })

  describe('planning', () => {
    it('plans IPv4 and IPv6 where the kernel has IPv6 and ip6tables its nat table', async () => {
      const plan = await planFor(fakeHost())
      assert.deepEqual(plan.families, [
        {family: 4, binary: '/sbin/iptables', redirect: true},
        {family: 6, binary: '/sbin/ip6tables', redirect: true},
      ])
      assert.deepEqual(plan.notes, [])
    })

    it('plans IPv4 alone on a kernel without IPv6, silently', async () => {
      const plan = await planFor(fakeHost(), {ipv6: false})
      assert.deepEqual(
        plan.families.map((f) => f.family),
        [4],
      )
      assert.deepEqual(plan.notes, [])
    })

    it('only guards IPv6 where ip6tables has no nat table, and says so', async () => {
      const plan = await planFor(fakeHost({ip6tables: 'no-nat'}))
      assert.deepEqual(plan.families[1], {family: 6, binary: '/sbin/ip6tables', redirect: false})
      assert.match(plan.notes[0], /refused for non-root users, not answered: ip6tables has no nat table/)
    })

    it('goes on without IPv6 where ip6tables is missing, and says so', async () => {
      const plan = await planFor(fakeHost({ip6tables: 'missing'}))
      assert.deepEqual(
        plan.families.map((f) => f.family),
        [4],
      )
      assert.match(
        plan.notes[0],
        /\[fd00:ec2::254\]:80\) are not intercepted: cannot run \/sbin\/ip6tables: ENOENT/,
      )
    })

    it('refuses to go on without a working iptables', async () => {
      const run: RunCommand = async (file) => {
        throw Object.assign(new Error(`spawn ${file} ENOENT`), {code: 'ENOENT'})
      }
      await assert.rejects(
        planInterception({iptables: '/sbin/iptables', ...RULES, run}),
        (e: UserError) =>
          e.kind === 'unavailable' &&
          e.message === 'cannot run /sbin/iptables: ENOENT' &&
          /\[general\] iptables/.test(e.suggestion!),
      )
    })
  })

  describe('installing and removing (against a model of iptables)', () => {
    it('creates the chains, fills them and jumps to them from OUTPUT, in both families', async () => {
      // Given a host without earlier rules
      const host = fakeHost({conntrack: 2})
      // When the interception is installed
      const report = await installInterception(await planFor(host), {run: host.run})
      // Then each table of each family holds the rules and one jump
      for (const [xt, family] of [
        [host.v4, 4],
        [host.v6, 6],
      ] as const)
        for (const table of ['nat', 'filter'] as const) {
          assert.deepEqual(
            xt.chain(table, CHAIN),
            chainRules(table, {family, ...RULES}),
            `${family} ${table}`,
          )
          assert.deepEqual(xt.jumps(table), [jumpRule(family)])
        }
      // And forwarded connections (containers) are reset from FORWARD
      for (const [xt, family] of [
        [host.v4, 4],
        [host.v6, 6],
      ] as const) {
        assert.deepEqual(xt.chain('filter', FORWARD_CHAIN), forwardRules(family))
        assert.deepEqual(xt.forwardJumps(), [forwardJumpRule(family)])
      }
      assert.deepEqual(
        report.families.map((f) => [f.family, f.redirect, f.forwardGuard, f.duplicateJumpsRemoved, f.staleRulesReplaced]),
        [
          [4, true, true, 0, 0],
          [6, true, true, 0, 0],
        ],
      )
      // And the connections to IMDS opened before are forgotten, per family
      assert.deepEqual(report.connections, {deleted: {4: 2, 6: 2}})
      assert.ok(
        host.calls.includes('/sbin/conntrack -D -p tcp --orig-dst 169.254.169.254 --orig-port-dst 80'),
      )
      assert.ok(
        host.calls.includes('/sbin/conntrack -D -f ipv6 -p tcp --orig-dst fd00:ec2::254 --orig-port-dst 80'),
      )
    })

    it('changes nothing and adds no jump when installed a second time', async () => {
      const host = fakeHost()
      const plan = await planFor(host)
      await installInterception(plan, {run: host.run})
      const before = JSON.stringify([host.v4.tables.nat.get(CHAIN), host.v4.tables.filter.get(CHAIN)])
      host.calls.length = 0
      // When installed again
      const report = await installInterception(plan, {run: host.run})
      // Then there is still one jump per table, and the chains are as they were
      assert.deepEqual(host.v4.jumps('nat'), [jumpRule(4)])
      assert.deepEqual(host.v4.jumps('filter'), [jumpRule(4)])
      assert.equal(JSON.stringify([host.v4.tables.nat.get(CHAIN), host.v4.tables.filter.get(CHAIN)]), before)
      assert.deepEqual(
        host.calls.filter((c) => / -I (OUTPUT|FORWARD) /.test(c)),
        [],
      )
      assert.equal(report.families[0].duplicateJumpsRemoved, 0)
    })

    it('replaces the rules a crashed run left, removes its duplicate jumps, and never lets a user through meanwhile', async () => {
      // Given what two crashed runs on port 909 left: a chain and three jumps
      const host = fakeHost()
      const plan = await planFor(host, {ipv6: false})
      await installInterception({...plan, listenPort: 909}, {run: host.run})
      const nat = host.v4.tables.nat
      nat.get('OUTPUT')!.push(['-d', '10.9.9.9', '-j', 'ACCEPT'], jumpRule(4), jumpRule(4))
      // And a check after every change: root passes, everyone else is redirected
      const violations: string[] = []
      host.v4.onChange = () => {
        const chain = nat.get(CHAIN)
        const first = chain?.findIndex((r) => !r.includes('RETURN')) ?? -1
        const ok =
          chain &&
          host.v4.jumps('nat').length > 0 &&
          chain[0].join(' ').includes('--uid-owner 0') &&
          chain[first]?.includes('DNAT')
        if (!ok) violations.push(JSON.stringify({output: nat.get('OUTPUT'), chain}))
      }
      // When the daemon starts again on port 808
      const report = await installInterception(plan, {run: host.run})
      host.v4.onChange = () => {}
      // Then one jump is left, the chain holds the new rules only, and nobody slipped through
      assert.deepEqual(host.v4.jumps('nat'), [jumpRule(4)])
      assert.deepEqual(nat.get('OUTPUT')!.length, 2, "the host's own rule stays")
      assert.deepEqual(nat.get(CHAIN), chainRules('nat', {family: 4, ...RULES}))
      assert.deepEqual(report.families[0].duplicateJumpsRemoved, 2)
      assert.deepEqual(report.families[0].staleRulesReplaced, 5)
      assert.deepEqual(violations, [])
    })

    it('makes its jumps the first rules of OUTPUT and FORWARD again when a firewall put a rule before them, never without a jump', async () => {
      // Given an installation, then a firewall that inserted an ACCEPT before each jump
      const host = fakeHost()
      const plan = await planFor(host, {ipv6: false})
      await installInterception(plan, {run: host.run})
      const accept = ['-d', '169.254.169.254', '-j', 'ACCEPT']
      for (const [table, parent] of [
        ['nat', 'OUTPUT'],
        ['filter', 'OUTPUT'],
        ['filter', 'FORWARD'],
      ] as const)
        host.v4.chain(table, parent)!.unshift([...accept])
      const gaps: string[] = []
      host.v4.onChange = () => {
        if (host.v4.jumps('nat').length === 0 || host.v4.jumps('filter').length === 0 || host.v4.forwardJumps().length === 0) gaps.push(host.calls.at(-1)!)
      }
      // When installed again
      const report = await installInterception(plan, {run: host.run})
      // Then each jump is first, once, and the firewall's rule stays after it
      for (const [table, parent, jump] of [
        ['nat', 'OUTPUT', jumpRule(4)],
        ['filter', 'OUTPUT', jumpRule(4)],
        ['filter', 'FORWARD', forwardJumpRule(4)],
      ] as const)
        assert.deepEqual(host.v4.chain(table, parent), [jump, accept], `${table} ${parent}`)
      assert.equal(report.families[0].duplicateJumpsRemoved, 3)
      assert.deepEqual(gaps, [], 'a jump was missing after a command')
      // And the status says a rule before a jump is a problem
      host.v4.chain('filter', 'FORWARD')!.unshift([...accept])
      const [v4] = await inspectInterception({iptables: '/sbin/iptables', ...RULES, forwarded: 'refuse', run: host.run, ipv6Proc: '/nonexistent'})
      assert.match(v4.forward!.problem!, /not the first rule of FORWARD/)
      assert.equal(v4.nat!.problem, null)
    })

    it("judges the rules other tools keep ahead of its jumps (docker's, kube-proxy's) by what they can do to a connection to IMDS", () => {
      // Given a filter table whose OUTPUT has one rule ahead of our jump, and the chains it may jump to
      const rulesOf = (spec: string[][]) => spec.map((rule) => `-A EC2USERKEYD ${rule.join(' ')}`).join('\n')
      const status = (ahead: string, chains = '', family: 4 | 6 = 4) => {
        const jump = jumpRule(family)
        const listing = parseListing(
          [
            '-P INPUT ACCEPT',
            '-P FORWARD ACCEPT',
            '-P OUTPUT ACCEPT',
            `-N ${CHAIN}`,
            ...chains.split('\n').filter((l) => l.startsWith('-N')),
            `-A OUTPUT ${ahead}`,
            `-A OUTPUT ${jump.join(' ')}`,
            rulesOf(chainRules('filter', {...RULES, family})),
            ...chains.split('\n').filter((l) => l.startsWith('-A')),
          ].join('\n'),
        )
        return chainStatus(listing, {table: 'filter', chain: CHAIN, rules: chainRules('filter', {...RULES, family}), parent: 'OUTPUT', jump})
      }
      // Then rules that cannot take such a connection away from the jump are no problem, and are listed
      const harmless: Array<[string, string?]> = [
        ['-j DOCKER-USER', '-N DOCKER-USER\n-A DOCKER-USER -j RETURN'],
        ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES', '-N KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j ACCEPT\n-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n-N KUBE-NODEPORTS\n-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j ACCEPT'],
        ['-j EMPTY', '-N EMPTY'],
        ['-d 10.0.0.0/8 -j ACCEPT'],
        ['! -d 169.254.0.0/16 -j ACCEPT'],
        ['-p udp -j ACCEPT'],
        ['-p tcp -m tcp --dport 443 -j ACCEPT'],
        ['-p tcp -m multiport --dports 22,443:445 -j ACCEPT'],
        ['-m owner --uid-owner 0 -j ACCEPT'],
        ['-j LOG --log-prefix "out "'],
        ['-m conntrack --ctstate INVALID -j DROP'],
        ['-j REJECT --reject-with icmp-port-unreachable'],
        ['-o eth0'],
      ]
      for (const [ahead, chains] of harmless) {
        const s = status(ahead, chains)
        assert.equal(s.problem, null, ahead)
        assert.equal(s.first, false)
        assert.equal(s.ahead.length, 1, ahead)
      }
      // And those that may are the problem, named
      const passing: Array<[string, string?]> = [
        ['-j ACCEPT'],
        ['-d 169.254.0.0/16 -j ACCEPT'],
        ['-p tcp -m multiport --dports 80,443 -j ACCEPT'],
        ['! -p udp -j ACCEPT'],
        ['-m owner ! --uid-owner 0 -j ACCEPT'],
        ['-j RETURN'],
        ['-g DOCKER-USER', '-N DOCKER-USER\n-A DOCKER-USER -j RETURN'],
        ['-j CUSTOM', '-N CUSTOM\n-A CUSTOM -j LOG\n-A CUSTOM -d 169.254.169.254/32 -j ACCEPT'],
        ['-j LOOP', '-N LOOP\n-A LOOP -p tcp -j LOOP'],
        ['-j NFQUEUE --queue-num 1'],
      ]
      for (const [ahead, chains] of passing) assert.match(status(ahead, chains).problem ?? 'no problem', /may let connections past: -A OUTPUT /, ahead)
      // And IPv6 addresses are judged as such
      assert.equal(status('-d 2001:db8::/32 -j ACCEPT', '', 6).problem, null)
      assert.match(status('-d fd00::/8 -j ACCEPT', '', 6).problem!, /may let connections past/)
      assert.match(status('-d fd00:ec2::254/128 -j ACCEPT', '', 6).problem!, /may let connections past/)
    })

    it('leaves forwarded connections alone with forwarded_imds = passthrough, and takes out an earlier forward guard', async () => {
      const host = fakeHost()
      await installInterception(await planFor(host), {run: host.run})
      const report = await installInterception(await planFor(host, {forwarded: 'passthrough'}), {run: host.run})
      assert.deepEqual(report.families.map((f) => f.forwardGuard), [false, false])
      for (const xt of [host.v4, host.v6]) {
        assert.equal(xt.chain('filter', FORWARD_CHAIN), undefined)
        assert.deepEqual(xt.forwardJumps(), [])
        assert.deepEqual(xt.jumps('nat').length, 1)
      }
    })

    it('says when conntrack is missing, and installs anyway', async () => {
      const host = fakeHost({conntrack: 'missing'})
      const report = await installInterception(await planFor(host), {run: host.run})
      assert.deepEqual(report.connections, {skipped: 'conntrack (conntrack-tools) is not installed'})
      assert.deepEqual(host.v4.jumps('nat'), [jumpRule(4)])
    })

    it('removes every jump and both chains, in both families, and finds nothing the second time', async () => {
      // Given an installation, plus a jump of another shape to the chain
      const host = fakeHost()
      await installInterception(await planFor(host), {run: host.run})
      host.v4.tables.nat.get('OUTPUT')!.push(['-p', 'udp', '-j', CHAIN], ['-d', '10.9.9.9', '-j', 'ACCEPT'])
      // When removed
      const removed = await removeInterception({iptables: '/sbin/iptables', run: host.run})
      // Then nothing of ours is left, and the host's own rule is
      for (const xt of [host.v4, host.v6]) {
        for (const table of ['nat', 'filter']) {
          assert.equal(xt.chain(table, CHAIN), undefined)
          assert.deepEqual(xt.jumps(table), [])
        }
        assert.equal(xt.chain('filter', FORWARD_CHAIN), undefined)
        assert.deepEqual(xt.forwardJumps(), [])
      }
      assert.deepEqual(host.v4.tables.nat.get('OUTPUT'), [['-d', '10.9.9.9', '-j', 'ACCEPT']])
      assert.deepEqual(removed, [
        {family: 4, binary: '/sbin/iptables', jumpsRemoved: 4, chainsRemoved: 3},
        {family: 6, binary: '/sbin/ip6tables', jumpsRemoved: 3, chainsRemoved: 3},
      ])
      // And a second removal finds nothing to do
      assert.deepEqual(await removeInterception({iptables: '/sbin/iptables', run: host.run}), [])
    })

    it('removes what it can where ip6tables is missing or has no nat table', async () => {
      for (const ip6tables of ['missing', 'no-nat'] as const) {
        const host = fakeHost({ip6tables})
        await installInterception(await planFor(host), {run: host.run})
        const removed = await removeInterception({iptables: '/sbin/iptables', run: host.run})
        assert.deepEqual(
          removed.map((r) => [r.family, r.chainsRemoved]),
          ip6tables === 'missing'
            ? [[4, 3]]
            : [
                [4, 3],
                [6, 2],
              ],
        )
      }
    })

    it('fails with the command and its message when iptables refuses', async () => {
      const host = fakeHost()
      const plan = await planFor(host, {ipv6: false})
      const run: RunCommand = async (file, args) =>
        args.includes('-I') && args.includes(CHAIN) && args[2] === 'filter'
          ? {
              code: 4,
              stdout: '',
              stderr: 'iptables v1.8.9 (nf_tables): RULE_INSERT failed (No such file or directory)\n',
            }
          : host.run(file, args)
      const filterInsert = async () => installInterception(plan, {run})
      await assert.rejects(
        filterInsert(),
        (e: UserError) =>
          e.kind === 'unavailable' &&
          /^\/sbin\/iptables -t filter -I EC2USERKEYD 1 .* failed: .*RULE_INSERT failed/.test(e.message),
      )
    })
  })

  describe('forgetting connections opened before the rules', () => {
    it('reads "0 flow entries" (exit status 1) as nothing to delete', async () => {
      const host = fakeHost({conntrack: 0})
      assert.deepEqual(
        await forgetImdsConnections({iptables: '/sbin/iptables', families: [4], run: host.run}),
        {deleted: {4: 0}},
      )
    })

    it('looks for conntrack beside iptables, then in PATH', async () => {
      const tried: string[] = []
      const run: RunCommand = async (file) => {
        tried.push(file)
        if (file !== 'conntrack') throw Object.assign(new Error('ENOENT'), {code: 'ENOENT'})
        return {
          code: 0,
          stdout: '',
          stderr: 'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n',
        }
      }
      assert.deepEqual(await forgetImdsConnections({iptables: '/usr/sbin/iptables', families: [4], run}), {
        deleted: {4: 3},
      })
      assert.deepEqual(tried, ['/usr/sbin/conntrack', 'conntrack'])
    })

    it('reports a conntrack that fails instead of failing', async () => {
      const run: RunCommand = async () => ({
        code: 1,
        stdout: '',
        stderr: 'conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted\n',
      })
      assert.deepEqual(await forgetImdsConnections({iptables: '/sbin/iptables', families: [4], run}), {
        skipped:
          'conntrack -D -p tcp --orig-dst 169.254.169.254 --orig-port-dst 80 failed: conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted',
      })
    })
  })

  describe('in a network namespace of its own (root, unshare, iptables)', () => {
    const variants = [
      {name: 'iptables', label: 'the default iptables (nf_tables on Debian)'},
      {name: 'iptables-legacy', label: 'iptables-legacy'},
    ]

    for (const variant of variants)
      it(`redirects nobody to the daemon and lets root through, installed twice, replaced after a crash, then removed: ${variant.label}`, async function () {
        this.timeout(90_000)
        const missing = netnsMissing(['unshare', 'ip', variant.name])
        if (missing) return skipBecause(this, missing)
        const binary = commandPath(variant.name)
        // Given a private network namespace with stand-ins for IMDS and the daemon (see NETNS_SCRIPT)
        const result = runInNewNetns(NETNS_SCRIPT, [IPTABLES_MODULE.href, binary], {tsx: true, timeoutMs: 80_000})
        if ('skipped' in result) return skipBecause(this, result.skipped)
        assert.equal(result.status, 0, `${result.stderr}\n${result.stdout}`)
        const r = JSON.parse(result.stdout) as NetnsResult
        const ours = (listing: string) => listing.split('\n').filter((l) => l.includes(CHAIN))
        const jumps = (listing: string) =>
          listing.split('\n').filter((l) => l.startsWith('-A OUTPUT') && l.endsWith(`-j ${CHAIN}`))

        // Before the rules, nobody reaches the IMDS stand-in
        assert.equal(r.before.nobody, 'imds')
        // Installed: one jump per table, and the chains hold the rules
        for (const listing of [r.installed.nat4, r.installed.filter4])
          assert.equal(jumps(listing).length, 1, listing)
        assert.deepEqual(
          ours(r.installed.nat4).filter((l) => l.startsWith(`-A ${CHAIN}`)),
          [
            `-A ${CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --uid-owner 0 -j RETURN`,
            `-A ${CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:${r.port}`,
          ],
        )
        assert.deepEqual(
          ours(r.installed.filter4).filter((l) => l.startsWith(`-A ${CHAIN} `)),
          [
            `-A ${CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --uid-owner 0 -j RETURN`,
            `-A ${CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -m owner --socket-exists -j REJECT --reject-with tcp-reset`,
          ],
        )
        // And forwarded traffic (no socket to own it) is reset from FORWARD, the jump first
        assert.ok(r.installed.filter4.split('\n').includes(`-A ${FORWARD_CHAIN} -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset`), r.installed.filter4)
        assert.equal(r.installed.filter4.split('\n').find((l) => l.startsWith('-A FORWARD')), `-A FORWARD -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j ${FORWARD_CHAIN}`)
        // nobody reaches the daemon, root reaches IMDS
        assert.deepEqual(r.installed.traffic, {nobody: 'daemon', root: 'imds'})
        // Also with IMDS routed out of an interface and a non-loopback source, as on EC2, and route_localnet off
        assert.equal(r.routeLocalnet, '0')
        if ('skipped' in r.ec2Routing)
          console.log(`      (EC2-like routing skipped: ${r.ec2Routing.skipped})`)
        else {
          assert.match(r.ec2Routing.source, /dev v0 src 10\.0\.0\.5/)
          assert.equal(r.ec2Routing.nobody, 'daemon')
        }
        // A connection nobody opened before the rules is cut, its conntrack entry deleted
        const {connections} = r.installed.report
        if ('skipped' in connections) console.log(`      (conntrack part skipped: ${connections.skipped})`)
        else assert.ok(connections.deleted[4] >= 1, JSON.stringify(connections))
        assert.match(r.installed.earlierConnection, /^error|^closed/)
        // Installed again: the same rules, still one jump
        assert.deepEqual(r.again, {nat4: r.installed.nat4, filter4: r.installed.filter4})
        // After a crash left duplicate jumps and a stale rule: one jump, the right rules
        assert.equal(jumps(r.afterCrash.nat4).length, 1, r.afterCrash.nat4)
        assert.equal(r.afterCrash.nat4, r.installed.nat4)
        assert.equal(r.afterCrash.report.families[0].duplicateJumpsRemoved, 2)
        // Without conntrack, the filter rules cut the connection opened before the rules
        assert.deepEqual(r.withoutConntrack.report.connections, {
          skipped: 'conntrack (conntrack-tools) is not installed',
        })
        assert.match(r.withoutConntrack.earlierConnection, /^error|^closed/)
        assert.equal(r.withoutConntrack.nobody, 'daemon')
        // IPv6, where the namespace has it
        if ('skipped' in r.ipv6) console.log(`      (IPv6 part skipped: ${r.ipv6.skipped})`)
        else {
          assert.equal(jumps(r.ipv6.nat6).length, 1, r.ipv6.nat6)
          assert.match(r.ipv6.nat6, /-j DNAT --to-destination \[::1\]:\d+/)
          assert.deepEqual(r.ipv6.traffic, {nobody: 'daemon6', root: 'imds6'})
        }
        // Removed: nothing of ours in any table, and nobody reaches IMDS again
        for (const listing of Object.values(r.removed.listings)) assert.deepEqual(ours(listing), [], listing)
        assert.equal(r.removed.nobody, 'imds')
        assert.deepEqual(r.removedAgain, [])
      })
  })
})

interface NetnsResult {
  port: number
  routeLocalnet: string
  before: {nobody: string}
  installed: {
    nat4: string
    filter4: string
    traffic: Record<string, string>
    report: {connections: {deleted: Record<number, number>} | {skipped: string}}
    earlierConnection: string
  }
  again: {nat4: string; filter4: string}
  ec2Routing: {skipped: string} | {nobody: string; source: string}
  afterCrash: {nat4: string; report: {families: {duplicateJumpsRemoved: number}[]}}
  withoutConntrack: {report: {connections: unknown}; earlierConnection: string; nobody: string}
  ipv6: {skipped: string} | {nat6: string; traffic: Record<string, string>}
  removed: {listings: Record<string, string>; nobody: string}
  removedAgain: unknown[]
}

/**
 * Runs inside `unshare --net` (argv[1]: the iptables module, argv[2]: the iptables binary):
 * loopback up, 169.254.169.254 and fd00:ec2::254 on lo with a stand-in IMDS on port 80 that
 * answers "imds", a stand-in daemon on 127.0.0.1 and [::1] that answers "daemon", and clients
 * run as root or nobody (uid 65534) that print what answered them.
 */
const NETNS_SCRIPT = `
import {execFileSync, spawn} from 'node:child_process'
import {once} from 'node:events'
import {readFileSync} from 'node:fs'
import net from 'node:net'
const {planInterception, installInterception, removeInterception, ip6tablesFor, runCommand} = await import(process.argv[1])
const iptables = process.argv[2]
const ip6tables = ip6tablesFor(iptables)
// Children die with this script, also when the test's timeout ends it
const children = new Set()
const track = (child) => (children.add(child), child.on('exit', () => children.delete(child)), child)
process.on('SIGTERM', () => {
  for (const child of children) child.kill('SIGKILL')
  process.exit(1)
})
const PORT = 8808
const sh = (...command) => execFileSync(command[0], command.slice(1), {encoding: 'utf8', stdio: 'pipe'})
const list = (binary, table) => sh(binary, '-w', '-t', table, '-S')
async function serve(host, port, name) {
  const server = net.createServer((s) => s.on('data', () => s.write(name)).on('error', () => {})).listen(port, host)
  await once(server, 'listening')
  return server
}
const CLIENT = \`
  const s = require('net').connect({host: process.argv[1], port: 80, localAddress: process.argv[2] || undefined})
  const say = (w) => process.stdout.write(w + '\\\\n')
  s.setTimeout(5000, () => { say('timeout'); s.destroy() })
  s.on('connect', () => s.write('hello'))
  s.on('data', (d) => { say(String(d)); s.setTimeout(0); if (!process.argv[3]) s.destroy() })
  s.on('error', (e) => { say('error ' + e.code); process.exit() })
  s.on('close', () => { say('closed') })
  process.stdin.on('data', () => s.write('again')).on('end', () => s.destroy())
\`
/** A client as uid; lines() gives what it printed so far. */
function client(uid, host, {localAddress = '', stay = false} = {}) {
  const child = track(spawn(process.execPath, ['-e', CLIENT, host, localAddress, stay ? 'stay' : ''], {uid, gid: uid, cwd: '/', stdio: ['pipe', 'pipe', 'inherit']}))
  let out = ''
  child.stdout.on('data', (c) => (out += c))
  const next = async (n) => {
    const until = Date.now() + 8000
    while (out.split('\\n').filter(Boolean).length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20))
    return out.split('\\n').filter(Boolean)[n - 1] ?? 'nothing'
  }
  return {child, next}
}
async function ask(uid, host, localAddress) {
  const c = client(uid, host, {localAddress})
  const answer = await c.next(1)
  c.child.kill()
  return answer
}
const noConntrack = async (file, args) => {
  if (file.endsWith('conntrack')) throw Object.assign(new Error('spawn conntrack ENOENT'), {code: 'ENOENT'})
  return runCommand(file, args)
}
const options = {iptables, listenPort: PORT, daemonUid: 0}
const r = {port: PORT}

sh('ip', 'link', 'set', 'lo', 'up')
sh('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
// An interface as eth0 on EC2 (a veth end, where the kernel has veth)
let veth = null
try {
  sh('ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1')
  sh('ip', 'link', 'set', 'v0', 'up')
  sh('ip', 'link', 'set', 'v1', 'up')
  sh('ip', 'addr', 'add', '10.0.0.5/24', 'dev', 'v0')
} catch (error) {
  veth = String(error.stderr || error.message).trim().split('\\n')[0]
}
r.routeLocalnet = readFileSync('/proc/sys/net/ipv4/conf/all/route_localnet', 'utf8').trim()
// Connection tracking on before the rules, as on most hosts, so that earlier connections have entries
sh(iptables, '-w', '-t', 'filter', '-A', 'INPUT', '-m', 'conntrack', '--ctstate', 'INVALID', '-j', 'ACCEPT')
const servers = [await serve('169.254.169.254', 80, 'imds'), await serve('127.0.0.1', PORT, 'daemon')]

r.before = {nobody: await ask(65534, '169.254.169.254')}
const earlier = client(65534, '169.254.169.254', {stay: true})
if ((await earlier.next(1)) !== 'imds') throw new Error('the earlier connection did not reach IMDS')

// Installed
const plan = await planInterception({...options, run: runCommand})
plan.families = plan.families.filter((f) => f.family === 4)
const report = await installInterception(plan, {ipv6Listener: false})
earlier.child.stdin.write('x')
r.installed = {
  nat4: list(iptables, 'nat'),
  filter4: list(iptables, 'filter'),
  report,
  traffic: {
    nobody: await ask(65534, '169.254.169.254'),
    root: await ask(0, '169.254.169.254'),
  },
  earlierConnection: await earlier.next(2),
}
earlier.child.kill()

// Installed again
await installInterception(plan, {ipv6Listener: false})
r.again = {nat4: list(iptables, 'nat'), filter4: list(iptables, 'filter')}

// Routed as on EC2: IMDS behind eth0 rather than a local address, the client's source eth0's address
if (veth) r.ec2Routing = {skipped: veth}
else {
  sh('ip', 'addr', 'del', '169.254.169.254/32', 'dev', 'lo')
  sh('ip', 'route', 'add', '169.254.169.254/32', 'via', '10.0.0.1', 'dev', 'v0')
  r.ec2Routing = {nobody: await ask(65534, '169.254.169.254'), source: sh('ip', 'route', 'get', '169.254.169.254').trim()}
  sh('ip', 'route', 'del', '169.254.169.254/32')
  sh('ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo')
}

// A crash left two more jumps and a rule for another port
const jump = ['-p', 'tcp', '-d', '169.254.169.254', '--dport', '80', '-j', 'EC2USERKEYD']
sh(iptables, '-w', '-t', 'nat', '-A', 'OUTPUT', ...jump)
sh(iptables, '-w', '-t', 'nat', '-I', 'OUTPUT', '1', ...jump)
sh(iptables, '-w', '-t', 'nat', '-A', 'EC2USERKEYD', '-p', 'tcp', '-j', 'DNAT', '--to-destination', '127.0.0.1:9999')
const afterCrash = await installInterception(plan, {ipv6Listener: false})
r.afterCrash = {nat4: list(iptables, 'nat'), report: afterCrash}

// Without conntrack: removed, a connection opened, installed again
await removeInterception({iptables})
const earlier2 = client(65534, '169.254.169.254', {stay: true})
if ((await earlier2.next(1)) !== 'imds') throw new Error('the second earlier connection did not reach IMDS')
const withoutConntrack = await installInterception(plan, {ipv6Listener: false, run: noConntrack})
earlier2.child.stdin.write('x')
r.withoutConntrack = {report: withoutConntrack, earlierConnection: await earlier2.next(2), nobody: await ask(65534, '169.254.169.254')}
earlier2.child.kill()

// IPv6
try {
  sh('ip', '-6', 'addr', 'add', 'fd00:ec2::254/128', 'dev', 'lo', 'nodad')
  servers.push(await serve('fd00:ec2::254', 80, 'imds6'), await serve('::1', PORT, 'daemon6'))
  const plan6 = await planInterception({...options, run: runCommand})
  if (!plan6.families.some((f) => f.family === 6 && f.redirect)) throw new Error(plan6.notes.join('; ') || 'no IPv6 in the plan')
  await installInterception(plan6, {ipv6Listener: true})
  r.ipv6 = {nat6: list(ip6tables, 'nat'), traffic: {nobody: await ask(65534, 'fd00:ec2::254'), root: await ask(0, 'fd00:ec2::254')}}
} catch (error) {
  r.ipv6 = {skipped: String(error.stderr || error.message).trim().split('\\n')[0]}
}

// Removed
await removeInterception({iptables})
r.removed = {listings: {}, nobody: await ask(65534, '169.254.169.254')}
for (const [binary, table] of [[iptables, 'nat'], [iptables, 'filter'], [ip6tables, 'nat'], [ip6tables, 'filter']])
  try {
    r.removed.listings[binary + ' ' + table] = list(binary, table)
  } catch {}
r.removedAgain = await removeInterception({iptables})
for (const server of servers) server.close()
console.log(JSON.stringify(r))
process.exit(0)
`
