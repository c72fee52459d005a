/**
 * The FUSE ops object of the inputs mount (`inputsOps`, src/fuse/inputs-fs.ts) driven directly: each
 * handler is called with a callback, as fuse-native would, with no /dev/fuse and no kernel in between. The
 * inputs live on the in-memory store behind `FaultyStore` (test/helpers/catalog-fixture.ts), so store
 * failures and a store that never answers are injected on purpose. Errnos are compared with the kernel's
 * numbers (os.constants.errno), negated as fuse-native expects them.
 */
import test, { type ExecutionContext } from 'ava';
import { constants } from 'node:os';
import type { Ops, Stat } from 'fuse-native';
import { inputsOps } from '../../src/fuse/inputs-fs.js';
import path from 'node:path';
import { ReadPath } from '../../src/inputs/read-path.js';
import { InputSet } from '../../src/inputs/input-set.js';
import { parseInputFlags } from '../../src/inputs/config.js';
import { VhfsError } from '../../src/util/errors.js';
import { memoryCatalog, TREES, WEIGHTS, type MemoryCatalog } from '../helpers/catalog-fixture.js';

const ENOENT = -constants.errno.ENOENT;
const ENOTDIR = -constants.errno.ENOTDIR;
const EIO = -constants.errno.EIO;
const ETIMEDOUT = -constants.errno.ETIMEDOUT;

interface Fs {
  c: MemoryCatalog;
  ops: Required<Pick<Ops, 'getattr' | 'readdir' | 'read'>>;
  log: string[];
}

/** The ops of a mount of `inputs` (NAME=URI) over the fixture catalog, built as the mount builds them. */
async function mountOps(t: ExecutionContext, inputs: string[], read: { fetchTimeoutMs?: number } = {}): Promise<Fs> {
  const c = await memoryCatalog(t);
  const log: string[] = [];
  const readPath = new ReadPath({ catalog: c.catalog, cacheDir: path.join(c.dir, 'cache'), readaheadBytes: 0, ...read, log: (l) => log.push(l) });
  t.teardown(() => readPath.close());
  const set = new InputSet(parseInputFlags(inputs), readPath.resolver, { log: (l) => log.push(l), retryAfterMs: 0 });
  const ops = inputsOps(set, readPath, { log: (l) => log.push(l) });
  return { c, ops: ops as Fs['ops'], log };
}

/** Call a handler; resolves with what it called back, and fails the test if it calls back twice. */
function call<T>(t: ExecutionContext, what: string, fn: (cb: (err: number, value?: T) => void) => void): Promise<[number, T | undefined]> {
  return new Promise((resolve) => {
    let calls = 0;
    fn((err, value) => {
      if (++calls > 1) t.fail(`${what} called back ${calls} times`);
      resolve([err, value]);
    });
  });
}
const getattr = (t: ExecutionContext, f: Fs, p: string) => call<Stat>(t, `getattr ${p}`, (cb) => f.ops.getattr(p, cb));
/** readdir, names sorted (the order of entries is not part of the contract: `ls` sorts them). */
const readdir = async (t: ExecutionContext, f: Fs, p: string): Promise<[number, string[] | undefined]> => {
  const [err, names] = await call<string[]>(t, `readdir ${p}`, (cb) => f.ops.readdir(p, cb));
  return [err, names && [...names].sort()];
};

/** read(2) of `len` bytes at `pos`: [bytes or -errno, the bytes]. */
async function read(t: ExecutionContext, f: Fs, p: string, pos: number, len: number): Promise<[number, Buffer]> {
  const buf = Buffer.alloc(len);
  const [n] = await call<never>(t, `read ${p}`, (cb) => f.ops.read(p, 0, buf, len, pos, (r) => cb(r)));
  return [n, buf.subarray(0, Math.max(n, 0))];
}

test('the root lists the inputs; an input directory answers before it is resolved', async (t) => {
  const f = await mountOps(t, ['images=dataset://pkg/v1', 'model=model://net/v1', 'w=datum://weights']);
  const [err, st] = await getattr(t, f, '/');
  t.is(err, 0);
  t.is(st!.mode, 0o040555);
  t.is(st!.nlink, 2 + 3);
  t.deepEqual(await readdir(t, f, '/'), [0, ['images', 'model', 'w']]);
  const [e2, dir] = await getattr(t, f, '/images');
  t.deepEqual([e2, dir!.mode], [0, 0o040555]);
  t.is(f.c.store.calls.getRange + f.c.store.calls.get, 0, 'stat of an input directory resolves nothing');
  t.deepEqual(await getattr(t, f, '/nope'), [ENOENT, undefined]);
  t.deepEqual(await readdir(t, f, '/nope'), [ENOENT, undefined]);
  t.deepEqual(await getattr(t, f, '/nope/deeper'), [ENOENT, undefined]);
});

test('getattr and readdir answer from the resolved index: sizes, modes, ENOENT and ENOTDIR', async (t) => {
  const f = await mountOps(t, ['images=dataset://pkg/v1', 'model=model://net/v1', 'w=datum://weights']);
  t.deepEqual(await readdir(t, f, '/images'), [0, ['a', 'empty.txt', 'top.txt']]);
  t.deepEqual(await readdir(t, f, '/images/a'), [0, ['b', 'x.txt']]);
  t.deepEqual(await readdir(t, f, '/model'), [0, ['config.json', 'weights']]);
  t.deepEqual(await readdir(t, f, '/w'), [0, ['weights.bin']]);
  for (const [input, tree] of [['images', TREES.pkg], ['model', TREES.net]] as const) {
    for (const [p, data] of Object.entries(tree)) {
      const [err, st] = await getattr(t, f, `/${input}/${p}`);
      t.is(err, 0, p);
      t.deepEqual([st!.size, st!.mode, st!.nlink], [data.length, 0o100444, 1], p);
    }
  }
  const [, a] = await getattr(t, f, '/images/a');
  t.deepEqual([a!.mode, a!.nlink], [0o040555, 3], 'a directory with one subdirectory');
  t.deepEqual(await getattr(t, f, '/images/missing'), [ENOENT, undefined]);
  t.deepEqual(await getattr(t, f, '/images/a/x.txt/below'), [ENOENT, undefined]);
  t.deepEqual(await readdir(t, f, '/images/top.txt'), [ENOTDIR, undefined]);
  t.deepEqual(await readdir(t, f, '/images/zz'), [ENOENT, undefined]);
});

test('read returns the bytes of every file at any offset, 0 at and past the end, ENOENT for what is not a file', async (t) => {
  const f = await mountOps(t, ['images=dataset://pkg/v1', 'plain=dataset://plain/v1', 'w=datum://weights']);
  for (const input of ['images', 'plain', 'w']) await readdir(t, f, `/${input}`); // the kernel looks up before it reads
  const files: Array<[string, Buffer]> = [
    ...Object.entries(TREES.pkg).map(([p, d]): [string, Buffer] => [`/images/${p}`, d]),
    ...Object.entries(TREES.plain).map(([p, d]): [string, Buffer] => [`/plain/${p}`, d]),
    ['/w/weights.bin', WEIGHTS],
  ];
  for (const [p, data] of files) {
    // Whole file in 128 KiB requests, as the kernel sends them.
    const parts: Buffer[] = [];
    for (let pos = 0; pos < data.length; pos += 131072) {
      const [n, got] = await read(t, f, p, pos, 131072);
      t.is(n, Math.min(131072, data.length - pos), `${p} at ${pos}`);
      parts.push(got);
    }
    t.true(Buffer.concat(parts).equals(data), p);
    t.deepEqual(await read(t, f, p, data.length, 4096), [0, Buffer.alloc(0)], `${p}: at the end`);
    t.deepEqual(await read(t, f, p, data.length + 10, 4096), [0, Buffer.alloc(0)], `${p}: past the end`);
  }
  // Unaligned reads across the 256 KiB block boundaries of the 600 KiB file.
  const big = TREES.pkg['a/b/big.bin'];
  for (const [pos, len] of [[262_140, 10], [524_287, 2], [1, 600 * 1024 + 6], [614_399, 100]]) {
    const [n, got] = await read(t, f, '/images/a/b/big.bin', pos, len);
    t.is(n, Math.min(len, big.length - pos));
    t.true(got.equals(big.subarray(pos, pos + len)), `big.bin ${pos}+${len}`);
  }
  t.deepEqual(await read(t, f, '/images/a', 0, 10), [ENOENT, Buffer.alloc(0)]);
  t.deepEqual(await read(t, f, '/images/nope', 0, 10), [ENOENT, Buffer.alloc(0)]);
  t.deepEqual(await read(t, f, '/nope/x', 0, 10), [ENOENT, Buffer.alloc(0)]);
});

test('a read whose blocks are cached answers synchronously, before the handler returns', async (t) => {
  const f = await mountOps(t, ['images=dataset://pkg/v1']);
  await readdir(t, f, '/images');
  t.is((await read(t, f, '/images/top.txt', 0, 5000))[0], 5000);
  let answered: number | undefined;
  const buf = Buffer.alloc(100);
  f.ops.read('/images/top.txt', 0, buf, 100, 10, (n) => { answered = n; });
  t.is(answered, 100, 'called back within the handler');
  t.true(buf.equals(TREES.pkg['top.txt'].subarray(10, 110)));
});

test('a store failure gives EIO for that read only, logged with the path and range; the next read retries', async (t) => {
  const f = await mountOps(t, ['plain=dataset://plain/v1']);
  await readdir(t, f, '/plain/p');
  f.c.store.plan = { keys: /^blobs\//, fail: [{ op: 'getRange', nth: 1 }] };
  const [n] = await read(t, f, '/plain/p/one.bin', 0, 4096);
  t.is(n, EIO);
  t.true(f.log.some((l) => l.startsWith('error: ') && l.includes('"plain"') && l.includes('p/one.bin') && l.includes('bytes 0-4095') && l.includes('injected failure')), f.log.join('\n'));
  const [n2, got] = await read(t, f, '/plain/p/one.bin', 0, 4096);
  t.is(n2, 4096);
  t.true(got.equals(TREES.plain['p/one.bin'].subarray(0, 4096)));
  t.deepEqual(await read(t, f, '/plain/p/q/two.bin', 0, 200), [123, TREES.plain['p/q/two.bin']]);
});

test('a store that does not answer gives ETIMEDOUT once the fetch deadline passes', async (t) => {
  const f = await mountOps(t, ['plain=dataset://plain/v1'], { fetchTimeoutMs: 100 });
  await readdir(t, f, '/plain/p');
  f.c.store.plan = { keys: /^blobs\//, delayMs: 3_600_000 };
  const [n] = await read(t, f, '/plain/p/one.bin', 0, 4096);
  t.is(n, ETIMEDOUT);
  t.true(f.log.some((l) => l.startsWith('error: ') && l.includes('p/one.bin') && l.includes('bytes 0-4095') && l.includes('no answer') && l.includes('within 100 ms')), f.log.join('\n'));
});

test('a resolution failure gives EIO (ETIMEDOUT for a deadline) on every path of that input, and the others work', async (t) => {
  const f = await mountOps(t, ['bad=dataset://nope/v1', 'slow=dataset://pkg/v1', 'plain=dataset://plain/v1']);
  t.deepEqual(await getattr(t, f, '/bad/x'), [EIO, undefined]);
  t.deepEqual(await readdir(t, f, '/bad'), [EIO, undefined]);
  t.true(f.log.some((l) => l.startsWith('error: input "bad": ') && l.includes('nope')), f.log.join('\n'));
  f.c.store.plan = { keys: /^blobs\//, fail: [{ op: 'getRange', nth: 1, sticky: true, error: new VhfsError('TIMEOUT', 'mem://test: no answer') }] };
  t.deepEqual(await readdir(t, f, '/slow'), [ETIMEDOUT, undefined]);
  t.deepEqual(await getattr(t, f, '/slow/top.txt'), [ETIMEDOUT, undefined]);
  f.c.store.plan = {};
  t.deepEqual(await readdir(t, f, '/plain'), [0, ['p']]);
  t.deepEqual(await readdir(t, f, '/slow'), [0, ['a', 'empty.txt', 'top.txt']], 'retried once the store answers again');
});

test('a resolution whose store does not answer fails with ETIMEDOUT within the fetch deadline; a later touch retries it', async (t) => {
  const f = await mountOps(t, ['slow=dataset://pkg/v1'], { fetchTimeoutMs: 100 });
  // 3 s, not forever: long enough to outlast the deadline ten times over, short enough to let the test end.
  f.c.store.plan = { keys: /^blobs\//, delayMs: 3000 };
  const outcome = await Promise.race([
    getattr(t, f, '/slow/top.txt').then(([err]) => err),
    // Ten times the deadline.
    new Promise<string>((r) => setTimeout(() => r('no answer after 1 s'), 1000).unref()),
  ]);
  t.is(outcome, ETIMEDOUT);
  f.c.store.plan = {};
  t.is((await getattr(t, f, '/slow/top.txt'))[0], 0, 'once the store answers, the input resolves');
});
