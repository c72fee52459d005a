/**
 * Shared plumbing for the local test servers: a free loopback port, "wait until it answers", and a
 * child-process server (s3rver, azurite) that is started on that port and stopped again.
 *
 * Ports. s3rver and azurite print nothing useful with `--silent`, so they cannot be started on port 0
 * and asked which port they got. Instead a port is taken from the kernel (listen on 127.0.0.1:0, close)
 * and handed to the child. Another process may grab it in between; the child then fails to bind and
 * exits, which `startChildServer` notices and retries with a fresh port (up to 4 times). Readiness is
 * "the child is still alive and the port answers HTTP" plus a server-specific identity probe where one
 * exists (s3rver: our randomly named bucket is there), so a stranger on the port is not mistaken for ours.
 *
 * Children are killed when the test process exits (an `exit` hook), so a failing test never leaves a
 * server behind. Only a SIGKILLed test process can (no hook runs then); such a server binds 127.0.0.1
 * and a temp directory, nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as net from 'node:net';

/** What every test server helper returns. */
export interface RunningServer {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Serve `server` on 127.0.0.1 with a port the kernel chooses (parallel runs never collide); `close()` also
 * drops open connections, kept-alive or stalled ones included, so a stop never waits on a client.
 */
export async function listenLoopback(server: http.Server): Promise<{ port: number; endpoint: string; close(): Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** Poll `probe` every 25 ms until it returns true; throws after `timeoutMs` naming `what`. */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One HTTP request to the loopback server; resolves with status and body (never follows redirects). */
export function httpProbe(url: string, method = 'GET', timeoutMs = 2000): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

export interface ChildServerSpec {
  /** For messages: "s3rver", "azurite". */
  name: string;
  command: string;
  args: (port: number) => string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** True once the server on `port` is ready and is this child (default: any HTTP answer to GET /). */
  ready?: (port: number) => Promise<boolean>;
  startTimeoutMs?: number;
}

export async function startChildServer(spec: ChildServerSpec): Promise<RunningServer & { child: ChildProcess }> {
  let lastError = '';
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freePort();
    const child = spawn(spec.command, spec.args(port), {
      cwd: spec.cwd, env: spec.env ?? process.env, stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.add(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const ready = spec.ready ?? (async (p: number) => (await httpProbe(`http://127.0.0.1:${p}/`)).status > 0);
    try {
      await waitUntil(async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error('exited');
        return ready(port);
      }, spec.startTimeoutMs ?? 30_000, `${spec.name} on port ${port}`);
    } catch (err) {
      lastError = `${(err as Error).message}${stderr ? `; stderr: ${stderr.trim().split('\n').slice(-3).join(' / ')}` : ''}`;
      await stopChild(child, exited);
      children.delete(child);
      if (child.exitCode !== null || /EADDRINUSE|exited/.test(lastError)) continue; // port taken: try another
      break;
    }
    let stopping: Promise<void> | undefined;
    return {
      endpoint: `http://127.0.0.1:${port}`,
      port,
      child,
      stop: () => (stopping ??= stopChild(child, exited).finally(() => children.delete(child))),
    };
  }
  throw new Error(`could not start ${spec.name}: ${lastError}`);
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
