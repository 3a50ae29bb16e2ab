// Fair shares of a scarce resource (the daemon's connections to the real IMDS, its user-database
// look-ups) among the uids asking for it. Without it, one user sending many distinct paths
// (each one a real upstream call: answers are cached per path) would hold every upstream
// connection and make everyone else's metadata requests time out. Each key (a uid) may run `perKey` tasks at once; when a
// slot frees, the waiting keys take turns (round robin), so a user with many uids still gets
// only one turn per uid, and a light user waits behind at most one task of each other user.
// A task that cannot start within `maxWaitMs` is refused: the caller's SDK has given up by then.

export class QueueTimeout extends Error {
  constructor(resource: string, waitedMs: number) {
    super(`no ${resource} was free within ${waitedMs} ms`)
    this.name = 'QueueTimeout'
  }
}

interface Waiter {
  start: () => void
  timer: NodeJS.Timeout
}

export interface FairLimiterOptions {
  /** Tasks running at once, all keys together. */
  total: number
  /** Tasks running at once for one key. */
  perKey: number
  /** How long a task may wait for a slot before it is refused with QueueTimeout. */
  maxWaitMs: number
  /** What a slot is, for QueueTimeout's message ("upstream connection"). */
  resource: string
}

export class FairLimiter<K> {
  private running = 0
  private readonly runningBy = new Map<K, number>()
  /** Keys with waiting tasks, in turn order: the first key whose share allows goes next. */
  private readonly waiting = new Map<K, Waiter[]>()

  constructor(private readonly options: FairLimiterOptions) {}

  /** Tasks waiting for a slot, all keys together. */
  get queued(): number {
    let n = 0
    for (const list of this.waiting.values()) n += list.length
    return n
  }

  async run<T>(key: K, task: () => Promise<T>): Promise<T> {
    if (this.canStart(key)) this.begin(key)
    else await this.wait(key) // next() counted the slot for it
    try {
      return await task()
    } finally {
      this.end(key)
    }
  }

  private canStart(key: K): boolean {
    return (
      this.running < this.options.total &&
      (this.runningBy.get(key) ?? 0) < this.options.perKey &&
      // Not ahead of its own key's queue. Other keys' waiting tasks are held back by their own
      // share (a free slot they could take is given at once, in next()): no overtaking there.
      !this.waiting.has(key)
    )
  }

  private wait(key: K): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        start: resolve,
        timer: setTimeout(() => {
          const list = this.waiting.get(key)
          const at = list?.indexOf(waiter) ?? -1
          if (at >= 0) list!.splice(at, 1)
          if (list?.length === 0) this.waiting.delete(key)
          reject(new QueueTimeout(this.options.resource, this.options.maxWaitMs))
        }, this.options.maxWaitMs),
      }
      const list = this.waiting.get(key)
      if (list) list.push(waiter)
      else this.waiting.set(key, [waiter])
    })
  }

  private begin(key: K): void {
    this.running++
    this.runningBy.set(key, (this.runningBy.get(key) ?? 0) + 1)
  }

  private end(key: K): void {
    this.running--
    const left = this.runningBy.get(key)! - 1
    if (left === 0) this.runningBy.delete(key)
    else this.runningBy.set(key, left)
    this.next()
  }

  /** Starts waiting tasks while slots are free: the first key in turn whose share allows. */
  private next(): void {
    while (this.running < this.options.total) {
      let chosen: K | undefined
      for (const key of this.waiting.keys())
        if ((this.runningBy.get(key) ?? 0) < this.options.perKey) {
          chosen = key
          break
        }
      if (chosen === undefined) return
      const list = this.waiting.get(chosen)!
      const waiter = list.shift()!
      // The key's turn is used: it goes to the back of the line (if it still waits).
      this.waiting.delete(chosen)
      if (list.length > 0) this.waiting.set(chosen, list)
      clearTimeout(waiter.timer)
      // Counted now, synchronously, so that the loop sees the slot taken.
      this.begin(chosen)
      waiter.start()
    }
  }
}
