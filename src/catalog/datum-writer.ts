/**
 * Writing many datums as one unit: few store requests, durable when it says so, and nothing of it left
 * behind when the unit fails. `dataset create` uses it; so can anything that records many files at once
 * (job outputs). `Catalog.putDatum` stays the one-datum path and shares the blob code below.
 *
 * Requests per datum. Bytes: one create-if-absent put of the content-addressed blob
 * `blobs/sha256/<hex>`, plus one for its chunk table (`<blob key>.chunks`) when it is larger than one
 * chunk. Blobs up to HEAD_FIRST_BYTES are put without asking first (a dedup hit then costs one refused
 * put — the same round trip a head would); larger ones are headed first so equal content is never sent
 * twice. A datum whose bytes are a member of a package part (`addPacked`) costs no request of its own.
 * Records: 4096 per object (`datums/batches/<batch id>.json`, see store-records.ts), written in the
 * background while the caller carries on, at most RECORD_WRITES_IN_FLIGHT at a time. A 500,000-file
 * packaged version thus costs ~123 record puts instead of 500,000 record puts and 500,000 blob puts.
 *
 * Durability and order. Every put is durable before it resolves (the store's contract). A record is
 * queued only after its bytes are stored, and `finish()` returns only once every queued record is in the
 * store and in this host's SQLite; the caller then publishes what refers to them (a version record: the
 * commit point). A crash at any moment leaves only objects nothing refers to.
 *
 * Failure. `rollback()` removes from SQLite and the store everything that only this writer can refer to:
 * its record objects and the objects it registered with `ownObject` (package parts and their tables,
 * keyed by fresh ids). It never deletes a content-addressed blob or table, even one it created: from the
 * moment it exists, any writer on any host may find it and record a datum on it (dedup), and no check we
 * could make before deleting sees a writer on another host that did so a moment ago. Such blobs stay,
 * unreferenced and harmless, for a garbage collector that can prove them unreferenced (one that lists
 * every record and spares blobs younger than a grace period). Packaged versions write no such blobs.
 */
import { VhfsError, isVhfsError } from '../util/errors.js';
import { ContentHasher, digestBytes, type BodyDigest } from '../util/hash.js';
import { uuidv7 } from '../util/ids.js';
import type { ObjectStore, PutOptions } from '../store/types.js';
import type { CatalogDb } from './db.js';
import {
  batchMemberId,
  datumRecord,
  DATUMS_PER_BATCH,
  keys,
  newBatchId,
  writeDatumBatch,
  writeDatumRecord,
} from './store-records.js';
import { identityAt, readFileOnce, streamFileOnce, type ReadOptions } from './source-files.js';
import type { DatumMeta, DatumRecord, PackedLocation } from './types.js';

/** Blobs larger than this are headed before being sent; smaller ones are put create-if-absent at once. */
export const HEAD_FIRST_BYTES = 1 << 20;
/** Files up to this size are read into memory whole: one read feeds the hash, the chunk table and the upload. */
export const IN_MEMORY_BYTES = 8 << 20;
const RECORD_WRITES_IN_FLIGHT = 8;

export type BlobBody = Uint8Array | (() => AsyncIterable<Uint8Array>);

export class DatumWriter {
  private batchId: string | undefined;
  private batch: DatumRecord[] = [];
  private readonly writes = new Set<Promise<void>>();
  private failure: unknown;
  /** Records in the store (or being written) and, once written, in SQLite. */
  private readonly recorded: DatumRecord[] = [];
  private readonly batchIds: string[] = [];
  /** Keys of objects only this writer refers to, deleted by rollback. */
  private readonly ownedKeys: string[] = [];
  private rolledBack = false;

  constructor(
    readonly store: ObjectStore,
    private readonly db: CatalogDb,
    private readonly validate: (meta: DatumMeta) => void,
  ) {}

  /**
   * Bytes already in memory → a datum with a standalone blob (and chunk table when larger than a chunk).
   * `digest` may be given when it was computed from exactly these bytes (read-pool.ts hashes as it reads),
   * chunk table included.
   */
  async putBytes(bytes: Uint8Array, meta: DatumMeta, digest: BodyDigest = digestBytes(bytes, { chunks: true })): Promise<DatumRecord> {
    this.checkOpen();
    this.validate(meta);
    checkSize(meta, digest);
    await storeContentBlob(this.store, digest, bytes, `datum "${meta.name}"`);
    return this.queue(meta, digest, {});
  }

  /**
   * A local file → a datum with a standalone blob. Up to IN_MEMORY_BYTES the file is read once; a larger
   * one is hashed in one pass and uploaded in a second whose bytes are hashed again and must match
   * (a content-addressed key must be known before the upload starts). Either way a file that changes
   * while it is read fails with INTEGRITY and nothing refers to what was sent.
   */
  async putFile(file: string, meta: DatumMeta, read: Omit<ReadOptions, 'label'> & { label?: string } = {}): Promise<DatumRecord> {
    this.checkOpen();
    this.validate(meta);
    const digest = await storeFileBlob(this.store, file, { ...read, label: read.label ?? file, size: read.size ?? meta.size });
    checkSize(meta, digest);
    return this.queue(meta, digest, {});
  }

  /** A datum whose bytes are already stored as a member of a package part: no request of its own. */
  async addPacked(meta: DatumMeta, digest: { sha256: string; size: number }, packed: PackedLocation): Promise<DatumRecord> {
    this.checkOpen();
    this.validate(meta);
    checkSize(meta, digest);
    return this.queue(meta, digest, { packed });
  }

  /**
   * A datum recorded on its own (`datums/<id>.json`), for bytes the caller stored at `blobKey` and
   * registered with `ownObject` (a package part streamed to its final key). Returns once durable.
   */
  async putRecord(id: string, meta: DatumMeta, digest: { sha256: string; size: number }, blobKey: string): Promise<DatumRecord> {
    this.checkOpen();
    this.validate(meta);
    checkSize(meta, digest);
    const rec = datumRecord(id, meta, digest, { blobKey });
    this.recorded.push(rec);
    this.ownedKeys.push(keys.datum(id));
    await writeDatumRecord(this.store, rec);
    this.db.insertDatums([rec]);
    return rec;
  }

  /** Register an object only this writer's records refer to, so `rollback` deletes it (register before writing it). */
  ownObject(key: string): void {
    this.ownedKeys.push(key);
  }

  /** A fresh datum id for a record the caller will `putRecord` (e.g. to key an object by it first). */
  newSingleId(): string {
    return uuidv7();
  }

  /** Write the last partial batch and wait for every record write; after it, every record is durable and in SQLite. */
  async finish(): Promise<void> {
    this.checkOpen();
    if (this.batch.length > 0) this.flushBatch();
    await Promise.allSettled([...this.writes]);
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Delete what only this writer refers to (see the module comment): SQLite first, so lookups stop
   * finding the datums, then record objects, so no record outlives its bytes, then owned objects.
   * Returns one line per object that could not be deleted (the caller logs them; the rest are gone).
   */
  async rollback(): Promise<string[]> {
    this.rolledBack = true;
    await Promise.allSettled([...this.writes]);
    this.db.deleteDatums(this.recorded);
    for (const id of this.batchIds) this.db.forgetBatch(id);
    const problems: string[] = [];
    const recordKeys = this.batchIds.map((id) => keys.datumBatch(id));
    for (const group of [recordKeys, this.ownedKeys]) {
      const results = await Promise.allSettled(group.map((key) => this.store.delete(key)));
      results.forEach((r, i) => {
        if (r.status === 'rejected') problems.push(`${this.store.url}/${group[i]}: ${(r.reason as Error)?.message ?? String(r.reason)}`);
      });
    }
    return problems;
  }

  private checkOpen(): void {
    if (this.rolledBack) throw new VhfsError('BAD_ARGUMENT', 'datum writer used after rollback');
    if (this.failure !== undefined) throw this.failure;
  }

  private async queue(meta: DatumMeta, digest: { sha256: string; size: number }, extra: { packed?: PackedLocation }): Promise<DatumRecord> {
    this.checkOpen();
    this.batchId ??= newBatchId();
    const rec = datumRecord(batchMemberId(this.batchId, this.batch.length), meta, digest, extra);
    this.batch.push(rec);
    if (this.batch.length === DATUMS_PER_BATCH) this.flushBatch();
    while (this.writes.size >= RECORD_WRITES_IN_FLIGHT) await Promise.race(this.writes);
    this.checkOpen();
    return rec;
  }

  private flushBatch(): void {
    const batchId = this.batchId!;
    const records = this.batch;
    this.batchId = undefined;
    this.batch = [];
    this.batchIds.push(batchId); // before the put: a put whose answer was lost is still rolled back
    this.recorded.push(...records);
    const write = (async () => {
      await writeDatumBatch(this.store, { format: 'vhfs-datum-batch-1', batch: batchId, records });
      this.db.insertDatums(records);
      this.db.markBatchIngested(batchId);
    })();
    const tracked = write.then(
      () => {},
      (err: unknown) => {
        this.failure ??= err;
      },
    ).finally(() => this.writes.delete(tracked));
    this.writes.add(tracked);
  }
}

function checkSize(meta: DatumMeta, digest: { size: number }): void {
  if (meta.size !== undefined && meta.size !== digest.size) {
    throw new VhfsError('INTEGRITY', `datum "${meta.name}": expected ${meta.size} bytes, got ${digest.size}`);
  }
}

/**
 * A local file as a content-addressed blob (rules: `DatumWriter.putFile`); returns its digest. The chunk
 * table is computed from the same read as the hash.
 */
export async function storeFileBlob(store: ObjectStore, file: string, read: ReadOptions): Promise<BodyDigest> {
  const identity = read.identity ?? (await identityAt(file, read));
  const opts: ReadOptions = { ...read, identity, size: read.size ?? Number(identity.size) };
  if (opts.size! <= IN_MEMORY_BYTES) {
    const bytes = await readFileOnce(file, opts);
    const digest = digestBytes(bytes, { chunks: true });
    await storeContentBlob(store, digest, bytes, read.label);
    return digest;
  }
  const hasher = new ContentHasher({ chunks: true });
  for await (const chunk of streamFileOnce(file, opts)) hasher.update(chunk);
  const digest = hasher.finish();
  await storeContentBlob(store, digest, () => streamFileOnce(file, opts), read.label);
  return digest;
}

/**
 * Make sure `blobs/sha256/<hex>` holds the body (and `<key>.chunks` its table, written first so a blob
 * is never visible without it). A streamed body is hashed again on its way out: if it does not match
 * the digest the key came from, the blob is deleted (its content is wrong for its key) and the call
 * fails with INTEGRITY. An existing blob of another size is a damaged store: INTEGRITY.
 */
export async function storeContentBlob(store: ObjectStore, digest: BodyDigest, body: BlobBody, label: string): Promise<void> {
  const key = keys.blob(digest.sha256);
  if (digest.size > HEAD_FIRST_BYTES) {
    const info = await store.head(key);
    if (info) {
      checkExisting(store, key, info.size, digest.size, label);
      if (digest.chunkTable) await putIfAbsent(store, keys.chunks(key), digest.chunkTable, {});
      return;
    }
  }
  if (digest.chunkTable) await putIfAbsent(store, keys.chunks(key), digest.chunkTable, {});
  if (body instanceof Uint8Array) {
    if (!(await putIfAbsent(store, key, body, { sizeHint: digest.size }))) await checkPresent(store, key, digest.size, label);
    return;
  }
  const rehash = new ContentHasher();
  const source = body()[Symbol.asyncIterator]();
  const counted: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        const r = await source.next();
        if (!r.done) rehash.update(r.value);
        return r;
      },
    }),
  };
  let created: boolean;
  try {
    created = await putIfAbsent(store, key, counted, { sizeHint: digest.size });
  } finally {
    await source.return?.(); // a refused or failed upload may not have read to the end: close the file now
  }
  if (!created) return checkPresent(store, key, digest.size, label);
  const sent = rehash.finish();
  if (sent.sha256 !== digest.sha256 || sent.size !== digest.size) {
    await store.delete(key);
    throw new VhfsError('INTEGRITY', `${label}: changed while it was being uploaded (its bytes no longer hash to ${digest.sha256})`);
  }
}

/** Create-if-absent; false when the key already exists (CONFLICT). */
async function putIfAbsent(store: ObjectStore, key: string, body: Uint8Array | AsyncIterable<Uint8Array>, opts: PutOptions): Promise<boolean> {
  try {
    await store.put(key, body, { ...opts, ifNoneMatch: '*' });
    return true;
  } catch (err) {
    if (isVhfsError(err, 'CONFLICT')) return false;
    throw err;
  }
}

async function checkPresent(store: ObjectStore, key: string, size: number, label: string): Promise<void> {
  const info = await store.head(key);
  if (info) checkExisting(store, key, info.size, size, label);
}

function checkExisting(store: ObjectStore, key: string, have: number, want: number, label: string): void {
  if (have !== want) {
    throw new VhfsError('INTEGRITY', `${label}: ${store.url}/${key} has ${have} bytes, expected ${want} (damaged store?)`);
  }
}
