// The systemd unit in packaging/: what it must keep (root, the capabilities and socket families
// the daemon uses, none of the sandboxing options that would break it), and `systemd-analyze
// verify` on it where systemd is installed.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {repoRoot} from './support/cli.js'

const UNIT = join(repoRoot, 'packaging', 'ec2userkeyd.service')
const UNITS = ['ec2userkeyd.service', 'ec2userkeyd.socket', 'ec2userkeyd-intercept.service']

const hasSystemdAnalyze = () => spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0

/**
 * The three units copied into `dir`, their ExecStart pointed at this checkout's bin/run.js: verify
 * insists that every Exec*= program exists, and /usr/local/bin/ec2userkeyd only does once it is
 * installed. Everything else, ExecStartPre's /bin/sh and ExecReload's /bin/kill included, is
 * checked as it stands.
 */
function copyUnits(dir: string): string[] {
  const run = `"${join(repoRoot, 'bin', 'run.js')}"`
  return UNITS.map((name) => {
    const copy = join(dir, name)
    writeFileSync(copy, readFileSync(join(repoRoot, 'packaging', name), 'utf8').replaceAll('/usr/local/bin/ec2userkeyd', run))
    return copy
  })
}
const EXEC_START = 'ExecStart=/usr/local/bin/ec2userkeyd serve'

/** The unit's settings by section, each key with all its values in order (comments dropped). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>()
  let current: Map<string, string[]> | undefined
  for (const line of text.split('\n')) {
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) continue
    const section = /^\[(.+)\]$/.exec(trimmed)
    if (section) {
      current = new Map()
      sections.set(section[1], current)
      continue
    }
    const setting = /^([A-Za-z0-9]+)=(.*)$/.exec(trimmed)
    assert.ok(setting && current, `not a setting in a section: ${line}`)
    current.set(setting[1], [...(current.get(setting[1]) ?? []), setting[2]])
  }
  return sections
}

describe('packaging/ec2userkeyd.service', () => {
  const text = readFileSync(UNIT, 'utf8')
  const unit = parseUnit(text)
  const service = unit.get('Service')!
  const words = (key: string) => (service.get(key) ?? []).join(' ').split(/\s+/).filter(Boolean)

  it('starts `ec2userkeyd serve` as root before user sessions, and restarts it on failure', () => {
    // Given the unit as shipped
    // Then it runs the daemon from where the README's install puts it, as root
    assert.ok(text.split('\n').includes(EXEC_START), `the unit must say ${EXEC_START}`)
    for (const key of ['User', 'Group', 'DynamicUser'])
      assert.equal(service.get(key), undefined, `${key}= would take root away`)
    // And it counts as started once the daemon says READY=1 (its rules are in), from its own process only
    assert.deepEqual(service.get('Type'), ['notify'])
    assert.deepEqual(service.get('NotifyAccess'), ['main'])
    assert.deepEqual(service.get('ExecReload'), ['/bin/kill -HUP $MAINPID'])
    assert.deepEqual(service.get('Restart'), ['on-failure'])
    // And it is ordered before logins, after the network, and wanted by multi-user.target
    assert.deepEqual(unit.get('Unit')!.get('Before'), ['systemd-user-sessions.service'])
    assert.deepEqual(unit.get('Unit')!.get('After'), ['network-online.target ec2userkeyd-intercept.service ec2userkeyd.socket'])
    assert.deepEqual(unit.get('Unit')!.get('Wants'), ['network-online.target ec2userkeyd-intercept.service ec2userkeyd.socket'])
    assert.deepEqual(unit.get('Install')!.get('WantedBy'), ['multi-user.target'])
    // And /run/ec2userkeyd exists for admin_listen's socket, and stays when it stops (the socket unit's is there)
    assert.deepEqual(service.get('RuntimeDirectory'), ['ec2userkeyd'])
    assert.deepEqual(service.get('RuntimeDirectoryPreserve'), ['yes'])
  })

  it('sandboxes the daemon without taking away what it needs', () => {
    // Given the unit as shipped
    // Then root keeps exactly the capabilities for netfilter, iptables-legacy's raw socket and port 808
    assert.deepEqual(words('CapabilityBoundingSet').sort(), [
      'CAP_NET_ADMIN',
      'CAP_NET_BIND_SERVICE',
      'CAP_NET_RAW',
    ])
    // And the socket families: syslog, NSS and the admin socket; the listeners and AWS; sock_diag and nftables
    assert.deepEqual(words('RestrictAddressFamilies').sort(), [
      'AF_INET',
      'AF_INET6',
      'AF_NETLINK',
      'AF_UNIX',
    ])
    for (const [key, value] of Object.entries({
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ReadOnlyPaths: '/run',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectControlGroups: 'yes',
      SystemCallFilter: '@system-service',
      SystemCallErrorNumber: 'EPERM',
    }))
      assert.deepEqual(service.get(key), [value], `${key}=${value}`)
    // And none of the options that would break it: the host's network and users, /proc/net, V8's JIT
    for (const key of [
      'PrivateNetwork',
      'PrivateUsers',
      'IPAddressDeny',
      'RestrictNetworkInterfaces',
      'ProcSubset',
      'MemoryDenyWriteExecute',
    ])
      assert.equal(service.get(key), undefined, `${key}= must not be set`)
  })

  it('passes `systemd-analyze verify`, with its socket and its early interception', function () {
    if (!hasSystemdAnalyze()) {
      console.log('      (skipped: systemd-analyze is not installed; apt-get install systemd)')
      return this.skip()
    }
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-unit-'))
    try {
      const copies = copyUnits(dir)
      // When systemd checks them
      const result = spawnSync('systemd-analyze', ['verify', '--man=no', ...copies], {
        encoding: 'utf8',
        timeout: 60_000,
      })
      // Then they load without an error or a warning (verify exits 0 on unknown keys, but names them)
      assert.equal(result.error, undefined, String(result.error))
      assert.equal(result.status, 0, result.stderr)
      assert.equal(result.stderr, '')
      assert.equal(result.stdout, '')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('packaging/ec2userkeyd.socket and ec2userkeyd-intercept.service', () => {
  const socket = parseUnit(readFileSync(join(repoRoot, 'packaging', 'ec2userkeyd.socket'), 'utf8'))
  const intercept = parseUnit(readFileSync(join(repoRoot, 'packaging', 'ec2userkeyd-intercept.service'), 'utf8'))

  it('holds the metadata listeners (IPv4 and IPv6) and the admin socket for ec2userkeyd.service, root only', () => {
    assert.deepEqual(socket.get('Socket')!.get('ListenStream'), ['127.0.0.1:808', '[::1]:808', '/run/ec2userkeyd/admin.sock'])
    assert.deepEqual(socket.get('Socket')!.get('SocketMode'), ['0600'])
    assert.deepEqual(socket.get('Socket')!.get('Service'), ['ec2userkeyd.service'])
    assert.deepEqual(socket.get('Install')!.get('WantedBy'), ['sockets.target'])
  })

  it('installs the interception at boot before the network and user sessions, and never removes it when stopped', () => {
    const unit = intercept.get('Unit')!
    const service = intercept.get('Service')!
    assert.deepEqual(service.get('ExecStart'), ['/usr/local/bin/ec2userkeyd intercept install'])
    assert.deepEqual(service.get('Type'), ['oneshot'])
    assert.deepEqual(service.get('RemainAfterExit'), ['yes'])
    assert.equal(service.get('ExecStop'), undefined, 'only `intercept remove` takes the rules out')
    assert.deepEqual(unit.get('DefaultDependencies'), ['no'])
    for (const before of ['network-pre.target', 'systemd-user-sessions.service', 'ec2userkeyd.service'])
      assert.ok(unit.get('Before')![0].split(' ').includes(before), before)
    assert.deepEqual(intercept.get('Install')!.get('WantedBy'), ['sysinit.target'])
  })

  it('installs the interception again when a firewall service restarts or reloads', () => {
    // Given the intercept unit: each firewall service it is ordered after replaces the tables when
    // it restarts or reloads
    const unit = intercept.get('Unit')!
    const firewalls = unit.get('After')![0].split(' ').filter((name) => name.endsWith('.service'))
    assert.deepEqual(firewalls.sort(), FIREWALLS.map((f) => `${f}.service`).sort())
    // Then a restart of any of them restarts this unit (ExecStart installs) and a reload reloads it
    assert.deepEqual(unit.get('PartOf')![0].split(' ').sort(), firewalls.sort())
    assert.deepEqual(unit.get('ReloadPropagatedFrom')![0].split(' ').sort(), firewalls.sort())
    assert.deepEqual(intercept.get('Service')!.get('ExecReload'), ['/usr/local/bin/ec2userkeyd intercept install'])
  })

  // The firewall services' own [Unit] sections as their distributions ship them
  // (test/support/firewall-units/): firewalld's and iptables-services' come after basic.target,
  // itself after sockets.target. Ordered after the intercept unit, the socket once closed a cycle
  // that systemd broke by deleting a job it chose anew each time: the intercept, the firewall, or
  // sockets.target.
  for (const set of [['firewalld'], ['iptables', 'ip6tables'], ['nftables'], ['netfilter-persistent', 'ufw']]) {
    it(`boots without an ordering cycle beside ${set.join(' and ')}.service`, function () {
      if (!hasSystemdAnalyze()) return this.skip()
      // Given our units and the firewall's, enabled as the packages enable them
      const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-units-'))
      try {
        copyUnits(dir)
        const enable = (target: string, name: string) => {
          mkdirSync(join(dir, `${target}.wants`), {recursive: true})
          symlinkSync(join(dir, name), join(dir, `${target}.wants`, name))
        }
        enable('sysinit.target', 'ec2userkeyd-intercept.service')
        enable('sockets.target', 'ec2userkeyd.socket')
        enable('multi-user.target', 'ec2userkeyd.service')
        for (const firewall of set) {
          const name = `${firewall}.service`
          copyFileSync(join(repoRoot, 'test', 'support', 'firewall-units', name), join(dir, name))
          enable(firewall === 'nftables' ? 'sysinit.target' : 'multi-user.target', name)
        }
        for (const target of ['multi-user.target', 'graphical.target']) {
          // When systemd plans the boot to each target
          const result = spawnSync('systemd-analyze', ['verify', '--man=no', target], {
            encoding: 'utf8',
            timeout: 60_000,
            env: {...process.env, SYSTEMD_UNIT_PATH: `${dir}:`},
          })
          // Then it finds no ordering cycle and deletes no job
          assert.equal(result.error, undefined, String(result.error))
          const output = result.stdout + result.stderr
          assert.doesNotMatch(output, /ordering cycle|deleted to break/, output)
        }
      } finally {
        rmSync(dir, {recursive: true, force: true})
      }
    })
  }
})

const FIREWALLS = ['firewalld', 'nftables', 'netfilter-persistent', 'iptables', 'ip6tables', 'ufw']
