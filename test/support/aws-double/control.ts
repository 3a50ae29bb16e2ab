// A small JSON control API under /__double/ on the double's own port, so tests that run the
// double as a separate process (main.ts) can read its logs and inject failures. AWS clients
// never reach it: they POST to `/`.
//   GET  /__double/state    → {calls, assumeRoleLog}
//   POST /__double/inject   ← an Injection, e.g. {"action":"AssumeRole","code":"Throttling","times":2}
//   POST /__double/latency  ← {"ms": 50, "action"?: "GetUser"}
//   POST /__double/reset    clears logs, injections and latencies
import type {IncomingMessage, ServerResponse} from 'node:http'

import type {AssumeRoleRecord, CallRecord, Injection} from './state.js'

export const CONTROL_PREFIX = '/__double/'

export interface DoubleControls {
  calls: CallRecord[]
  assumeRoleLog: AssumeRoleRecord[]
  inject(injection: Injection): void
  setLatency(ms: number, action?: string): void
  reset(): void
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, {'content-type': 'application/json'})
  res.end(JSON.stringify(body))
}

export function handleControl(
  req: IncomingMessage,
  path: string,
  body: string,
  res: ServerResponse,
  controls: DoubleControls,
): void {
  const route = `${req.method} ${path.slice(CONTROL_PREFIX.length)}`
  let input: Record<string, unknown> = {}
  try {
    if (body.trim()) input = JSON.parse(body) as Record<string, unknown>
  } catch {
    return reply(res, 400, {error: 'body is not JSON'})
  }
  switch (route) {
    case 'GET state':
      return reply(res, 200, {calls: controls.calls, assumeRoleLog: controls.assumeRoleLog})
    case 'POST inject':
      if (typeof input.code !== 'string' || typeof input.times !== 'number')
        return reply(res, 400, {error: 'inject needs code (string) and times (number)'})
      controls.inject(input as unknown as Injection)
      return reply(res, 200, {ok: true})
    case 'POST latency':
      if (typeof input.ms !== 'number') return reply(res, 400, {error: 'latency needs ms (number)'})
      controls.setLatency(input.ms, typeof input.action === 'string' ? input.action : undefined)
      return reply(res, 200, {ok: true})
    case 'POST reset':
      controls.reset()
      return reply(res, 200, {ok: true})
    default:
      return reply(res, 404, {error: `no control route ${route}`})
  }
}
