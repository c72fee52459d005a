/**
 * Store selection by URL (docs/STORES.md has the user-facing description).
 *
 *   /path, ./path, file:///path                         local directory store
 *   s3://bucket[/prefix][?region=R&endpoint=URL&path_style=true]
 *   gs://bucket[/prefix][?endpoint=URL]
 *   az://account/container[/prefix][?endpoint=URL]       (azure:// is the same)
 *   https://host/path[?query], http://…                   read-only
 *
 * Credentials never come from an s3/gs/az URL (a `user:password@` there is refused with BAD_URI, and the
 * message does not repeat it): each backend takes them from its SDK's environment/default chain.
 * Endpoint, region and path-style come from, in this order: the URL's query, a per-bucket entry of the
 * settings (`<home>/stores.json`), the scheme-wide settings (env VHFS_S3_ENDPOINT, VHFS_S3_REGION,
 * VHFS_S3_PATH_STYLE, VHFS_GCS_ENDPOINT, VHFS_AZURE_ENDPOINT), then the SDK's defaults. The same rules
 * serve object inputs (`s3://other-bucket/key` named as an input): `openBucketStore` opens the store
 * of such a bucket, `openHttpObject` the store and key of an `https://` input.
 *
 * A store's `url` is the redacted, prefix-level form (`s3://bucket/prefix`), safe for any message.
 * Backends load their SDK on first use, so opening a store costs nothing until it is used.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VhfsError } from '../util/errors.js';
import { AzureBlobStore } from './azure.js';
import { GcsStore } from './gcs.js';
import { httpObjectParts, HttpsStore } from './https.js';
import { keyProblem, LocalDirStore, type LocalDirStoreOptions } from './local.js';
import { scrubSecrets, type RemoteStoreOptions } from './remote.js';
import { S3Store } from './s3.js';
import type { ObjectStore } from './types.js';

export * from './types.js';
export { LocalDirStore, keyProblem, type LocalDirStoreOptions } from './local.js';
export { FaultyStore, type FaultPlan, type StoreOp } from './faulty.js';
export { S3Store, type S3StoreConfig } from './s3.js';
export { GcsStore, type GcsStoreConfig } from './gcs.js';
export { AzureBlobStore, azureCredentialFromEnv, type AzureStoreConfig, type AzureCredentialSource } from './azure.js';
export { HttpsStore, type HttpsStoreConfig } from './https.js';
export { DEFAULT_RETRY, scrubSecrets, type RetryPolicy, type RemoteStoreOptions } from './remote.js';

export type CloudScheme = 's3' | 'gs' | 'az';

/** Where to reach a bucket: what a URL query or the settings may say. */
export interface BucketSettings {
  /** Service endpoint (`http://127.0.0.1:9000`, a MinIO or private-link URL). */
  endpoint?: string;
  /** S3 only. */
  region?: string;
  /** S3 only: path-style addressing (`endpoint/bucket/key`), usual for S3-compatible servers. */
  pathStyle?: boolean;
}

export interface StoreSettings {
  s3?: BucketSettings;
  gcs?: BucketSettings;
  azure?: BucketSettings;
  /** Per-bucket overrides, keyed `s3://bucket`, `gs://bucket`, `az://account/container` or `az://account`. */
  buckets?: Record<string, BucketSettings>;
}

export interface OpenStoreOptions extends LocalDirStoreOptions, RemoteStoreOptions {
  /** Endpoint/region defaults for cloud URLs (default: `storeSettingsFromEnv()`). */
  settings?: StoreSettings;
}

const CLOUD_PARAMS: Record<CloudScheme, string[]> = {
  s3: ['region', 'endpoint', 'path_style'],
  gs: ['endpoint'],
  az: ['endpoint'],
};

const CREDENTIAL_SOURCES: Record<CloudScheme, string> = {
  s3: 'AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role',
  gs: 'GOOGLE_APPLICATION_CREDENTIALS or application-default credentials',
  az: 'AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_KEY or DefaultAzureCredential',
};

export function openStore(url: string, options: OpenStoreOptions = {}): ObjectStore {
  if (url === '') throw new VhfsError('BAD_URI', 'empty store URL');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return new LocalDirStore(path.resolve(url), options);
  switch (scheme) {
    case 'file': {
      let dir: string;
      try {
        dir = fileURLToPath(url);
      } catch (err) {
        throw new VhfsError('BAD_URI', `store URL ${url}: ${(err as Error).message}`);
      }
      return new LocalDirStore(dir, options);
    }
    case 's3':
    case 'gs':
    case 'az':
    case 'azure': {
      const cloud: CloudScheme = scheme === 'azure' ? 'az' : scheme;
      const parsed = parseCloudUrl(url, cloud);
      return openCloud(cloud, parsed.bucket, parsed.prefix, { ...resolveSettings(cloud, parsed.bucket, options.settings), ...parsed.params }, options);
    }
    case 'http':
    case 'https':
      return new HttpsStore({ ...options, base: url });
    default:
      throw new VhfsError('BAD_URI', `store URL ${scrubSecrets(url)}: unknown scheme ${scheme}:// (expected file://, s3://, gs://, az://, https:// or a path)`);
  }
}

/**
 * The store of a whole bucket (Azure: `account/container`), for object inputs that name their own bucket.
 * Endpoint and region come from `settings` (per bucket, then per scheme), as for `openStore`.
 */
export function openBucketStore(scheme: CloudScheme, bucket: string, settings: StoreSettings = storeSettingsFromEnv(), options: RemoteStoreOptions = {}): ObjectStore {
  const where = `${scheme}://${bucket}`;
  checkBucket(where, scheme, bucket);
  return openCloud(scheme, bucket, '', resolveSettings(scheme, bucket, settings), options);
}

/** The read-only store of an `http(s)://` object's directory (its query string kept) and the object's key. */
export function openHttpObject(url: string, options: RemoteStoreOptions = {}): { store: ObjectStore; key: string } {
  const { base, key } = httpObjectParts(url);
  return { store: new HttpsStore({ ...options, base }), key };
}

/** Scheme-wide settings from the environment. */
export function storeSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): StoreSettings {
  const pick = (s: BucketSettings): BucketSettings =>
    Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined && v !== '')) as BucketSettings;
  return {
    s3: pick({ endpoint: env.VHFS_S3_ENDPOINT, region: env.VHFS_S3_REGION, pathStyle: parseBool('VHFS_S3_PATH_STYLE', env.VHFS_S3_PATH_STYLE) }),
    gcs: pick({ endpoint: env.VHFS_GCS_ENDPOINT }),
    azure: pick({ endpoint: env.VHFS_AZURE_ENDPOINT }),
  };
}

/**
 * Settings from the environment plus per-bucket entries from `<home>/stores.json` (or the file env
 * VHFS_STORES_FILE names), e.g. `{ "s3://my-bucket": { "endpoint": "http://minio:9000", "pathStyle": true } }`.
 * A missing file is fine; an unreadable or malformed one is BAD_ARGUMENT naming it.
 */
export function loadStoreSettings(opts: { home?: string; env?: NodeJS.ProcessEnv } = {}): StoreSettings {
  const env = opts.env ?? process.env;
  const settings = storeSettingsFromEnv(env);
  const file = env.VHFS_STORES_FILE ?? (opts.home ? path.join(opts.home, 'stores.json') : undefined);
  if (!file || !existsSync(file)) {
    if (env.VHFS_STORES_FILE) throw new VhfsError('BAD_ARGUMENT', `VHFS_STORES_FILE ${file}: no such file`);
    return settings;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new VhfsError('BAD_ARGUMENT', `${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new VhfsError('BAD_ARGUMENT', `${file}: expected an object keyed by s3://bucket, gs://bucket or az://account/container`);
  const buckets: Record<string, BucketSettings> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const m = /^(s3|gs|az|azure):\/\/([^/?#]+(?:\/[^/?#]+)?)\/?$/.exec(key);
    if (!m) throw new VhfsError('BAD_ARGUMENT', `${file}: key ${JSON.stringify(key)} is not s3://bucket, gs://bucket, az://account or az://account/container`);
    if (typeof value !== 'object' || value === null) throw new VhfsError('BAD_ARGUMENT', `${file}: ${key}: expected an object with endpoint/region/pathStyle`);
    const v = value as Record<string, unknown>;
    for (const k of Object.keys(v)) {
      if (!['endpoint', 'region', 'pathStyle'].includes(k)) throw new VhfsError('BAD_ARGUMENT', `${file}: ${key}: unknown setting "${k}" (known: endpoint, region, pathStyle)`);
    }
    if (v.endpoint !== undefined) checkEndpoint(`${file}: ${key}`, String(v.endpoint));
    buckets[`${m[1] === 'azure' ? 'az' : m[1]}://${m[2]}`] = {
      ...(v.endpoint !== undefined ? { endpoint: String(v.endpoint) } : {}),
      ...(v.region !== undefined ? { region: String(v.region) } : {}),
      ...(v.pathStyle !== undefined ? { pathStyle: v.pathStyle === true || v.pathStyle === 'true' } : {}),
    };
  }
  return { ...settings, buckets };
}

// ---- internals ----

function openCloud(scheme: CloudScheme, bucket: string, prefix: string, s: BucketSettings, options: RemoteStoreOptions): ObjectStore {
  const remote: RemoteStoreOptions = {
    ...(options.retry ? { retry: options.retry } : {}),
    ...(options.maxSockets !== undefined ? { maxSockets: options.maxSockets } : {}),
    ...(options.maxPins !== undefined ? { maxPins: options.maxPins } : {}),
  };
  const endpoint = s.endpoint ? { endpoint: s.endpoint } : {};
  switch (scheme) {
    case 's3':
      return new S3Store({ ...remote, bucket, prefix, ...endpoint, ...(s.region ? { region: s.region } : {}), ...(s.pathStyle !== undefined ? { pathStyle: s.pathStyle } : {}) });
    case 'gs':
      return new GcsStore({ ...remote, bucket, prefix, ...endpoint });
    case 'az': {
      const [account, container] = bucket.split('/');
      return new AzureBlobStore({ ...remote, account, container, prefix, ...endpoint });
    }
  }
}

function resolveSettings(scheme: CloudScheme, bucket: string, settings: StoreSettings = storeSettingsFromEnv()): BucketSettings {
  const family = scheme === 's3' ? settings.s3 : scheme === 'gs' ? settings.gcs : settings.azure;
  const perAccount = scheme === 'az' ? settings.buckets?.[`az://${bucket.split('/')[0]}`] : undefined;
  return { ...family, ...perAccount, ...settings.buckets?.[`${scheme}://${bucket}`] };
}

/** Split and check `s3://bucket/prefix?query` (and gs, az); the prefix comes back '' or ending in '/'. */
function parseCloudUrl(url: string, scheme: CloudScheme): { bucket: string; prefix: string; params: BucketSettings } {
  const rest = url.slice(url.indexOf('://') + 3);
  const authority = /^[^/?#]*/.exec(rest)![0];
  if (authority.includes('@')) {
    const shown = `${url.slice(0, url.indexOf('://') + 3)}***@${rest.slice(authority.indexOf('@') + 1).replace(/[?#].*$/, '')}`;
    throw new VhfsError('BAD_URI', `store URL ${shown}: credentials must not be part of the URL (they would show up in process lists and logs); set them in the environment instead: ${CREDENTIAL_SOURCES[scheme]}`);
  }
  if (rest.includes('#')) throw new VhfsError('BAD_URI', `store URL ${scrubSecrets(url)}: a fragment (#) is not allowed`);
  const q = rest.indexOf('?');
  const pathPart = q >= 0 ? rest.slice(0, q) : rest;
  const query = new URLSearchParams(q >= 0 ? rest.slice(q + 1) : '');
  const shown = scrubSecrets(url);
  const segs = pathPart.split('/');
  const bucketSegs = scheme === 'az' ? 2 : 1;
  const bucket = segs.slice(0, bucketSegs).join('/');
  checkBucket(`store URL ${shown}`, scheme, bucket);
  const prefixText = segs.slice(bucketSegs).join('/').replace(/\/$/, '');
  if (prefixText !== '') {
    const bad = keyProblem(prefixText);
    if (bad) throw new VhfsError('BAD_URI', `store URL ${shown}: bad prefix "${prefixText}": ${bad}`);
  }
  const params: BucketSettings = {};
  for (const [k, v] of query) {
    if (!CLOUD_PARAMS[scheme].includes(k)) {
      throw new VhfsError('BAD_URI', `store URL ${shown}: unknown parameter "${k}" (${scheme}:// takes ${CLOUD_PARAMS[scheme].join(', ')}; credentials come from the environment)`);
    }
    if (k === 'endpoint') params.endpoint = checkEndpoint(`store URL ${shown}`, v);
    if (k === 'region') params.region = v;
    if (k === 'path_style') params.pathStyle = parseBool(`store URL ${shown}: path_style`, v);
  }
  return { bucket, prefix: prefixText ? `${prefixText}/` : '', params };
}

function checkBucket(where: string, scheme: CloudScheme, bucket: string): void {
  if (scheme === 'az') {
    const [account = '', container = ''] = bucket.split('/');
    if (!/^[a-z0-9]{3,24}$/.test(account)) throw new VhfsError('BAD_URI', `${where}: "${account}" is not a storage account name (3-24 lowercase letters and digits; az://account/container/prefix)`);
    if (!/^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$/.test(container)) throw new VhfsError('BAD_URI', `${where}: "${container}" is not a container name (3-63 lowercase letters, digits and single hyphens)`);
    return;
  }
  // Permissive on purpose: legacy S3 buckets may hold capitals and underscores; the service decides.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,221}[A-Za-z0-9]$/.test(bucket)) {
    throw new VhfsError('BAD_URI', `${where}: "${bucket}" is not a bucket name (3-63 characters: letters, digits, dots, hyphens)`);
  }
}

function checkEndpoint(where: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new VhfsError('BAD_URI', `${where}: endpoint "${scrubSecrets(value)}" is not a URL (expected http(s)://host[:port])`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new VhfsError('BAD_URI', `${where}: endpoint must be http:// or https://`);
  if (u.username || u.password) throw new VhfsError('BAD_URI', `${where}: endpoint must not carry credentials`);
  if (u.search || u.hash) throw new VhfsError('BAD_URI', `${where}: endpoint must not have a query or fragment`);
  return value;
}

function parseBool(where: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new VhfsError('BAD_URI', `${where}: expected true or false, got "${value}"`);
}
