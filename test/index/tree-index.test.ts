import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import {
  TreeIndexBuilder, NOT_FOUND, ROOT_DIR, isDir, isFile, dirIndex, type TreeIndex,
} from '../../src/index/tree-index.js';
import { loadIndex, saveIndex, serializeIndex, deserializeIndex } from '../../src/index/persist.js';
import { isVhfsError } from '../../src/util/errors.js';

function build(paths: string[], label = 'test'): TreeIndex {
  const b = new TreeIndexBuilder(label);
  const src = b.addSource({ key: 'pkg', size: 1e12 });
  paths.forEach((p, i) => b.add({ path: p, size: i + 1, source: src, offset: i * 4096, mtimeMs: 1_700_000_000_000, crc32: i }));
  return b.build();
}

/** Every directory and file of `paths`, checked against the naive answer. */
function checkAgainstNaive(t: import('ava').ExecutionContext, index: TreeIndex, paths: string[]) {
  const dirs = new Map<string, Set<string>>([['', new Set()]]);
  for (const p of paths) {
    const parts = p.split('/');
    for (let k = 0; k < parts.length; k++) {
      const parent = parts.slice(0, k).join('/');
      if (!dirs.has(parent)) dirs.set(parent, new Set());
      dirs.get(parent)!.add(parts[k]);
    }
  }
  paths.forEach((p, i) => {
    const ref = index.lookup(p);
    t.true(isFile(ref), p);
    t.is(index.arrays.fileSize[ref], i + 1, p);
    t.is(index.arrays.fileOffset[ref], i * 4096);
    t.is(index.filePath(ref), p);
  });
  for (const [dir, kids] of dirs) {
    const ref = index.lookup(dir);
    t.true(isDir(ref), `dir ${dir}`);
    t.deepEqual([...index.list(dirIndex(ref))].sort(), [...kids].sort(), `listing of ${dir}`);
    t.is(index.dirPath(dirIndex(ref)), dir);
  }
}

test('lookup and listing match a naive tree', (t) => {
  const paths = [
    'a.txt', 'b/c.txt', 'b/d/e.txt', 'b/d/f.txt', 'b/d2/g', 'b0/x', 'z', 'ünïcödé/ß.bin',
    'emoji/😀.png', 'emoji/\uffff.png', 'deep/1/2/3/4/5/6/7/8/9/file', 'b/a', 'b/e',
  ];
  const index = build(paths);
  checkAgainstNaive(t, index, paths);
  t.is(index.fileCount, paths.length);
  t.is(index.lookup(''), ROOT_DIR);
  t.is(index.lookup('nope'), NOT_FOUND);
  t.is(index.lookup('b/nope'), NOT_FOUND);
  t.is(index.lookup('a.txt/x'), NOT_FOUND);
  t.is(index.lookup('a.txt/'), NOT_FOUND);
  t.true(isDir(index.lookup('b/')));
  // Byte order: U+FFFF sorts before U+1F600 in UTF-8, after it in UTF-16.
  t.deepEqual(index.list(dirIndex(index.lookup('emoji'))), ['\uffff.png', '😀.png']);
});

test('random trees of a few thousand files match the naive tree', (t) => {
  let seed = 42;
  const rnd = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const set = new Set<string>();
  while (set.size < 3000) {
    const depth = rnd(4);
    const parts: string[] = [];
    for (let k = 0; k < depth; k++) parts.push(`d${rnd(6)}`);
    parts.push(`f${rnd(500)}.dat`);
    set.add(parts.join('/'));
  }
  const paths = [...set];
  checkAgainstNaive(t, build(paths), paths);
});

test('walk yields every path once and fileDir finds owners', (t) => {
  // Directories without files of their own ("empty-sibling", "a", "a/b") sit between directories that have
  // some: fileDir must skip their empty runs.
  const paths = ['x/1', 'x/2', 'y/1', 'top', 'x/z/3', 'empty-sibling/deeper/4', 'a/b/c/5', 'a/b/c/6', 'b/7'];
  const index = build(paths);
  const walked = [...index.walk()];
  t.deepEqual(walked.map((e) => e.path).sort(), [...paths].sort());
  t.deepEqual(walked.map((e) => e.index).sort((a, b) => a - b), Array.from({ length: paths.length }, (_, i) => i), 'every file index once');
  for (const { index: i, path: p } of walked) {
    t.is(index.lookup(p), i, `lookup of ${p}`);
    const parent = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '';
    t.is(index.fileDir(i), dirIndex(index.lookup(parent)), `owner of ${p} is "${parent}"`);
    t.is(index.filePath(i), p);
  }
});

test('bad trees are rejected naming the label and the path', (t) => {
  for (const [paths, fragment] of [
    [['a', 'a'], 'duplicate path "a"'],
    [['a', 'a/b'], '"a" is both a file and a directory'],
    [['../x'], '".." segment'],
    [['/abs'], 'is absolute'],
    [['a//b'], 'empty segment'],
    [['a\0b'], 'NUL'],
  ] as Array<[string[], string]>) {
    const err = t.throws(() => build(paths, 'dataset://d/v'));
    t.true(isVhfsError(err), String(err));
    t.true(err!.message.startsWith('dataset://d/v: '), err!.message);
    t.true(err!.message.includes(fragment), err!.message);
  }
  const b = new TreeIndexBuilder('pkg.vhpkgzip');
  const s = b.addSource({ key: 'k', size: 100 });
  b.add({ path: 'f', size: 50, offset: 60, source: s });
  t.throws(() => b.build(), { message: /past the end of k/ });
});

test('persisted index loads back identical, and corrupt files are discarded', async (t) => {
  const paths = Array.from({ length: 500 }, (_, i) => `dir${i % 7}/sub${i % 3}/file-${i}.bin`);
  const index = build(paths);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-idx-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'x.idx');
  await saveIndex(file, index, { version: 'v1' });
  // Saved piece by piece (header, then each array's own memory with its padding): the same bytes as one buffer.
  t.deepEqual(await fs.readFile(file), serializeIndex(index, { version: 'v1' }));
  const loaded = await loadIndex(file);
  t.truthy(loaded);
  t.deepEqual(loaded!.meta, { version: 'v1' });
  t.deepEqual(loaded!.index.sources, index.sources);
  checkAgainstNaive(t, loaded!.index, paths);
  t.deepEqual(serializeIndex(loaded!.index, { version: 'v1' }), serializeIndex(index, { version: 'v1' }));

  // Unaligned buffers (a slice of a pool) still load.
  const raw = serializeIndex(index);
  const unaligned = Buffer.concat([Buffer.alloc(3), raw]).subarray(3);
  t.is(deserializeIndex(unaligned, 'u').index.fileCount, 500);

  await fs.writeFile(file, raw.subarray(0, raw.length - 100));
  const reasons: string[] = [];
  t.is(await loadIndex(file, (e) => reasons.push(e.message)), undefined);
  t.regex(reasons[0], /out of bounds|truncated/);
  await t.throwsAsync(fs.access(file));
  t.is(await loadIndex(path.join(dir, 'missing.idx')), undefined);
});
