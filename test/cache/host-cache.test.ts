/**
 * The host cache (src/cache/host-cache.ts) under the block cache: blocks kept on disk and read back checked,
 * the sparse-file layout a native reader relies on, the quota with whole-object LRU eviction and holds,
 * single flight within a process and between real processes, takeover of a killed process's leases, prefetch
 * (`warm`), prune and verify, and a full disk. Cross-process cases run test/cache/host-cache-worker.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs, readFileSync, readlinkSync, statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BlockCache } from '../../src/cache/block-cache.js';
import { HostCache, resolveQuota } from '../../src/cache/host-cache.js';
import { parseCacheSize } from '../../src/config/options.js';
import { isVhfsError } from '../../src/util/errors.js';
import { openStore } from '../../src/store/index.js';
import { FaultyStore } from '../../src/store/faulty.js';
import type { ObjectRef } from '../../src/store/types.js';
import { MemoryStore } from '../helpers/memory-store.js';
import { ChunkHasher } from '../../src/util/chunk-hashes.js';
import { crc32 } from 'node:zlib';
import type { WorkerJob } from './host-cache-worker.js';

const BS = 64 * 1024;
const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'host-cache-worker.js');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A temp dir (on tmpfs when there is one: its allocation is exact, which the quota checks compare with). */
async function tempDir(t: ExecutionContext, prefix = 'vhfs-hostcache-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), prefix));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function storeWith(objects: Record<string, number>): Promise<{ store: MemoryStore; data: Map<string, Buffer>; ref: (key: string) => ObjectRef }> {
  const store = new MemoryStore();
  const data = new Map<string, Buffer>();
  for (const [key, size] of Object.entries(objects)) {
    const bytes = randomBytes(size);
    data.set(key, bytes);
    await store.put(key, bytes);
  }
  return { store, data, ref: (key) => ({ key, size: data.get(key)!.length }) };
}

function open(t: ExecutionContext, dir: string, opts: Partial<ConstructorParameters<typeof HostCache>[0]> = {}): HostCache {
  const disk = new HostCache({ dir, quota: { bytes: 1 << 30 }, ...opts });
  t.teardown(() => disk.close());
  return disk;
}

async function readAll(cache: BlockCache, source: ObjectRef): Promise<Buffer> {
  const dst = Buffer.alloc(source.size);
  t_is(await cache.read(source, 0, source.size, dst), source.size);
  return dst;
}
function t_is(a: number, b: number): void {
  if (a !== b) throw new Error(`read ${a} bytes, expected ${b}`);
}

/** Bytes the files under `dir` really take (allocated blocks), as `du` counts them. */
async function allocated(dir: string): Promise<number> {
  let bytes = 0;
  for (const name of await fs.readdir(dir, { recursive: true })) {
    const st = await fs.lstat(path.join(dir, name)).catch(() => undefined);
    if (st?.isFile()) bytes += st.blocks * 512;
  }
  return bytes;
}

function record(dir: string): Database.Database {
  return new Database(path.join(dir, 'host-cache.db'), { readonly: true });
}

/** Run worker processes; `go` releases them together; resolves with each one's JSON line (or exit). */
function startWorker(job: WorkerJob): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> } {
  const child = spawn(process.execPath, [WORKER, JSON.stringify(job)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, out, err }));
  });
  return { child, done };
}

// ------------------------------------------------------------------------------------------------ tests

test('blocks kept by one process are served to the next from disk, at their own offsets of one sparse file per object', async (t) => {
  const dir = await tempDir(t);
  const { store, data, ref } = await storeWith({ obj: BS * 5 + 1000 });
  const first = open(t, dir);
  await readAll(new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: first }), ref('obj'));
  await first.close();

  // What a native reader would do: the object's row, its present blocks, pread at block × block size.
  const db = record(dir);
  const object = db.prepare('SELECT id, source, size, block_size AS blockSize FROM objects').get() as { id: number; source: string; size: number; blockSize: number };
  const blocks = db.prepare('SELECT block, length, state FROM blocks WHERE object = ? ORDER BY block').all(object.id) as Array<{ block: number; length: number; state: number }>;
  db.close();
  t.deepEqual(object, { id: object.id, source: 'mem://test/obj', size: BS * 5 + 1000, blockSize: BS });
  t.deepEqual(blocks.map((b) => [b.block, b.length, b.state]), [0, 1, 2, 3, 4, 5].map((b) => [b, b === 5 ? 1000 : BS, 2]));
  const file = await fs.readFile(path.join(dir, 'objects', String(object.id)));
  t.true(file.equals(data.get('obj')!), 'the sparse file holds the object byte for byte');

  const gets = store.stats.gets;
  const second = open(t, dir);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: second });
  t.true((await readAll(cache, ref('obj'))).equals(data.get('obj')!));
  t.is(store.stats.gets, gets, 'no store read');
  t.is(cache.stats.diskHits, 6);
  const counters = second.counters();
  t.is(counters.diskBlocks, 6);
  t.is(counters.diskBytes, BS * 5 + 1000);
  t.is(counters.storeBytes, BS * 5 + 1000, 'the first process\'s counters were written to the record when it closed');
  t.is(counters.diskBlocks + counters.storeBlocks, 12);
  t.is(counters.used, BS * 5 + 4096, 'space is reserved in 4 KiB units: the short last block takes one');
});

test('a block damaged on disk is dropped and fetched again, never served', async (t) => {
  const dir = await tempDir(t);
  const { store, data, ref } = await storeWith({ obj: BS * 4 });
  const first = open(t, dir);
  await readAll(new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: first }), ref('obj'));
  await first.close();
  const file = path.join(dir, 'objects', '1');
  const bytes = await fs.readFile(file);
  bytes[2 * BS + 17] ^= 0x20;
  await fs.writeFile(file, bytes);

  const warned: string[] = [];
  const disk = open(t, dir, { warn: (l) => warned.push(l) });
  store.ranges = [];
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  t.true((await readAll(cache, ref('obj'))).equals(data.get('obj')!));
  t.deepEqual(store.ranges, [['obj', 2 * BS, BS]], 'only the damaged block came from the store');
  t.is(disk.stats.corruptBlocks, 1);
  t.is(warned.length, 1);
  t.regex(warned[0], /block 2 of mem:\/\/test\/obj .*did not match the CRC-32/);
  await disk.idle();
  t.true((await fs.readFile(file)).equals(data.get('obj')!), 'the block was written again, right this time');
});

test('a block that passes its CRC-32 on disk but not the source\'s chunk table is dropped and fetched again', async (t) => {
  const dir = await tempDir(t);
  const store = new MemoryStore();
  const data = randomBytes(BS * 3);
  await store.put('obj', data);
  const hasher = new ChunkHasher();
  hasher.update(data);
  const table = hasher.finish();
  await store.put('obj.chunks', table);
  const source: ObjectRef = { key: 'obj', size: data.length, integrity: { chunkTable: { key: 'obj.chunks', offset: 0, length: table.length, crc32: crc32(table), covered: data.length } } };
  const first = open(t, dir);
  await readAll(new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk: first }), source);
  await first.close();
  // Other bytes, with a CRC-32 to match: only the chunk table can tell (a stale or mis-keyed object).
  const file = path.join(dir, 'objects', '1');
  const bytes = await fs.readFile(file);
  bytes.fill(7, BS, BS + 100);
  await fs.writeFile(file, bytes);
  const rw = new Database(path.join(dir, 'host-cache.db'));
  rw.prepare('UPDATE blocks SET crc = ? WHERE object = 1 AND block = 1').run(crc32(bytes.subarray(BS, 2 * BS)));
  rw.close();

  const disk = open(t, dir);
  store.ranges = [];
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  t.true((await readAll(cache, source)).equals(data));
  t.deepEqual(store.ranges.filter(([key]) => key === 'obj'), [['obj', BS, BS]], 'only that block came from the store');
  t.is(disk.stats.corruptBlocks, 1);
  await disk.idle();
  t.true((await fs.readFile(file)).equals(data));
});

test('under a quota, least recently used whole objects go and the cache stays within the quota', async (t) => {
  const dir = await tempDir(t);
  const sizes = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`o${i}`, BS * 8]));
  const { store, data, ref } = await storeWith(sizes);
  const quota = 3 * 1024 * 1024;
  const disk = open(t, dir, { quota: { bytes: quota } });
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, memoryBytes: BS * 4, disk });
  const order = ['o0', 'o1', 'o2', 'o3', 'o0', 'o4', 'o5', 'o6', 'o7', 'o8', 'o9'];
  for (const key of order) {
    cache.clearMemory();
    t.true((await readAll(cache, ref(key))).equals(data.get(key)!), key);
    await disk.idle();
    const usage = disk.usage();
    t.true(usage.blockBytes + usage.overheadBytes <= quota, `accounted ${usage.blockBytes} + ${usage.overheadBytes} after ${key}`);
    t.true(await allocated(dir) <= quota + BS, `on disk ${await allocated(dir)} after ${key}`);
  }
  t.true(disk.stats.evictions > 0);
  // Whole objects, least recently used first: what is left is the end of the order of last use.
  const byLastUse = ['o1', 'o2', 'o3', 'o0', 'o4', 'o5', 'o6', 'o7', 'o8', 'o9'];
  const db = record(dir);
  const kept = (db.prepare('SELECT source FROM objects ORDER BY last_use').all() as Array<{ source: string }>).map((r) => r.source.replace('mem://test/', ''));
  const files = (await fs.readdir(path.join(dir, 'objects'))).length;
  db.close();
  t.deepEqual(kept, byLastUse.slice(byLastUse.length - kept.length));
  t.true(kept.includes('o0') === (kept.length >= 7), 'o0, read again, outlives o1–o3');
  t.is(files, kept.length, 'evicted objects leave no file behind');
});

test('an object being read is never evicted; holds and leases of dead processes do not count', async (t) => {
  const dir = await tempDir(t);
  const { store, data, ref } = await storeWith({ a: BS * 8, b: BS * 8, c: BS * 8 });
  const disk = open(t, dir, { quota: { bytes: 1024 * 1024 + BS * 9 } });
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  await readAll(cache, ref('a'));
  await disk.idle();
  // A live reader in another process (pid 1 of this namespace, with its real start time) holds object a.
  const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1];
  const init = readFileSync('/proc/1/stat', 'utf8');
  const liveOwner = `${ns}:1:${init.slice(init.lastIndexOf(')') + 2).split(' ')[19]}`;
  const rw = new Database(path.join(dir, 'host-cache.db'));
  t.teardown(() => rw.close());
  rw.prepare('INSERT INTO holds (object, owner, expires) VALUES (1, ?, ?)').run(liveOwner, Date.now() + 600_000);
  for (const key of ['b', 'c']) {
    cache.clearMemory();
    t.true((await readAll(cache, ref(key))).equals(data.get(key)!));
    await disk.idle();
  }
  const present = () => (rw.prepare('SELECT source FROM objects ORDER BY id').all() as Array<{ source: string }>).map((r) => r.source.replace('mem://test/', ''));
  t.true(present().includes('a'), 'the held object stayed');
  t.true(disk.stats.notKept > 0 || disk.stats.evictions > 0, 'room was short: something else gave way');

  // The same hold by a process that is gone (a pid no process has) is reaped and no longer protects a.
  rw.prepare('UPDATE holds SET owner = ? WHERE object = 1').run(`${ns}:4194303:1`);
  await new Promise((r) => setTimeout(r, 1100)); // reaping of dead owners is rate-limited to one per second
  cache.clearMemory();
  await readAll(cache, ref('b'));
  cache.clearMemory();
  await readAll(cache, ref('c'));
  await disk.idle();
  t.false(present().includes('a'), 'a was evicted once its reader was known dead');
  t.is((rw.prepare('SELECT count(*) AS n FROM holds WHERE owner LIKE ?').get(`${ns}:4194303:%`) as { n: number }).n, 0);
});

test('two readers in one process share one fetch through the host cache', async (t) => {
  const dir = await tempDir(t);
  const { store, data, ref } = await storeWith({ obj: BS * 6 });
  const slow = new FaultyStore(store, { delayMs: 40 });
  const disk = open(t, dir);
  const one = new BlockCache({ store: slow, blockSize: BS, readaheadBytes: 0, disk });
  const two = new BlockCache({ store: slow, blockSize: BS, readaheadBytes: 0, disk });
  const [a, b] = await Promise.all([readAll(one, ref('obj')), readAll(two, ref('obj'))]);
  t.true(a.equals(data.get('obj')!));
  t.true(b.equals(data.get('obj')!));
  t.is(store.stats.bytesRead, BS * 6, 'each byte fetched once');
});

test('processes reading one object at once fetch each block from the store once', async (t) => {
  const dir = await tempDir(t);
  const storeDir = await tempDir(t, 'vhfs-hostcache-store-');
  const size = BS * 24 + 333;
  const bytes = randomBytes(size);
  await fs.writeFile(path.join(storeDir, 'obj'), bytes);
  const workers = Array.from({ length: 4 }, () => startWorker({ mode: 'read', dir, storeDir, key: 'obj', size, blockSize: BS, delayMs: 30 }));
  for (const w of workers) w.child.stdin!.end('go\n');
  const results = await Promise.all(workers.map((w) => w.done));
  const reports = results.map((r) => {
    if (r.code !== 0) throw new Error(`worker exited ${r.code} ${r.signal}: ${r.err}`);
    return JSON.parse(r.out) as { sha256: string; bytesRead: number; diskHits: number };
  });
  for (const r of reports) t.is(r.sha256, sha256(bytes));
  t.is(reports.reduce((n, r) => n + r.bytesRead, 0), size, 'the store was read once in all');
  t.true(reports.reduce((n, r) => n + r.diskHits, 0) >= 3 * 25, 'the others read every block from disk');
});

test('a process killed while filling leaves leases the next process takes over at once, and a cache that verifies', async (t) => {
  const dir = await tempDir(t);
  const storeDir = await tempDir(t, 'vhfs-hostcache-store-');
  const size = BS * 6;
  const bytes = randomBytes(size);
  await fs.writeFile(path.join(storeDir, 'obj'), bytes);
  const dying = startWorker({ mode: 'die', dir, storeDir, key: 'obj', size, blockSize: BS, blocks: [0, 1, 2, 3] });
  const died = await dying.done;
  t.is(died.signal, 'SIGKILL', died.err);
  t.is(died.out, 'leased\n');

  // Its leases last ten minutes and this reader would wait as long for a live owner: only knowing the
  // owner is dead (here, from the record's owners reaped when the cache is opened) lets the read finish.
  const disk = open(t, dir, { leaseMs: 600_000, waitMs: 600_000 });
  const store = openStore(storeDir);
  t.teardown(() => store.close?.());
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk, diskForLocal: true });
  t.true((await readAll(cache, { key: 'obj', size })).equals(bytes));
  t.is(store.stats.bytesRead, size);
  await disk.idle();
  const report = await disk.verify();
  t.deepEqual(report.bad, []);
  t.is(report.blocks, 6);
  t.is(report.bytes, size);
  t.is(disk.counters().used, size, 'the half-written block\'s reservation is counted once');
  t.true((await fs.readFile(path.join(dir, 'objects', '1'))).equals(bytes), 'the garbage was overwritten with the block');
});

test('warm fills the disk tier without memory, skips what is there, and stops at the quota without evicting what it filled', async (t) => {
  const dir = await tempDir(t);
  const { store, data, ref } = await storeWith({ old: BS * 4, big: BS * 40 });
  const quota = 2 * 1024 * 1024;
  const disk = open(t, dir, { quota: { bytes: quota } });
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  await readAll(cache, ref('old'));
  await disk.idle();
  cache.clearMemory();
  const started = Date.now() + 1;
  await new Promise((r) => setTimeout(r, 5));
  let fetched = 0;
  let full = false;
  for (let b = 0; b < 40 && !full; b += 8) {
    const r = await cache.warm(ref('big'), b, Math.min(b + 7, 39), { evictBefore: started });
    fetched += r.fetchedBytes;
    full = r.stopped === 'full';
  }
  t.true(full, 'it said when the quota was reached');
  t.is(cache.memoryBytes, 0, 'nothing went through memory');
  const db = record(dir);
  const objects = (db.prepare('SELECT source, bytes FROM objects').all() as Array<{ source: string; bytes: number }>).map((o) => o.source);
  db.close();
  t.deepEqual(objects, ['mem://test/big'], 'the object used before the prefetch went, the prefetched one stayed');
  t.true(fetched > 0 && fetched < BS * 40);
  const usage = disk.usage();
  t.true(usage.blockBytes + usage.overheadBytes <= quota);
  // Warming again fetches nothing that is there.
  const before = store.stats.bytesRead;
  const again = await cache.warm(ref('big'), 0, 3, { evictBefore: started });
  t.is(again.fetchedBytes, 0);
  t.is(again.presentBytes, BS * 4);
  t.is(store.stats.bytesRead, before);
  // And what was warmed is read from disk.
  const dst = Buffer.alloc(BS * 2);
  await cache.read(ref('big'), 0, BS * 2, dst);
  t.true(dst.equals(data.get('big')!.subarray(0, BS * 2)));
  t.is(store.stats.bytesRead, before);
});

test('small files read at random come from the disk tier by their own bytes after a prefetch; damaged ones are fetched again', async (t) => {
  const dir = await tempDir(t);
  const store = new MemoryStore();
  const members = Array.from({ length: 40 }, (_, i) => randomBytes(3000 + i * 211));
  const data = Buffer.concat(members);
  await store.put('pkg', data);
  await store.put('obj', data);
  let at = 0;
  const files = members.map((m) => { const f = { start: at, size: m.length, crc32: crc32(m) }; at += m.length; return f; });
  // The same bytes twice: as a package (member CRC-32s check what comes back) and as an object nothing vouches for.
  const pkg: ObjectRef = { key: 'pkg', size: data.length, integrity: { memberCrc32: true } };
  const obj: ObjectRef = { key: 'obj', size: data.length };
  const disk = open(t, dir);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  for (const source of [pkg, obj]) t.is((await cache.warm(source, 0, Math.ceil(data.length / BS) - 1)).fetchedBytes, data.length);
  const order = files.map((_, i) => (i * 17) % files.length);
  const readShuffled = async (source: ObjectRef) => {
    for (const i of order) {
      const dst = Buffer.alloc(files[i].size);
      await cache.read(source, files[i].start, files[i].size, dst, source === pkg ? files[i] : { start: files[i].start, size: files[i].size });
      t.true(dst.equals(members[i]), `${source.key} member ${i}`);
    }
  };
  const gets = store.stats.gets;
  for (const source of [pkg, obj]) await readShuffled(source);
  t.is(store.stats.gets, gets, 'every small file came from disk');

  // One flipped byte in each file: the package's member CRC-32 and the object's block CRC-32 catch it.
  cache.clearMemory();
  for (const id of ['1', '2']) {
    const file = path.join(dir, 'objects', id);
    const bytes = await fs.readFile(file);
    bytes[files[5].start + 10] ^= 0x10;
    await fs.writeFile(file, bytes);
  }
  await readShuffled(pkg);
  await readShuffled(obj);
  t.true(store.stats.gets > gets, 'the damaged bytes were fetched again');
  t.is(disk.stats.corruptBlocks, 2);
});

test('background filling of a source read at random stops at the quota', async (t) => {
  const dir = await tempDir(t);
  const store = new MemoryStore();
  const members = Array.from({ length: 200 }, () => randomBytes(10_000));
  const data = Buffer.concat(members);
  await store.put('pkg', data);
  const pkg: ObjectRef = { key: 'pkg', size: data.length, integrity: { memberCrc32: true } };
  const disk = open(t, dir, { quota: { bytes: 1024 * 1024 } });
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk, runBytes: 2 * BS });
  t.teardown(() => cache.close());
  for (let k = 0; k < 40; k++) {
    const i = (k * 73) % 200;
    const dst = Buffer.alloc(10_000);
    await cache.read(pkg, i * 10_000, 10_000, dst, { start: i * 10_000, size: 10_000, crc32: crc32(members[i]) });
    t.true(dst.equals(members[i]));
  }
  // The fill is private to the cache: its promise, which settles when it stops, is read from its state.
  const fill = (cache as unknown as { states: WeakMap<ObjectRef, { fill?: Promise<void> }> }).states.get(pkg)?.fill;
  t.truthy(fill, 'random reads started a background fill');
  await fill;
  t.true(disk.stats.notKept > 0, 'it reached the quota');
  const blocks = Math.ceil(data.length / BS);
  t.true(cache.stats.fillBlocks < blocks, `it stopped there: ${cache.stats.fillBlocks} of ${blocks} blocks fetched`);
  const usage = disk.usage();
  t.true(usage.blockBytes + usage.overheadBytes <= 1024 * 1024);
});

test('prune evicts to a size; verify drops a damaged block and removes files no record names', async (t) => {
  const dir = await tempDir(t);
  const { store, ref } = await storeWith({ a: BS * 4, b: BS * 4, c: BS * 4 });
  const disk = open(t, dir);
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  for (const key of ['a', 'b', 'c']) await readAll(cache, ref(key));
  await disk.idle();
  const file = path.join(dir, 'objects', '2');
  const bytes = await fs.readFile(file);
  bytes[BS * 3 + 5] ^= 1;
  await fs.writeFile(file, bytes);
  await fs.writeFile(path.join(dir, 'objects', '999'), 'stray');
  const report = await disk.verify();
  t.deepEqual(report.bad.map((b) => [b.source, b.block]), [['mem://test/b', 3]]);
  t.regex(report.bad[0].why, /CRC-32/);
  t.is(report.orphans, 1);
  t.is(report.blocks, 11);
  t.false(existsSync(path.join(dir, 'objects', '999')));
  t.deepEqual((await disk.verify()).bad, [], 'a second pass finds nothing');

  // Down to one object's room (and the record's own files, which grow a little as it works).
  const overhead = disk.usage().overheadBytes;
  const pruned = await disk.prune(overhead + BS * 6);
  t.is(pruned.evicted, 2, 'the two least recently used objects went');
  t.true(pruned.bytes <= overhead + BS * 6);
  t.is(disk.usage().objects, 1);
  await disk.prune(0);
  t.is(disk.usage().objects, 0);
  t.is(disk.counters().used, 0);
});

test('--cache-size takes a size or a share of the filesystem', (t) => {
  t.deepEqual(parseCacheSize('50G'), { bytes: 50 * 1024 ** 3 });
  t.deepEqual(parseCacheSize('80%'), { percent: 80 });
  t.deepEqual(parseCacheSize('12.5 %'), { percent: 12.5 });
  for (const bad of ['0%', '101%', 'lots', '-1G']) {
    const err = t.throws(() => parseCacheSize(bad, '--cache-size'));
    t.true(isVhfsError(err, 'BAD_ARGUMENT'), bad);
    t.true(err!.message.includes(`--cache-size "${bad}"`), err!.message);
  }
  const st = statfsSync(os.tmpdir());
  t.is(resolveQuota({ percent: 50 }, os.tmpdir()), Math.floor(st.blocks * st.bsize / 2));
  t.is(resolveQuota({ bytes: 12345 }, os.tmpdir()), 12345);
});

test('a full disk: every read is served from the store, and the log says so once', async (t) => {
  const dir = await tempDir(t);
  const mnt = path.join(dir, 'small');
  await fs.mkdir(mnt);
  const mounted = await new Promise<number>((resolve) => execFile('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt], (err) => resolve(err ? 1 : 0)));
  if (mounted !== 0) return t.log('cannot mount a tmpfs here (not root?): skipped');
  t.teardown(() => new Promise<void>((resolve) => execFile('umount', ['-l', mnt], () => resolve())));
  const { store, data, ref } = await storeWith({ a: BS * 24, b: BS * 24 });
  const warned: string[] = [];
  const disk = new HostCache({ dir: mnt, quota: { bytes: 1 << 30 }, warn: (l) => warned.push(l) });
  t.teardown(() => disk.close());
  const cache = new BlockCache({ store, blockSize: BS, readaheadBytes: 0, disk });
  for (const key of ['a', 'b']) t.true((await readAll(cache, ref(key))).equals(data.get(key)!), key);
  await disk.idle();
  cache.clearMemory();
  for (const key of ['a', 'b']) t.true((await readAll(cache, ref(key))).equals(data.get(key)!), `${key} again`);
  const noSpace = warned.filter((l) => /no space left.*ENOSPC/.test(l));
  t.is(noSpace.length, 1, warned.join('\n'));
  t.true(disk.stats.noSpace > 0);
  t.true(disk.stats.diskBlocks > 0, 'what fitted is served from disk');
});
