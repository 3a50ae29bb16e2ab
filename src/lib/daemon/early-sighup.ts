// A SIGHUP that comes while `serve` is still loading (oclif and the AWS SDK take a few hundred
// milliseconds to import) would end the process: Node's default for SIGHUP. bin/run.js calls
// holdEarlySighup() first thing for `serve`, and the daemon's lifecycle takes the SIGHUP over
// once its own handler is in, reloading once it serves if one came.

const KEY = Symbol.for('ec2userkeyd.earlySighup')

interface Held {
  came: boolean
  listener: () => void
}

type WithHeld = typeof globalThis & {[KEY]?: Held}

/** From now until takeEarlySighup(), a SIGHUP is remembered instead of ending the process. */
export function holdEarlySighup(): void {
  const g = globalThis as WithHeld
  if (g[KEY]) return
  const held: Held = {came: false, listener: () => (held.came = true)}
  g[KEY] = held
  process.on('SIGHUP', held.listener)
}

/** Stops holding SIGHUP (the caller's handler is in by now); true when one came meanwhile. */
export function takeEarlySighup(): boolean {
  const g = globalThis as WithHeld
  const held = g[KEY]
  if (!held) return false
  process.off('SIGHUP', held.listener)
  delete g[KEY]
  return held.came
}
