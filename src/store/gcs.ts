/**
 * `GcsStore`: an `ObjectStore` on a Google Cloud Storage bucket, via `@google-cloud/storage` 7 (the
 * release line that runs on Node 20).
 *
 * - Endpoint: `apiEndpoint` from the URL (`?endpoint=`) or settings; a loopback endpoint (tests, the
 *   local JSON-API server) is used without credentials, any other with them.
 * - Credentials: Google's application-default chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file,
 *   workload identity, the metadata server); never from the URL.
 * - Version tag = the object's generation (unique per write, unlike an MD5 ETag), so create-if-absent is
 *   `ifGenerationMatch: 0` and compare-and-swap is `ifGenerationMatch: <generation>`; a tag that is not a
 *   generation number cannot match anything and is a CONFLICT at once.
 * - Reads: ranged GETs of the JSON API's media URL (`…/o/NAME?alt=media`, `Range: bytes=A-B`) through
 *   `http-client.ts`, with the SDK's auth client supplying the Authorization header. Not the SDK's
 *   `createReadStream`: its node-fetch path misses a connection reset mid-body (measured: the read sat
 *   until the 30 s idle limit instead of failing and being re-requested), destroys the keep-alive agent
 *   on every failed read, and cost about twice the CPU per 256 KiB GET of a plain request. The reply's
 *   `x-goog-generation` is checked against the pinned version.
 * - Writes: bodies (or streams that end) within 8 MiB are one multipart upload, which the SDK retries;
 *   larger ones are resumable uploads in 8 MiB chunks, so a failed chunk is re-sent from the last byte
 *   the server confirmed. Upload replies are CRC32C-checked by the SDK.
 * - Retries: the SDK's (exponential backoff with jitter), `RetryAlways` — every vhfs write is idempotent
 *   (content-addressed, or conditional), so retrying a plain put is safe — capped by the RetryPolicy.
 * - The SDK is imported on first use.
 */
import type { Bucket, File, Storage } from '@google-cloud/storage';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { VhfsError } from '../util/errors.js';
import { httpGet, HttpStatusError } from './http-client.js';
import {
  bufferHead,
  isTransientNetworkError,
  parseContentRange,
  RemoteStore,
  type FailureInfo,
  type RawListPage,
  type RawObject,
  type RawPutOptions,
  type RawRead,
  type RemoteStoreOptions,
  WRITE_ID_METADATA,
} from './remote.js';

export interface GcsStoreConfig extends RemoteStoreOptions {
  bucket: string;
  /** '' or a prefix ending in '/'. */
  prefix?: string;
  /** JSON API endpoint, e.g. `http://127.0.0.1:PORT` (default: Google's). */
  endpoint?: string;
  /** Upload chunk size and the largest single-request upload (default 8 MiB, a multiple of 256 KiB). */
  chunkSize?: number;
}

const DEFAULT_CHUNK = 8 * 1024 * 1024;

interface ObjectMetadata {
  name?: string;
  size?: string | number;
  generation?: string | number;
  updated?: string;
  metadata?: Record<string, string | number | boolean | null> | null;
}

export class GcsStore extends RemoteStore {
  readonly url: string;
  private readonly config: GcsStoreConfig;
  private readonly apiBase: string;
  /** Loopback endpoints (tests, the local JSON-API server) get no credentials. */
  private readonly useAuth: boolean;
  private sdk?: Promise<{ storage: Storage; bucket: Bucket }>;

  constructor(config: GcsStoreConfig) {
    super(config.prefix ?? '', config);
    this.config = config;
    this.url = `gs://${config.bucket}${config.prefix ? `/${config.prefix.replace(/\/$/, '')}` : ''}`;
    this.apiBase = (config.endpoint ?? 'https://storage.googleapis.com').replace(/\/$/, '');
    this.useAuth = !(config.endpoint && isLoopback(config.endpoint));
  }

  private load(): Promise<{ storage: Storage; bucket: Bucket }> {
    this.sdk ??= (async () => {
      const { Storage, IdempotencyStrategy } = await import('@google-cloud/storage');
      const endpoint = this.config.endpoint;
      const storage: Storage = new Storage({
        ...(endpoint ? { apiEndpoint: this.apiBase, useAuthWithCustomEndpoint: this.useAuth } : {}),
        ...(this.useAuth ? {} : { projectId: 'vhfs-local' }),
        // Whole-request limit (the SDK has no idle timer): twice the idle limit bounds a stalled attempt.
        timeout: 2 * this.retry.idleTimeoutMs,
        retryOptions: {
          autoRetry: true,
          maxRetries: this.retry.attempts - 1,
          retryDelayMultiplier: 2,
          // Seconds, and at least 1: the SDK's upload retry (async-retry) starts at 1 s and refuses a
          // smaller cap. Its delays are its own: 2^n s plus up to 1 s of jitter.
          maxRetryDelay: Math.max(1, this.retry.maxDelayMs / 1000),
          totalTimeout: Math.max(60, (this.retry.attempts * (this.retry.idleTimeoutMs + this.retry.maxDelayMs)) / 1000),
          idempotencyStrategy: IdempotencyStrategy.RetryAlways,
        },
      });
      return { storage, bucket: storage.bucket(this.config.bucket) };
    })();
    return this.sdk;
  }

  protected async rawHead(name: string): Promise<RawObject | undefined> {
    const { bucket } = await this.load();
    try {
      const [meta] = await bucket.file(name).getMetadata();
      return rawObject(name, meta);
    } catch (err) {
      const f = this.describeFailure(err);
      if (f.status === 404 && !f.missingBucket) return undefined;
      throw err;
    }
  }

  protected async rawRead(name: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined): Promise<RawRead> {
    const { storage } = await this.load();
    const url = new URL(`${this.apiBase}/storage/v1/b/${encodeURIComponent(this.config.bucket)}/o/${encodeURIComponent(name)}?alt=media`);
    const auth = this.useAuth ? ((await storage.authClient.getRequestHeaders(url.href)) as Record<string, string>) : undefined;
    const res = await httpGet({
      method: 'GET', url, signal, policy: this.retry, maxSockets: this.maxSockets, where: `${this.url}/${name.slice(this.prefix.length)}`,
      headers: range ? { range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {},
      ...(auth ? { originHeaders: auth } : {}),
    });
    const status = res.statusCode ?? 0;
    if (status !== 200 && status !== 206) throw await HttpStatusError.from(res);
    const h = res.headers;
    const length = Number(h['content-length'] ?? 0);
    const cr = parseContentRange(h['content-range']);
    const etag = h['x-goog-generation'] as string | undefined;
    return cr
      ? { body: res, start: cr.start, length, size: cr.size ?? cr.end + 1, partial: true, etag }
      : { body: res, start: 0, length, size: length, partial: false, etag };
  }

  protected async rawPut(name: string, body: Buffer | Readable, opts: RawPutOptions): Promise<RawObject> {
    const { bucket } = await this.load();
    const file = bucket.file(name);
    const preconditionOpts = opts.ifNoneMatch === '*' ? { ifGenerationMatch: 0 } : opts.ifMatch !== undefined ? { ifGenerationMatch: generationOf(`${this.url}/${name.slice(this.prefix.length)}`, opts.ifMatch) } : undefined;
    const common = {
      validation: 'crc32c' as const,
      ...(preconditionOpts ? { preconditionOpts } : {}),
      metadata: {
        contentType: opts.contentType ?? 'application/octet-stream',
        ...(opts.writeId ? { metadata: { [WRITE_ID_METADATA]: opts.writeId } } : {}),
      },
    };
    const chunk = this.config.chunkSize ?? DEFAULT_CHUNK;
    let payload: Buffer | Readable = body;
    if (!Buffer.isBuffer(payload)) {
      const head = await bufferHead(payload, chunk);
      payload = 'whole' in head ? head.whole : head.rest;
    }
    if (Buffer.isBuffer(payload) && payload.length <= chunk) {
      await file.save(payload, { ...common, resumable: false });
    } else {
      const source = Buffer.isBuffer(payload) ? (await import('node:stream')).Readable.from([payload]) : payload;
      await pipeline(source, file.createWriteStream({ ...common, resumable: true, chunkSize: chunk }));
    }
    return rawObject(name, file.metadata as ObjectMetadata);
  }

  protected async rawList(prefix: string, delimiter: '/' | undefined, token: string | undefined): Promise<RawListPage> {
    const { bucket } = await this.load();
    const [files, next, response] = await bucket.getFiles({
      prefix, autoPaginate: false, maxResults: 1000,
      ...(delimiter ? { delimiter } : {}),
      ...(token ? { pageToken: token } : {}),
    });
    const nextToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
    return {
      objects: files.map((f: File) => rawObject(f.name, f.metadata as ObjectMetadata)),
      prefixes: ((response as { prefixes?: string[] } | undefined)?.prefixes ?? []),
      ...(nextToken ? { next: nextToken } : {}),
    };
  }

  protected async rawDelete(name: string): Promise<void> {
    const { bucket } = await this.load();
    await bucket.file(name).delete({ ignoreNotFound: true });
  }

  protected describeFailure(err: unknown): FailureInfo {
    // Three shapes: ApiError from the JSON API calls (numeric `code`), gaxios errors from resumable
    // uploads (`response.status`, or `code` as a string), HttpStatusError from our media GETs.
    const e = err as {
      code?: number | string; status?: number; message?: string;
      errors?: Array<{ reason?: string }>; response?: { status?: number; data?: unknown };
    };
    const codeNumber = typeof e.code === 'string' && /^\d{3}$/.test(e.code) ? Number(e.code) : e.code;
    const status = err instanceof HttpStatusError ? err.status
      : typeof codeNumber === 'number' ? codeNumber : e.response?.status ?? e.status;
    let message = err instanceof HttpStatusError ? err.body || err.message : err instanceof Error ? err.message : String(err);
    let reason = e.errors?.[0]?.reason;
    // A JSON error document (media GET bodies, some SDK messages): take its message and reason.
    if (message.trim().startsWith('{')) {
      try {
        const parsed = JSON.parse(message) as { error?: { message?: string; errors?: Array<{ reason?: string }> } };
        message = parsed.error?.message ?? message;
        reason ??= parsed.error?.errors?.[0]?.reason;
      } catch {
        // keep the text as it is
      }
    }
    message = message.split('\n')[0];
    if (/Could not load the default credentials|Unable to detect a Project Id|invalid_grant/i.test(message)) {
      return { code: 'credentials', message, credentials: true };
    }
    const code = reason ?? (typeof e.code === 'string' && status === undefined ? e.code : undefined);
    return {
      ...(status !== undefined ? { status } : {}),
      ...(code !== undefined ? { code } : {}),
      message,
      missingBucket: status === 404 && /bucket/i.test(message) && !/object/i.test(message),
      timeout: e.code === 'ETIMEDOUT' || (status === undefined && !isTransientNetworkError(err) && /timed? ?out|timeout/i.test(message)),
    };
  }

  protected credentialsHint(): string {
    return 'GCS credentials come from Google application-default credentials: GOOGLE_APPLICATION_CREDENTIALS (a service account key file), gcloud auth application-default login, or workload identity';
  }
}

function rawObject(name: string, meta: ObjectMetadata): RawObject {
  const writeId = meta.metadata?.[WRITE_ID_METADATA];
  return {
    name: meta.name ?? name,
    size: Number(meta.size ?? 0),
    etag: String(meta.generation ?? ''),
    mtimeMs: meta.updated ? Date.parse(meta.updated) : 0,
    ...(typeof writeId === 'string' ? { writeId } : {}),
  };
}

function generationOf(where: string, etag: string): string {
  if (!/^[1-9]\d*$/.test(etag)) throw new VhfsError('CONFLICT', `${where}: the object's generation is not ${JSON.stringify(etag)} (compare-and-swap needs a version tag this store gave out)`);
  return etag;
}

function isLoopback(endpoint: string): boolean {
  try {
    const host = new URL(endpoint).hostname;
    return host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
  } catch {
    return false;
  }
}
