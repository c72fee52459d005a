/**
 * A minimal Google Cloud Storage JSON-API server for tests (no GCS emulator runs here: firebase's needs
 * Java 21). It implements exactly the routes `@google-cloud/storage` 7 sends for what `GcsStore` calls,
 * in memory, on 127.0.0.1 (port 0). `@google-cloud/storage` with `apiEndpoint: <endpoint>` sends no
 * credentials, and this server asks for none.
 *
 * Routes (B = bucket, N = URL-encoded object name; `…` = other query parameters are ignored):
 *   POST   /upload/storage/v1/b/B/o?uploadType=multipart&name=N[&ifGenerationMatch=G]
 *          multipart/related body: JSON metadata part, then the media part → 200 object resource
 *   POST   /upload/storage/v1/b/B/o?uploadType=resumable&name=N[&ifGenerationMatch=G]
 *          JSON metadata body → 200, `Location:` the session URI (…&upload_id=ID)
 *   PUT    <session URI>  Content-Range `bytes A-B/T`, `bytes A-B/*`, `bytes A-*\/T` or `bytes A-*\/*`:
 *          appends the chunk; 308 with `Range: bytes=0-(received-1)` until the last byte (T known and
 *          reached, or `*\/*` and the request body ended), then 200 object resource. `bytes *\/*` (or
 *          `*\/T`) asks for the state: 308 + Range, or 200 if finished. A chunk cut off mid-body keeps
 *          the bytes that arrived (the client asks for the state and resumes).
 *   GET    /storage/v1/b/B/o/N[?ifGenerationMatch=G]                → object resource | 404 | 412
 *   GET    /storage/v1/b/B/o/N?alt=media[&ifGenerationMatch=G]     → bytes; with `Range: bytes=A-B`,
 *          `A-` or `-S`: 206 + Content-Range; a range starting past the end: 416. Headers
 *          x-goog-generation, x-goog-hash (crc32c, md5), x-goog-stored-content-encoding: identity.
 *   GET    /storage/v1/b/B/o?prefix=P&delimiter=D&pageToken=T&maxResults=M  → { items, prefixes,
 *          nextPageToken }, items and prefixes in name order, a page holding at most M of both together
 *   DELETE /storage/v1/b/B/o/N[?ifGenerationMatch=G]                → 204 | 404 | 412
 *   GET    /storage/v1/b/B                                           → bucket resource | 404
 * Preconditions: `ifGenerationMatch` (0 = "must not exist") and `ifGenerationNotMatch`, checked when a
 * session is created and again, atomically, when an upload is finalised → 412 conditionNotMet.
 * Every upload reply carries the object's base64 big-endian `crc32c` and `md5Hash`: the SDK compares
 * them with what it sent and, on a mismatch, throws and deletes the object. Generations are unique
 * and increase, so a replaced object always has a new one.
 * Custom `metadata` given with an upload is kept and returned with the object resource.
 * Errors are JSON `{ error: { code, message, errors: [{ reason, message }] } }` like the real service.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { listenLoopback, type RunningServer } from './child-server.js';

interface StoredObject {
  data: Buffer;
  generation: string;
  contentType: string;
  updated: string;
  crc32c: string;
  md5Hash: string;
  /** Custom metadata (`metadata` of the object resource). */
  metadata?: Record<string, string>;
}

interface UploadSession {
  bucket: string;
  name: string;
  contentType: string;
  metadata?: Record<string, string>;
  preconditions: URLSearchParams;
  chunks: Buffer[];
  received: number;
  finished?: Record<string, unknown>;
}

export interface GcsServer extends RunningServer {
  /** Objects by bucket, for tests that look behind the API. */
  buckets: Map<string, Map<string, StoredObject>>;
  createBucket(name: string): void;
}

export async function startGcsServer(opts: { buckets?: string[] } = {}): Promise<GcsServer> {
  const buckets = new Map<string, Map<string, StoredObject>>();
  for (const b of opts.buckets ?? []) buckets.set(b, new Map());
  const sessions = new Map<string, UploadSession>();
  let lastGeneration = Date.now() * 1000;
  const nextGeneration = () => String(++lastGeneration);

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendError(res, 500, 'backendError', String(err));
      else res.destroy();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const q = url.searchParams;
    const p = url.pathname;
    let m: RegExpExecArray | null;
    if ((m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(p))) {
      const bucket = objectsOf(res, decodeURIComponent(m[1]));
      if (!bucket) return drain(req);
      if (req.method === 'POST' && q.get('uploadType') === 'multipart') return multipartUpload(req, res, decodeURIComponent(m[1]), bucket, q);
      if (req.method === 'POST' && q.get('uploadType') === 'resumable') return startResumable(req, res, decodeURIComponent(m[1]), bucket, q);
      if (req.method === 'PUT' && q.has('upload_id')) return resumableChunk(req, res, q.get('upload_id')!);
      await drain(req);
      return sendError(res, 400, 'invalid', `unsupported upload request ${req.method} ${q.get('uploadType')}`);
    }
    await drain(req);
    if ((m = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(p))) {
      const bucketName = decodeURIComponent(m[1]);
      const bucket = objectsOf(res, bucketName);
      if (!bucket) return;
      const name = decodeURIComponent(m[2]);
      const obj = bucket.get(name);
      if (req.method === 'GET' || req.method === 'HEAD') {
        if (!obj) return sendError(res, 404, 'notFound', `No such object: ${bucketName}/${name}`);
        if (!preconditionsHold(res, q, obj)) return;
        if (q.get('alt') === 'media') return sendMedia(req, res, obj);
        return sendJson(res, 200, resource(bucketName, name, obj));
      }
      if (req.method === 'DELETE') {
        if (!obj) return sendError(res, 404, 'notFound', `No such object: ${bucketName}/${name}`);
        if (!preconditionsHold(res, q, obj)) return;
        bucket.delete(name);
        res.writeHead(204).end();
        return;
      }
    } else if ((m = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(p)) && req.method === 'GET') {
      const bucket = objectsOf(res, decodeURIComponent(m[1]));
      if (bucket) return sendJson(res, 200, listPage(decodeURIComponent(m[1]), bucket, q));
      return;
    } else if ((m = /^\/storage\/v1\/b\/([^/]+)$/.exec(p)) && req.method === 'GET') {
      const name = decodeURIComponent(m[1]);
      if (objectsOf(res, name)) sendJson(res, 200, { kind: 'storage#bucket', id: name, name, location: 'US', storageClass: 'STANDARD' });
      return;
    }
    sendError(res, 404, 'notFound', `no route for ${req.method} ${p}`);
  }

  function objectsOf(res: http.ServerResponse, bucket: string): Map<string, StoredObject> | undefined {
    const objects = buckets.get(bucket);
    if (!objects) sendError(res, 404, 'notFound', `The specified bucket does not exist: ${bucket}`);
    return objects;
  }

  /** 412 (and false) unless the `ifGeneration*` parameters hold for `obj` (undefined: absent). */
  function preconditionsHold(res: http.ServerResponse, q: URLSearchParams, obj: StoredObject | undefined): boolean {
    const match = q.get('ifGenerationMatch');
    const notMatch = q.get('ifGenerationNotMatch');
    const current = obj?.generation ?? '0';
    if ((match !== null && match !== current) || (notMatch !== null && notMatch === current)) {
      sendError(res, 412, 'conditionNotMet', `At least one of the pre-conditions you specified did not hold (generation is ${current}).`);
      return false;
    }
    return true;
  }

  async function multipartUpload(req: http.IncomingMessage, res: http.ServerResponse, bucketName: string, bucket: Map<string, StoredObject>, q: URLSearchParams): Promise<void> {
    const body = await readBody(req);
    const boundary = /boundary="?([^";]+)"?/.exec(req.headers['content-type'] ?? '')?.[1];
    if (!boundary) return sendError(res, 400, 'invalid', 'multipart upload without a boundary');
    const parts = splitMultipart(body, boundary);
    if (parts.length !== 2) return sendError(res, 400, 'invalid', `multipart upload with ${parts.length} parts (want metadata + media)`);
    const meta = JSON.parse(parts[0].body.toString('utf8') || '{}') as ObjectMeta;
    const name = q.get('name') ?? meta.name;
    if (!name) return sendError(res, 400, 'required', 'object name missing');
    if (!preconditionsHold(res, q, bucket.get(name))) return;
    const obj = store(bucket, name, parts[1].body, meta.contentType ?? parts[1].headers['content-type'] ?? 'application/octet-stream', meta.metadata);
    sendJson(res, 200, resource(bucketName, name, obj));
  }

  async function startResumable(req: http.IncomingMessage, res: http.ServerResponse, bucketName: string, bucket: Map<string, StoredObject>, q: URLSearchParams): Promise<void> {
    const text = (await readBody(req)).toString('utf8');
    const meta = (text ? JSON.parse(text) : {}) as ObjectMeta;
    const name = q.get('name') ?? meta.name;
    if (!name) return sendError(res, 400, 'required', 'object name missing');
    if (!preconditionsHold(res, q, bucket.get(name))) return;
    const id = randomBytes(12).toString('hex');
    const preconditions = new URLSearchParams();
    for (const k of ['ifGenerationMatch', 'ifGenerationNotMatch']) if (q.has(k)) preconditions.set(k, q.get(k)!);
    sessions.set(id, {
      bucket: bucketName, name, preconditions, chunks: [], received: 0, ...(meta.metadata ? { metadata: meta.metadata } : {}),
      contentType: meta.contentType ?? String(req.headers['x-upload-content-type'] ?? 'application/octet-stream'),
    });
    const host = req.headers.host ?? '127.0.0.1';
    res.writeHead(200, { location: `http://${host}/upload/storage/v1/b/${encodeURIComponent(bucketName)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`, 'content-length': 0 });
    res.end();
  }

  async function resumableChunk(req: http.IncomingMessage, res: http.ServerResponse, id: string): Promise<void> {
    const session = sessions.get(id);
    if (!session) {
      await drain(req);
      return sendError(res, 404, 'notFound', `no upload session ${id}`);
    }
    const range = String(req.headers['content-range'] ?? 'bytes 0-*/*');
    const status = /^bytes \*\/(\d+|\*)$/.exec(range);
    const chunk = /^bytes (\d+)-(\d+|\*)\/(\d+|\*)$/.exec(range);
    if (!status && !chunk) {
      await drain(req);
      return sendError(res, 400, 'invalid', `bad Content-Range ${range}`);
    }
    if (status) {
      await drain(req);
      if (session.finished) return sendJson(res, 200, session.finished);
      return sendIncomplete(res, session);
    }
    const [, startText, endText, totalText] = chunk!;
    const start = Number(startText);
    if (session.finished) {
      await drain(req);
      return sendJson(res, 200, session.finished);
    }
    if (start > session.received) {
      await drain(req);
      return sendError(res, 400, 'invalid', `chunk starts at ${start}, only ${session.received} bytes received`);
    }
    // Keep whatever arrives, even if the client is cut off mid-chunk: that is what it resumes from.
    let skip = session.received - start; // bytes the client re-sends that we already have
    let complete = false;
    await new Promise<void>((resolve) => {
      req.on('data', (d: Buffer) => {
        if (skip >= d.length) { skip -= d.length; return; }
        const fresh = d.subarray(skip);
        skip = 0;
        session.chunks.push(fresh);
        session.received += fresh.length;
      });
      req.on('end', () => { complete = true; resolve(); });
      req.on('close', () => resolve());
      req.on('error', () => resolve());
    });
    if (!complete) return; // the client went away; nothing to answer
    const total = totalText === '*' ? (endText === '*' ? session.received : undefined) : Number(totalText);
    if (total === undefined || session.received < total) return sendIncomplete(res, session);
    if (session.received > total) return sendError(res, 400, 'invalid', `received ${session.received} bytes, more than the declared ${total}`);
    const bucket = buckets.get(session.bucket);
    if (!bucket) return sendError(res, 404, 'notFound', `bucket ${session.bucket} is gone`);
    if (!preconditionsHold(res, session.preconditions, bucket.get(session.name))) {
      sessions.delete(id);
      return;
    }
    const obj = store(bucket, session.name, Buffer.concat(session.chunks), session.contentType, session.metadata);
    session.chunks = [];
    session.finished = resource(session.bucket, session.name, obj);
    sendJson(res, 200, session.finished);
  }

  function sendIncomplete(res: http.ServerResponse, session: UploadSession): void {
    const headers: http.OutgoingHttpHeaders = { 'content-length': 0 };
    if (session.received > 0) headers.range = `bytes=0-${session.received - 1}`;
    res.writeHead(308, headers).end();
  }

  function store(bucket: Map<string, StoredObject>, name: string, data: Buffer, contentType: string, metadata?: Record<string, string>): StoredObject {
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32c(data));
    const obj: StoredObject = {
      data, generation: nextGeneration(), contentType, updated: new Date().toISOString(),
      crc32c: crc.toString('base64'), md5Hash: createHash('md5').update(data).digest('base64'),
      ...(metadata ? { metadata } : {}),
    };
    bucket.set(name, obj);
    return obj;
  }

  function sendMedia(req: http.IncomingMessage, res: http.ServerResponse, obj: StoredObject): void {
    const size = obj.data.length;
    const headers: http.OutgoingHttpHeaders = {
      'content-type': obj.contentType,
      'x-goog-generation': obj.generation,
      'x-goog-metageneration': '1',
      'x-goog-hash': `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': String(size),
      etag: `"${obj.generation}"`,
      'accept-ranges': 'bytes',
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(String(req.headers.range ?? ''));
    if (!range || (range[1] === '' && range[2] === '')) {
      res.writeHead(200, { ...headers, 'content-length': size });
      res.end(req.method === 'HEAD' ? undefined : obj.data);
      return;
    }
    let start: number;
    let end: number;
    if (range[1] === '') {
      start = Math.max(0, size - Number(range[2]));
      end = size - 1;
    } else {
      start = Number(range[1]);
      end = range[2] === '' ? size - 1 : Math.min(Number(range[2]), size - 1);
    }
    if (start >= size || end < start) {
      res.writeHead(416, { 'content-range': `bytes */${size}`, 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 416, message: 'Request range not satisfiable', errors: [{ reason: 'requestedRangeNotSatisfiable' }] } }));
      return;
    }
    res.writeHead(206, { ...headers, 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}` });
    res.end(req.method === 'HEAD' ? undefined : obj.data.subarray(start, end + 1));
  }

  function listPage(bucketName: string, bucket: Map<string, StoredObject>, q: URLSearchParams): Record<string, unknown> {
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const maxResults = Math.max(1, Math.min(Number(q.get('maxResults') ?? 1000) || 1000, 1000));
    const after = q.get('pageToken') ? Buffer.from(q.get('pageToken')!, 'base64url').toString('utf8') : undefined;
    // Entries (objects and rolled-up prefixes) in name order, each prefix once.
    const entries: Array<{ name: string; prefix: boolean }> = [];
    const seen = new Set<string>();
    for (const name of [...bucket.keys()].sort(byBytes)) {
      if (!name.startsWith(prefix)) continue;
      const cut = delimiter ? name.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const p = name.slice(0, cut + delimiter.length);
        if (!seen.has(p)) { seen.add(p); entries.push({ name: p, prefix: true }); }
      } else {
        entries.push({ name, prefix: false });
      }
    }
    const from = after === undefined ? 0 : entries.findIndex((e) => byBytes(e.name, after) > 0);
    const page = from < 0 ? [] : entries.slice(from, from + maxResults);
    const out: Record<string, unknown> = { kind: 'storage#objects' };
    const items = page.filter((e) => !e.prefix).map((e) => resource(bucketName, e.name, bucket.get(e.name)!));
    const prefixes = page.filter((e) => e.prefix).map((e) => e.name);
    if (items.length) out.items = items;
    if (prefixes.length) out.prefixes = prefixes;
    if (from >= 0 && from + maxResults < entries.length) out.nextPageToken = Buffer.from(page[page.length - 1].name).toString('base64url');
    return out;
  }

  const bound = await listenLoopback(server);
  return {
    endpoint: bound.endpoint,
    port: bound.port,
    buckets,
    createBucket: (name) => { if (!buckets.has(name)) buckets.set(name, new Map()); },
    stop: bound.close,
  };
}

function resource(bucket: string, name: string, obj: StoredObject): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${bucket}/${name}/${obj.generation}`,
    name,
    bucket,
    generation: obj.generation,
    metageneration: '1',
    contentType: obj.contentType,
    storageClass: 'STANDARD',
    size: String(obj.data.length),
    md5Hash: obj.md5Hash,
    crc32c: obj.crc32c,
    etag: `"${obj.generation}"`,
    timeCreated: obj.updated,
    updated: obj.updated,
    ...(obj.metadata ? { metadata: obj.metadata } : {}),
  };
}

interface ObjectMeta {
  name?: string;
  contentType?: string;
  metadata?: Record<string, string>;
}

/** GCS orders names by their UTF-8 bytes. */
function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, status: number, reason: string, message: string): void {
  sendJson(res, status, { error: { code: status, message, errors: [{ reason, message, domain: 'global' }] } });
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function drain(req: http.IncomingMessage): Promise<void> {
  if (req.readableEnded) return;
  await readBody(req).catch(() => undefined);
}

/** Split a multipart/related body into parts (headers lower-cased, body as bytes). */
function splitMultipart(body: Buffer, boundary: string): Array<{ headers: Record<string, string>; body: Buffer }> {
  const delim = Buffer.from(`--${boundary}`);
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const afterDelim = pos + delim.length;
    if (body.subarray(afterDelim, afterDelim + 2).toString() === '--') break; // closing delimiter
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), afterDelim);
    if (next < 0) break;
    const part = body.subarray(afterDelim + 2, next); // skip the CRLF after the delimiter
    const headerEnd = part.indexOf('\r\n\r\n');
    const headers: Record<string, string> = {};
    for (const line of part.subarray(0, Math.max(headerEnd, 0)).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    parts.push({ headers, body: headerEnd < 0 ? Buffer.alloc(0) : part.subarray(headerEnd + 4) });
    pos = next + 2;
  }
  return parts;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), what GCS reports as `crc32c`. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
