// A model of iptables for tests that must not touch the host's tables: tables of chains of rules
// (argument vectors), with the exit statuses and messages of the real binary for what the code
// relies on, and a host of one iptables, one ip6tables and conntrack.
import assert from 'node:assert/strict'

import {CHAIN, CommandResult, commandLine, FORWARD_CHAIN, RunCommand} from '../../src/lib/host/iptables.js'

const BUILTIN = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'])

/**
 * A model of one iptables binary: tables of chains of rules (argument vectors), with the exit
 * statuses and messages of the real one for what the code relies on.
 */
export class FakeXtables {
  readonly tables: Record<string, Map<string, string[][]>> = {
    nat: new Map(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'].map((c) => [c, []])),
    filter: new Map(['INPUT', 'FORWARD', 'OUTPUT'].map((c) => [c, []])),
  }
  /** Called after every command that changed something. */
  onChange: () => void = () => {}
  /** A command for which this returns a message fails with it (exit status 4). */
  refuse: (args: readonly string[]) => string | null = () => null

  constructor(readonly withNat = true) {
    if (!withNat) delete this.tables.nat
  }

  chain(table: string, chain: string): string[][] | undefined {
    return this.tables[table]?.get(chain)
  }

  jumps(table: string): string[][] {
    return (this.chain(table, 'OUTPUT') ?? []).filter((rule) => rule.at(-1) === CHAIN)
  }

  forwardJumps(): string[][] {
    return (this.chain('filter', 'FORWARD') ?? []).filter((rule) => rule.at(-1) === FORWARD_CHAIN)
  }

  /** What `iptables -F` and `iptables -X` in every table leave: an iptables-restore, a firewall's reload. */
  flush(): void {
    for (const chains of Object.values(this.tables))
      for (const [name, rules] of chains) {
        if (BUILTIN.has(name)) rules.length = 0
        else chains.delete(name)
      }
  }

  run(args: readonly string[]): CommandResult {
    const fail = (stderr: string, code = 1) => ({code, stdout: '', stderr: `iptables: ${stderr}\n`})
    const refused = this.refuse(args)
    if (refused) return fail(refused, 4)
    const a = [...args]
    assert.equal(a.shift(), '-w', 'every command waits for the xtables lock')
    assert.equal(a.shift(), '-t')
    const chains = this.tables[a.shift()!]
    if (!chains)
      return fail("can't initialize iptables table: Table does not exist (do you need to insmod?)", 3)
    const [op, name, ...rest] = a
    if (op === '-S') {
      assert.equal(name, undefined)
      const lines = [...chains.keys()].map((c) => (BUILTIN.has(c) ? `-P ${c} ACCEPT` : `-N ${c}`))
      for (const [c, rules] of chains) for (const rule of rules) lines.push(`-A ${c} ${rule.join(' ')}`)
      return {code: 0, stdout: lines.join('\n') + '\n', stderr: ''}
    }
    const rules = chains.get(name)
    const find = (spec: string[]) => rules!.findIndex((r) => r.join(' ') === spec.join(' '))
    const targetMissing = (spec: string[]) => {
      const target = spec[spec.indexOf('-j') + 1]
      return (
        target === target.toUpperCase() &&
        /^[A-Z0-9-]+$/.test(target) &&
        !['RETURN', 'DNAT', 'REJECT', 'ACCEPT'].includes(target) &&
        !chains.has(target)
      )
    }
    const changed = <T>(result: T) => (this.onChange(), result)
    switch (op) {
      case '-N':
        if (rules) return fail('Chain already exists.')
        chains.set(name, [])
        return changed({code: 0, stdout: '', stderr: ''})
      case '-X': {
        if (!rules) return fail('No chain/target/match by that name.')
        const referenced = [...chains.values()].some((rs) => rs.some((r) => r.at(-1) === name))
        if (referenced || rules.length) return fail('Too many links.')
        chains.delete(name)
        return changed({code: 0, stdout: '', stderr: ''})
      }
      case '-F':
        if (!rules) return fail('No chain/target/match by that name.')
        rules.length = 0
        return changed({code: 0, stdout: '', stderr: ''})
      case '-A':
      case '-I': {
        if (!rules) return fail('No chain/target/match by that name.')
        const position =
          op === '-I' && /^\d+$/.test(rest[0]) ? Number(rest.shift()) : op === '-I' ? 1 : rules.length + 1
        if (targetMissing(rest)) return fail("Couldn't load target.")
        if (position > rules.length + 1) return fail('Index of insertion too big.')
        rules.splice(position - 1, 0, rest)
        return changed({code: 0, stdout: '', stderr: ''})
      }
      case '-D': {
        if (!rules) return fail('No chain/target/match by that name.')
        const index = rest.length === 1 && /^\d+$/.test(rest[0]) ? Number(rest[0]) - 1 : find(rest)
        if (index < 0) return fail('Bad rule (does a matching rule exist in that chain?).')
        if (index >= rules.length) return fail('Index of deletion too big.')
        rules.splice(index, 1)
        return changed({code: 0, stdout: '', stderr: ''})
      }
      case '-C':
        if (!rules) return fail('No chain/target/match by that name.')
        return find(rest) >= 0
          ? {code: 0, stdout: '', stderr: ''}
          : fail('Bad rule (does a matching rule exist in that chain?).')
      default:
        throw new Error(`the fake does not know ${args.join(' ')}`)
    }
  }
}

/** A host: iptables and (unless missing) ip6tables, conntrack (or not), and every command run. */
export function fakeHost(options: {ip6tables?: 'ok' | 'no-nat' | 'missing'; conntrack?: number | 'missing'} = {}) {
  const v4 = new FakeXtables()
  const v6 = new FakeXtables(options.ip6tables !== 'no-nat')
  const calls: string[] = []
  const conntrack = options.conntrack ?? 0
  const run: RunCommand = async (file, args) => {
    calls.push(commandLine(file, args))
    if (file === '/sbin/iptables') return v4.run(args)
    if (file === '/sbin/ip6tables' && options.ip6tables !== 'missing') return v6.run(args)
    if (file.endsWith('conntrack') && conntrack !== 'missing') {
      const message = `conntrack v1.4.7 (conntrack-tools): ${conntrack} flow entries have been deleted.\n`
      return {code: conntrack === 0 ? 1 : 0, stdout: '', stderr: message}
    }
    throw Object.assign(new Error(`spawn ${file} ENOENT`), {code: 'ENOENT'})
  }
  return {v4, v6, calls, run}
}

