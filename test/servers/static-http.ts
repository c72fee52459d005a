/**
 * A small static HTTP file server for the HTTPS store's tests, in memory, on 127.0.0.1 port 0, with the
 * misbehaviours real web servers have, switchable per test:
 *   GET/HEAD /path   → 200 with Content-Length, ETag (strong, weak or none), Last-Modified;
 *                      `Range: bytes=A-B` → 206 + Content-Range, past the end → 416; `If-Match` honoured
 *   ignoreRange      → answer every GET with 200 and the whole body (servers that do not do ranges)
 *   noHead           → 405 to HEAD
 *   etag             → 'strong' (default) | 'weak' | 'none' (only Last-Modified is sent)
 *   ignoreIfMatch    → serve despite a failed If-Match (the client must compare validators itself)
 *   basicAuth        → 'user:password': 401 without it
 *   token            → a query parameter `token=<value>` every request must carry: 403 without it
 *   redirectFrom     → a path prefix answered with 302 to the same path under `/moved`
 * `put(path, data)` replaces an object (new ETag and Last-Modified). `requests` counts GETs and HEADs.
 */
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import { listenLoopback, type RunningServer } from './child-server.js';

export interface StaticHttpOptions {
  ignoreRange?: boolean;
  noHead?: boolean;
  etag?: 'strong' | 'weak' | 'none';
  ignoreIfMatch?: boolean;
  basicAuth?: string;
  token?: string;
  redirectFrom?: string;
}

export interface StaticHttpServer extends RunningServer {
  options: StaticHttpOptions;
  put(path: string, data: Buffer): void;
  readonly requests: { GET: number; HEAD: number };
}

export async function startStaticHttp(options: StaticHttpOptions = {}): Promise<StaticHttpServer> {
  const files = new Map<string, { data: Buffer; etag: string; modified: Date }>();
  const requests = { GET: 0, HEAD: 0 };
  let version = 0;
  const state: { options: StaticHttpOptions } = { options };

  const server = http.createServer((req, res) => {
    const o = state.options;
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' || req.method === 'HEAD') requests[req.method]++;
    if (o.basicAuth && req.headers.authorization !== `Basic ${Buffer.from(o.basicAuth).toString('base64')}`) {
      return res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end();
    }
    if (o.token && url.searchParams.get('token') !== o.token) return res.writeHead(403).end('bad token');
    if (o.redirectFrom && url.pathname.startsWith(o.redirectFrom)) {
      return res.writeHead(302, { location: `/moved${url.pathname}${url.search}` }).end();
    }
    const path = decodeURIComponent(url.pathname.replace(/^\/moved/, ''));
    if (req.method === 'HEAD' && o.noHead) return res.writeHead(405).end();
    if (req.method !== 'GET' && req.method !== 'HEAD') return res.writeHead(405).end();
    const f = files.get(path);
    if (!f) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    const etagHeader = o.etag === 'none' ? undefined : o.etag === 'weak' ? `W/${f.etag}` : f.etag;
    const headers: http.OutgoingHttpHeaders = { 'last-modified': f.modified.toUTCString(), 'accept-ranges': 'bytes' };
    if (etagHeader) headers.etag = etagHeader;
    const ifMatch = req.headers['if-match'];
    if (ifMatch && !o.ignoreIfMatch && ifMatch !== f.etag) return res.writeHead(412, headers).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
    if (!range || o.ignoreRange) {
      res.writeHead(200, { ...headers, 'content-length': f.data.length });
      return res.end(req.method === 'HEAD' ? undefined : f.data);
    }
    const start = Number(range[1]);
    const end = Math.min(Number(range[2]), f.data.length - 1);
    if (start >= f.data.length) return res.writeHead(416, { ...headers, 'content-range': `bytes */${f.data.length}` }).end();
    res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${f.data.length}` });
    res.end(req.method === 'HEAD' ? undefined : f.data.subarray(start, end + 1));
  });
  const bound = await listenLoopback(server);
  return {
    endpoint: bound.endpoint,
    port: bound.port,
    get options() { return state.options; },
    set options(next: StaticHttpOptions) { state.options = next; },
    requests,
    put(path: string, data: Buffer) {
      version++;
      // Last-Modified has one-second resolution: step it by a second per version so it changes too.
      files.set(path, { data, etag: `"${createHash('md5').update(data).update(String(version)).digest('hex')}"`, modified: new Date(Date.UTC(2026, 0, 1) + version * 1000) });
    },
    stop: bound.close,
  };
}
