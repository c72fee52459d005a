import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BlockCache } from '../../src/cache/block-cache.js';
import { LocalBlockDisk } from '../../src/cache/disk-blocks.js';
import { MemoryStore } from '../helpers/memory-store.js';
import { isVhfsError } from '../../src/util/errors.js';

const BS = 4096;

async function setup(size = BS * 10 + 123) {
  const store = new MemoryStore();
  const data = randomBytes(size);
  await store.put('obj', data);
  store.stats.puts = 0;
  return { store, data, source: { key: 'obj', size } };
}

test('reads at every alignment return the right bytes, and repeats are memory hits', async (t) => {
  const { store, data, source } = await setup();
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  for (const [off, len] of [[0, 10], [BS - 5, 10], [BS * 3, BS * 2], [BS * 10, 500], [source.size - 3, 100], [17, BS * 9]]) {
    const dst = Buffer.alloc(len);
    const n = await cache.read(source, off, len, dst);
    const want = data.subarray(off, Math.min(off + len, source.size));
    t.is(n, want.length);
    t.true(dst.subarray(0, n).equals(want), `range ${off}+${len}`);
  }
  const gets = store.stats.gets;
  const dst = Buffer.alloc(BS * 2);
  t.is(cache.tryReadSync(source, BS * 3, BS * 2, dst), BS * 2);
  t.true(dst.equals(data.subarray(BS * 3, BS * 5)));
  t.is(store.stats.gets, gets, 'no store access for cached blocks');
  t.is(cache.tryReadSync(source, source.size, 10, dst), 0, 'read at EOF is empty');
});

test('concurrent readers of one missing block cause one fetch', async (t) => {
  const { store, data, source } = await setup();
  store.delayMs = 30;
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  const bufs = Array.from({ length: 20 }, () => Buffer.alloc(100));
  const results = await Promise.all(bufs.map((b, i) => cache.read(source, BS * 2 + i * 10, 100, b)));
  t.deepEqual(results, Array(20).fill(100));
  bufs.forEach((b, i) => t.true(b.equals(data.subarray(BS * 2 + i * 10, BS * 2 + i * 10 + 100))));
  t.is(store.stats.gets, 1);
  t.true(cache.stats.waits >= 19);
});

test('missing contiguous blocks are fetched with one ranged GET', async (t) => {
  const { store, source } = await setup();
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  await cache.read(source, 0, BS * 8, Buffer.alloc(BS * 8));
  t.deepEqual(store.ranges, [['obj', 0, BS * 8]]);
});

test('sequential reads trigger readahead, random reads do not', async (t) => {
  const { store, source } = await setup(BS * 64);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 8 * BS });
  const dst = Buffer.alloc(BS);
  for (let b = 0; b < 32; b++) await cache.read(source, b * BS, BS, dst);
  t.true(cache.stats.readaheadBlocks > 0);
  t.true(store.stats.gets < 16, `sequential pass used ${store.stats.gets} GETs for 32 blocks`);

  const { store: s2, source: src2 } = await setup(BS * 64);
  const c2 = new BlockCache({ store: s2, blockSize: BS, readaheadBytes: 8 * BS });
  for (const b of [40, 3, 22, 9, 60, 31]) await c2.read(src2, b * BS, BS, dst);
  t.is(c2.stats.readaheadBlocks, 0);
  t.is(s2.stats.gets, 6);
});

test('a store failure rejects the read with the store error and a retry succeeds', async (t) => {
  const { store, data, source } = await setup();
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  store.failNext = 1;
  const err = await t.throwsAsync(cache.read(source, 0, 10, Buffer.alloc(10)));
  t.true(isVhfsError(err, 'STORE'));
  const dst = Buffer.alloc(10);
  t.is(await cache.read(source, 0, 10, dst), 10);
  t.true(dst.equals(data.subarray(0, 10)));
});

test('a slow store hits the deadline with a TIMEOUT error naming the object and range', async (t) => {
  const { store, source } = await setup();
  store.delayMs = 2000;
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, fetchTimeoutMs: 100 });
  const err = await t.throwsAsync(cache.read(source, BS, 10, Buffer.alloc(10)));
  t.true(isVhfsError(err, 'TIMEOUT'), String(err));
  t.regex(err!.message, /mem:\/\/test\/obj: no answer for bytes 4096-4105 within 100 ms/);
});

test('the disk tier serves blocks to a new cache without touching the store', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-blocks-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const { store, data, source } = await setup();
  const first = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: new LocalBlockDisk(dir) });
  await first.read(source, 0, source.size, Buffer.alloc(source.size));
  await new Promise((r) => setTimeout(r, 100)); // disk writes are fire-and-forget
  const gets = store.stats.gets;
  const second = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: new LocalBlockDisk(dir) });
  const dst = Buffer.alloc(source.size);
  t.is(await second.read(source, 0, source.size, dst), source.size);
  t.true(dst.equals(data));
  t.is(store.stats.gets, gets);
  t.is(second.stats.diskHits, 11);
});

test('memory stays within its budget', async (t) => {
  const { store, source } = await setup(BS * 64);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, memoryBytes: BS * 8 });
  for (let b = 0; b < 64; b++) await cache.read(source, b * BS, BS, Buffer.alloc(BS));
  t.true(cache.memoryBytes <= BS * 8);
  t.throws(() => new BlockCache({ store, blockSize: 5000 }), { message: /power of two/ });
});
