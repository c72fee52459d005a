/**
 * Checking a package's bytes against what its writer recorded (docs/vhpkgzip.md, "Verifying").
 *
 * Two records exist. The central directory's CRC-32 of every member, in every zip: it checks a member
 * only when all of its bytes are at hand. The chunk hash table vhfs appends to each part
 * (src/util/chunk-hashes.ts): a CRC-32 of every 64 KiB chunk of the part before the table, so any
 * chunk-aligned range can be checked on its own, a block at a time, before a reader sees it.
 *
 * The table is loaded lazily, once per listing (`loadChunkTable`), and checked before use: its bytes
 * against the CRC-32 the central directory holds for its member, its header parsed, and the length it
 * covers against where its member starts (a package changed after writing fails there, not block by
 * block). Verification reads chunk-aligned windows of 4 MiB, checks each against the table when there
 * is one, and feeds the members' bytes to their CRC-32s, so each byte is read once: `verifyPackage`
 * walks the whole part in order; `verifyMember` reads the chunks one member's data touches.
 */
import { ChunkTable, type ChunkMismatch } from '../util/chunk-hashes.js';
import { VhfsError } from '../util/errors.js';
import { crc32 } from './crc32.js';
import { quoteName } from './entry-names.js';
import type { ChunkTableLocation, PackageListing } from './reader.js';
import type { RandomAccessSource } from './source.js';

const VERIFY_WINDOW = 4 << 20;

/** Read the table at `location` and check it (`checkChunkTable`). */
export async function readChunkTable(
  source: RandomAccessSource,
  location: ChunkTableLocation,
  name: string,
): Promise<ChunkTable> {
  return checkChunkTable(await source.read(location.offset, location.length), location, name);
}

/**
 * Check the table's bytes, however they were fetched: their CRC-32 (INTEGRITY on mismatch), their
 * format (BAD_PACKAGE), and that the table covers exactly the bytes before its member (BAD_PACKAGE).
 * `name` (the package's name or URI) prefixes every error.
 */
export function checkChunkTable(buf: Buffer, location: ChunkTableLocation, name: string): ChunkTable {
  return ChunkTable.parseRecorded(buf, location, name);
}

const loaded = new WeakMap<PackageListing, Promise<ChunkTable | undefined>>();

/**
 * The listing's chunk hash table, read and checked on first use and kept for the listing's lifetime;
 * undefined for a package without one (written by another tool). A failed load is not kept, so a
 * transient store error is retried by the next caller.
 */
export function loadChunkTable(source: RandomAccessSource, listing: PackageListing): Promise<ChunkTable | undefined> {
  const location = listing.chunkTable;
  if (location === undefined) return Promise.resolve(undefined);
  let table = loaded.get(listing);
  if (table === undefined) {
    table = readChunkTable(source, location, listing.name);
    loaded.set(listing, table);
    table.catch(() => loaded.delete(listing));
  }
  return table;
}

/**
 * Read member `index`'s data and check it: against the chunk hash table when the package has one (the
 * chunks its data touches, so a corrupt neighbour in a shared chunk fails it too), and against its
 * CRC-32 always. INTEGRITY naming the package, the entry and the range on a mismatch.
 */
export async function verifyMember(source: RandomAccessSource, listing: PackageListing, index: number): Promise<void> {
  if (!Number.isInteger(index) || index < 0 || index >= listing.count) {
    throw new VhfsError('BAD_ARGUMENT', `${listing.name}: no member #${index} (the package has ${listing.count})`);
  }
  const table = await loadChunkTable(source, listing);
  let start = listing.dataOffsets[index];
  let end = start + listing.sizes[index];
  if (table !== undefined && end > start) {
    start -= start % table.chunkSize;
    end = Math.min(end + ((table.chunkSize - (end % table.chunkSize)) % table.chunkSize), table.covered);
  }
  await verifySpan(source, listing, table, [index], start, end);
}

/**
 * Check every member of the package in one ordered pass; with a chunk hash table, every byte it covers
 * (local headers included). `onMember(i)` is called as member i passes, for progress.
 */
export async function verifyPackage(
  source: RandomAccessSource,
  listing: PackageListing,
  onMember?: (index: number) => void,
): Promise<void> {
  const table = await loadChunkTable(source, listing);
  const order = byDataOffset(listing);
  let start = 0;
  let end = 0;
  if (table !== undefined) end = table.covered;
  else if (order.length > 0) {
    start = listing.dataOffsets[order[0]];
    for (const m of order) end = Math.max(end, listing.dataOffsets[m] + listing.sizes[m]);
  }
  await verifySpan(source, listing, table, order, start, end, onMember);
}

/**
 * Read `[start, end)` in windows, check each against `table` (if any), and CRC the data of `members`
 * (sorted by data offset, not overlapping, every byte of their data inside the span).
 */
async function verifySpan(
  source: RandomAccessSource,
  listing: PackageListing,
  table: ChunkTable | undefined,
  members: ArrayLike<number>,
  start: number,
  end: number,
  onMember?: (index: number) => void,
): Promise<void> {
  const { dataOffsets, sizes } = listing;
  // Both are powers of two, so the larger is a multiple of the smaller: every window stays chunk-aligned.
  const window = Math.max(VERIFY_WINDOW, table?.chunkSize ?? 0);
  let j = 0;
  let crc = 0;
  const finish = (m: number): void => {
    if (crc !== listing.crc32s[m]) {
      const what = `CRC-32 ${hex(crc)}, central directory says ${hex(listing.crc32s[m])}`;
      throw new VhfsError('INTEGRITY', `${listing.name}: entry ${quoteName(listing.paths[m])}: ${what}`);
    }
    crc = 0;
    j++;
    onMember?.(m);
  };
  for (let pos = start; pos < end; pos += window) {
    const buf = await source.read(pos, Math.min(window, end - pos));
    const bufEnd = pos + buf.length;
    const mismatch = table?.verify(pos, buf);
    if (mismatch !== undefined) throw chunkMismatch(listing, members, j, mismatch);
    while (j < members.length) {
      const m = members[j];
      const s = dataOffsets[m];
      const e = s + sizes[m];
      if (s > bufEnd || (s === bufEnd && e > s)) break;
      crc = crc32(buf.subarray(Math.max(s, pos) - pos, Math.min(e, bufEnd) - pos), crc);
      if (e > bufEnd) break;
      finish(m);
    }
  }
  while (j < members.length) finish(members[j]); // empty members at or past the end of the span
}

function chunkMismatch(listing: PackageListing, members: ArrayLike<number>, from: number, bad: ChunkMismatch): VhfsError {
  let holder = '';
  for (let k = from; k < members.length && listing.dataOffsets[members[k]] < bad.end; k++) {
    const m = members[k];
    if (listing.dataOffsets[m] + listing.sizes[m] > bad.start) {
      holder = `, holding data of entry ${quoteName(listing.paths[m])}`;
      break;
    }
  }
  return new VhfsError(
    'INTEGRITY',
    `${listing.name}: bytes [${bad.start}, ${bad.end}) (chunk ${bad.chunk}${holder}) do not match the package's chunk hash table`,
  );
}

/** Member indexes in data order (the listing's own order for every package vhfs writes). */
function byDataOffset(listing: PackageListing): Uint32Array {
  const { dataOffsets, count } = listing;
  const order = new Uint32Array(count);
  let sorted = true;
  for (let i = 0; i < count; i++) {
    order[i] = i;
    if (i > 0 && dataOffsets[i] < dataOffsets[i - 1]) sorted = false;
  }
  if (!sorted) order.sort((a, b) => dataOffsets[a] - dataOffsets[b]);
  return order;
}

function hex(v: number): string {
  return v.toString(16).padStart(8, '0');
}
