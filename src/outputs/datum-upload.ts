/**
 * Uploading one output file as a datum whose id was chosen before the upload started.
 *
 * Why not `Catalog.putDatum`: it picks the datum id itself, after the upload, so a process killed between
 * "datum record written" and "journal says uploaded" would leave the next attempt no way to tell whether
 * the datum exists, short of searching the store; retrying would make a second datum. Here the id comes
 * from the journal, the record is written create-if-absent under it, and an attempt first asks whether
 * that record already exists: any number of attempts make exactly one datum. The record has the same
 * shape and store key as the catalog's own (`writeDatumRecord`), and it is indexed in the catalog's
 * SQLite like any other datum. (The catalog could take an optional id in `DatumMeta` and make this file
 * a one-liner; see docs/OUTPUTS.md.)
 *
 * Blobs are content-addressed and written create-if-absent, so re-uploading a blob is harmless. Small
 * files are read once (hashed and sent from the same buffer); a large file is hashed, then streamed with
 * its hash computed again on the way, so bytes that changed underneath are caught (INTEGRITY) instead of
 * stored under the wrong address.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Catalog } from '../catalog/catalog.js';
import { datumRecord, keys, writeDatumRecord } from '../catalog/store-records.js';
import type { DatumRecord, Producer } from '../catalog/types.js';
import type { ObjectStore } from '../store/types.js';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { HashingTransform, readBufferSize, SMALL_FILE_BYTES, type ContentDigest } from '../util/hash.js';

export interface OutputDatumMeta {
  name: string;
  producer: Producer;
  tags: string[];
  properties: Record<string, unknown>;
}

/** The datum `id` if it exists (ingested into the catalog's SQLite), else undefined. */
export async function existingDatum(catalog: Catalog, id: string): Promise<DatumRecord | undefined> {
  try {
    return await catalog.getDatum(id);
  } catch (err) {
    if (isVhfsError(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
}

/**
 * Make `file` the datum `id`. `mayExist`: an earlier attempt may have written it (a retry, a recovery);
 * then the record is looked up first. `known`: the file's digest if it is already known to be current
 * (an eager upload of the same content), which skips hashing.
 */
export async function putOutputDatum(
  catalog: Catalog,
  id: string,
  file: string,
  meta: OutputDatumMeta,
  opts: { mayExist?: boolean; known?: ContentDigest } = {},
): Promise<DatumRecord> {
  if (opts.mayExist) {
    const existing = await existingDatum(catalog, id);
    if (existing) return existing;
  }
  const digest = await uploadBlobFile(catalog.store, file, meta.name, opts.known);
  const rec = datumRecord(id, meta, digest);

  try {
    await writeDatumRecord(catalog.store, rec);
  } catch (err) {
    // Another process recovering the same run got there first: its record is the datum.
    if (isVhfsError(err, 'CONFLICT')) return catalog.getDatum(id);
    throw err;
  }
  catalog.db.insertDatums([rec]);
  return rec;
}

/** Put the bytes of `file` at `blobs/sha256/<hex>` unless they are there; returns their digest. */
export async function uploadBlobFile(store: ObjectStore, file: string, label: string, known?: ContentDigest): Promise<ContentDigest> {
  let size: number;
  try {
    size = (await fs.stat(file)).size;
  } catch (err) {
    throw new VhfsError('NOT_FOUND', `output "${label}": cannot read ${file} (${(err as Error).message})`, { cause: err });
  }
  // Known and already stored (an eager upload of exactly this content): nothing to read.
  if (known && known.size === size && (await blobPresent(store, known, label))) return known;
  if (size <= SMALL_FILE_BYTES) {
    const data = await fs.readFile(file);
    const digest: ContentDigest = { sha256: createHash('sha256').update(data).digest('hex'), md5: '', size: data.length };
    if (!(await blobPresent(store, digest, label))) await putBlob(store, digest, data);
    return digest;
  }
  const digest = await sha256OfFile(file, size);
  if (await blobPresent(store, digest, label)) return digest;
  const rehash = new HashingTransform({ md5: false });
  const source = createReadStream(file, { highWaterMark: readBufferSize(size) });
  source.on('error', (err) => rehash.destroy(err));
  let created: boolean;
  try {
    created = await putBlob(store, digest, source.pipe(rehash));
  } finally {
    source.destroy();
  }
  if (rehash.digest().sha256 !== digest.sha256) {
    if (created) await store.delete(keys.blob(digest.sha256));
    throw new VhfsError('INTEGRITY', `output "${label}": ${file} changed while it was being uploaded`);
  }
  return digest;
}

/**
 * The content address of a large file. Not `hashFile`: it also computes an MD5, which nothing here needs
 * and which is the slower of the two (measured on 1 GiB: 2.0 s for SHA-256 alone, 5-6 s for both).
 */
async function sha256OfFile(file: string, size: number): Promise<ContentDigest> {
  const hasher = new HashingTransform({ md5: false });
  await pipeline(createReadStream(file, { highWaterMark: readBufferSize(size) }), hasher, async (chunks: AsyncIterable<Buffer>) => {
    for await (const _ of chunks); // the hasher does the work
  });
  return hasher.digest();
}

async function blobPresent(store: ObjectStore, digest: ContentDigest, label: string): Promise<boolean> {
  const info = await store.head(keys.blob(digest.sha256));
  if (info && info.size !== digest.size) {
    throw new VhfsError('INTEGRITY', `output "${label}": ${store.url}/${keys.blob(digest.sha256)} has ${info.size} bytes, expected ${digest.size}`);
  }
  return info !== undefined;
}

/** Create-if-absent; false when the blob was already there (dedup). */
async function putBlob(store: ObjectStore, digest: ContentDigest, body: Uint8Array | Readable): Promise<boolean> {
  try {
    await store.put(keys.blob(digest.sha256), body, { ifNoneMatch: '*', sizeHint: digest.size });
    return true;
  } catch (err) {
    if (isVhfsError(err, 'CONFLICT')) return false;
    throw err;
  }
}
