/**
 * Background filling: a remote source read at random is fetched whole into the disk tier at the lowest
 * priority, after which readers find their files there. Against an in-memory store (a remote store to the
 * cache: its URL is not file:) and the local disk tier.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { BlockCache, type FileExtent } from '../../src/cache/block-cache.js';
import { LocalBlockDisk } from '../../src/cache/disk-blocks.js';
import type { ObjectRef } from '../../src/store/types.js';
import { MemoryStore } from '../helpers/memory-store.js';
import { waitFor } from '../fuse/helpers.js';

const BS = 64 * 1024;

async function setup(t: import('ava').ExecutionContext, members: number, size: number) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-fill-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const store = new MemoryStore();
  const datas = Array.from({ length: members }, () => randomBytes(size));
  const data = Buffer.concat(datas);
  await store.put('pkg', data);
  const files: FileExtent[] = datas.map((d, i) => ({ start: i * size, size, crc32: crc32(d) }));
  const source: ObjectRef = { key: 'pkg', size: data.length, integrity: { memberCrc32: true } };
  return { dir, store, datas, data, files, source };
}

test('random reads of a remote package start a background fill; afterwards reads come from disk, not the store', async (t) => {
  const { dir, store, datas, files, source } = await setup(t, 400, 10_000);
  const cache = new BlockCache({ store, blockSize: BS, disk: new LocalBlockDisk(dir), readaheadBytes: 0, runBytes: 4 * BS });
  t.teardown(() => cache.close());
  // A shuffled walk: every 7th member, far apart, so no read counts as sequential.
  const order = Array.from({ length: 400 }, (_, i) => (i * 157) % 400);
  for (const i of order.slice(0, 20)) {
    const dst = Buffer.alloc(10_000);
    await cache.read(source, files[i].start, 10_000, dst, files[i]);
    t.true(dst.equals(datas[i]));
  }
  const blocks = Math.ceil(source.size / BS);
  const onDisk = async () => (await fs.readdir(path.join(dir, 'blocks'), { recursive: true }).catch(() => [] as string[])).filter((n) => /\/\d+$/.test(n)).length;
  await waitFor(async () => (await onDisk()) === blocks, 20_000, 'the fill to reach every block');
  t.is(cache.stats.fillBlocks, blocks, 'the fill fetched every block once');
  cache.clearMemory();
  const gets = store.stats.gets;
  for (const i of order.slice(20)) {
    const dst = Buffer.alloc(10_000);
    await cache.read(source, files[i].start, 10_000, dst, files[i]);
    t.true(dst.equals(datas[i]), `member ${i}`);
  }
  t.is(store.stats.gets, gets, 'every later read came from the disk tier');
  t.true(store.stats.bytesRead <= source.size * 1.2, `store bytes ${store.stats.bytesRead} for a ${source.size}-byte package`);
});

test('no background fill without a disk tier: each random read fetches only its file', async (t) => {
  const { store, files, source } = await setup(t, 100, 5000);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0 });
  for (let k = 0; k < 60; k++) {
    const i = (k * 37) % 100;
    await cache.read(source, files[i].start, 5000, Buffer.alloc(5000), files[i]);
  }
  t.is(cache.stats.fillBlocks, 0);
  t.is(store.stats.bytesRead, 60 * 5000);
});
