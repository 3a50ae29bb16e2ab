// bench/serve-client: the load generator of bench/serve. bench/serve spawns it as another uid
// (nobody), since the daemon passes root's requests to the real IMDS and only a non-root
// client takes the credential path. It reads a plan (JSON) on standard input, runs its phases
// in order, and prints one JSON object: per phase key (phases with the same key are rounds of
// one measurement), requests, failures, seconds, latency percentiles in ms, and when the
// phases ran (wall clock, so that bench/serve can tell which AWS calls and how much of its own
// CPU time fell in which phase).
//   echo '{"host": "127.0.0.1", "path": "...", "targets": {...}, "phases": [...]}' | node --import tsx bench/serve-client.ts
import http from 'node:http'

export interface ClientTarget {
  port: number
  /** Ask the target for an IMDSv2 token first and send it with every GET, as SDKs do. */
  token: boolean
}

export interface ClientPhase {
  /** Phases sharing a key are added up into one result. */
  key: string
  target: string
  /** keepalive: an Agent with keep-alive and `concurrency` sockets; new: a connection per request. */
  mode: 'keepalive' | 'new'
  concurrency: number
  /** Run for this long, or this many requests (whichever comes first). */
  ms?: number
  requests?: number
  /** New connections: close with a reset (SO_LINGER 0), so that no TIME_WAIT entry is left in /proc/net/tcp. */
  reset?: boolean
  /** Return the last answer's body. */
  sample?: boolean
  /** Wait this long before the phase (to let a cache's entries expire). */
  pauseMs?: number
}

export interface ClientPlan {
  host: string
  path: string
  targets: Record<string, ClientTarget>
  phases: ClientPhase[]
}

export interface ClientResult {
  requests: number
  failures: number
  /** The first failure, for the report. */
  failure?: string
  seconds: number
  p50: number
  p99: number
  max: number
  /** Date.now() when each of the key's phases started and ended. */
  windows: [number, number][]
  /** Each of the key's phases on its own, in order: answered requests and seconds. */
  phases: {requests: number; seconds: number}[]
  body?: string
}

export type ClientReport = Record<string, ClientResult>

interface Answer {
  status: number
  body: string
}

/**
 * One GET. With `reset`, on a connection of its own that the client resets once answered: the
 * request asks for keep-alive, since Node half-closes a `Connection: close` socket before the
 * answer's end is seen, and a half-closed socket can no longer be reset.
 */
function get(
  host: string,
  port: number,
  path: string,
  headers: Record<string, string>,
  agent: http.Agent | false,
  reset: boolean,
): Promise<Answer> {
  const own = reset ? new http.Agent({keepAlive: true, maxSockets: 1}) : null
  return new Promise<Answer>((resolve, reject) => {
    const req = http.request({host, port, path, agent: own ?? agent, headers}, (res) => {
      const chunks: Buffer[] = []
      const socket = res.socket // the agent takes it back before 'end'
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        if (own) socket.resetAndDestroy()
        resolve({status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString()})
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  }).finally(() => own?.destroy())
}

function token(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port,
        method: 'PUT',
        path: '/latest/api/token',
        agent: false,
        headers: {Host: '169.254.169.254', 'X-aws-ec2-metadata-token-ttl-seconds': '21600'},
      },
      (res) => {
        let body = ''
        res.on('data', (chunk) => (body += chunk))
        res.on('end', () =>
          res.statusCode === 200
            ? resolve(body)
            : reject(new Error(`token PUT on port ${port}: HTTP ${res.statusCode}`)),
        )
      },
    )
    req.on('error', reject)
    req.end()
  })
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN

async function run(plan: ClientPlan): Promise<ClientReport> {
  const headers: Record<string, Record<string, string>> = {}
  for (const [name, target] of Object.entries(plan.targets))
    headers[name] = {
      Host: '169.254.169.254',
      ...(target.token ? {'X-aws-ec2-metadata-token': await token(plan.host, target.port)} : {}),
    }

  const collected = new Map<
    string,
    {
      latencies: number[]
      failures: number
      failure?: string
      seconds: number
      windows: [number, number][]
      phases: {requests: number; seconds: number}[]
      body?: string
    }
  >()
  for (const phase of plan.phases) {
    const {port} = plan.targets[phase.target]
    let into = collected.get(phase.key)
    if (!into)
      collected.set(phase.key, (into = {latencies: [], failures: 0, seconds: 0, windows: [], phases: []}))
    if (phase.pauseMs) await new Promise((resolve) => setTimeout(resolve, phase.pauseMs))
    const agent =
      phase.mode === 'keepalive' ? new http.Agent({keepAlive: true, maxSockets: phase.concurrency}) : false
    const start = performance.now()
    const startedAt = Date.now()
    const answeredBefore = into.latencies.length
    const deadline = phase.ms === undefined ? Infinity : start + phase.ms
    let left = phase.requests ?? Infinity
    const worker = async () => {
      while (left > 0 && performance.now() < deadline) {
        left--
        const sent = performance.now()
        try {
          const answer = await get(
            plan.host,
            port,
            plan.path,
            headers[phase.target],
            agent,
            phase.reset ?? false,
          )
          into.latencies.push(performance.now() - sent)
          if (answer.status !== 200) {
            into.failures++
            into.failure ??= `HTTP ${answer.status}`
          }
          if (phase.sample) into.body = answer.body
        } catch (error) {
          into.failures++
          into.failure ??= (error as Error).message
        }
      }
    }
    await Promise.all(Array.from({length: phase.concurrency}, worker))
    const seconds = (performance.now() - start) / 1000
    into.seconds += seconds
    into.windows.push([startedAt, Date.now()])
    into.phases.push({requests: into.latencies.length - answeredBefore, seconds})
    if (agent) agent.destroy()
  }

  const report: ClientReport = {}
  for (const [key, c] of collected) {
    const sorted = c.latencies.sort((a, b) => a - b)
    report[key] = {
      requests: sorted.length,
      failures: c.failures,
      failure: c.failure,
      seconds: c.seconds,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? NaN,
      windows: c.windows,
      phases: c.phases,
      body: c.body,
    }
  }
  return report
}

const input: Buffer[] = []
for await (const chunk of process.stdin) input.push(chunk as Buffer)
run(JSON.parse(Buffer.concat(input).toString()) as ClientPlan).then(
  // Exit at once: sockets being torn down must not keep the process (and the bench) waiting.
  (report) => process.stdout.write(JSON.stringify(report), () => process.exit(0)),
  (error) => {
    process.stderr.write(`bench/serve-client: ${(error as Error).message}\n`)
    process.exit(1)
  },
)
