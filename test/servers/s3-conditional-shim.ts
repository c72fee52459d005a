/**
 * Test-only shim in front of s3rver that enforces the conditional writes s3rver ignores, as AWS S3 does
 * them (since August / November 2024):
 *   PUT object, or POST ?uploadId= (CompleteMultipartUpload), with
 *     `If-None-Match: *`  → 412 PreconditionFailed if the key exists;
 *     `If-Match: <etag>`  → 412 PreconditionFailed if its ETag differs, 404 NoSuchKey if the key is absent
 *                           (what AWS answers; Ceph answers 412 there, and clients must take both).
 * Everything else is relayed unchanged (headers included, so SigV4 signatures still verify upstream).
 *
 * Atomicity: a check and the write it guards must not interleave with another write of the same key, so
 * every write of a key (conditional or not: PUT object, CompleteMultipartUpload, DELETE) runs under a
 * per-key mutex held from the check until s3rver has answered the write. Part uploads
 * (`?partNumber=&uploadId=`) touch no key and are not locked. The check is an unsigned HEAD of the key,
 * which s3rver serves to anyone.
 *
 * Path-style addressing only (`/bucket/key`), which is what tests use with s3rver.
 */
import * as http from 'node:http';
import { listenLoopback, type RunningServer } from './child-server.js';

export interface ConditionalShim extends RunningServer {
  /** Conditional writes refused with 412, by header. */
  readonly refused: { ifNoneMatch: number; ifMatch: number };
}

export async function startS3ConditionalShim(upstream: string): Promise<ConditionalShim> {
  const target = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const locks = new Map<string, Promise<void>>();
  const refused = { ifNoneMatch: 0, ifMatch: 0 };

  /** Run `fn` with the key's mutex held (a promise chain per key; the entry goes when idle). */
  async function withKeyLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    locks.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (locks.get(key) === tail) locks.delete(key);
    }
  }

  function headEtag(objectPath: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: target.hostname, port: target.port, method: 'HEAD', path: objectPath, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? String(res.headers.etag) : undefined));
      });
      req.on('error', reject);
      req.end();
    });
  }

  function forward(req: http.IncomingMessage, body: Buffer, res: http.ServerResponse): Promise<void> {
    return new Promise((resolve) => {
      const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        upRes.on('end', () => resolve());
        upRes.on('error', () => { res.destroy(); resolve(); });
      });
      up.on('error', (err) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`shim: upstream: ${err.message}`);
        resolve();
      });
      up.end(body);
    });
  }

  function preconditionFailed(res: http.ServerResponse, condition: string): void {
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>${condition}</Condition></Error>`;
    res.writeHead(412, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const url = new URL(req.url ?? '/', 'http://shim');
      const objectPath = url.pathname;
      const isKey = objectPath.split('/').filter(Boolean).length >= 2;
      const isPartUpload = url.searchParams.has('partNumber');
      const writesKey = isKey && !isPartUpload &&
        (req.method === 'PUT' || req.method === 'DELETE' || (req.method === 'POST' && url.searchParams.has('uploadId')));
      if (!writesKey) {
        void forward(req, body, res);
        return;
      }
      const ifNoneMatch = req.headers['if-none-match'];
      const ifMatch = req.headers['if-match'];
      void withKeyLock(objectPath, async () => {
        if (req.method !== 'DELETE' && (ifNoneMatch !== undefined || ifMatch !== undefined)) {
          const etag = await headEtag(objectPath);
          if (ifNoneMatch === '*' && etag !== undefined) {
            refused.ifNoneMatch++;
            return preconditionFailed(res, 'If-None-Match');
          }
          if (ifMatch !== undefined && etag === undefined) {
            refused.ifMatch++;
            const text = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>';
            res.writeHead(404, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(text) });
            res.end(text);
            return;
          }
          if (ifMatch !== undefined && stripQuotes(etag!) !== stripQuotes(ifMatch)) {
            refused.ifMatch++;
            return preconditionFailed(res, 'If-Match');
          }
        }
        await forward(req, body, res);
      }).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`shim: ${String(err)}`);
      });
    });
  });
  const bound = await listenLoopback(server);
  return {
    endpoint: bound.endpoint,
    port: bound.port,
    refused,
    stop: async () => {
      agent.destroy();
      await bound.close();
    },
  };
}

function stripQuotes(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}
