/**
 * The block cache's read shapes (extents for random small files, blocks + readahead in order) and its
 * checks (member CRC-32, chunk tables, whole-blob SHA-256), against an in-memory store whose bytes the
 * test can flip.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { BlockCache, type FileExtent } from '../../src/cache/block-cache.js';
import { FetchQueue, Priority } from '../../src/cache/fetch-queue.js';
import { MemoryTier, STALE_FRESH_MS } from '../../src/cache/memory.js';
import { ChunkHasher, CHUNK_SIZE } from '../../src/util/chunk-hashes.js';
import type { ObjectRef } from '../../src/store/types.js';
import { isVhfsError } from '../../src/util/errors.js';
import { MemoryStore } from '../helpers/memory-store.js';

const BS = 64 * 1024;

/** A "package": members of the given sizes back to back, with their extents and CRCs. */
async function packageOf(sizes: number[], opts: { table?: boolean } = {}) {
  const store = new MemoryStore();
  const members = sizes.map((size) => randomBytes(size));
  const data = Buffer.concat(members);
  await store.put('pkg', data);
  const files: FileExtent[] = [];
  let at = 0;
  for (const m of members) {
    files.push({ start: at, size: m.length, crc32: crc32(m) });
    at += m.length;
  }
  const source: ObjectRef = { key: 'pkg', size: data.length, integrity: { memberCrc32: true } };
  if (opts.table) {
    const h = new ChunkHasher();
    h.update(data);
    const table = h.finish();
    await store.put('pkg.chunks', table);
    source.integrity!.chunkTable = { key: 'pkg.chunks', offset: 0, length: table.length, crc32: crc32(table), covered: data.length };
  }
  store.stats.puts = 0;
  store.stats.bytesWritten = 0;
  return { store, data, members, files, source };
}

const flip = (store: MemoryStore, key: string, at: number) => { store.objects.get(key)!.data[at] ^= 0x40; };

test('random small files are fetched as exactly their own bytes: store bytes equal the bytes read', async (t) => {
  const sizes = Array.from({ length: 64 }, (_, i) => 1000 + ((i * 7919) % 30000));
  const { store, members, files, source } = await packageOf(sizes);
  const cache = new BlockCache({ store, blockSize: BS });
  const order = files.map((_, i) => i).sort((a, b) => ((a * 37) % 64) - ((b * 37) % 64)).filter((_, k) => k % 2 === 0);
  let wanted = 0;
  for (const i of order) {
    const dst = Buffer.alloc(files[i].size);
    t.is(await cache.read(source, files[i].start, files[i].size, dst, files[i]), files[i].size);
    t.true(dst.equals(members[i]), `member ${i}`);
    wanted += files[i].size;
  }
  t.is(store.stats.bytesRead, wanted, 'read amplification 1.0');
  t.is(cache.stats.extentFetches, order.length);
  t.is(cache.stats.verifiedBytes, wanted);
  // A second read of the same member is a memory hit.
  const i = order[3];
  t.is(cache.tryReadSync(source, files[i].start, files[i].size, Buffer.alloc(files[i].size), files[i]), files[i].size);
});

test('small files read in order switch to blocks with readahead: few GETs, no extent per file', async (t) => {
  const { store, members, files, source } = await packageOf(Array.from({ length: 200 }, () => 16 * 1024));
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 1024 * 1024 });
  for (let i = 0; i < files.length; i++) {
    const dst = Buffer.alloc(files[i].size);
    await cache.read(source, files[i].start, files[i].size, dst, files[i]);
    t.true(dst.equals(members[i]));
  }
  t.is(cache.stats.extentFetches, 1, 'only the first file (no history yet) is an extent');
  t.true(cache.stats.readaheadBlocks > 0);
  t.true(store.stats.gets < 20, `${store.stats.gets} GETs for 200 files`);
  // Every byte fetched once, except the first file, fetched as an extent and then again in block 0.
  t.is(store.stats.bytesRead, files[0].size + 200 * 16 * 1024);
  t.is(cache.stats.integrityFailures, 0);
  t.is(cache.stats.verifiedBytes, 200 * 16 * 1024, 'every member delivered whole was checked against its CRC-32');
});

test('a flipped byte in a member is INTEGRITY, never served or cached; the fixed object is then read right', async (t) => {
  const { store, members, files, source } = await packageOf([5000, 7000, 9000]);
  const cache = new BlockCache({ store, blockSize: BS });
  flip(store, 'pkg', files[1].start + 10);
  const dst = Buffer.alloc(7000);
  const err = await t.throwsAsync(cache.read(source, files[1].start, 7000, dst, files[1]));
  t.true(isVhfsError(err, 'INTEGRITY'), String(err));
  t.regex(err!.message, /mem:\/\/test\/pkg: bytes 5000-11999 do not match its CRC-32/);
  t.is(cache.tryReadSync(source, files[1].start, 7000, dst, files[1]), -1, 'nothing cached');
  flip(store, 'pkg', files[1].start + 10);
  t.is(await cache.read(source, files[1].start, 7000, dst, files[1]), 7000);
  t.true(dst.equals(members[1]));
});

test('blocks read in order without a chunk table are checked per whole member before delivery', async (t) => {
  const { store, files, source } = await packageOf(Array.from({ length: 40 }, () => 12 * 1024));
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 4 * BS });
  flip(store, 'pkg', files[20].start + 100);
  for (let i = 0; i < 20; i++) await cache.read(source, files[i].start, files[i].size, Buffer.alloc(files[i].size), files[i]);
  const err = await t.throwsAsync(cache.read(source, files[20].start, files[20].size, Buffer.alloc(files[20].size), files[20]));
  t.true(isVhfsError(err, 'INTEGRITY'), String(err));
  // Twice: the blocks in memory (read ahead) fail the check, are dropped, are fetched again and fail again.
  t.is(cache.stats.integrityFailures, 2);
});

test('a chunk table checks every fetched block: a flipped byte fails its block only', async (t) => {
  const { store, data, source } = await packageOf([3 * CHUNK_SIZE + 5000, 2 * CHUNK_SIZE], { table: true });
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  flip(store, 'pkg', 2 * CHUNK_SIZE + 7);
  const err = await t.throwsAsync(cache.read(source, 2 * CHUNK_SIZE, 100, Buffer.alloc(100)));
  t.true(isVhfsError(err, 'INTEGRITY'), String(err));
  t.regex(err!.message, new RegExp(`bytes ${2 * CHUNK_SIZE}-${3 * CHUNK_SIZE - 1} do not match its chunk table`));
  const dst = Buffer.alloc(CHUNK_SIZE);
  t.is(await cache.read(source, 4 * CHUNK_SIZE, CHUNK_SIZE, dst), CHUNK_SIZE);
  t.true(dst.equals(data.subarray(4 * CHUNK_SIZE, 5 * CHUNK_SIZE)));
  t.is(cache.stats.verifiedBytes, CHUNK_SIZE, 'the one good block (the bad one is never counted as verified)');
  t.is(store.stats.gets, 3, 'the table once, the bad block, the good block');
});

test('a block size that is not a multiple of the chunk size is refused with the fix named', async (t) => {
  const { store, source } = await packageOf([3 * CHUNK_SIZE], { table: true });
  const cache = new BlockCache({ store, blockSize: 16 * 1024, readaheadBytes: 0 });
  await t.throwsAsync(cache.read(source, 0, 10, Buffer.alloc(10)), { message: /use --block-size 65536 or more/ });
});

test('a whole blob is checked against its SHA-256', async (t) => {
  const store = new MemoryStore();
  const blob = randomBytes(20_000);
  await store.put('blob', blob);
  const source: ObjectRef = { key: 'blob', size: blob.length, integrity: { sha256: createHash('sha256').update(blob).digest('hex') } };
  const file = { start: 0, size: blob.length };
  const cache = new BlockCache({ store, blockSize: BS });
  const dst = Buffer.alloc(blob.length);
  t.is(await cache.read(source, 0, blob.length, dst, file), blob.length);
  t.true(dst.equals(blob));
  const other = new BlockCache({ store, blockSize: BS });
  flip(store, 'blob', 19_999);
  await t.throwsAsync(other.read(source, 0, blob.length, dst, file), { message: /do not match its checksum/ });
});

test('memory: delivered data is spent and evicted before data not yet read', (t) => {
  const m = new MemoryTier(300);
  m.set('a', Buffer.alloc(100));
  m.set('b', Buffer.alloc(100));
  m.deliver('a', 100);
  m.set('c', Buffer.alloc(100));
  m.set('d', Buffer.alloc(100));
  t.false(m.has('a'), 'the spent entry went first, though b is older');
  t.true(m.has('b') && m.has('c') && m.has('d'));
  t.is(m.pendingBytes, 300);
  t.is(m.stats().evictions, 1);
});

test('memory: fresh data untouched for STALE_FRESH_MS is spent, so it neither fills the budget nor counts as pending', (t) => {
  let now = 1_000_000;
  const m = new MemoryTier(1000, () => now);
  m.set('ahead', Buffer.alloc(100)); // read ahead, never read
  m.set('half', Buffer.alloc(100)); // a reader took part of it, then more later
  m.deliver('half', 40);
  now += STALE_FRESH_MS - 1;
  m.deliver('half', 10);
  now += 2;
  m.set('new', Buffer.alloc(100));
  t.is(m.pendingBytes, 200, 'only the untouched entry stopped counting as pending');
  t.true(m.has('ahead'), 'still served while there is room');
  now += STALE_FRESH_MS;
  t.truthy(m.get('new'), 'a hit touches it');
  m.set('more', Buffer.alloc(100));
  t.is(m.pendingBytes, 200, 'new and more are fresh; half went stale');
  // Spent data is held to a quarter of the budget: the oldest stale entry makes room.
  m.set('last', Buffer.alloc(100));
  m.deliver('last', 100);
  t.false(m.has('ahead'));
  t.true(m.has('half') && m.has('last') && m.has('new') && m.has('more'));
});

test('the fetch queue starts a reader\'s request before queued readahead and background work', async (t) => {
  const q = new FetchQueue(1);
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const first = q.run(Priority.Readahead, async () => { await gate; order.push('running'); });
  const bg = q.run(Priority.Background, async () => { order.push('background'); });
  const ra = q.run(Priority.Readahead, async () => { order.push('readahead'); });
  const reader = q.run(Priority.Reader, async () => { order.push('reader'); });
  const promoted = q.run(Priority.Background, async () => { order.push('promoted'); });
  promoted.promote();
  t.is(q.queued, 4);
  release();
  await Promise.all([first.promise, bg.promise, ra.promise, reader.promise, promoted.promise]);
  t.deepEqual(order, ['running', 'reader', 'promoted', 'readahead', 'background']);
});

test('without a chunk table, a member read in parts is checked whole before its first part is served', async (t) => {
  const { store, members, files, source } = await packageOf([4000, 30_000, 5000]);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  // Read the first member, so the next one counts as sequential (block path, not an extent).
  await cache.read(source, files[0].start, files[0].size, Buffer.alloc(files[0].size), files[0]);
  flip(store, 'pkg', files[1].start + 29_000);
  cache.clearMemory();
  const head = Buffer.alloc(100);
  await t.throwsAsync(cache.read(source, files[1].start, 100, head, files[1]), { message: /do not match its CRC-32/ });
  flip(store, 'pkg', files[1].start + 29_000);
  t.is(await cache.read(source, files[1].start, 100, head, files[1]), 100);
  t.true(head.equals(members[1].subarray(0, 100)));
  t.is(cache.stats.verifiedBytes, files[0].size + files[1].size);
});
