// systemd's sockets (LISTEN_FDS) as serve takes them, and the refusal of ports a user could bind.
import assert from 'node:assert/strict'
import {EventEmitter} from 'node:events'
import {createServer} from 'node:net'

import {defaultConfig} from '../../src/lib/config/schema.js'
import {AdoptedSocket, passedSockets, roleOfSocket} from '../../src/lib/daemon/activation.js'
import {runDaemon} from '../../src/lib/daemon/lifecycle.js'
import type {LogSink} from '../../src/lib/daemon/log.js'

const sink = (): LogSink => ({write: () => {}})

describe('socket activation', () => {
  it('takes LISTEN_FDS sockets from fd 3, named by LISTEN_FDNAMES, only when LISTEN_PID is this process', () => {
    const env = {LISTEN_PID: '4242', LISTEN_FDS: '3', LISTEN_FDNAMES: 'imds:imds:admin'}
    assert.deepEqual(passedSockets(env, 4242), [
      {fd: 3, name: 'imds'},
      {fd: 4, name: 'imds'},
      {fd: 5, name: 'admin'},
    ])
    assert.deepEqual(passedSockets(env, 4243), [], 'an environment inherited from another process passes nothing')
    assert.deepEqual(passedSockets({}, 4242), [])
    assert.deepEqual(passedSockets({LISTEN_PID: '7', LISTEN_FDS: '1'}, 7), [{fd: 3, name: 'unknown'}])
    assert.throws(() => passedSockets({LISTEN_PID: '7', LISTEN_FDS: 'many'}, 7), /LISTEN_FDS=many/)
  })

  it('sorts passed sockets by what they are bound to, a FileDescriptorName winning', () => {
    // (Adopting real descriptors is tested end to end, with systemd-socket-activate: test/e2e/lifecycle.test.ts.)
    const tcp = (port: number, name = 'ec2userkeyd.socket'): AdoptedSocket => ({fd: 3, name, listener: createServer(), address: {address: '127.0.0.1', family: 'IPv4', port}})
    assert.equal(roleOfSocket(tcp(808), {imdsPort: 808, admin: '/run/ec2userkeyd/admin.sock'}), 'imds')
    assert.equal(roleOfSocket(tcp(908), {imdsPort: 808, admin: '127.0.0.1:908'}), 'admin')
    assert.equal(roleOfSocket(tcp(909), {imdsPort: 808, admin: '127.0.0.1:908'}), null, 'neither: closed with a warning')
    assert.equal(roleOfSocket(tcp(909, 'admin'), {imdsPort: 808, admin: null}), 'admin')
    assert.equal(roleOfSocket(tcp(909, 'imds'), {imdsPort: 808, admin: null}), 'imds')
    const unix = {...tcp(0), address: 'a unix socket (fd 5)'}
    assert.equal(roleOfSocket(unix, {imdsPort: 808, admin: '/run/ec2userkeyd/admin.sock'}), 'admin')
    assert.equal(roleOfSocket(unix, {imdsPort: 808, admin: null}), null)
  })
})

describe('ports a user could bind', () => {
  const start = (port: number, admin: string | null, allow = false) => {
    const config = defaultConfig()
    config.general.admin_listen = admin
    let started = false
    const running = runDaemon({
      config,
      loadConfig: async () => config,
      host: '127.0.0.1',
      port,
      upstream: 'http://127.0.0.1:1',
      interception: false,
      daemonUid: 0,
      env: {},
      signals: new EventEmitter(),
      outputs: {console: sink(), syslog: async () => sink()},
      startDaemon: async () => {
        started = true
        throw new Error('stop here: the ports were accepted')
      },
      unprivilegedPortStart: async () => 1024,
      allowUnprivilegedPort: allow,
    })
    return running.then(
      () => 'ran',
      (error: Error) => (started ? 'accepted' : error.message),
    )
  }

  it('refuses a metadata listener, or a TCP admin listener, on a port from ip_unprivileged_port_start up', async () => {
    assert.match(await start(8808, null), /^the metadata listener would be on port 8808, which any user can bind/)
    assert.match(await start(808, '127.0.0.1:9808'), /^the admin listener \(admin_listen\) would be on port 9808/)
  })

  it('takes ports below it, a unix admin socket, or any port with --allow-unprivileged-port', async () => {
    assert.equal(await start(808, '127.0.0.1:908'), 'accepted')
    assert.equal(await start(808, '/run/ec2userkeyd/admin.sock'), 'accepted')
    assert.equal(await start(8808, '127.0.0.1:9808', true), 'accepted')
  })
})
