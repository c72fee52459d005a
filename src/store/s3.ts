/**
 * `S3Store`: an `ObjectStore` on an S3 bucket (AWS or any S3-compatible service), via the AWS SDK v3.
 *
 * - Addressing: region (URL `?region=`, else the SDK's chain: AWS_REGION, profile; `us-east-1` when a
 *   custom endpoint is given and nothing else says), custom endpoint, path-style (`?path_style=true`,
 *   usual for MinIO, Ceph, s3rver).
 * - Credentials: the SDK's default chain only (env AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/
 *   AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws, web identity, ECS/EC2 roles); never from the URL.
 * - Checksums `WHEN_REQUIRED` (request and response): with the SDK's default, streamed uploads to
 *   S3-compatible servers that do not decode aws-chunked framing are stored corrupted with no error
 *   (measured on s3rver, toolchain.md). Integrity is vhfs's own job (sha256 per blob, CRC per member).
 * - Reads: GetObject with `Range`; the reply's ETag is checked against the pinned version (remote.ts).
 *   One keep-alive agent per process, sized for parallel ranged GETs (`maxSockets`, default 64).
 * - Writes: a Buffer up to 64 MiB is one PutObject (retryable); larger bodies and streams go through
 *   `@aws-sdk/lib-storage`'s Upload (8 MiB parts or more, 4 in flight; a stream that ends within the first
 *   part becomes one PutObject). Conditions travel as `If-None-Match: *` / `If-Match` on the PutObject or
 *   the CompleteMultipartUpload (AWS honours both since 2024; see docs/STORES.md for other services).
 * - Retries: the SDK's standard mode (jittered exponential backoff, throttling-aware) with
 *   `attempts` from the RetryPolicy; per-attempt connect and idle timeouts on the HTTP handler.
 * - The SDK is imported on first use, so commands that never touch S3 do not pay for loading it.
 */
import type { S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { VhfsError } from '../util/errors.js';
import {
  bufferHead,
  isTransientNetworkError,
  keepAliveAgents,
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

export interface S3StoreConfig extends RemoteStoreOptions {
  bucket: string;
  /** '' or a prefix ending in '/'. */
  prefix?: string;
  region?: string;
  endpoint?: string;
  pathStyle?: boolean;
  /** Explicit credentials (tests and embedding); otherwise the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Part size for multipart uploads (default 8 MiB, at least 5 MiB). */
  partSize?: number;
}

type S3Sdk = typeof import('@aws-sdk/client-s3');

const SILENT = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
const SINGLE_PUT_MAX = 64 * 1024 * 1024;
const DEFAULT_PART = 8 * 1024 * 1024;
const MAX_PARTS = 10_000;

export class S3Store extends RemoteStore {
  readonly url: string;
  private readonly config: S3StoreConfig;
  private sdk?: Promise<{ s3: S3Sdk; client: S3Client }>;

  constructor(config: S3StoreConfig) {
    super(config.prefix ?? '', config);
    this.config = config;
    this.url = `s3://${config.bucket}${config.prefix ? `/${config.prefix.replace(/\/$/, '')}` : ''}`;
    if (config.credentials) this.secrets.push(config.credentials.secretAccessKey, config.credentials.accessKeyId, config.credentials.sessionToken ?? '');
  }

  private load(): Promise<{ s3: S3Sdk; client: S3Client }> {
    this.sdk ??= (async () => {
      // The SDK warns once per process that later releases need Node 22; that is for us, not the user.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const s3 = await import('@aws-sdk/client-s3');
      const agents = keepAliveAgents(this.maxSockets);
      const region = this.config.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (this.config.endpoint ? 'us-east-1' : undefined);
      const client = new s3.S3Client({
        ...(region ? { region } : {}),
        ...(this.config.endpoint ? { endpoint: this.config.endpoint } : {}),
        forcePathStyle: this.config.pathStyle ?? false,
        ...(this.config.credentials ? { credentials: this.config.credentials } : {}),
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        maxAttempts: this.retry.attempts,
        retryMode: 'standard',
        requestHandler: {
          httpAgent: agents.http,
          httpsAgent: agents.https,
          connectionTimeout: this.retry.connectTimeoutMs,
          // No reply headers within the idle limit fails the attempt (an error the SDK retries, not
          // just a logged warning), and so does a socket that goes quiet mid-body.
          requestTimeout: this.retry.idleTimeoutMs,
          throwOnRequestTimeout: true,
          socketTimeout: this.retry.idleTimeoutMs,
          // The handler warns on the console when callers queue for sockets; a full pool is the block
          // cache's business (it bounds its own parallelism), not a message for the user's terminal.
          logger: SILENT,
        },
      });
      return { s3, client };
    })();
    return this.sdk;
  }

  protected async rawHead(name: string, signal?: AbortSignal): Promise<RawObject | undefined> {
    const { s3, client } = await this.load();
    try {
      const r = await client.send(new s3.HeadObjectCommand({ Bucket: this.config.bucket, Key: name }), { abortSignal: signal });
      const writeId = r.Metadata?.[WRITE_ID_METADATA];
      return { name, size: r.ContentLength ?? 0, etag: r.ETag ?? '', mtimeMs: r.LastModified?.getTime() ?? 0, ...(writeId ? { writeId } : {}) };
    } catch (err) {
      if (statusOf(err) === 404 && (err as S3ServiceException).name !== 'NoSuchBucket') return undefined;
      throw err;
    }
  }

  protected async rawRead(name: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined): Promise<RawRead> {
    const { s3, client } = await this.load();
    const r = await client.send(new s3.GetObjectCommand({
      Bucket: this.config.bucket,
      Key: name,
      ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
    }), { abortSignal: signal });
    const body = r.Body as Readable;
    const cr = parseContentRange(r.ContentRange);
    const length = r.ContentLength ?? 0;
    return cr
      ? { body, start: cr.start, length, size: cr.size ?? cr.end + 1, partial: true, etag: r.ETag }
      : { body, start: 0, length, size: length, partial: false, etag: r.ETag };
  }

  protected async rawPut(name: string, body: Buffer | Readable, opts: RawPutOptions): Promise<RawObject> {
    const { s3, client } = await this.load();
    const params = {
      Bucket: this.config.bucket,
      Key: name,
      ...(opts.contentType ? { ContentType: opts.contentType } : {}),
      ...(opts.ifNoneMatch ? { IfNoneMatch: opts.ifNoneMatch } : {}),
      ...(opts.ifMatch !== undefined ? { IfMatch: opts.ifMatch } : {}),
      ...(opts.writeId ? { Metadata: { [WRITE_ID_METADATA]: opts.writeId } } : {}),
    };
    let payload: Buffer | Readable = body;
    if (!Buffer.isBuffer(payload)) {
      const head = await bufferHead(payload, this.partSize(opts.size));
      payload = 'whole' in head ? head.whole : head.rest;
    }
    if (Buffer.isBuffer(payload) && payload.length <= SINGLE_PUT_MAX) {
      const r = await client.send(new s3.PutObjectCommand({ ...params, Body: payload, ContentLength: payload.length }));
      return { name, size: payload.length, etag: r.ETag ?? '', mtimeMs: Date.now() };
    }
    const { Upload } = await import('@aws-sdk/lib-storage');
    const upload = new Upload({
      client,
      params: { ...params, Body: payload },
      partSize: this.partSize(opts.size ?? (Buffer.isBuffer(payload) ? payload.length : undefined)),
      queueSize: 4,
      leavePartsOnError: false,
    });
    const r = await upload.done();
    return { name, size: opts.size ?? 0, etag: r.ETag ?? '', mtimeMs: Date.now() };
  }

  protected async rawList(prefix: string, delimiter: '/' | undefined, token: string | undefined): Promise<RawListPage> {
    const { s3, client } = await this.load();
    const r = await client.send(new s3.ListObjectsV2Command({
      Bucket: this.config.bucket,
      Prefix: prefix,
      ...(delimiter ? { Delimiter: delimiter } : {}),
      ...(token ? { ContinuationToken: token } : {}),
      MaxKeys: 1000,
    }));
    return {
      objects: (r.Contents ?? []).map((o) => ({ name: o.Key ?? '', size: o.Size ?? 0, etag: o.ETag ?? '', mtimeMs: o.LastModified?.getTime() ?? 0 })),
      prefixes: (r.CommonPrefixes ?? []).map((p) => p.Prefix ?? '').filter((p) => p !== ''),
      ...(r.IsTruncated && r.NextContinuationToken ? { next: r.NextContinuationToken } : {}),
    };
  }

  protected async rawDelete(name: string): Promise<void> {
    const { s3, client } = await this.load();
    await client.send(new s3.DeleteObjectCommand({ Bucket: this.config.bucket, Key: name }));
  }

  protected describeFailure(err: unknown): FailureInfo {
    const e = err as Partial<S3ServiceException> & { code?: string };
    const status = statusOf(err);
    const name = e.name ?? 'Error';
    const message = errMessage(err);
    if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(message)) return { code: name, message, credentials: true };
    if (/Region is missing/i.test(message)) {
      return { code: name, message: `${message}; name one with ?region=… in the store URL or AWS_REGION`, credentials: false };
    }
    return {
      ...(status !== undefined ? { status } : {}),
      code: name === 'Error' || name === 'Unknown' ? e.code ?? name : name,
      message,
      missingBucket: name === 'NoSuchBucket',
      timeout: name === 'TimeoutError' || e.code === 'ETIMEDOUT' || (status === undefined && !isTransientNetworkError(err) && /timed? ?out/i.test(message)),
    };
  }

  protected credentialsHint(): string {
    return 'S3 credentials come from the AWS SDK chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_PROFILE, web identity or an instance role';
  }

  private partSize(size: number | undefined): number {
    const wanted = Math.max(this.config.partSize ?? DEFAULT_PART, 5 * 1024 * 1024);
    return size === undefined ? wanted : Math.max(wanted, Math.ceil(size / MAX_PARTS));
  }
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

function errMessage(err: unknown): string {
  if (err instanceof VhfsError) return err.message;
  const m = err instanceof Error ? err.message : String(err);
  return m === 'UnknownError' ? '' : m.split('\n')[0];
}
