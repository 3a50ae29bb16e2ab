// `npm run package`: the release artifacts, into release/, for linux x64 and arm64:
//   ec2userkeyd-VERSION-linux-ARCH.tar.gz   a self-contained tree that runs with no Node.js on the host
//   ec2userkeyd_VERSION_DEBARCH.deb         built with dpkg-deb
//   ec2userkeyd-VERSION-1.RPMARCH.rpm       built with rpmbuild (Debian's rpm package has it)
// Each holds the Node.js runtime the project is tested on (the npm registry's node-linux-ARCH, at
// the version package.json's config.node pins), dist/, the production node_modules from the
// lockfile (koffi's prebuilt binary for that architecture), and the wrapper bin/ec2userkeyd. The
// packages lay it out under /opt/ec2userkeyd, with /usr/bin/ec2userkeyd, the systemd units in
// /usr/lib/systemd/system and /etc/ec2userkeyd.conf as a configuration file.
//   node --import tsx scripts/package.ts [--arch x64|arm64]... [--skip-rpm]
import {execFileSync} from 'node:child_process'
import {chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RELEASE = join(ROOT, 'release')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string; config: {node: string}}
const VERSION = pkg.version
const NODE = pkg.config.node
const ARCHES = {x64: {deb: 'amd64', rpm: 'x86_64'}, arm64: {deb: 'arm64', rpm: 'aarch64'}} as const
type Arch = keyof typeof ARCHES

const args = process.argv.slice(2)
const arches = (args.flatMap((a, i) => (a === '--arch' ? [args[i + 1]] : [])) as Arch[]).filter((a) => a in ARCHES)
const wanted: Arch[] = arches.length > 0 ? arches : ['x64', 'arm64']
const skipRpm = args.includes('--skip-rpm')

const run = (file: string, argv: string[], cwd = ROOT) => execFileSync(file, argv, {cwd, stdio: ['ignore', 'inherit', 'inherit']})
const say = (line: string) => process.stderr.write(`package: ${line}\n`)

/** The Node.js runtime for an architecture, from the npm registry (cached in release/.cache). */
function runtime(arch: Arch): string {
  const dir = join(RELEASE, '.cache', `node-linux-${arch}-${NODE}`)
  if (!existsSync(join(dir, 'package', 'bin', 'node'))) {
    rmSync(dir, {recursive: true, force: true})
    mkdirSync(dir, {recursive: true})
    say(`fetching node-linux-${arch}@${NODE}`)
    run('npm', ['pack', `node-linux-${arch}@${NODE}`, '--silent', '--pack-destination', dir])
    const [tgz] = readdirSync(dir).filter((f) => f.endsWith('.tgz'))
    run('tar', ['-xzf', tgz], dir)
    rmSync(join(dir, tgz))
  }
  return join(dir, 'package')
}

const WRAPPER = `#!/bin/sh
# ec2userkeyd with the Node.js runtime it was built and tested with, bundled beside it: the host
# needs no Node.js of its own.
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" "$here/../app/bin/run.js" "$@"
`

/** The self-contained tree: bin/ec2userkeyd, node/ (the runtime), app/ (the CLI and its production modules); built once per architecture. */
const trees = new Map<Arch, string>()
function tree(arch: Arch, into: string): void {
  rmSync(into, {recursive: true, force: true})
  const built = trees.get(arch)
  if (built) {
    cpSync(built, into, {recursive: true, verbatimSymlinks: true})
    return
  }
  trees.set(arch, into)
  const app = join(into, 'app')
  mkdirSync(join(into, 'bin'), {recursive: true})
  mkdirSync(join(into, 'node', 'bin'), {recursive: true})
  const node = runtime(arch)
  cpSync(join(node, 'bin', 'node'), join(into, 'node', 'bin', 'node'))
  cpSync(join(node, 'LICENSE'), join(into, 'node', 'LICENSE'))
  mkdirSync(app, {recursive: true})
  for (const entry of ['package.json', 'package-lock.json', 'README.md', 'CHANGELOG.md', 'bin', 'dist', 'packaging', 'oclif.manifest.json'])
    cpSync(join(ROOT, entry), join(app, entry), {recursive: true})
  rmSync(join(app, 'bin', 'dev.js')) // runs the TypeScript sources: a developer's
  // The tested tree: the lockfile's production modules, for the target's CPU (koffi's binary).
  say(`production modules for linux-${arch}`)
  run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--os=linux', `--cpu=${arch}`, '--loglevel=error'], app)
  rmSync(join(app, 'package-lock.json'))
  writeFileSync(join(into, 'bin', 'ec2userkeyd'), WRAPPER, {mode: 0o755})
}

/** The units as packages install them: the command at /usr/bin/ec2userkeyd. */
function packagedUnit(name: string): string {
  return readFileSync(join(ROOT, 'packaging', name), 'utf8').replaceAll('/usr/local/bin/ec2userkeyd', '/usr/bin/ec2userkeyd')
}

const UNITS = ['ec2userkeyd.service', 'ec2userkeyd.socket', 'ec2userkeyd-intercept.service']

/** The file system a package installs: /opt/ec2userkeyd, /usr/bin, the units, /etc/ec2userkeyd.conf. */
function filesystem(arch: Arch, root: string): void {
  rmSync(root, {recursive: true, force: true})
  tree(arch, join(root, 'opt', 'ec2userkeyd'))
  mkdirSync(join(root, 'usr', 'bin'), {recursive: true})
  symlinkSync('/opt/ec2userkeyd/bin/ec2userkeyd', join(root, 'usr', 'bin', 'ec2userkeyd'))
  const units = join(root, 'usr', 'lib', 'systemd', 'system')
  mkdirSync(units, {recursive: true})
  for (const unit of UNITS) writeFileSync(join(units, unit), packagedUnit(unit), {mode: 0o644})
  mkdirSync(join(root, 'etc'), {recursive: true})
  writeFileSync(join(root, 'etc', 'ec2userkeyd.conf'), readFileSync(join(ROOT, 'packaging', 'ec2userkeyd.conf')), {mode: 0o600})
}

function tarball(arch: Arch): string {
  const name = `ec2userkeyd-${VERSION}-linux-${arch}`
  const staging = join(RELEASE, '.staging', 'tar')
  tree(arch, join(staging, name))
  const out = join(RELEASE, `${name}.tar.gz`)
  run('tar', ['--owner=0', '--group=0', '--numeric-owner', '-czf', out, '-C', staging, name])
  return out
}

function deb(arch: Arch): string {
  const root = join(RELEASE, '.staging', `deb-${arch}`)
  filesystem(arch, root)
  const control = join(root, 'DEBIAN')
  mkdirSync(control)
  const installedKb = Math.ceil(Number(execFileSync('du', ['-sk', '--exclude=DEBIAN', root], {encoding: 'utf8'}).split('\t')[0]))
  writeFileSync(
    join(control, 'control'),
    [
      'Package: ec2userkeyd',
      `Version: ${VERSION}`,
      `Architecture: ${ARCHES[arch].deb}`,
      'Maintainer: ec2userkeyd maintainers <maintainers@ec2userkeyd.invalid>',
      `Installed-Size: ${installedKb}`,
      'Depends: iptables',
      'Recommends: conntrack',
      'Section: admin',
      'Priority: optional',
      'Homepage: https://github.com/ec2userkeyd/ec2userkeyd',
      'Description: per-UNIX-user AWS credentials on shared EC2 hosts',
      ' Redirects every non-root process\'s requests to the EC2 instance metadata service',
      ' (iptables DNAT) to a local daemon that answers with short-lived credentials for the',
      ' UNIX user behind each connection. Bundles its Node.js runtime.',
      '',
    ].join('\n'),
  )
  writeFileSync(join(control, 'conffiles'), '/etc/ec2userkeyd.conf\n')
  for (const script of ['postinst', 'prerm', 'postrm']) {
    cpSync(join(ROOT, 'packaging', 'deb', script), join(control, script))
    chmodSync(join(control, script), 0o755)
  }
  const out = join(RELEASE, `ec2userkeyd_${VERSION}_${ARCHES[arch].deb}.deb`)
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, out])
  return out
}

function rpm(arch: Arch): string {
  const root = join(RELEASE, '.staging', `rpm-${arch}`)
  filesystem(arch, root)
  const top = join(RELEASE, '.staging', `rpmbuild-${arch}`)
  rmSync(top, {recursive: true, force: true})
  mkdirSync(join(top, 'SPECS'), {recursive: true})
  const spec = join(top, 'SPECS', 'ec2userkeyd.spec')
  writeFileSync(
    spec,
    readFileSync(join(ROOT, 'packaging', 'rpm', 'ec2userkeyd.spec.in'), 'utf8').replaceAll('@VERSION@', VERSION).replaceAll('@ARCH@', ARCHES[arch].rpm).replaceAll('@ROOT@', root),
  )
  run('rpmbuild', ['-bb', '--quiet', '--target', `${ARCHES[arch].rpm}-linux`, '--define', `_topdir ${top}`, '--define', `_rpmdir ${RELEASE}`, '--define', '_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm', spec])
  return join(RELEASE, `ec2userkeyd-${VERSION}-1.${ARCHES[arch].rpm}.rpm`)
}

mkdirSync(RELEASE, {recursive: true})
say(`building dist/ and the oclif manifest (version ${VERSION}, Node.js ${NODE})`)
run('npm', ['run', 'build', '--silent'])
run('npx', ['oclif', 'manifest'])
try {
  for (const arch of wanted) {
    const built = [tarball(arch), deb(arch), ...(skipRpm ? [] : [rpm(arch)])]
    for (const file of built) say(`built ${file.slice(ROOT.length)}`)
  }
} finally {
  rmSync(join(ROOT, 'oclif.manifest.json'), {force: true})
  rmSync(join(RELEASE, '.staging'), {recursive: true, force: true})
}
