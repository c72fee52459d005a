/**
 * `AzureBlobStore`: an `ObjectStore` on an Azure Blob Storage container, via `@azure/storage-blob` 12.32
 * (the last release line that runs on Node 20) and `@azure/identity`.
 *
 * - Service URL: `https://<account>.blob.core.windows.net` by default; an endpoint from the URL
 *   (`?endpoint=`), settings or the connection string's BlobEndpoint replaces it. An endpoint with no path
 *   on a loopback or IP host is an emulator (azurite), which serves accounts path-style, so the account is
 *   appended: `http://127.0.0.1:10000` → `http://127.0.0.1:10000/devstoreaccount1`.
 * - Credentials (`azureCredentialFromEnv`), first found wins, never from the URL:
 *   AZURE_STORAGE_CONNECTION_STRING (AccountKey or SharedAccessSignature; its AccountName must be the URL's
 *   account), AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY (account key), else DefaultAzureCredential
 *   (environment service principal, workload identity, managed identity, Azure CLI).
 * - Version tag = the blob's ETag (new on every write). Create-if-absent is `ifNoneMatch: '*'`, which Azure
 *   (and azurite) refuse on an existing blob with 409 BlobAlreadyExists; compare-and-swap is `ifMatch`,
 *   refused with 412. Both map to CONFLICT (remote.ts).
 * - Reads: `download(offset, count)` with the caller's abort signal; the SDK resumes a body cut off
 *   mid-way itself (`maxRetryRequests`, conditioned on the ETag) and remote.ts re-requests beyond that.
 * - Writes: bodies (or streams that end) within 8 MiB are one Put Blob; larger ones are staged in 8 MiB
 *   blocks, 4 in flight, and committed with the condition on the Put Block List.
 * - Retries: the SDK's exponential policy (500, 503, resets) with the RetryPolicy's attempts and delays;
 *   a whole-call deadline where the SDK has no client-side timer (`bounded`). Imported on first use.
 */
import type { ContainerClient, StoragePipelineOptions } from '@azure/storage-blob';
import type { Readable } from 'node:stream';
import { VhfsError } from '../util/errors.js';
import {
  bufferHead,
  parseContentRange,
  RemoteStore,
  type FailureInfo,
  type RawListPage,
  type RawObject,
  type RawPutOptions,
  type RawRead,
  type RemoteStoreOptions,
  withDeadline,
  WRITE_ID_METADATA,
} from './remote.js';

export type AzureCredentialSource =
  | { kind: 'connection-string'; connectionString: string }
  | { kind: 'sas'; token: string }
  | { kind: 'key'; accountKey: string }
  | { kind: 'default' };

export interface AzureStoreConfig extends RemoteStoreOptions {
  account: string;
  container: string;
  /** '' or a prefix ending in '/'. */
  prefix?: string;
  /** Blob service URL (or an emulator's host, see above). */
  endpoint?: string;
  /** Default: `azureCredentialFromEnv(account)`. */
  credential?: AzureCredentialSource;
  /** Block size, and the largest single-request upload (default 8 MiB). */
  blockSize?: number;
}

const DEFAULT_BLOCK = 8 * 1024 * 1024;

/** Where credentials come from, by the environment (see the header for the order). */
export function azureCredentialFromEnv(account: string, env: NodeJS.ProcessEnv = process.env): AzureCredentialSource {
  const cs = env.AZURE_STORAGE_CONNECTION_STRING;
  if (cs) {
    const named = connectionStringField(cs, 'AccountName') ?? (/UseDevelopmentStorage=true/i.test(cs) ? 'devstoreaccount1' : undefined);
    if (named !== undefined && named !== account) {
      throw new VhfsError('BAD_URI', `AZURE_STORAGE_CONNECTION_STRING is for storage account "${named}", but the store URL names account "${account}"`);
    }
    return { kind: 'connection-string', connectionString: cs };
  }
  if (env.AZURE_STORAGE_SAS_TOKEN) return { kind: 'sas', token: env.AZURE_STORAGE_SAS_TOKEN.replace(/^\?/, '') };
  const key = env.AZURE_STORAGE_KEY ?? env.AZURE_STORAGE_ACCOUNT_KEY;
  if (key) return { kind: 'key', accountKey: key };
  return { kind: 'default' };
}

export class AzureBlobStore extends RemoteStore {
  readonly url: string;
  private readonly config: AzureStoreConfig;
  private readonly credential: AzureCredentialSource;
  private sdk?: Promise<ContainerClient>;

  constructor(config: AzureStoreConfig) {
    super(config.prefix ?? '', config);
    this.config = config;
    this.url = `az://${config.account}/${config.container}${config.prefix ? `/${config.prefix.replace(/\/$/, '')}` : ''}`;
    const cred = (this.credential = config.credential ?? azureCredentialFromEnv(config.account));
    if (cred?.kind === 'sas') this.secrets.push(cred.token);
    if (cred?.kind === 'key') this.secrets.push(cred.accountKey);
    if (cred?.kind === 'connection-string') {
      this.secrets.push(cred.connectionString);
      for (const f of ['AccountKey', 'SharedAccessSignature']) {
        const v = connectionStringField(cred.connectionString, f);
        if (v) this.secrets.push(v);
      }
    }
  }

  private load(): Promise<ContainerClient> {
    this.sdk ??= (async () => {
      const blob = await import('@azure/storage-blob');
      const options: StoragePipelineOptions = {
        retryOptions: {
          retryPolicyType: blob.StorageRetryPolicyType.EXPONENTIAL,
          maxTries: this.retry.attempts,
          retryDelayInMs: this.retry.baseDelayMs,
          maxRetryDelayInMs: this.retry.maxDelayMs,
        },
        keepAliveOptions: { enable: true },
      };
      const cred = this.credential;
      let service: InstanceType<typeof blob.BlobServiceClient>;
      switch (cred.kind) {
        case 'connection-string': {
          const cs = cred.connectionString;
          const key = connectionStringField(cs, 'AccountKey');
          const sas = connectionStringField(cs, 'SharedAccessSignature');
          const url = this.serviceUrl(connectionStringField(cs, 'BlobEndpoint') ?? (/UseDevelopmentStorage=true/i.test(cs) ? 'http://127.0.0.1:10000' : undefined), connectionStringField(cs, 'EndpointSuffix'), connectionStringField(cs, 'DefaultEndpointsProtocol'));
          const accountKey = key ?? (/UseDevelopmentStorage=true/i.test(cs) ? DEVSTORE_KEY : undefined);
          service = accountKey
            ? new blob.BlobServiceClient(url, new blob.StorageSharedKeyCredential(this.config.account, accountKey), options)
            : new blob.BlobServiceClient(withSas(url, sas ?? ''), new blob.AnonymousCredential(), options);
          break;
        }
        case 'sas':
          service = new blob.BlobServiceClient(withSas(this.serviceUrl(), cred.token), new blob.AnonymousCredential(), options);
          break;
        case 'key':
          service = new blob.BlobServiceClient(this.serviceUrl(), new blob.StorageSharedKeyCredential(this.config.account, cred.accountKey), options);
          break;
        case 'default': {
          const { DefaultAzureCredential } = await import('@azure/identity');
          service = new blob.BlobServiceClient(this.serviceUrl(), new DefaultAzureCredential(), options);
          break;
        }
      }
      return service.getContainerClient(this.config.container);
    })();
    return this.sdk;
  }

  /** The account's blob service URL: the configured endpoint (emulator style gets the account appended). */
  private serviceUrl(fallback?: string, suffix?: string, protocol?: string): string {
    const endpoint = this.config.endpoint ?? fallback;
    if (!endpoint) return `${protocol ?? 'https'}://${this.config.account}.blob.${suffix ?? 'core.windows.net'}`;
    const u = new URL(endpoint);
    const emulator = (u.pathname === '' || u.pathname === '/') && (/^[\d.]+$|^\[.*\]$/.test(u.hostname) || u.hostname === 'localhost');
    return emulator ? `${u.origin}/${this.config.account}` : endpoint.replace(/\/$/, '');
  }

  protected async rawHead(name: string, signal?: AbortSignal): Promise<RawObject | undefined> {
    const container = await this.load();
    try {
      const p = await this.bounded(signal, (abortSignal) => container.getBlobClient(name).getProperties({ abortSignal }));
      const writeId = p.metadata?.[WRITE_ID_METADATA];
      return { name, size: p.contentLength ?? 0, etag: quoted(p.etag), mtimeMs: p.lastModified?.getTime() ?? 0, ...(writeId ? { writeId } : {}) };
    } catch (err) {
      const f = this.describeFailure(err);
      if (f.status === 404 && !f.missingBucket) return undefined;
      throw err;
    }
  }

  protected async rawRead(name: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined): Promise<RawRead> {
    const container = await this.load();
    // The deadline covers the reply's headers only (the body has remote.ts's idle limit); the caller's
    // signal stays attached to the body, so aborting it still stops a download in flight.
    const r = await this.bounded(signal, (abortSignal) => container.getBlobClient(name).download(range?.offset ?? 0, range?.length, {
      abortSignal: signal ? AbortSignal.any([signal, abortSignal]) : abortSignal,
      maxRetryRequests: this.retry.attempts - 1,
    }));
    const body = r.readableStreamBody as Readable;
    const length = r.contentLength ?? 0;
    const cr = parseContentRange(r.contentRange);
    return cr
      ? { body, start: cr.start, length, size: cr.size ?? cr.end + 1, partial: true, etag: quoted(r.etag) }
      : { body, start: 0, length, size: length, partial: false, etag: quoted(r.etag) };
  }

  protected async rawPut(name: string, body: Buffer | Readable, opts: RawPutOptions): Promise<RawObject> {
    const container = await this.load();
    const client = container.getBlockBlobClient(name);
    const block = this.config.blockSize ?? DEFAULT_BLOCK;
    const common = {
      conditions: opts.ifNoneMatch === '*' ? { ifNoneMatch: '*' } : opts.ifMatch !== undefined ? { ifMatch: opts.ifMatch } : {},
      blobHTTPHeaders: { blobContentType: opts.contentType ?? 'application/octet-stream' },
      ...(opts.writeId ? { metadata: { [WRITE_ID_METADATA]: opts.writeId } } : {}),
    };
    let payload: Buffer | Readable = body;
    if (!Buffer.isBuffer(payload)) {
      const head = await bufferHead(payload, block);
      payload = 'whole' in head ? head.whole : head.rest;
    }
    let etag: string | undefined;
    let lastModified: Date | undefined;
    if (Buffer.isBuffer(payload) && payload.length <= block) {
      const small = payload;
      ({ etag, lastModified } = await this.bounded(undefined, (abortSignal) => client.upload(small, small.length, { ...common, abortSignal })));
    } else if (Buffer.isBuffer(payload)) {
      ({ etag, lastModified } = await client.uploadData(payload, { ...common, blockSize: block, maxSingleShotSize: block, concurrency: 4 }));
    } else {
      ({ etag, lastModified } = await client.uploadStream(payload, block, 4, common));
    }
    return { name, size: opts.size ?? 0, etag: quoted(etag), mtimeMs: lastModified?.getTime() ?? Date.now() };
  }

  protected async rawList(prefix: string, delimiter: '/' | undefined, token: string | undefined): Promise<RawListPage> {
    const container = await this.load();
    const pages = delimiter
      ? container.listBlobsByHierarchy(delimiter, { prefix }).byPage({ maxPageSize: 1000, ...(token ? { continuationToken: token } : {}) })
      : container.listBlobsFlat({ prefix }).byPage({ maxPageSize: 1000, ...(token ? { continuationToken: token } : {}) });
    const { value, done } = await this.bounded(undefined, () => pages.next());
    if (done || !value) return { objects: [], prefixes: [] };
    const segment = value.segment as {
      blobItems: Array<{ name: string; properties: { contentLength?: number; etag?: string; lastModified?: Date } }>;
      blobPrefixes?: Array<{ name: string }>;
    };
    return {
      objects: segment.blobItems.map((b) => ({ name: b.name, size: b.properties.contentLength ?? 0, etag: quoted(b.properties.etag), mtimeMs: b.properties.lastModified?.getTime() ?? 0 })),
      prefixes: (segment.blobPrefixes ?? []).map((p) => p.name),
      ...(value.continuationToken ? { next: value.continuationToken } : {}),
    };
  }

  protected async rawDelete(name: string): Promise<void> {
    const container = await this.load();
    await this.bounded(undefined, (abortSignal) => container.getBlobClient(name).deleteIfExists({ abortSignal }));
  }

  /**
   * The Azure SDK times nothing out on the client side (its try timeout is a server-side `timeout=`
   * parameter), so a server that accepts and never answers would hang a call forever. Calls that end
   * with their reply get a whole-call deadline of attempts × 2 × idle limit; a stall then fails the call
   * (TIMEOUT) instead of being retried. Block uploads are not bounded this way (their length is not).
   */
  private bounded<T>(signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return withDeadline(this.retry.attempts * 2 * this.retry.idleTimeoutMs, signal, fn);
  }

  protected describeFailure(err: unknown): FailureInfo {
    const e = err as { statusCode?: number; code?: string; name?: string; details?: { errorCode?: string }; message?: string };
    const status = e.statusCode;
    const code = e.details?.errorCode ?? e.code;
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    if (e.name === 'CredentialUnavailableError' || e.name === 'AuthenticationRequiredError' || /DefaultAzureCredential|credential/i.test(e.name ?? '')) {
      return { code: e.name, message, credentials: true };
    }
    return {
      ...(status !== undefined ? { status } : {}),
      ...(code !== undefined ? { code } : {}),
      message,
      missingBucket: code === 'ContainerNotFound' || code === 'ResourceNotFound' && /container/i.test(message),
      // The SDK's per-try timeout aborts the request: an AbortError nobody asked for is a timeout.
      timeout: e.name === 'AbortError' || code === 'ETIMEDOUT',
    };
  }

  protected credentialsHint(): string {
    return 'Azure credentials come from AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY, or DefaultAzureCredential (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, managed identity, az login)';
  }
}

/** The key every azurite accepts for devstoreaccount1 (public, documented by Microsoft). */
const DEVSTORE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

function connectionStringField(cs: string, field: string): string | undefined {
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === field.toLowerCase()) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Blob listings give ETags unquoted, blob replies quoted: one form, the quoted one `ifMatch` takes. */
function quoted(etag: string | undefined): string {
  if (!etag) return '';
  return etag.startsWith('"') || etag.startsWith('W/') ? etag : `"${etag}"`;
}

function withSas(url: string, sas: string): string {
  const token = sas.replace(/^\?/, '');
  return token ? `${url}${url.includes('?') ? '&' : '?'}${token}` : url;
}
