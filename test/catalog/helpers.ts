/** Helpers for the catalog tests: what a committed version refers to in the store, and what the store holds. */
import { batchIdOf, keys } from '../../src/catalog/store-records.js';
import type { DatumRecord, VersionRecord } from '../../src/catalog/types.js';
import type { ObjectStore } from '../../src/store/types.js';
import { CHUNK_SIZE } from '../../src/util/chunk-hashes.js';

export async function allKeys(store: ObjectStore): Promise<string[]> {
  return (await store.list('')).objects.map((o) => o.key);
}

/**
 * Every object a committed version refers to, found through the store's own records: the version record,
 * each datum's record object (its own or its batch), and the bytes of the datums not stored inside a
 * package: package parts, and file blobs with their chunk tables (a part carries its own).
 */
export async function referencedKeys(store: ObjectStore, v: VersionRecord): Promise<string[]> {
  const out = new Set<string>([keys.version(v.kind, v.collection, v.version)]);
  const recordOf = async (id: string): Promise<DatumRecord> => {
    const single = keys.datum(id);
    if (await store.head(single)) {
      out.add(single);
      return JSON.parse((await store.get(single)).toString()) as DatumRecord;
    }
    const batch = keys.datumBatch(batchIdOf(id));
    out.add(batch);
    const records = (JSON.parse((await store.get(batch)).toString()) as { records: DatumRecord[] }).records;
    return records.find((r) => r.id === id)!;
  };
  for (const id of [...v.packages.map((p) => p.datumId), ...v.files.map((f) => f.datumId)]) {
    const d = await recordOf(id);
    if (d.packed) continue;
    out.add(d.blobKey);
    if (d.size > CHUNK_SIZE && !d.package) out.add(keys.chunks(d.blobKey));
  }
  return [...out].sort();
}
