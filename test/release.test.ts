// The release artifacts (npm run package) as an admin meets them: the tarball runs on a host
// without Node.js, the .deb installs, runs, verifies and removes cleanly with dpkg, the .rpm holds
// the files and scripts it should, and the arm64 twins hold an arm64 runtime and koffi binary.
// Building them takes a few minutes and the npm registry: this runs in CI (CI set) or with
// RELEASE_TEST=1, as root with dpkg-deb, rpm and rpmbuild; skipped, saying why, otherwise.
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {parseConfig} from '../src/lib/config/load.js'
import {repoRoot} from './support/cli.js'
import {commandPath, skipBecause} from './support/netns.js'

const {version, config} = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {version: string; config: {node: string}}
const release = join(repoRoot, 'release')
const artifact = (name: string) => join(release, name)
const sh = (file: string, ...args: string[]) => execFileSync(file, args, {encoding: 'utf8', maxBuffer: 256 * 1024 * 1024})

/** The ELF machine of a binary: 62 x86-64, 183 AArch64. */
function elfMachine(file: string): number {
  const fd = openSync(file, 'r')
  const header = Buffer.alloc(20)
  readSync(fd, header, 0, 20, 0)
  closeSync(fd)
  return header.readUInt16LE(18)
}

describe('the release artifacts (npm run package)', function () {
  this.timeout(900_000)
  before(function () {
    if (!process.env.CI && !process.env.RELEASE_TEST) return skipBecause(this, 'builds six artifacts (minutes, the npm registry): runs in CI, or with RELEASE_TEST=1')
    const missing = ['dpkg-deb', 'dpkg', 'rpm', 'rpmbuild', 'tar'].filter((t) => !commandPath(t))
    if (process.getuid?.() !== 0 || missing.length) return skipBecause(this, `needs root and ${missing.join(', ') || 'nothing else'}`)
    if (existsSync('/opt/ec2userkeyd') || spawnSync('dpkg', ['-s', 'ec2userkeyd']).status === 0) return skipBecause(this, 'ec2userkeyd is installed on this machine: the test will not touch it')
    const result = spawnSync('npm', ['run', 'package', '--silent'], {cwd: repoRoot, encoding: 'utf8', timeout: 840_000})
    assert.equal(result.status, 0, result.stderr.slice(-3000))
  })

  it("runs the tarball's ec2userkeyd with its own Node.js, on a PATH without node", () => {
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-tarball-'))
    try {
      sh('tar', '-xzf', artifact(`ec2userkeyd-${version}-linux-x64.tar.gz`), '-C', dir)
      const path = join(dir, 'path')
      mkdirSync(path)
      for (const tool of ['readlink', 'dirname']) symlinkSync(commandPath(tool), join(path, tool))
      const run = spawnSync(join(dir, `ec2userkeyd-${version}-linux-x64`, 'bin', 'ec2userkeyd'), ['--version'], {env: {PATH: path, HOME: '/nonexistent'}, encoding: 'utf8'})
      assert.equal(run.status, 0, run.stderr)
      assert.equal(run.stdout.trim(), `ec2userkeyd/${version} linux-x64 node-v${config.node}`)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('installs the .deb with dpkg: the command, the sample configuration, units systemd verifies; removes it leaving nothing but the configuration, which purge takes', () => {
    const deb = artifact(`ec2userkeyd_${version}_amd64.deb`)
    assert.equal(sh('dpkg-deb', '-f', deb, 'Architecture').trim(), 'amd64')
    try {
      sh('dpkg', '-i', deb)
      assert.equal(sh('/usr/bin/ec2userkeyd', '--version').trim(), `ec2userkeyd/${version} linux-x64 node-v${config.node}`)
      const shown = JSON.parse(sh('/usr/bin/ec2userkeyd', 'config', 'show', '--config', '/etc/ec2userkeyd.conf', '--json')) as {general: Record<string, unknown>}
      assert.deepEqual([shown.general.require_imdsv2, shown.general.deny_user_data, shown.general.deny_instance_identity], [true, true, true])
      assert.deepEqual(parseConfig(readFileSync('/etc/ec2userkeyd.conf', 'utf8'), '/etc/ec2userkeyd.conf').general.require_imdsv2, true)
      const units = ['ec2userkeyd.service', 'ec2userkeyd.socket', 'ec2userkeyd-intercept.service'].map((u) => `/usr/lib/systemd/system/${u}`)
      for (const unit of units.filter((u) => u.endsWith('.service'))) assert.match(readFileSync(unit, 'utf8'), /^ExecStart=\/usr\/bin\/ec2userkeyd /m)
      if (commandPath('systemd-analyze')) {
        const verify = spawnSync('systemd-analyze', ['verify', '--man=no', ...units], {encoding: 'utf8'})
        assert.equal(verify.status, 0, verify.stderr)
        assert.equal(verify.stderr, '')
      }
      sh('dpkg', '-r', 'ec2userkeyd')
      for (const gone of ['/opt/ec2userkeyd', '/usr/bin/ec2userkeyd', ...units]) assert.ok(!existsSync(gone), `${gone} left after dpkg -r`)
      assert.ok(existsSync('/etc/ec2userkeyd.conf'), 'the configuration stays until purge')
      sh('dpkg', '-P', 'ec2userkeyd')
      assert.ok(!existsSync('/etc/ec2userkeyd.conf'), 'purge takes the configuration')
    } finally {
      spawnSync('dpkg', ['-P', 'ec2userkeyd'])
    }
  })

  it('builds the .rpm with the files, the configuration file and the scripts RPM hosts expect', () => {
    const rpm = artifact(`ec2userkeyd-${version}-1.x86_64.rpm`)
    const files = sh('rpm', '-qlp', rpm).split('\n')
    for (const file of ['/opt/ec2userkeyd/bin/ec2userkeyd', '/opt/ec2userkeyd/node/bin/node', '/opt/ec2userkeyd/app/bin/run.js', '/usr/bin/ec2userkeyd', '/usr/lib/systemd/system/ec2userkeyd.service', '/usr/lib/systemd/system/ec2userkeyd.socket', '/usr/lib/systemd/system/ec2userkeyd-intercept.service', '/etc/ec2userkeyd.conf'])
      assert.ok(files.includes(file), `${file} in the rpm`)
    assert.deepEqual(sh('rpm', '-qp', '--configfiles', rpm).trim().split('\n'), ['/etc/ec2userkeyd.conf'])
    const scripts = sh('rpm', '-qp', '--scripts', rpm)
    assert.match(scripts, /preuninstall scriptlet[\s\S]*intercept remove/)
    assert.match(scripts, /postinstall scriptlet[\s\S]*systemctl --no-reload preset/)
    assert.doesNotMatch(scripts.split('preuninstall')[0], /systemctl (start|restart)/, 'RPM: not started on install')
    assert.equal(sh('rpm', '-qp', '--queryformat', '%{ARCH}', rpm), 'x86_64')
  })

  it('builds the arm64 twins, with an AArch64 runtime and koffi binary', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-arm64-'))
    try {
      sh('tar', '-xzf', artifact(`ec2userkeyd-${version}-linux-arm64.tar.gz`), '-C', dir)
      const tree = join(dir, `ec2userkeyd-${version}-linux-arm64`)
      assert.equal(elfMachine(join(tree, 'node', 'bin', 'node')), 183)
      assert.equal(elfMachine(join(tree, 'app', 'node_modules', '@koromix', 'koffi-linux-arm64', 'linux_arm64', 'koffi.node')), 183)
      assert.ok(!existsSync(join(tree, 'app', 'node_modules', '@koromix', 'koffi-linux-x64')), 'no x64 binary in the arm64 tree')
      assert.equal(sh('dpkg-deb', '-f', artifact(`ec2userkeyd_${version}_arm64.deb`), 'Architecture').trim(), 'arm64')
      assert.ok(sh('dpkg-deb', '-c', artifact(`ec2userkeyd_${version}_arm64.deb`)).includes('./opt/ec2userkeyd/app/node_modules/@koromix/koffi-linux-arm64/linux_arm64/koffi.node'))
      const rpm = artifact(`ec2userkeyd-${version}-1.aarch64.rpm`)
      assert.equal(sh('rpm', '-qp', '--queryformat', '%{ARCH}', rpm), 'aarch64')
      assert.ok(sh('rpm', '-qlp', rpm).split('\n').includes('/opt/ec2userkeyd/node/bin/node'))
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
