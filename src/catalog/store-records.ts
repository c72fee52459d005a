/**
 * Catalog records in the object store — the shared truth every host reads (layout: docs/DESIGN.md).
 *
 * Immutable records (datums, versions) are written create-if-absent, so two hosts can never overwrite
 * each other's datum or publish two different `images/v1`. Datums come one record per object
 * (`datums/<id>.json`, `putDatum`) or up to 4096 per object (`datums/batches/<batch id>.json`, a
 * `DatumWriter`): a batch member's id is its batch id with the last three hex digits replaced by its
 * index, so the object holding any datum follows from the id (`batchIdOf`), with no index to keep. Alias pointers are the only mutable objects:
 * they are updated with a compare-and-swap loop (head → get → put ifMatch); a lost race re-reads and
 * retries with jittered backoff, a bounded number of times. Reading the etag *before* the body is what
 * makes this safe without a "get with etag" call: if the body read is newer than the etag, the
 * conditional put fails and the loop retries.
 */
import { isVhfsError, VhfsError } from '../util/errors.js';
import { uuidv7 } from '../util/ids.js';
import type { ObjectStore } from '../store/types.js';
import type { AliasKind, AliasRecord, CollectionKind, DatumBatchRecord, DatumMeta, DatumRecord, PackedLocation, VersionRecord } from './types.js';

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const CAS_ATTEMPTS = 40;

const COLLECTION_DIR: Record<CollectionKind, string> = { dataset: 'datasets', model: 'models' };
const ALIAS_DIR: Record<AliasKind, string> = { dataset: 'datasets', model: 'models', datum: 'datums' };

export const keys = {
  blob: (sha256: string) => `blobs/sha256/${sha256}`,
  /** The chunk hash table of the object at `key` (any blob or package part larger than one chunk). */
  chunks: (key: string) => `${key}.chunks`,
  /** A package part: keyed by its datum id, not its content, so it can be streamed to its final key. */
  packagePart: (datumId: string) => `blobs/packages/${datumId}.vhpkgzip`,
  datum: (id: string) => `datums/${id}.json`,
  datumBatch: (batchId: string) => `datums/batches/${batchId}.json`,
  datumsPrefix: 'datums/',
  collectionsPrefix: (kind: CollectionKind) => `${COLLECTION_DIR[kind]}/`,
  versionsPrefix: (kind: CollectionKind, name: string) => `${COLLECTION_DIR[kind]}/${name}/versions/`,
  version: (kind: CollectionKind, name: string, version: string) =>
    `${COLLECTION_DIR[kind]}/${name}/versions/${version}.json`,
  aliasesPrefix: (kind: AliasKind, scope: string) =>
    kind === 'datum' ? 'aliases/datums/' : `aliases/${ALIAS_DIR[kind]}/${scope}/`,
  alias: (kind: AliasKind, scope: string, name: string) =>
    kind === 'datum' ? `aliases/datums/${name}.json` : `aliases/${ALIAS_DIR[kind]}/${scope}/${name}.json`,
};

/** What a store key under the catalog layout is, or undefined for keys the catalog does not own. */
export type ParsedKey =
  | { type: 'datum'; id: string }
  | { type: 'datum-batch'; batchId: string }
  | { type: 'version'; kind: CollectionKind; collection: string; version: string }
  | { type: 'alias'; kind: AliasKind; scope: string; name: string };

export function parseKey(key: string): ParsedKey | undefined {
  let m = /^datums\/([^/]+)\.json$/.exec(key);
  if (m) return { type: 'datum', id: m[1] };
  m = /^datums\/batches\/([^/]+)\.json$/.exec(key);
  if (m) return { type: 'datum-batch', batchId: m[1] };
  m = /^(datasets|models)\/([^/]+)\/versions\/([^/]+)\.json$/.exec(key);
  if (m) return { type: 'version', kind: m[1] === 'datasets' ? 'dataset' : 'model', collection: m[2], version: m[3] };
  m = /^aliases\/datums\/([^/]+)\.json$/.exec(key);
  if (m) return { type: 'alias', kind: 'datum', scope: '', name: m[1] };
  m = /^aliases\/(datasets|models)\/([^/]+)\/([^/]+)\.json$/.exec(key);
  if (m) return { type: 'alias', kind: m[1] === 'datasets' ? 'dataset' : 'model', scope: m[2], name: m[3] };
  return undefined;
}

/** The parsed JSON at `key`, or undefined if absent; INTEGRITY if it is not JSON. */
export async function readJson<T>(store: ObjectStore, key: string): Promise<T | undefined> {
  let buf: Buffer;
  try {
    buf = await store.get(key);
  } catch (err) {
    if (isVhfsError(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
  return parseJson<T>(store, key, buf);
}

export function parseJson<T>(store: ObjectStore, key: string, buf: Buffer): T {
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (err) {
    throw new VhfsError('INTEGRITY', `${store.url}/${key}: not valid JSON (${(err as Error).message})`);
  }
}

function jsonBody(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value) + '\n');
}

/**
 * A datum's record, created now: its bytes are its own content-addressed blob unless `extra` says where
 * else they are (a package part's own key, or a member's place inside a package).
 */
export function datumRecord(
  id: string,
  meta: DatumMeta,
  digest: { sha256: string; size: number },
  extra: { blobKey?: string; packed?: PackedLocation } = {},
): DatumRecord {
  return {
    id,
    name: meta.name,
    size: digest.size,
    sha256: digest.sha256,
    ctime: new Date().toISOString(),
    blobKey: extra.blobKey ?? keys.blob(digest.sha256),
    producer: meta.producer,
    tags: [...new Set(meta.tags ?? [])],
    properties: meta.properties ?? {},
    ...(meta.package ? { package: meta.package } : {}),
    ...(extra.packed ? { packed: extra.packed } : {}),
  };
}

export async function writeDatumRecord(store: ObjectStore, rec: DatumRecord): Promise<void> {
  await store.put(keys.datum(rec.id), jsonBody(rec), { ifNoneMatch: '*', contentType: 'application/json' });
}

// ---- datum batches ----

/** Records per batch object: the member index lives in an id's last three hex digits. */
export const DATUMS_PER_BATCH = 4096;
const BATCH_INDEX_DIGITS = 3;

/** A fresh batch id: a UUIDv7 whose member-index digits are zero (it is also its first member's id). */
export function newBatchId(): string {
  return batchIdOf(uuidv7());
}

/** The batch a datum id would belong to (an id from `putDatum` maps to a batch that does not exist). */
export function batchIdOf(id: string): string {
  return id.slice(0, -BATCH_INDEX_DIGITS) + '0'.repeat(BATCH_INDEX_DIGITS);
}

/** Member `index` (0 ≤ index < DATUMS_PER_BATCH) of batch `batchId`. */
export function batchMemberId(batchId: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= DATUMS_PER_BATCH) {
    throw new VhfsError('BAD_ARGUMENT', `datum batch ${batchId}: member index ${index} out of range`);
  }
  return batchId.slice(0, -BATCH_INDEX_DIGITS) + index.toString(16).padStart(BATCH_INDEX_DIGITS, '0');
}

export async function writeDatumBatch(store: ObjectStore, batch: DatumBatchRecord): Promise<void> {
  await store.put(keys.datumBatch(batch.batch), jsonBody(batch), { ifNoneMatch: '*', contentType: 'application/json' });
}

/** The batch object `batchId`, checked to hold only its own members; undefined if absent. */
export async function readDatumBatch(store: ObjectStore, batchId: string): Promise<DatumBatchRecord | undefined> {
  const key = keys.datumBatch(batchId);
  const batch = await readJson<DatumBatchRecord>(store, key);
  if (batch === undefined) return undefined;
  const bad = (why: string) => new VhfsError('INTEGRITY', `${store.url}/${key}: not a datum batch record (${why})`);
  if (batch.format !== 'vhfs-datum-batch-1' || batch.batch !== batchId || !Array.isArray(batch.records)) {
    throw bad('format, batch id or records missing');
  }
  for (const r of batch.records) {
    if (typeof r?.id !== 'string' || batchIdOf(r.id) !== batchId || typeof r.sha256 !== 'string' || typeof r.size !== 'number') {
      throw bad(`record ${JSON.stringify(r?.id)} does not belong to it`);
    }
  }
  return batch;
}

export async function writeVersionRecord(store: ObjectStore, rec: VersionRecord): Promise<void> {
  try {
    await store.put(keys.version(rec.kind, rec.collection, rec.version), jsonBody(rec), {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
  } catch (err) {
    if (isVhfsError(err, 'CONFLICT')) {
      throw new VhfsError(
        'CONFLICT',
        `${rec.kind} version ${rec.collection}/${rec.version} already exists; versions are immutable`,
        { cause: err },
      );
    }
    throw err;
  }
}

export interface StoredAlias {
  record: AliasRecord;
  etag: string;
}

export async function readAlias(
  store: ObjectStore,
  kind: AliasKind,
  scope: string,
  name: string,
): Promise<StoredAlias | undefined> {
  const key = keys.alias(kind, scope, name);
  const info = await store.head(key);
  if (!info) return undefined;
  const record = await readJson<AliasRecord>(store, key);
  return record && { record, etag: info.etag };
}

/**
 * Point alias `name` at `target`, appending to its history. Setting the target it already has is a
 * no-op (no history entry). CONFLICT after too many lost races.
 */
export async function casAlias(
  store: ObjectStore,
  kind: AliasKind,
  scope: string,
  name: string,
  target: string,
  now: () => string = () => new Date().toISOString(),
): Promise<StoredAlias> {
  const key = keys.alias(kind, scope, name);
  for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
    const info = await store.head(key);
    const current = info && (await readJson<AliasRecord>(store, key));
    if (info && current && current.target === target) return { record: current, etag: info.etag };
    const at = now();
    const record: AliasRecord = {
      kind,
      scope,
      name,
      target,
      history: [...(current?.history ?? []), { target, at }],
    };
    try {
      const put = await store.put(key, jsonBody(record), info && current ? { ifMatch: info.etag } : { ifNoneMatch: '*' });
      return { record, etag: put.etag };
    } catch (err) {
      if (!isVhfsError(err, 'CONFLICT')) throw err;
    }
    await new Promise((r) => setTimeout(r, Math.min(2 ** attempt, 100) * (0.5 + Math.random())));
  }
  throw new VhfsError(
    'CONFLICT',
    `${store.url}/${key}: gave up setting alias after ${CAS_ATTEMPTS} concurrent updates by others`,
  );
}
