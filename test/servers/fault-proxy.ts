/**
 * A loopback HTTP proxy that puts a cloud-like network between a store client and a local test server
 * (s3rver, azurite, the GCS server): per-request latency, injected 500/503 replies, connection resets,
 * stalls, responses lost after the server acted, bodies cut off mid-way. Used by the store tests and by
 * the seed-scenario benchmark (`scripts/bench/seed-scenario.ts`), which also reads its counters.
 *
 * Why HTTP-aware rather than a TCP relay: a TCP relay sees bytes, not requests, so it could add latency
 * per packet or per connection but not per request (which is what a cloud round trip costs: keep-alive
 * connections carry many requests), could not count GETs and body bytes per request, and could not answer
 * a well-formed 503 that SDKs recognise as retryable. Parsing HTTP/1.1 is cheap with node:http; the
 * request is forwarded unchanged (same method, path, headers, Host included, so SigV4 signatures made for
 * the proxy's address still verify) over a keep-alive agent, and the reply is streamed back unchanged.
 *
 * Latency: half of `latencyMs` before the request is forwarded, half before the reply's headers go back,
 * so one request costs one full round trip whatever its direction of bulk data.
 *
 * Faults: each request is a candidate if its method is in `methods` (default all); a candidate gets a fault
 * with probability `failRate` (seeded PRNG, reproducible), chosen uniformly from `faults`, until
 * `maxFaults` have been injected (bounded, so retries always converge). Kinds:
 *   '500', '503'    reply with that status (an S3-style XML error body), without forwarding
 *   'reset'         reset the connection (TCP RST) without forwarding
 *   'stall'         read the request, never answer; the socket is destroyed after `stallMs`
 *   'lost-reply'    forward, let the server act, then reset instead of replying (an ambiguous outcome:
 *                   the write happened, the client cannot know)
 *   'truncate'      forward, send the headers and about half the body, then reset
 * Only 127.0.0.1 / ::1 / localhost upstreams are accepted; the proxy listens on 127.0.0.1, port 0.
 * `startFaultProxyProcess` runs it in a child process (for benchmarks) and reads its counters over IPC.
 */
import * as http from 'node:http';
import { fileURLToPath } from 'node:url';
import { rng } from '../helpers/rng.js';
import { listenLoopback, type RunningServer } from './child-server.js';

export type FaultKind = '500' | '503' | 'reset' | 'stall' | 'lost-reply' | 'truncate';

export interface FaultPlan {
  /** Round trip added to every request (ms). */
  latencyMs?: number;
  /** Share of candidate requests that get a fault, 0..1. */
  failRate?: number;
  /** Kinds to choose from (default 500, 503, reset). */
  faults?: FaultKind[];
  /** Stop injecting after this many faults (default 1000). */
  maxFaults?: number;
  /** Only requests with these methods are candidates (default: all). */
  methods?: string[];
  /** A stalled request's socket is destroyed after this long (default 60 000 ms). */
  stallMs?: number;
  /** PRNG seed for the fault draw (default 1). */
  seed?: number;
}

export interface ProxyStats {
  requests: number;
  byMethod: Record<string, number>;
  /** Response body bytes that reached the client (what a cloud store would bill as egress). */
  bytesDown: number;
  /** Request body bytes forwarded upstream. */
  bytesUp: number;
  faults: Record<FaultKind, number>;
  inFlight: number;
  maxInFlight: number;
}

export interface FaultProxy extends RunningServer {
  readonly stats: ProxyStats;
  /** Replace the plan (counters and the fault budget are kept; the PRNG restarts from the new seed). */
  set(plan: FaultPlan): void;
  resetStats(): void;
}

const newStats = (): ProxyStats => ({
  requests: 0, byMethod: {}, bytesDown: 0, bytesUp: 0, inFlight: 0, maxInFlight: 0,
  faults: { '500': 0, '503': 0, reset: 0, stall: 0, 'lost-reply': 0, truncate: 0 },
});

export async function startFaultProxy(upstream: string, initial: FaultPlan = {}): Promise<FaultProxy> {
  const target = new URL(upstream);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname)) {
    throw new Error(`fault proxy: upstream ${target.hostname} is not a loopback address`);
  }
  let plan: FaultPlan = initial;
  let draw = rng(plan.seed ?? 1);
  let stats = newStats();
  let injected = 0;
  const timers = new Set<NodeJS.Timeout>();
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

  const later = (ms: number, fn: () => void) => {
    if (!(ms > 0)) return fn();
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };

  function pickFault(method: string): FaultKind | undefined {
    if (!plan.failRate || injected >= (plan.maxFaults ?? 1000)) return undefined;
    if (plan.methods && !plan.methods.includes(method)) return undefined;
    if (draw() >= plan.failRate) return undefined;
    const kinds = plan.faults?.length ? plan.faults : (['500', '503', 'reset'] as FaultKind[]);
    const kind = kinds[Math.floor(draw() * kinds.length)];
    injected++;
    stats.faults[kind]++;
    return kind;
  }

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    stats.requests++;
    stats.byMethod[method] = (stats.byMethod[method] ?? 0) + 1;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let counted = true;
    const done = () => { if (counted) { counted = false; stats.inFlight--; } };
    res.on('close', done);
    const half = (plan.latencyMs ?? 0) / 2;
    const fault = pickFault(method);
    const reset = () => { req.socket.resetAndDestroy(); done(); };

    if (fault === 'reset') return later(half, reset);
    if (fault === 'stall') {
      req.resume();
      return later(plan.stallMs ?? 60_000, reset);
    }
    if (fault === '500' || fault === '503') {
      req.resume();
      req.on('end', () => later(2 * half, () => {
        const code = fault === '503' ? 'SlowDown' : 'InternalError';
        const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the fault proxy</Message></Error>`;
        res.writeHead(Number(fault), { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      }));
      return;
    }

    // Buffer the request body while the first half of the latency passes, then forward it.
    const body: Buffer[] = [];
    req.on('data', (d: Buffer) => body.push(d));
    req.on('end', () => later(half, () => {
      const payload = Buffer.concat(body);
      stats.bytesUp += payload.length;
      // The whole body is here, so `Expect: 100-continue` has nothing left to negotiate (and SigV4 never
      // signs it): drop it rather than relay an interim response.
      const headers = { ...req.headers };
      delete headers.expect;
      const up = http.request({
        host: target.hostname.replace(/^\[|\]$/g, ''), port: target.port, method, path: req.url, headers, agent,
      }, (upRes) => {
        if (fault === 'lost-reply') {
          upRes.resume();
          upRes.on('end', () => later(half, reset));
          return;
        }
        later(half, () => {
          if (res.destroyed) { upRes.resume(); return; }
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          const length = Number(upRes.headers['content-length'] ?? 0);
          let sent = 0;
          upRes.on('data', (d: Buffer) => {
            if (fault === 'truncate' && sent + d.length > length / 2) {
              const part = d.subarray(0, Math.max(0, Math.floor(length / 2) - sent));
              stats.bytesDown += part.length;
              res.write(part, () => reset());
              upRes.destroy();
              return;
            }
            sent += d.length;
            stats.bytesDown += d.length;
            res.write(d);
          });
          upRes.on('end', () => { if (!res.destroyed) res.end(); });
          upRes.on('error', () => reset());
        });
      });
      up.on('error', (err) => {
        if (res.headersSent) return reset();
        const text = `fault proxy: upstream ${upstream}: ${err.message}`;
        res.writeHead(502, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      });
      up.end(payload);
    }));
    req.on('error', () => done());
  });
  server.keepAliveTimeout = 30_000;
  const bound = await listenLoopback(server);
  return {
    endpoint: bound.endpoint,
    port: bound.port,
    get stats() { return stats; },
    set(next: FaultPlan) {
      plan = next;
      draw = rng(plan.seed ?? 1);
    },
    resetStats() {
      stats = newStats();
      injected = 0;
    },
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      agent.destroy();
      await bound.close();
    },
  };
}

// ------------------------------------------------------------------------------------------------ own process

/** A proxy running in its own process (benchmarks: its work must not compete with the measured client). */
export interface FaultProxyProcess extends RunningServer {
  stats(): Promise<ProxyStats>;
}

/**
 * Start the proxy in a child process (this file run as a program) and talk to it over IPC: `stats()`
 * asks for the counters. The child exits when this process disconnects, so it never outlives it.
 */
export async function startFaultProxyProcess(upstream: string, plan: FaultPlan = {}): Promise<FaultProxyProcess> {
  const { fork } = await import('node:child_process');
  const child = fork(fileURLToPath(import.meta.url), ['--serve', upstream, JSON.stringify(plan)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`fault proxy process exited ${code}`)));
  });
  let asked = 0;
  const waiting = new Map<number, (s: ProxyStats) => void>();
  child.on('message', (m) => {
    const msg = m as { id?: number; stats?: ProxyStats };
    if (msg.id !== undefined && msg.stats) waiting.get(msg.id)?.(msg.stats);
    if (msg.id !== undefined) waiting.delete(msg.id);
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stats: () => new Promise((resolve) => {
      const id = ++asked;
      waiting.set(id, resolve);
      child.send({ id });
    }),
    stop: async () => {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.disconnect();
      await gone;
    },
  };
}

if (process.argv[2] === '--serve' && process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  const proxy = await startFaultProxy(process.argv[3], JSON.parse(process.argv[4] ?? '{}') as FaultPlan);
  process.on('message', (m) => process.send!({ id: (m as { id: number }).id, stats: proxy.stats }));
  process.on('disconnect', () => { void proxy.stop().then(() => process.exit(0)); });
  process.send({ port: proxy.port });
}
