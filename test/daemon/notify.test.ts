// sd_notify: messages reach a unix datagram socket named by a path or an abstract '@' name, in
// order and whole; without NOTIFY_SOCKET nothing happens; and nothing that goes wrong is thrown.
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {monotonicUsec, notifyAddress, openNotifier} from '../../src/lib/daemon/notify.js'
import {NotifyReceiver} from './serve-support.js'

describe('sd_notify', () => {
  let dir: string
  before(() => (dir = mkdtempSync(join(tmpdir(), 'ec2userkeyd-notify-'))))
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('sends each message whole and in order to a socket named by its path', async () => {
    // Given systemd's end of the socket
    const path = join(dir, 'notify.sock')
    const systemd = await NotifyReceiver.bind(path)
    const warnings: string[] = []
    try {
      // When the daemon notifies three times
      const notifier = await openNotifier(path, (m) => warnings.push(m))
      assert.equal(notifier.enabled, true)
      notifier.notify({READY: 1, STATUS: 'serving'})
      notifier.notify({RELOADING: 1, MONOTONIC_USEC: 123n, STATUS: 'reloading\nthe configuration'})
      notifier.notify({STOPPING: 1})
      notifier.close()
      // Then systemd reads three datagrams, as sd_notify writes them (no newline inside a value)
      assert.deepEqual(await systemd.waitFor(3), [
        'READY=1\nSTATUS=serving',
        'RELOADING=1\nMONOTONIC_USEC=123\nSTATUS=reloading the configuration',
        'STOPPING=1',
      ])
      assert.deepEqual(warnings, [])
    } finally {
      systemd.close()
    }
  })

  it("reaches an abstract socket ('@name'), as systemd in a container names it", async () => {
    const name = `@ec2userkeyd-test-${process.pid}-${Date.now()}`
    const systemd = await NotifyReceiver.bind(name)
    try {
      const notifier = await openNotifier(name, (m) => assert.fail(m))
      notifier.notify({READY: 1})
      notifier.close()
      assert.deepEqual(await systemd.waitFor(1), ['READY=1'])
    } finally {
      systemd.close()
    }
  })

  it('does nothing without NOTIFY_SOCKET', async () => {
    const notifier = await openNotifier(undefined, (m) => assert.fail(m))
    assert.equal(notifier.enabled, false)
    notifier.notify({READY: 1})
    notifier.close()
  })

  it('never throws, and says once that systemd cannot be told', async () => {
    // Given a socket nobody listens on, and a value that is no socket name at all
    const warnings: string[] = []
    const gone = await openNotifier(join(dir, 'nobody-listens.sock'), (m) => warnings.push(m))
    // When the daemon notifies again and again
    for (let i = 0; i < 3; i++) gone.notify({READY: 1})
    gone.close()
    gone.notify({STOPPING: 1})
    const relative = await openNotifier('relative/notify.sock', (m) => warnings.push(m))
    relative.notify({READY: 1})
    // Then each says so once, and nothing is thrown
    assert.equal(warnings.length, 2, warnings.join('\n'))
    assert.match(warnings[0], /cannot notify systemd \(sendto .*nobody-listens\.sock: ENOENT\).*said once/)
    assert.match(
      warnings[1],
      /NOTIFY_SOCKET 'relative\/notify\.sock' is neither an absolute path nor an abstract '@' name/,
    )
  })

  it('builds sockaddr_un as the kernel wants it: a path with its NUL, an abstract name without', () => {
    const path = notifyAddress('/run/systemd/notify')!
    assert.equal(path.length, 2 + '/run/systemd/notify'.length + 1)
    assert.equal(path.address.subarray(2, path.length).toString('latin1'), '/run/systemd/notify\0')
    const abstract = notifyAddress('@abc')!
    assert.equal(abstract.length, 2 + 1 + 3)
    assert.equal(abstract.address.subarray(2, abstract.length).toString('latin1'), '\0abc')
    assert.equal(notifyAddress(`/${'x'.repeat(107)}`), null, 'no room for the NUL')
    assert.equal(notifyAddress('notify'), null)
  })

  it("gives MONOTONIC_USEC on CLOCK_MONOTONIC, the clock systemd's reload tracking reads", async () => {
    // Given libc's own CLOCK_MONOTONIC, read around the call
    const koffi = (await import('koffi')).default
    const libc = koffi.load(null as unknown as string)
    const timespec = koffi.struct({tv_sec: 'int64', tv_nsec: 'long'})
    const clockGettime = libc.func('clock_gettime', 'int', ['int', koffi.out(koffi.pointer(timespec))])
    const CLOCK_MONOTONIC = 1
    const read = () => {
      const tp = {tv_sec: 0, tv_nsec: 0}
      assert.equal(clockGettime(CLOCK_MONOTONIC, tp), 0)
      return BigInt(tp.tv_sec) * 1_000_000n + BigInt(tp.tv_nsec) / 1000n
    }
    // When the daemon takes its reading
    const before = read()
    const usec = monotonicUsec()
    const after = read()
    // Then it lies between the two
    assert.ok(before <= usec && usec <= after, `${before} <= ${usec} <= ${after}`)
  })
})
