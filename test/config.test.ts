import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {InputError} from '../src/lib/errors.js'
import {interpolate, parseIni} from '../src/lib/config/ini.js'
import {DEFAULT_CONFIG_PATH, loadConfig, loadConfigLeniently, parseConfig} from '../src/lib/config/load.js'
import {Config, defaultConfig, MethodName, UidRule} from '../src/lib/config/schema.js'

const FILE = '/etc/ec2userkeyd.conf'

/** The config file of the Python tool's own test suite (tests/test_config.py), verbatim. */
const PYTHON_TEST_CONFIG = `
[general]
daemon_port = 909
iptables = /bin/false
credential_methods = UserRole, InstanceRole

[method_UserRole]
role_name_pattern = u-{username}

[method_InstanceRole]
fail_safe = true
`

/** A config a Python-tool user could have written: every configparser feature the tool saw. */
const RICH_PYTHON_CONFIG = `# ec2userkeyd configuration, written for the Python tool
; semicolon comments are full-line comments too

[general]
DAEMON_PORT: 8080
IPTables : /opt/net%%tools/iptables
Credential_Methods: UserRole,CreateUserRole , InstanceRole
per_user_credential_methods = alice: UserRole, InstanceRole,
    bob: RestrictedInstanceRole
    # a comment inside a continued value is skipped
    carol:InstanceRole
per_uid_credential_methods: 0-499: InstanceRole, 1001: UserRole, 1000-1999: RestrictedInstanceRole
log_level = 10
log_console = Yes
log_syslog = off

[method_UserRole]
role_name_pattern = role-{username}

[method_CreateUserRole]
IAM_Name_Pattern = iam-{username}
role_name_pattern = created-%(iam_name_pattern)s
instance_role_linked = FALSE

[method_RestrictedInstanceRole]
iam_name_pattern = {username}
compress_user_policy = 1

[method_InstanceRole]
fail_safe = ON
deny_assumerole = no
deny_secretsmanager = 0

[method_UserKeysSecretsManager]
`

/** How the Python tool typed each option (by the type of its class attribute's default). */
const PYTHON_TYPES: Record<string, Record<string, 'str' | 'int' | 'bool' | 'list' | 'dict'>> = {
  general: {
    daemon_port: 'int',
    iptables: 'str',
    credential_methods: 'list',
    per_user_credential_methods: 'dict',
    per_uid_credential_methods: 'dict',
    log_level: 'int',
    log_console: 'bool',
    log_syslog: 'bool',
  },
  method_UserRole: {role_name_pattern: 'str'},
  method_CreateUserRole: {iam_name_pattern: 'str', role_name_pattern: 'str', instance_role_linked: 'bool'},
  method_RestrictedInstanceRole: {iam_name_pattern: 'str', compress_user_policy: 'bool'},
  method_InstanceRole: {fail_safe: 'bool', deny_assumerole: 'bool', deny_secretsmanager: 'bool'},
  method_UserKeysSecretsManager: {},
}

/**
 * The Python tool's config.update() and general.uid_credential_methods(), fed from stdin:
 * real configparser, getint/getboolean, the comma split and the `re.split` dict parser.
 * Dict values are split into method lists here, as the tool did when it used them.
 */
const PYTHON_TOOL = String.raw`
import configparser, json, re, sys
req = json.load(sys.stdin)
cp = configparser.ConfigParser()
cp.read_string(req['text'])
out = {}
for section in cp.sections():
    out[section] = {}
    for option in cp.options(section):
        kind = req['types'][section][option]
        if kind == 'str': v = cp.get(section, option)
        elif kind == 'int': v = cp.getint(section, option)
        elif kind == 'bool': v = cp.getboolean(section, option)
        elif kind == 'list': v = [i.strip() for i in cp.get(section, option).split(',')]
        else:
            kvs = [i.strip() for i in re.split(r'(?:,\s+)?(\S+):', cp.get(section, option)) if i]
            it = iter(kvs)
            v = [[k, [m.strip() for m in w.split(',')]] for k, w in zip(it, it)]
        out[section][option] = v
def uid_methods(per_uid, uid):
    seq = None
    for k in per_uid:
        if '-' in k:
            s, e = k.split('-')
            if int(s) <= uid <= int(e):
                seq = per_uid[k]
        elif int(k) == uid:
            seq = per_uid[k]
    return seq or []
per_uid = dict(out.get('general', {}).get('per_uid_credential_methods', []))
print(json.dumps({'config': out, 'uids': {str(u): uid_methods(per_uid, u) for u in req['uids']}}))
`

interface PythonReading {
  config: Record<string, Record<string, unknown>>
  uids: Record<string, string[]>
}

/** Runs the Python tool's reading of `text`; undefined when python3 is not installed. */
function readWithPython(text: string, uids: number[] = []): PythonReading | undefined {
  const result = spawnSync('python3', ['-c', PYTHON_TOOL], {input: JSON.stringify({text, types: PYTHON_TYPES, uids}), encoding: 'utf8'})
  if (result.error && (result.error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
  assert.equal(result.status, 0, `python3 failed: ${result.stderr}`)
  return JSON.parse(result.stdout) as PythonReading
}

const PYTHON_LOG_LEVELS: Record<number, string> = {10: 'DEBUG', 20: 'INFO', 30: 'WARNING', 40: 'ERROR', 50: 'CRITICAL'}

/** Our Config, in the shape the Python tool held it (only the sections and options the file sets). */
function asPythonSees(config: Config, python: PythonReading['config']): Record<string, Record<string, unknown>> {
  const ours: Record<string, Record<string, unknown>> = {}
  for (const [section, options] of Object.entries(python)) {
    ours[section] = {}
    for (const option of Object.keys(options)) {
      const value = (config as unknown as Record<string, Record<string, unknown>>)[section][option]
      if (option === 'log_level') ours[section][option] = Number(Object.entries(PYTHON_LOG_LEVELS).find(([, name]) => name === value)?.[0])
      else if (option === 'per_user_credential_methods') ours[section][option] = Object.entries(value as Record<string, MethodName[]>)
      else if (option === 'per_uid_credential_methods') ours[section][option] = (value as UidRule[]).map((r) => [r.key, r.methods])
      else ours[section][option] = value
    }
  }
  return ours
}

/** The chain for a uid from per_uid_credential_methods: the last matching rule wins. */
function uidChain(config: Config, uid: number): MethodName[] {
  return config.general.per_uid_credential_methods.findLast((r) => r.from <= uid && uid <= r.to)?.methods ?? []
}

/** Parses `text` expecting an InputError; returns it after checking the shared contract. */
function rejects(text: string, file = FILE): InputError {
  let caught: unknown
  try {
    parseConfig(text, file)
  } catch (error) {
    caught = error
  }
  assert.ok(caught instanceof InputError, `expected an InputError, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : 'no error'}`)
  assert.equal(caught.exitCode, 2)
  assert.ok(!caught.message.includes('\n'), `message is one line: ${JSON.stringify(caught.message)}`)
  assert.ok(caught.message.startsWith(`${file}:`), `message names the file first: ${caught.message}`)
  return caught
}

function assertMentions(error: InputError, ...parts: string[]): void {
  for (const part of parts) assert.ok(error.message.includes(part), `message ${JSON.stringify(error.message)} mentions ${JSON.stringify(part)}`)
}

const ALL_DEFAULTS: Config = {
  file: null,
  general: {
    daemon_port: 808,
    iptables: '/sbin/iptables',
    credential_methods: ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'],
    per_user_credential_methods: {},
    per_uid_credential_methods: [],
    log_level: 'ERROR',
    log_console: false,
    log_syslog: true,
    instance_role: null,
    session_duration: 3600,
    source_identity: true,
    iam_cache_seconds: 300,
    failure_cache_seconds: 30,
    keep_rules_on_exit: true,
    require_imdsv2: false,
    deny_user_data: false,
    deny_instance_identity: false,
    admin_listen: '/run/ec2userkeyd/admin.sock',
    admin_group: null,
    forwarded_imds: 'refuse',
    cache_max_entries: 10000,
  },
  method_UserRole: {role_name_pattern: 'user-{username}'},
  method_CreateUserRole: {iam_name_pattern: '{username}', role_name_pattern: 'user-{username}', instance_role_linked: true, max_attached_policies: 10},
  method_RestrictedInstanceRole: {iam_name_pattern: '{username}', compress_user_policy: false},
  method_InstanceRole: {fail_safe: false, deny_assumerole: true, deny_secretsmanager: true, deny_iam_writes: true, deny_actions: []},
  method_UserKeysSecretsManager: {},
}

describe('config', () => {
  let dir: string

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-config-'))
  })
  afterEach(() => {
    rmSync(dir, {recursive: true, force: true})
  })

  describe('files written for the Python tool', () => {
    it("loads the Python tool's own test config unchanged", async () => {
      // Given the config file from the Python tool's test suite
      const path = join(dir, 'test_configfile.cfg')
      writeFileSync(path, PYTHON_TEST_CONFIG)
      // When it is loaded as the named config file
      const config = await loadConfig({path})
      // Then it reads as the Python tool's test asserted, and everything else keeps its default
      assert.deepEqual(config, {
        ...ALL_DEFAULTS,
        file: path,
        general: {...ALL_DEFAULTS.general, daemon_port: 909, iptables: '/bin/false', credential_methods: ['UserRole', 'InstanceRole']},
        method_UserRole: {role_name_pattern: 'u-{username}'},
        method_InstanceRole: {...ALL_DEFAULTS.method_InstanceRole, fail_safe: true},
      })
    })

    it('reads colon delimiters, upper-case names, comments, continuation lines, %% and every boolean spelling', () => {
      // Given a config using every configparser feature the Python tool accepted
      // When it is parsed
      const config = parseConfig(RICH_PYTHON_CONFIG, FILE)
      // Then each option has the value configparser would have given it
      assert.deepEqual(config, {
        file: FILE,
        general: {
          daemon_port: 8080,
          iptables: '/opt/net%tools/iptables',
          credential_methods: ['UserRole', 'CreateUserRole', 'InstanceRole'],
          per_user_credential_methods: {
            alice: ['UserRole', 'InstanceRole'],
            bob: ['RestrictedInstanceRole'],
            carol: ['InstanceRole'],
          },
          per_uid_credential_methods: [
            {key: '0-499', from: 0, to: 499, methods: ['InstanceRole']},
            {key: '1001', from: 1001, to: 1001, methods: ['UserRole']},
            {key: '1000-1999', from: 1000, to: 1999, methods: ['RestrictedInstanceRole']},
          ],
          log_level: 'DEBUG',
          log_console: true,
          log_syslog: false,
          instance_role: null,
          session_duration: 3600,
          source_identity: true,
          iam_cache_seconds: 300,
          failure_cache_seconds: 30,
          keep_rules_on_exit: true,
          require_imdsv2: false,
          deny_user_data: false,
          deny_instance_identity: false,
          admin_listen: '/run/ec2userkeyd/admin.sock',
          admin_group: null,
          forwarded_imds: 'refuse',
          cache_max_entries: 10000,
        },
        method_UserRole: {role_name_pattern: 'role-{username}'},
        method_CreateUserRole: {iam_name_pattern: 'iam-{username}', role_name_pattern: 'created-iam-{username}', instance_role_linked: false, max_attached_policies: 10},
        method_RestrictedInstanceRole: {iam_name_pattern: '{username}', compress_user_policy: true},
        method_InstanceRole: {fail_safe: true, deny_assumerole: false, deny_secretsmanager: false, deny_iam_writes: true, deny_actions: []},
        method_UserKeysSecretsManager: {},
      })
    })

    it('agrees with the Python tool itself, run on real configparser, for both configs', function () {
      for (const text of [PYTHON_TEST_CONFIG, RICH_PYTHON_CONFIG]) {
        // Given what the Python tool makes of the file
        const python = readWithPython(text)
        if (!python) this.skip()
        // When we parse the same text
        const config = parseConfig(text, FILE)
        // Then every option the file sets has the same value
        assert.deepEqual(asPythonSees(config, python.config), python.config)
      }
    })

    it('reads every spelling of a boolean that getboolean accepts, in any case', () => {
      const spellings: Array<[string, boolean]> = [
        ['1', true], ['yes', true], ['true', true], ['on', true], ['YES', true], ['True', true], ['On', true], ['tRuE', true],
        ['0', false], ['no', false], ['false', false], ['off', false], ['NO', false], ['False', false], ['OFF', false], ['oFf', false],
      ]
      for (const [spelling, expected] of spellings) {
        // Given fail_safe spelled this way
        // When it is parsed
        const config = parseConfig(`[method_InstanceRole]\nfail_safe = ${spelling}\n`, FILE)
        // Then it is the boolean getboolean gives
        assert.equal(config.method_InstanceRole.fail_safe, expected, spelling)
      }
    })

    it("reads the Python tool's numeric log levels and also level names", () => {
      const levels: Array<[string, string]> = [
        ['10', 'DEBUG'], ['20', 'INFO'], ['30', 'WARNING'], ['40', 'ERROR'], ['50', 'CRITICAL'],
        ['debug', 'DEBUG'], ['Info', 'INFO'], ['warn', 'WARNING'], ['WARNING', 'WARNING'], ['fatal', 'CRITICAL'],
      ]
      for (const [written, level] of levels) {
        // Given log_level written this way
        // When it is parsed
        const config = parseConfig(`[general]\nlog_level = ${written}\n`, FILE)
        // Then it is the matching level
        assert.equal(config.general.log_level, level, written)
      }
    })

    it('keeps literal braces in name patterns and takes an instance role by name or ARN', () => {
      // Given escaped braces and the two forms of instance role
      const byName = parseConfig('[general]\ninstance_role = analytics-host\n[method_UserRole]\nrole_name_pattern = {{x}}-{username}\n', FILE)
      const byArn = parseConfig('[general]\ninstance_role = arn:aws:iam::123456789012:role/service/analytics-host\n', FILE)
      // Then both are kept as written
      assert.equal(byName.method_UserRole.role_name_pattern, '{{x}}-{username}')
      assert.equal(byName.general.instance_role, 'analytics-host')
      assert.equal(byArn.general.instance_role, 'arn:aws:iam::123456789012:role/service/analytics-host')
    })

    it("loads the project's own example config", async () => {
      // Given fixtures/ec2userkeyd.conf
      const path = fileURLToPath(new URL('../fixtures/ec2userkeyd.conf', import.meta.url))
      // When it is loaded
      const config = await loadConfig({path})
      // Then the values its comments describe are read
      assert.equal(config.general.instance_role, 'analytics-host')
      assert.deepEqual(config.general.per_user_credential_methods, {'svc-backup': ['InstanceRole']})
      assert.deepEqual(config.general.per_uid_credential_methods, [{key: '0-999', from: 0, to: 999, methods: ['InstanceRole']}])
      assert.equal(config.general.log_level, 'INFO')
      assert.equal(config.method_RestrictedInstanceRole.compress_user_policy, true)
    })
  })

  describe('INI syntax, compared with configparser', () => {
    const tricky = [
      // blank lines inside a value are kept, trailing ones dropped
      '[s]\na = one\n\n  two\n\n\nb = x\n',
      // a comment inside a continued value is skipped; a deeper-indented line continues
      '[s]\n  a = one\n  # note\n      two\n  b: three\n',
      // the first delimiter splits; the rest belongs to the value
      '[s]\nurl: http://x/?a=b\nk = v : w\n',
      // greedy section header, text after ']' ignored; an indented header after a section header
      '[a]b] trailing\n  [c]\nk = w\n',
      // ...but an indented header after an option continues its value
      '[s]\nk = v\n   [c]\n',
      // inline ';' is not a comment; empty values
      '[s]\nk = v ; not a comment\ne =\nf:\n',
      // interpolation from the same section and [DEFAULT], case-insensitive names, %%
      '[DEFAULT]\nbase = /opt\n[s]\nHome = %(BASE)s/home\npath = %(home)s/%%d\n',
    ]

    it('splits sections, options and values exactly as configparser does', function () {
      const script = String.raw`
import configparser, json, sys
out = []
for text in json.load(sys.stdin):
    cp = configparser.ConfigParser()
    cp.read_string(text)
    out.append({s: {k: cp.get(s, k) for k in cp._sections[s]} for s in cp.sections()})
print(json.dumps(out))
`
      // Given configparser's reading of each text
      const result = spawnSync('python3', ['-c', script], {input: JSON.stringify(tricky), encoding: 'utf8'})
      if (result.error) this.skip()
      assert.equal(result.status, 0, result.stderr)
      const expected = JSON.parse(result.stdout) as Array<Record<string, Record<string, string>>>
      tricky.forEach((text, i) => {
        // When our reader parses and interpolates it
        const doc = parseIni(text, FILE)
        const ours: Record<string, Record<string, string>> = {}
        for (const section of doc.sections.values())
          ours[section.name] = Object.fromEntries([...section.options.values()].map((o) => [o.name, interpolate(doc, section, o)]))
        // Then the result is the same
        assert.deepEqual(ours, expected[i], JSON.stringify(text))
      })
    })

    it('keeps blank lines inside a continued value and trims trailing ones', () => {
      // Given a value continued over a blank line and followed by blank lines
      const doc = parseIni('[s]\na = one\n\n  two\n\n\nb = x\n', FILE)
      // Then the value has the inner blank line only
      assert.equal(doc.sections.get('s')?.options.get('a')?.raw, 'one\n\ntwo')
    })
  })

  describe('per-user and per-uid chains', () => {
    it('reads several users, with and without a space after the colon, across continuation lines', () => {
      // Given three users, one on a continuation line and one written 'name:Method'
      const config = parseConfig(
        '[general]\nper_user_credential_methods = alice: UserRole, InstanceRole, bob:InstanceRole,\n    svc-backup.1: RestrictedInstanceRole\n',
        FILE,
      )
      // Then each user has their own chain, in order
      assert.deepEqual(config.general.per_user_credential_methods, {
        alice: ['UserRole', 'InstanceRole'],
        bob: ['InstanceRole'],
        'svc-backup.1': ['RestrictedInstanceRole'],
      })
    })

    it('reads single uids and inclusive ranges in order, and the last matching entry wins', () => {
      // Given a range, a single uid inside a later range, and a later single uid inside that range
      const config = parseConfig(
        '[general]\nper_uid_credential_methods = 0-499: InstanceRole, 1001: UserRole, 1000-1999: RestrictedInstanceRole, 1500: CreateUserRole, UserRole\n',
        FILE,
      )
      // Then the rules keep their order and bounds
      assert.deepEqual(config.general.per_uid_credential_methods, [
        {key: '0-499', from: 0, to: 499, methods: ['InstanceRole']},
        {key: '1001', from: 1001, to: 1001, methods: ['UserRole']},
        {key: '1000-1999', from: 1000, to: 1999, methods: ['RestrictedInstanceRole']},
        {key: '1500', from: 1500, to: 1500, methods: ['CreateUserRole', 'UserRole']},
      ])
      // And the last matching rule decides: inclusive bounds, later rules over earlier ones
      assert.deepEqual(uidChain(config, 0), ['InstanceRole'])
      assert.deepEqual(uidChain(config, 499), ['InstanceRole'])
      assert.deepEqual(uidChain(config, 500), [])
      assert.deepEqual(uidChain(config, 1001), ['RestrictedInstanceRole'])
      assert.deepEqual(uidChain(config, 1500), ['CreateUserRole', 'UserRole'])
      assert.deepEqual(uidChain(config, 1999), ['RestrictedInstanceRole'])
      assert.deepEqual(uidChain(config, 2000), [])
    })

    it('gives the same users, uid rules and per-uid winners as the Python tool', function () {
      const cases = [
        '[general]\nper_user_credential_methods = alice: UserRole, InstanceRole, bob: InstanceRole\n',
        '[general]\nper_user_credential_methods = alice: UserRole\n    bob: RestrictedInstanceRole, InstanceRole\n  carol:CreateUserRole\n',
        '[general]\nper_uid_credential_methods = 0-499: InstanceRole, 1001: UserRole, 1000-1999: RestrictedInstanceRole, 1500: CreateUserRole, UserRole\n',
        '[general]\nper_uid_credential_methods = 0: InstanceRole,\n    1000-1000: UserRole\n    65534:RestrictedInstanceRole\n',
        '[general]\nper_uid_credential_methods = 500-999: UserRole, 0-65535: InstanceRole\nper_user_credential_methods = root: InstanceRole\n',
      ]
      const uids = [0, 1, 250, 499, 500, 999, 1000, 1001, 1500, 1999, 2000, 65534, 65535]
      for (const text of cases) {
        // Given the Python tool's reading of the value and its per-uid lookup
        const python = readWithPython(text, uids)
        if (!python) this.skip()
        // When we parse the same text
        const config = parseConfig(text, FILE)
        // Then the entries and every uid's winning chain agree
        assert.deepEqual(asPythonSees(config, python.config), python.config, text)
        for (const uid of uids) assert.deepEqual(uidChain(config, uid), python.uids[String(uid)], `uid ${uid} in ${JSON.stringify(text)}`)
      }
    })
  })

  describe('no config file', () => {
    it('gives every default when the default file does not exist', async () => {
      // Given no file at the default path
      // When the config is loaded without -f
      const config = await loadConfig({defaultPath: join(dir, 'absent.conf')})
      // Then there is no file and every option has its documented default
      assert.deepEqual(config, ALL_DEFAULTS)
    })

    it('defaults to /etc/ec2userkeyd.conf', () => {
      assert.equal(DEFAULT_CONFIG_PATH, '/etc/ec2userkeyd.conf')
    })

    it('gives each load its own copy of the defaults', async () => {
      // Given one default config changed by its user
      const first = await loadConfig({defaultPath: join(dir, 'absent.conf')})
      first.general.credential_methods.push('CreateUserRole')
      // When another is loaded
      const second = await loadConfig({defaultPath: join(dir, 'absent.conf')})
      // Then it is untouched
      assert.deepEqual(second.general.credential_methods, ['UserRole', 'RestrictedInstanceRole', 'InstanceRole'])
    })

    it('refuses a named config file that does not exist', async () => {
      // Given -f naming a missing file
      const path = join(dir, 'missing.conf')
      // When it is loaded
      // Then that is an input error naming the file
      await assert.rejects(loadConfig({path}), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.equal(error.exitCode, 2)
        assert.equal(error.message, `config file ${path} does not exist`)
        return true
      })
    })

    it('refuses a directory given as the config file, named or at the default path', async () => {
      // Given a directory where the file should be
      const path = join(dir, 'conf.d')
      mkdirSync(path)
      for (const options of [{path}, {defaultPath: path}]) {
        // When it is loaded
        // Then that is an input error saying it is a directory
        await assert.rejects(loadConfig(options), (error: unknown) => {
          assert.ok(error instanceof InputError)
          assert.equal(error.exitCode, 2)
          assert.equal(error.message, `config file ${path} is a directory`)
          return true
        })
      }
    })
  })

  describe('bad config', () => {
    it('rejects an unknown section, suggesting the right case for a near name', () => {
      // Given [General] instead of [general]
      const error = rejects('[General]\ndaemon_port = 909\n')
      // Then the message names the file, line and section, and the suggestion the real name
      assertMentions(error, `${FILE}:1:`, '[General]', 'unknown section')
      assert.equal(error.suggestion, 'did you mean [general]?')
    })

    it("rejects a section the Python tool never had (its test 'bad_1'), listing the sections", () => {
      const error = rejects('\n[method_DoesNotExist]\nkey_does_not_exist = True\n')
      assertMentions(error, `${FILE}:2:`, '[method_DoesNotExist]')
      assert.match(error.suggestion ?? '', /\[general\].*\[method_UserRole\]/)
    })

    it("rejects an unknown option (the Python tool's test 'bad_2', with its indented header)", () => {
      // Given an indented [general] header and an option it does not have
      const error = rejects('\n    [general]\nkey_does_not_exist = True\n')
      // Then the message names file, line, section, option and value, and lists the real options
      assertMentions(error, `${FILE}:3:`, '[general]', 'key_does_not_exist', "'True'", 'unknown option')
      assert.match(error.suggestion ?? '', /daemon_port/)
    })

    it('rejects any option in the empty [method_UserKeysSecretsManager] section', () => {
      const error = rejects('[method_UserKeysSecretsManager]\nsecret_prefix = x\n')
      assertMentions(error, '[method_UserKeysSecretsManager]', 'secret_prefix', "'x'")
      assert.equal(error.suggestion, '[method_UserKeysSecretsManager] takes no options')
    })

    it('rejects an option named like a JavaScript object member as unknown, not with a crash', () => {
      for (const name of ['constructor', 'tostring', '__proto__', 'hasownproperty']) {
        const error = rejects(`[general]\n${name} = x\n`)
        assertMentions(error, '[general]', name, 'unknown option')
      }
    })

    it("rejects a port that is not an integer (the Python tool's test 'bad_3') or out of range", () => {
      for (const value of ['True', '0', '70000', '80.5', '-1', '']) {
        // Given daemon_port = value
        const error = rejects(`[general]\ndaemon_port = ${value}\n`)
        // Then the message names section, option and value
        assertMentions(error, `${FILE}:2:`, '[general] daemon_port', `'${value}'`)
        assert.match(error.suggestion ?? '', /1 to 65535/)
      }
    })

    it('rejects a session duration past the one-hour cap of chained role sessions, and other bad counts', () => {
      for (const [option, value, range] of [
        ['session_duration', '7200', '1800 to 3600'],
        ['session_duration', '900', '1800 to 3600'],
        ['session_duration', '1h', '1800 to 3600'],
        ['iam_cache_seconds', '-5', '0 to 86400'],
        ['cache_max_entries', '0', '1 to 10000000'],
      ]) {
        const error = rejects(`[general]\n${option} = ${value}\n`)
        assertMentions(error, `[general] ${option}`, `'${value}'`)
        assert.match(error.suggestion ?? '', new RegExp(range))
      }
      assertMentions(rejects('[method_CreateUserRole]\nmax_attached_policies = 25\n'), '[method_CreateUserRole] max_attached_policies', "'25'")
      assert.equal(parseConfig('[general]\nsession_duration = 1800\n', FILE).general.session_duration, 1800)
    })

    it('rejects a value that is not a boolean', () => {
      for (const value of ['maybe', 'y', 'enabled', '2', 'true ; comment']) {
        const error = rejects(`[method_InstanceRole]\nfail_safe = ${value}\n`)
        assertMentions(error, '[method_InstanceRole] fail_safe', `'${value}'`, 'not a boolean')
      }
    })

    it('rejects an unknown method name with a did-you-mean, in every option that lists methods', () => {
      // Given misspelt methods in the default chain and in both per-user and per-uid chains
      const cases: Array<[string, string, string]> = [
        ['credential_methods = UserRole, InstanceRoles', 'InstanceRoles', 'InstanceRole'],
        ['credential_methods = userrole', 'userrole', 'UserRole'],
        ['per_user_credential_methods = alice: UserRole, bob: RestrictedRole', 'RestrictedRole', 'RestrictedInstanceRole'],
        ['per_uid_credential_methods = 0-499: CreateRole', 'CreateRole', 'CreateUserRole'],
      ]
      for (const [line, wrong, right] of cases) {
        const error = rejects(`[general]\n${line}\n`)
        // Then the message names the wrong method and the suggestion the right one
        assertMentions(error, '[general]', line.split(' = ')[0], `unknown method '${wrong}'`)
        assert.match(error.suggestion ?? '', new RegExp(`did you mean '${right}'`))
      }
    })

    it('names the user or uid whose chain has the bad method', () => {
      const byUser = rejects('[general]\nper_user_credential_methods = alice: UserRole, bob: Nope\n')
      assertMentions(byUser, "user 'bob'", "unknown method 'Nope'", "'alice: UserRole, bob: Nope'")
      const byUid = rejects('[general]\nper_uid_credential_methods = 1001: Nope\n')
      assertMentions(byUid, "uid '1001'", "unknown method 'Nope'")
    })

    it('rejects an empty method list, and an empty name inside a list without a misleading suggestion', () => {
      const empty = rejects('[general]\ncredential_methods =\n')
      assertMentions(empty, '[general] credential_methods', "''", 'empty method list')
      const hole = rejects('[general]\ncredential_methods = UserRole, , InstanceRole\n')
      assertMentions(hole, "'UserRole, , InstanceRole'", 'empty method name')
      assert.doesNotMatch(hole.suggestion ?? '', /did you mean/)
      const noMethods = rejects('[general]\nper_user_credential_methods = alice:\n')
      assertMentions(noMethods, "user 'alice'", 'empty method list')
    })

    it('rejects a malformed uid range', () => {
      for (const key of ['10-5', 'abc', '1-2-3', '-5', '5-', '4294967295']) {
        // Given a per-uid rule keyed by a bad uid or range
        const error = rejects(`[general]\nper_uid_credential_methods = 0-499: InstanceRole, ${key}: UserRole\n`)
        // Then the message names the option, the whole value and the bad key
        assertMentions(error, '[general] per_uid_credential_methods', `'0-499: InstanceRole, ${key}: UserRole'`, `'${key}'`)
      }
      assert.equal(rejects('[general]\nper_uid_credential_methods = 10-5: UserRole\n').suggestion, "write it as '5-10'")
    })

    it('rejects a per-user value that does not start with a name and a colon, or lists a user twice', () => {
      assertMentions(rejects('[general]\nper_user_credential_methods = UserRole\n'), "found 'UserRole' first")
      assertMentions(rejects('[general]\nper_user_credential_methods = alice: UserRole, alice: InstanceRole\n'), "user 'alice' is listed twice")
    })

    it('rejects an option given twice in a section, whatever its case', () => {
      // Given daemon_port and DAEMON_PORT in one section
      const error = rejects('[general]\ndaemon_port = 909\nDAEMON_PORT = 910\n')
      // Then the second one is reported with its line and value, and the first one's line
      assertMentions(error, `${FILE}:3:`, "'daemon_port'", "'910'", '[general]', 'twice', 'line 2')
    })

    it('rejects a section given twice', () => {
      const error = rejects('[general]\ndaemon_port = 909\n\n[method_UserRole]\n[general]\nlog_console = yes\n')
      assertMentions(error, `${FILE}:5:`, 'section [general] appears twice', 'line 1')
    })

    it('rejects an option before any section header', () => {
      const error = rejects('# comment\ndaemon_port = 909\n[general]\n')
      assertMentions(error, `${FILE}:2:`, 'before any [section]', "'daemon_port = 909'")
    })

    it('rejects a line without a delimiter, or with no option name', () => {
      const noDelimiter = rejects('[general]\ndaemon_port 909\n')
      assertMentions(noDelimiter, `${FILE}:2:`, '[general]', "'daemon_port 909'")
      const noName = rejects('[method_UserRole]\n= user-{username}\n')
      assertMentions(noName, `${FILE}:2:`, '[method_UserRole]', "'= user-{username}'")
    })

    it('rejects a name pattern with an unknown placeholder or a stray brace', () => {
      const cases: Array<[string, string, RegExp]> = [
        ['method_UserRole', 'role_name_pattern = u-{user}', /unknown placeholder '\{user\}'/],
        ['method_CreateUserRole', 'iam_name_pattern = {}', /unknown placeholder '\{\}'/],
        ['method_RestrictedInstanceRole', 'iam_name_pattern = {username', /stray '\{'/],
        ['method_CreateUserRole', 'role_name_pattern =', /empty pattern/],
      ]
      for (const [section, line, reason] of cases) {
        const error = rejects(`[${section}]\n${line}\n`)
        assertMentions(error, `[${section}] ${line.split(' ')[0]}`, `'${line.split(/ = ?/)[1]}'`)
        assert.match(error.message, reason)
      }
    })

    it('rejects an instance role that is neither a role name nor a role ARN', () => {
      for (const value of ['my role', 'arn:aws:iam::12345:role/x', 'arn:aws:iam::123456789012:user/alice', 'x'.repeat(65)]) {
        const error = rejects(`[general]\ninstance_role = ${value}\n`)
        assertMentions(error, '[general] instance_role', `'${value}'`, 'not a role name or role ARN')
      }
    })

    it('rejects a log level that is neither a level name nor one of 10, 20, 30, 40, 50', () => {
      for (const value of ['LOUD', '15', '0', '60', '']) {
        const error = rejects(`[general]\nlog_level = ${value}\n`)
        assertMentions(error, '[general] log_level', `'${value}'`, 'not a log level')
      }
    })

    it('rejects a relative iptables path', () => {
      const error = rejects('[general]\niptables = iptables\n')
      assertMentions(error, '[general] iptables', "'iptables'", 'not an absolute path')
    })

    it('rejects a stray % and names the value, on one line even when the value is continued', () => {
      // Given a single % in a value that spans two lines
      const error = rejects('[method_UserRole]\nrole_name_pattern = user-{username}\n    -100%\n')
      // Then the message is the usual one line, with the value's lines joined
      assertMentions(error, `${FILE}:2:`, '[method_UserRole] role_name_pattern', "'user-{username} -100%'", "'%' must be followed")
      assert.equal(error.suggestion, "write a literal percent sign as '%%'")
    })

    it('rejects an interpolation of a missing option and an interpolation loop', () => {
      const missing = rejects('[method_UserRole]\nrole_name_pattern = %(prefix)s-{username}\n')
      assertMentions(missing, '[method_UserRole] role_name_pattern', "'%(prefix)s-{username}'", "'%(prefix)s' names no option")
      const loop = rejects('[method_CreateUserRole]\niam_name_pattern = %(role_name_pattern)s\nrole_name_pattern = %(iam_name_pattern)s\n')
      assertMentions(loop, '[method_CreateUserRole]', 'nests too deeply')
    })

    it('rejects options in [DEFAULT]', () => {
      const error = rejects('[DEFAULT]\nprefix = user\n[method_UserRole]\nrole_name_pattern = %(prefix)s-{username}\n')
      assertMentions(error, `${FILE}:2:`, "'prefix'", '[DEFAULT]')
    })

    it('reports the named file in every message', async () => {
      // Given a bad named file on disk
      const path = join(dir, 'bad.conf')
      writeFileSync(path, '[general]\ndaemon_port = True\n')
      // When it is loaded
      // Then the message starts with that file and line
      await assert.rejects(loadConfig({path}), (error: unknown) => {
        assert.ok(error instanceof InputError)
        assert.equal(error.message, `${path}:2: [general] daemon_port = 'True': not a port number`)
        return true
      })
    })
  })

  describe('read leniently (the interception at boot, whatever the rest of the file says)', () => {
    it('takes every option that parses, and for each problem keeps the default and says why', async () => {
      // Given a file with a good daemon_port and forwarded_imds, a bad value elsewhere, an unknown option and an unknown section
      const path = join(dir, 'typo.conf')
      writeFileSync(path, '[general]\ndaemon_port = 809\nsession_duration = 1 hour\nforwarded_imds = passthrough\nno_such_option = 1\n[nosuchsection]\nx = 1\n')
      // When it is read leniently
      const {config, problems} = await loadConfigLeniently({path})
      // Then what parses is taken, and what does not keeps its default
      assert.equal(config.general.daemon_port, 809)
      assert.equal(config.general.forwarded_imds, 'passthrough')
      assert.equal(config.general.session_duration, defaultConfig().general.session_duration)
      assert.equal(config.file, path)
      // And each problem is one line naming file, line and option, as the strict read says the first
      assert.equal(problems.length, 3)
      assert.match(problems[0], new RegExp(`^${path}:3: \\[general\\] session_duration = '1 hour'`))
      assert.match(problems[1], /:5: \[general\] no_such_option/)
      assert.match(problems[2], /:6: unknown section \[nosuchsection\]/)
      await assert.rejects(loadConfig({path}), (error: Error) => error.message === problems[0])
    })

    it('reads a good file exactly as the strict read, with no problem', async () => {
      const path = join(dir, 'good.conf')
      writeFileSync(path, '[general]\ndaemon_port = 809\n')
      assert.deepEqual(await loadConfigLeniently({path}), {config: await loadConfig({path}), problems: []})
    })

    it('falls back to every default when the file cannot be read or parsed at all', async () => {
      const path = join(dir, 'garbage.conf')
      writeFileSync(path, 'this is not INI\n')
      const garbage = await loadConfigLeniently({path})
      assert.deepEqual(garbage.config, {...defaultConfig(), file: path})
      assert.equal(garbage.problems.length, 1)
      const missing = await loadConfigLeniently({path: join(dir, 'missing.conf')})
      assert.deepEqual(missing.problems, [`config file ${join(dir, 'missing.conf')} does not exist`])
    })
  })
})
