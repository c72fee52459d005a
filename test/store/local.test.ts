import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isVhfsError } from '../../src/util/errors.js';
import { LocalDirStore } from '../../src/store/local.js';
import { FaultyStore, openStore } from '../../src/store/index.js';
import { storeContract } from './contract.js';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-store-'));
}

storeContract(test, 'LocalDirStore', async () => {
  const dir = await tempDir();
  const store = new LocalDirStore(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
});

test('url is file://<abs root>; NOT_FOUND names store and key', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir);
  t.is(s.url, `file://${dir}`);
  const err = await t.throwsAsync(s.getRange('datums/x.json', 0, 1));
  t.true(isVhfsError(err, 'NOT_FOUND'));
  t.true(err!.message.includes(`file://${dir}`) && err!.message.includes('datums/x.json'));
  await fs.rm(dir, { recursive: true });
});

test('a killed put (leftover temp file) is never visible; cleanupTemp removes it', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir);
  await s.put('real', Buffer.from('x'));
  await fs.writeFile(path.join(dir, '.tmp', 'deadbeef.part'), 'half-written');
  t.deepEqual((await s.list('')).objects.map((o) => o.key), ['real']);
  t.deepEqual((await s.list('', { delimiter: '/' })).prefixes, []);
  const err = await t.throwsAsync(s.get('.tmp/deadbeef.part'));
  t.true(isVhfsError(err, 'BAD_ARGUMENT'));
  const old = new Date(Date.now() - 7200_000);
  await fs.utimes(path.join(dir, '.tmp', 'deadbeef.part'), old, old);
  t.is(await s.cleanupTemp(), 1);
  t.deepEqual(await fs.readdir(path.join(dir, '.tmp')), ['locks']);
  await fs.rm(dir, { recursive: true });
});

test('a stale lock left by a dead process is broken', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir, { staleLockMs: 200 });
  const v = await s.put('k', Buffer.from('1'));
  const lockDir = path.join(dir, '.tmp', 'locks');
  // simulate a holder that died: take the lock file as the store would, never release it
  const { createHash } = await import('node:crypto');
  const lock = path.join(lockDir, createHash('sha256').update('k').digest('hex').slice(0, 40) + '.lock');
  await fs.writeFile(lock, '');
  const lockBorn = (await fs.stat(lock)).mtimeMs;
  await s.put('k', Buffer.from('2'), { ifMatch: v.etag });
  // Measured from the lock's own mtime (what the store judges staleness by), not from a timestamp taken
  // after an await, which a loaded machine can delay past the staleness limit.
  t.true(Date.now() - lockBorn >= 190, 'waited for the lock to become stale');
  t.is((await s.get('k')).toString(), '2');
  await fs.rm(dir, { recursive: true });
});

test('cached handle: replaced object is re-read after own put; LRU evicts and closes', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir, { maxOpenFiles: 2 });
  await s.put('x', Buffer.from('aaaa'));
  t.is((await s.getRange('x', 0, 4)).toString(), 'aaaa');
  await s.put('x', Buffer.from('bbbbbb'));
  t.is((await s.getRange('x', 0, 6)).toString(), 'bbbbbb');
  for (const k of ['p', 'q', 'r']) await s.put(k, Buffer.from(k));
  const reads = await Promise.all(['p', 'q', 'r', 'p', 'x', 'q'].map((k) => s.getRange(k, 0, 1)));
  t.deepEqual(reads.map(String), ['p', 'q', 'r', 'p', 'b', 'q']);
  await s.close();
  await fs.rm(dir, { recursive: true });
});

test('cached handle revalidates after another process replaces the object', async (t) => {
  const dir = await tempDir();
  const a = new LocalDirStore(dir, { revalidateMs: 0 });
  const b = new LocalDirStore(dir);
  await a.put('x', Buffer.from('old!'));
  t.is((await a.getRange('x', 0, 4)).toString(), 'old!');
  await b.put('x', Buffer.from('new!'));
  t.is((await a.getRange('x', 0, 4)).toString(), 'new!');
  await a.close();
  await fs.rm(dir, { recursive: true });
});

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cas-worker.js');

function runWorker(root: string, key: string, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, 'cas', root, key, String(n)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}: ${stderr}`))));
  });
}

test('concurrent CAS from several processes loses no increment', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir);
  await s.put('counter', Buffer.from('0'));
  const procs = 4;
  const each = 40;
  await Promise.all(Array.from({ length: procs }, () => runWorker(dir, 'counter', each)));
  t.is(Number((await s.get('counter')).toString()), procs * each);
  await fs.rm(dir, { recursive: true });
});

test('openStore: paths and file:// URLs are local; cloud schemes open their backend; junk BAD_URI', async (t) => {
  const dir = await tempDir();
  t.is(openStore(dir).url, `file://${dir}`);
  t.is(openStore(`file://${dir}`).url, `file://${dir}`);
  t.true(openStore('relative/dir').url.startsWith('file:///'));
  // Opening touches no network (the SDKs load on first use); cloud URLs are covered in test/store/urls.test.ts.
  for (const u of ['s3://bucket/prefix', 'gs://bucket', 'az://acct/container', 'azure://acct/container']) {
    t.is(openStore(u, { settings: {} }).url, u.replace('azure://', 'az://'));
  }
  t.true(isVhfsError(t.throws(() => openStore('ftp://x/y')), 'BAD_URI'));
  await fs.rm(dir, { recursive: true });
});

test('FaultyStore fails the nth call and adds latency', async (t) => {
  const dir = await tempDir();
  const s = new FaultyStore(new LocalDirStore(dir), { delayMs: 20, fail: [{ op: 'getRange', nth: 2 }] });
  await s.put('k', Buffer.from('abc'));
  await s.getRange('k', 0, 1);
  const err = await t.throwsAsync(s.getRange('k', 0, 1));
  t.true(isVhfsError(err, 'STORE'));
  const started = Date.now();
  t.is((await s.getRange('k', 1, 2)).toString(), 'bc');
  t.true(Date.now() - started >= 15);
  t.is(s.stats.gets, 2, 'the failed call never reached the inner store');
  await (s.inner as LocalDirStore).close();
  await fs.rm(dir, { recursive: true });
});

test('bench: getRange on a cached handle (hot path)', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir, { fsync: false });
  const size = 64 * 1024 * 1024;
  await s.put('pkg', Buffer.alloc(size, 1));
  const n = 20_000;
  const len = 16 * 1024;
  await s.getRange('pkg', 0, len);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await s.getRange('pkg', ((i * 7919) % (size / len - 1)) * len, len);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  t.log(`getRange 16 KiB, cached handle: ${us.toFixed(1)} µs/read (${(len / us).toFixed(0)} MB/s)`);
  t.is(s.stats.bytesRead, (n + 1) * len);
  await s.close();
  await fs.rm(dir, { recursive: true });
});

test('a put killed mid-write (SIGKILL) never shows up as an object', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir);
  const child = spawn(process.execPath, [WORKER, 'hang-put', dir, 'victim'], { stdio: 'ignore' });
  const tmp = path.join(dir, '.tmp');
  for (let i = 0; i < 200; i++) {
    const names = await fs.readdir(tmp).catch(() => [] as string[]);
    const part = names.find((n) => n.endsWith('.part'));
    if (part && (await fs.stat(path.join(tmp, part))).size > 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  t.true((await fs.readdir(tmp)).some((n) => n.endsWith('.part')), 'the half-written temp file is there');
  t.is(await s.head('victim'), undefined);
  t.deepEqual((await s.list('')).objects, []);
  t.true(isVhfsError(await t.throwsAsync(s.get('victim')), 'NOT_FOUND'));
  await fs.rm(dir, { recursive: true });
});

test('handle cache under pressure: concurrent reads of many keys with one cached handle', async (t) => {
  const dir = await tempDir();
  const s = new LocalDirStore(dir, { maxOpenFiles: 1, fsync: false });
  const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
  for (const k of keys) await s.put(k, Buffer.from(k.repeat(100)));
  const reads = await Promise.all(Array.from({ length: 400 }, (_, i) => s.getRange(keys[i % 8], 2 * (i % 50), 2)));
  t.true(reads.every((b, i) => b.toString() === keys[i % 8]));
  await s.close();
  await fs.rm(dir, { recursive: true });
});
