import assert from 'node:assert/strict'

import {FairLimiter, QueueTimeout} from '../src/lib/fair.js'

/** A task that runs until `release()`; `started` says whether it began. */
function gate() {
  let release!: () => void
  const done = new Promise<void>((resolve) => (release = resolve))
  const task = {
    started: false,
    release: () => release(),
    run: async () => {
      task.started = true
      await done
    },
  }
  return task
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('fair shares of the upstream connections', () => {
  it('lets one key run at most perKey tasks, and others use the rest at once', async () => {
    const limiter = new FairLimiter<number>({total: 4, perKey: 2, maxWaitMs: 10_000, resource: 'slot'})
    const flood = Array.from({length: 20}, () => gate())
    const running = flood.map((g) => limiter.run(1, g.run))
    const light = gate()
    const lightRun = limiter.run(2, light.run)
    await tick()
    assert.equal(flood.filter((g) => g.started).length, 2, 'the flooding key holds 2 of 4')
    assert.ok(light.started, 'another key starts at once: it does not queue behind the flood')
    light.release()
    await lightRun
    for (const g of flood) g.release()
    await Promise.all(running)
    assert.ok(flood.every((g) => g.started))
  })

  it('takes waiting keys in turn, so a key with many waiting tasks gets one turn per round', async () => {
    const limiter = new FairLimiter<string>({total: 1, perKey: 1, maxWaitMs: 10_000, resource: 'slot'})
    const order: string[] = []
    const first = gate()
    const blocker = limiter.run('a', first.run)
    const tasks = [
      ...['a', 'a', 'a', 'a'].map((k, i) => limiter.run(k, async () => void order.push(`${k}${i}`))),
      limiter.run('b', async () => void order.push('b0')),
      limiter.run('c', async () => void order.push('c0')),
    ]
    first.release()
    await Promise.all([blocker, ...tasks])
    assert.deepEqual(order, ['a0', 'b0', 'c0', 'a1', 'a2', 'a3'])
  })

  it('refuses a task that waits longer than maxWaitMs, and forgets it', async () => {
    const limiter = new FairLimiter<number>({total: 1, perKey: 1, maxWaitMs: 50, resource: 'slot'})
    const g = gate()
    const holding = limiter.run(1, g.run)
    let ran = false
    await assert.rejects(
      limiter.run(2, async () => void (ran = true)),
      (e) => e instanceof QueueTimeout && e.message === 'no slot was free within 50 ms',
    )
    assert.equal(limiter.queued, 0)
    g.release()
    await holding
    await tick()
    assert.equal(ran, false, 'a refused task never runs later')
    await limiter.run(2, async () => void (ran = true))
    assert.ok(ran, 'the slot is free again')
  })

  it('frees the slot of a task that throws', async () => {
    const limiter = new FairLimiter<number>({total: 1, perKey: 1, maxWaitMs: 1000, resource: 'slot'})
    await assert.rejects(
      limiter.run(1, async () => {
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal(await limiter.run(1, async () => 42), 42)
  })
})
