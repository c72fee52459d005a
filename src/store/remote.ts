/**
 * `RemoteStore`: what every network object store (S3, GCS, Azure Blob, HTTPS) shares, so each backend
 * file only translates five primitives (head, read, put, list page, delete) and its SDK's errors.
 *
 * Kept here, once for all backends:
 *  - the `ObjectStore` contract checks (keys, ranges, both conditions at once), the store prefix, and the
 *    `StoreStats` counters, kept exactly as `LocalDirStore` keeps them: one count per call (not per HTTP
 *    request or retry), bytes as returned to / accepted from the caller;
 *  - error mapping to `VhfsError` codes: 404 → NOT_FOUND, 412 (and 409 on a conditional put) → CONFLICT,
 *    416 or a short ranged reply → BAD_ARGUMENT, 401/403 → STORE with a credentials hint, an aborted or
 *    timed-out call → TIMEOUT, anything else → STORE. Messages name the store URL (prefix-level, never a
 *    secret), the key and the service's error code; every SDK message passes through `scrubSecrets`;
 *  - retries. Each SDK retries its own requests (5xx, throttling, resets, attempt timeouts) with
 *    jittered exponential backoff, configured from one `RetryPolicy`. What an SDK cannot retry is retried
 *    here with the same policy: a response body cut off mid-way (ranged reads re-request the range,
 *    streams resume where they stopped), and nothing at all for the HTTPS backend, which has no SDK;
 *  - ambiguous conditional writes. A conditional put whose first attempt reached the server but whose
 *    reply was lost is retried by the SDK and then fails its own condition (412 / 409). So every
 *    conditional put carries a fresh write id as user metadata, and a CONFLICT is checked with one HEAD:
 *    if the object now carries our write id, the put succeeded. (Comparing bytes instead would be wrong:
 *    two writers moving a counter from 4 to 5 write identical bytes, and only one of them won.);
 *  - version pinning. The first ranged read (or `head`) of a key records its version tag (ETag, GCS
 *    generation); later ranged reads and streams check the reply's tag and fail with INTEGRITY rather than
 *    splice bytes of two versions of a replaced object. `head` and our own `put` re-pin; whole-object
 *    `get` (alias pointers, which legitimately move) is never checked. Pins live in a bounded LRU;
 *  - deadlines: `getRange`/`get` pass their `AbortSignal` to the request (the HTTP request is aborted, not
 *    just abandoned); a body that stops flowing for `idleTimeoutMs` is cut off and retried.
 */
import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { Readable, Transform } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { VhfsError } from '../util/errors.js';
import { keyProblem } from './local.js';
import {
  newStoreStats,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type StoreStats,
} from './types.js';

// ------------------------------------------------------------------------------------------ retry policy

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number;
  /** Backoff before retry n is uniform in [0, min(maxDelayMs, baseDelayMs · 2^(n-1))] ("full jitter"). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Opening a connection fails after this long. */
  connectTimeoutMs: number;
  /** An attempt whose reply (or the next bytes of its body) does not come for this long fails. */
  idleTimeoutMs: number;
}

export const DEFAULT_RETRY: Readonly<RetryPolicy> = {
  attempts: 6,
  baseDelayMs: 100,
  maxDelayMs: 5000,
  connectTimeoutMs: 5000,
  idleTimeoutMs: 30_000,
};

export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const p = { ...DEFAULT_RETRY, ...overrides };
  if (!(Number.isInteger(p.attempts) && p.attempts >= 1)) throw new VhfsError('BAD_ARGUMENT', `retry attempts must be a positive integer (got ${p.attempts})`);
  return p;
}

/** Full-jitter exponential backoff before retry number `retry` (1 = the first retry). */
export function backoffMs(policy: RetryPolicy, retry: number): number {
  return Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
}

/** Sleep that ends early (rejecting with the signal's reason) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Run `fn` with a signal that aborts when `signal` does or after `ms` (a TimeoutError), whichever is first;
 * the timer stops when `fn` settles. For SDKs without a per-attempt timer: the call as a whole is bounded.
 */
export async function withDeadline<T>(ms: number, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal!.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError' })), ms);
  try {
    return await fn(controller.signal);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

// ------------------------------------------------------------------------------------------ connections

const agents = new Map<number, { http: http.Agent; https: https.Agent }>();

/**
 * Keep-alive agents shared by every store in this process with the same socket budget: parallel ranged
 * GETs (the block cache's readahead and background fill) each need their own connection, and reusing
 * connections saves a TCP (and TLS) handshake per request, which at cloud latency is most of a small GET.
 */
export function keepAliveAgents(maxSockets: number): { http: http.Agent; https: https.Agent } {
  let a = agents.get(maxSockets);
  if (!a) {
    // `timeout` closes idle pooled sockets after 4 s, before servers' usual 5 s keep-alive limit, so a
    // request is rarely sent on a socket the server is closing (a reset the SDKs would have to retry).
    const opts = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const, timeout: 4000 };
    a = { http: new http.Agent(opts), https: new https.Agent(opts) };
    agents.set(maxSockets, a);
  }
  return a;
}

/** Default connection budget per store family: enough for 32 parallel ranged GETs plus metadata calls. */
export const DEFAULT_MAX_SOCKETS = 64;

// ------------------------------------------------------------------------------------------ secrets

const SECRET_ENV = [
  'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_ACCESS_KEY_ID', 'AZURE_STORAGE_KEY', 'AZURE_STORAGE_ACCOUNT_KEY',
  'AZURE_STORAGE_SAS_TOKEN', 'AZURE_CLIENT_SECRET', 'AZURE_STORAGE_CONNECTION_STRING',
];

/** Secret values this process holds in its environment (each ≥ 8 characters, so masking stays precise). */
export function environmentSecrets(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  for (const name of SECRET_ENV) {
    const v = env[name];
    if (!v) continue;
    out.push(v);
    if (name === 'AZURE_STORAGE_CONNECTION_STRING') {
      for (const m of v.matchAll(/(?:AccountKey|SharedAccessSignature)=([^;]+)/gi)) out.push(m[1]);
    }
    if (name === 'AZURE_STORAGE_SAS_TOKEN') out.push(v.replace(/^\?/, ''));
  }
  return out.filter((s) => s.length >= 8);
}

/**
 * Mask secrets in text from SDKs and servers before it reaches a message: the given secret values,
 * passwords in `scheme://user:password@`, and values of query parameters and key=value pairs that carry
 * signatures, tokens, keys or credentials (pre-signed URLs, SAS tokens, connection strings, Authorization).
 * Control characters become spaces so a message stays on one line.
 */
export function scrubSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (s.length >= 8) out = out.split(s).join('***');
  out = out.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#\s@]*@/g, '$1***@');
  out = out.replace(/((?:^|;)\s*(?:AccountKey|SharedAccessSignature)=)[^;]*/gi, '$1***'); // connection strings
  out = out.replace(/((?:^|[?&;\s])[A-Za-z0-9_-]*(?:sig|signature|token|credential|secret|password|accountkey|key)=)(?!\*\*\*)[^&;\s"'<]*/gi, '$1***');
  out = out.replace(/(authorization["']?\s*[:=]\s*["']?)[^"'\r\n,}]*/gi, '$1***');
  return out.replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

// ------------------------------------------------------------------------------------------ backend primitives

export interface RawObject {
  /** Full object name (store prefix included). */
  name: string;
  size: number;
  /** Version tag: S3/Azure ETag, GCS generation, HTTPS ETag or Last-Modified. */
  etag: string;
  mtimeMs: number;
  /** The write id a conditional put stored with the object (user metadata), if any. */
  writeId?: string;
}

export interface RawRead {
  body: Readable;
  /** Offset of the body's first byte in the object. */
  start: number;
  /** Bytes the body will carry. */
  length: number;
  /** Size of the whole object (from Content-Range or Content-Length). */
  size: number;
  /** False when the server answered a ranged request with the whole object (HTTP 200). */
  partial: boolean;
  etag: string | undefined;
}

export interface RawListPage {
  objects: RawObject[];
  prefixes: string[];
  next?: string;
}

export interface RawPutOptions extends PutOptions {
  /** Exact size when known (a Buffer body, or the caller's sizeHint for a stream). */
  size?: number;
  /** Store as user metadata (`WRITE_ID_METADATA`), so `rawHead` can tell whether this put landed. */
  writeId?: string;
}

/** User-metadata name of the write id (letters only: Azure metadata names must be identifiers). */
export const WRITE_ID_METADATA = 'vhfswriteid';

/** What a backend can tell about a failure from its SDK's error. */
export interface FailureInfo {
  status?: number;
  /** The service's error code (NoSuchKey, BlobNotFound, conditionNotMet…). */
  code?: string;
  message: string;
  /** The bucket or container itself does not exist. */
  missingBucket?: boolean;
  /** An attempt timed out (socket idle, try timeout), as opposed to our caller's signal. */
  timeout?: boolean;
  /** Credentials could not be found or were refused before any request. */
  credentials?: boolean;
}

export interface RemoteStoreOptions {
  retry?: Partial<RetryPolicy>;
  /** Connections per store family (default 64). */
  maxSockets?: number;
  /** Version pins kept (default 65 536 keys). */
  maxPins?: number;
}

interface FailureContext {
  conditional?: boolean;
  signal?: AbortSignal;
  range?: { offset: number; length: number };
}

/** Thrown by `collectBody` when a response body is cut off or stalls: the read is retried. */
class BodyError extends Error {}

export abstract class RemoteStore implements ObjectStore {
  abstract readonly url: string;
  readonly stats: StoreStats = newStoreStats();
  protected readonly retry: RetryPolicy;
  protected readonly maxSockets: number;
  /** Secret values to mask in messages (credentials this store was given). */
  protected readonly secrets: string[] = environmentSecrets();
  private readonly pins: LRUCache<string, string>;

  /** `prefix` is '' or ends in '/'; every key is stored as `prefix + key`. */
  protected constructor(protected readonly prefix: string, options: RemoteStoreOptions = {}) {
    this.retry = retryPolicy(options.retry);
    this.maxSockets = options.maxSockets ?? DEFAULT_MAX_SOCKETS;
    this.pins = new LRUCache({ max: options.maxPins ?? 65_536 });
  }

  // ---- the primitives each backend implements (names are full object names) ----

  protected abstract rawHead(name: string, signal?: AbortSignal): Promise<RawObject | undefined>;
  /** Start a GET of `range` (or the whole object); resolves once the reply's headers are in. */
  protected abstract rawRead(name: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined, pinned: string | undefined): Promise<RawRead>;
  protected abstract rawPut(name: string, body: Buffer | Readable, opts: RawPutOptions): Promise<RawObject>;
  protected abstract rawList(prefix: string, delimiter: '/' | undefined, token: string | undefined): Promise<RawListPage>;
  /** Delete; an absent object is not an error. */
  protected abstract rawDelete(name: string): Promise<void>;
  protected abstract describeFailure(err: unknown): FailureInfo;
  /** One sentence telling the user where this backend takes credentials from. */
  protected abstract credentialsHint(): string;

  // ---- ObjectStore ----

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.checkKey(key);
    this.stats.heads++;
    const raw = await this.call('head', key, () => this.rawHead(this.prefix + key));
    if (raw?.etag) this.pins.set(raw.name, raw.etag);
    return raw && this.info(key, raw);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    this.checkRangeArgs(key, offset, length);
    this.checkSignal(key, signal);
    this.stats.gets++;
    const data = length === 0
      ? await this.emptyRange(key, offset, signal)
      : await this.readAll('getRange', key, { offset, length }, signal);
    this.stats.bytesRead += data.length;
    return data;
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    this.checkSignal(key, signal);
    this.stats.gets++;
    const data = await this.readAll('get', key, undefined, signal);
    this.stats.bytesRead += data.length;
    return data;
  }

  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    this.checkKey(key);
    if (range) this.checkRangeArgs(key, range.offset, range.length);
    this.stats.gets++;
    if (range?.length === 0) {
      await this.emptyRange(key, range.offset, undefined);
      return Readable.from([]);
    }
    const first = await this.openChecked('getStream', key, range, undefined, true);
    return Readable.from(this.resumingBody(key, first, range));
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<ObjectInfo> {
    this.checkKey(key);
    if (opts.ifMatch !== undefined && opts.ifNoneMatch !== undefined) {
      throw new VhfsError('BAD_ARGUMENT', `${this.url}: put ${key} with both ifMatch and ifNoneMatch`);
    }
    this.stats.puts++;
    const name = this.prefix + key;
    let payload: Buffer | Readable;
    let counted = 0;
    if (body instanceof Uint8Array) {
      payload = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      counted = payload.length;
    } else {
      const source = body instanceof Readable ? body : Readable.from(body as AsyncIterable<Uint8Array>, { objectMode: false });
      const counter = new Transform({
        transform(chunk: Buffer | string, _enc, cb) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          counted += buf.length;
          cb(null, buf);
        },
      });
      source.on('error', (err) => counter.destroy(err));
      payload = source.pipe(counter);
    }
    const size = Buffer.isBuffer(payload) ? payload.length : opts.sizeHint;
    const conditional = opts.ifMatch !== undefined || opts.ifNoneMatch !== undefined;
    const writeId = conditional ? randomUUID() : undefined;
    let raw: RawObject;
    try {
      raw = await this.rawPut(name, payload, { ...opts, ...(size !== undefined ? { size } : {}), ...(writeId ? { writeId } : {}) });
    } catch (err) {
      const failure = this.failure('put', key, err, { conditional });
      if (failure.code === 'CONFLICT' && writeId) {
        const own = await this.rawHead(name).catch(() => undefined);
        if (own?.writeId === writeId) {
          this.stats.bytesWritten += counted;
          if (own.etag) this.pins.set(name, own.etag);
          return this.info(key, own);
        }
      }
      if (failure.code === 'CONFLICT') this.stats.bytesWritten += counted;
      throw failure;
    }
    this.stats.bytesWritten += counted;
    if (raw.etag) this.pins.set(name, raw.etag);
    return this.info(key, { ...raw, size: Buffer.isBuffer(payload) ? payload.length : counted });
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    this.checkPrefix(prefix);
    this.stats.lists++;
    const objects: ObjectInfo[] = [];
    const prefixes: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.call('list', prefix || '/', () => this.rawList(this.prefix + prefix, opts.delimiter, token));
      for (const o of page.objects) {
        const key = o.name.slice(this.prefix.length);
        // Objects no key of this store can name (`a//b`, folder markers `dir/`) are skipped, not fatal.
        if (o.name.startsWith(this.prefix) && keyProblem(key) === undefined) objects.push(this.info(key, o));
      }
      for (const p of page.prefixes) {
        const rel = p.slice(this.prefix.length);
        if (p.startsWith(this.prefix) && rel.endsWith('/') && keyProblem(rel.slice(0, -1)) === undefined) prefixes.push(rel);
      }
      token = page.next;
    } while (token);
    objects.sort((a, b) => compareKeys(a.key, b.key));
    prefixes.sort(compareKeys);
    return { objects, prefixes };
  }

  async delete(key: string): Promise<void> {
    this.checkKey(key);
    const name = this.prefix + key;
    await this.call('delete', key, () => this.rawDelete(name));
    this.pins.delete(name);
  }

  // ---- reads ----

  /** A zero-length range: no GET can express it, so one HEAD checks the object exists and is long enough. */
  private async emptyRange(key: string, offset: number, signal: AbortSignal | undefined): Promise<Buffer> {
    const raw = await this.call('getRange', key, () => this.rawHead(this.prefix + key, signal), { signal });
    if (!raw) throw this.notFound(key);
    if (offset > raw.size) throw this.pastEnd(key, offset, 0, raw.size);
    return Buffer.alloc(0);
  }

  /** GET a range (or the whole object) into memory; a body cut off mid-way is fetched again. */
  private async readAll(op: string, key: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined): Promise<Buffer> {
    for (let attempt = 1; ; attempt++) {
      const read = await this.openChecked(op, key, range, signal, range !== undefined);
      try {
        return await collectBody(read.body, read.length, signal, this.retry.idleTimeoutMs);
      } catch (err) {
        read.body.destroy();
        if (signal?.aborted) throw this.failure(op, key, err, { signal, range });
        if (!(err instanceof BodyError) || attempt >= this.retry.attempts) {
          throw new VhfsError('STORE', `${this.where(key)}: ${op} failed after ${attempt} attempts: ${scrubSecrets(errorText(err), this.secrets)}`);
        }
        await this.pause(attempt, signal, op, key);
      }
    }
  }

  /** Open a read and check the reply: the range served, the object's size, its version. */
  private async openChecked(op: string, key: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined, pin: boolean): Promise<RawRead> {
    const name = this.prefix + key;
    const pinned = pin ? this.pins.get(name) : undefined;
    const read = await this.call(op, key, () => this.rawRead(name, range, signal, pinned), { signal, range });
    try {
      if (range) {
        if (range.offset + range.length > read.size) throw this.pastEnd(key, range.offset, range.length, read.size);
        if (!read.partial && !(range.offset === 0 && range.length === read.size)) {
          throw new VhfsError('UNSUPPORTED', `${this.where(key)}: the server ignored the Range header (it answered 200 with all ${read.size} bytes instead of bytes ${range.offset}-${range.offset + range.length - 1}); vhfs needs ranged reads to serve this object lazily`);
        }
        if (read.partial && (read.start !== range.offset || read.length !== range.length)) {
          throw new VhfsError('STORE', `${this.where(key)}: asked for bytes ${range.offset}-${range.offset + range.length - 1}, the server sent ${read.start}-${read.start + read.length - 1}`);
        }
      }
      if (pin && read.etag) {
        if (pinned !== undefined && pinned !== read.etag) throw this.changed(key, pinned, read.etag);
        if (pinned === undefined) this.pins.set(name, read.etag);
      }
      return read;
    } catch (err) {
      read.body.destroy();
      throw err;
    }
  }

  /** The body of a stream, resumed from where it stopped when the connection breaks (same version only). */
  private async *resumingBody(key: string, first: RawRead, range: { offset: number; length: number } | undefined): AsyncGenerator<Buffer> {
    let read = first;
    let pos = read.start;
    const end = range ? range.offset + range.length : read.size;
    try {
      for (let attempt = 1; ; ) {
        try {
          for await (const chunk of read.body as AsyncIterable<Buffer>) {
            const take = chunk.length > end - pos ? chunk.subarray(0, end - pos) : chunk;
            pos += take.length;
            this.stats.bytesRead += take.length;
            yield take;
            if (pos >= end) return;
          }
          if (pos >= end) return;
          throw new BodyError(`body ended at byte ${pos} of ${end}`);
        } catch (err) {
          if (err instanceof VhfsError) throw err;
          if (++attempt > this.retry.attempts) {
            throw new VhfsError('STORE', `${this.where(key)}: download stopped at byte ${pos} of ${end} after ${this.retry.attempts} attempts: ${scrubSecrets(errorText(err), this.secrets)}`);
          }
          read.body.destroy();
          await this.pause(attempt - 1, undefined, 'getStream', key);
          read = await this.openChecked('getStream', key, { offset: pos, length: end - pos }, undefined, true);
        }
      }
    } finally {
      read.body.destroy();
    }
  }

  // ---- shared helpers ----

  /** Run one backend call, mapping whatever it throws. */
  protected async call<T>(op: string, key: string, fn: () => Promise<T>, ctx: FailureContext = {}): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.failure(op, key, err, ctx);
    }
  }

  /** Map a thrown value to the VhfsError a caller sees. */
  protected failure(op: string, key: string, err: unknown, ctx: FailureContext = {}): VhfsError {
    if (err instanceof VhfsError) return err;
    if (ctx.signal?.aborted) {
      const reason = ctx.signal.reason as { name?: string } | undefined;
      const why = reason?.name === 'TimeoutError' ? 'no answer within the deadline' : 'aborted by the caller';
      return new VhfsError('TIMEOUT', `${this.where(key)}: ${op} ${why}`);
    }
    const f = this.describeFailure(err);
    const detail = scrubSecrets([f.status, f.code, f.message].filter((x) => x !== undefined && x !== '').join(' '), this.secrets);
    if (f.credentials) return new VhfsError('STORE', `${this.url}: ${op} ${key}: no usable credentials (${detail}). ${this.credentialsHint()}`);
    if (f.missingBucket) return new VhfsError('STORE', `${this.url}: the bucket or container does not exist (${detail})`);
    switch (f.status) {
      case 404:
        // AWS answers If-Match on a key that does not exist with 404 NoSuchKey: the swap failed.
        if (ctx.conditional) return new VhfsError('CONFLICT', `${this.where(key)}: the condition of the put failed (the object does not exist) (${detail})`);
        return this.notFound(key);
      case 412:
        return new VhfsError('CONFLICT', `${this.where(key)}: ${ctx.conditional ? 'the condition of the put failed (the object exists or changed)' : 'precondition failed'} (${detail})`);
      case 409:
        if (ctx.conditional) return new VhfsError('CONFLICT', `${this.where(key)}: the condition of the put failed (the object exists or changed) (${detail})`);
        break;
      case 416:
        return ctx.range
          ? new VhfsError('BAD_ARGUMENT', `${this.url}: range ${ctx.range.offset}+${ctx.range.length} of ${key} extends past its end`)
          : new VhfsError('BAD_ARGUMENT', `${this.where(key)}: range not satisfiable`);
      case 401:
      case 403:
        return new VhfsError('STORE', `${this.url}: ${op} ${key}: access denied (${detail}). ${this.credentialsHint()}`);
    }
    if (f.timeout) return new VhfsError('TIMEOUT', `${this.where(key)}: ${op} timed out (${detail})`);
    return new VhfsError('STORE', `${this.where(key)}: ${op} failed (${detail})`);
  }

  protected notFound(key: string): VhfsError {
    return new VhfsError('NOT_FOUND', `${this.where(key)}: no such object`);
  }

  private pastEnd(key: string, offset: number, length: number, size: number): VhfsError {
    return new VhfsError('BAD_ARGUMENT', `${this.url}: range ${offset}+${length} of ${key} extends past its end (${size} bytes)`);
  }

  protected changed(key: string, was: string, now: string): VhfsError {
    return new VhfsError('INTEGRITY', `${this.where(key)}: the object was replaced while in use (version ${was} became ${now}); refusing to mix bytes of two versions`);
  }

  protected where(key: string): string {
    return `${this.url}/${key}`;
  }

  private async pause(retry: number, signal: AbortSignal | undefined, op: string, key: string): Promise<void> {
    try {
      await sleep(backoffMs(this.retry, retry), signal);
    } catch (err) {
      throw this.failure(op, key, err, { signal });
    }
  }

  private checkKey(key: string): void {
    const bad = keyProblem(key);
    if (bad) throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad object key ${JSON.stringify(key)}: ${bad}`);
  }

  private checkPrefix(prefix: string): void {
    const slash = prefix.lastIndexOf('/');
    const bad = prefix.includes('\0') ? 'contains NUL' : slash >= 0 ? keyProblem(prefix.slice(0, slash)) : undefined;
    if (bad) throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad list prefix ${JSON.stringify(prefix)}: ${bad}`);
  }

  private checkRangeArgs(key: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad range ${offset}+${length} for ${key}`);
    }
  }

  private checkSignal(key: string, signal: AbortSignal | undefined): void {
    if (signal?.aborted) throw this.failure('read', key, signal.reason, { signal });
  }

  private info(key: string, raw: RawObject): ObjectInfo {
    return { key, size: raw.size, etag: raw.etag, mtimeMs: raw.mtimeMs };
  }
}

// ------------------------------------------------------------------------------------------ body helpers

/**
 * Read a response body of exactly `expected` bytes into one Buffer. A body that ends short, errors, or
 * delivers nothing for `idleMs` is a `BodyError` (retryable); `signal` aborts it.
 */
export function collectBody(body: Readable, expected: number, signal: AbortSignal | undefined, idleMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out = Buffer.allocUnsafe(expected);
    let got = 0;
    let settled = false;
    let idle: NodeJS.Timeout | undefined;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(idle);
      signal?.removeEventListener('abort', onAbort);
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (err) {
        body.destroy();
        reject(err);
      } else {
        resolve(out);
      }
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => finish(new BodyError(`no data for ${idleMs} ms after ${got} of ${expected} bytes`)), idleMs);
    };
    const onData = (chunk: Buffer) => {
      if (got + chunk.length > expected) return finish(new BodyError(`body longer than the ${expected} bytes announced`));
      chunk.copy(out, got);
      got += chunk.length;
      arm();
    };
    const onEnd = () => (got === expected ? finish() : finish(new BodyError(`body ended after ${got} of ${expected} bytes`)));
    const onError = (err: Error) => finish(new BodyError(`body cut off after ${got} of ${expected} bytes: ${err.message}`));
    const onClose = () => finish(got === expected ? undefined : new BodyError(`connection closed after ${got} of ${expected} bytes`));
    const onAbort = () => finish(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
    arm();
  });
}

/**
 * Read up to `limit` bytes of a stream. If it ends within them, `whole` is the complete body (uploaded
 * in one request, retryable by the SDK); otherwise `rest` yields those bytes again followed by the rest
 * of the stream (a resumable or multipart upload).
 */
export async function bufferHead(stream: Readable, limit: number): Promise<{ whole: Buffer } | { rest: Readable }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  for (;;) {
    const { value, done } = await it.next();
    if (done) return { whole: Buffer.concat(chunks, size) };
    chunks.push(value);
    size += value.length;
    if (size > limit) break;
  }
  async function* replay(): AsyncGenerator<Buffer> {
    yield* chunks;
    for (;;) {
      const { value, done } = await it.next();
      if (done) return;
      yield value;
    }
  }
  return { rest: Readable.from(replay(), { objectMode: false }) };
}

/** `bytes A-B/T` → numbers (T may be `*`). */
export function parseContentRange(header: string | undefined): { start: number; end: number; size?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), ...(m[3] === '*' ? {} : { size: Number(m[3]) }) };
}

/** Network-level failures worth a retry (what SDKs call transient). */
export function isTransientNetworkError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET'].includes(code);
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] || err.name;
  return String(err);
}

/** Object stores order keys by UTF-8 bytes; for BMP text that equals UTF-16 code-unit order. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
