/**
 * Issue 2, "split packages": `dataset create --package --max-package-size 256K` on ~500 files makes
 * several parts named `ds.v1.part-000K-of-000N.vhpkgzip`; every part, as the blob stored in
 * `<home>/store/blobs/sha256/<hex>`, is a complete zip that `unzip -t` and python's `testzip()` accept;
 * `cat` of every file is still byte-identical. Also `vhfs package build DIR -o x.vhpkgzip
 * [--max-part-size]` checked with `unzip -t` and `zipinfo`.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  Cli, compare, concatHash, makeTree, mapLimit, pythonTestzip, sha256, storedPackages, tempDir, unzipTest, zipinfo,
} from './helpers.js';

const COUNT = 500;
const MAX = 256 * 1024;
const PART_RE = /^ds\.v1\.part-(\d{4})-of-(\d{4})\.vhpkgzip$/;

test('dataset create --max-package-size 256K: parts are standalone zips; cat is byte-identical', async (t) => {
  t.timeout(180_000);
  const dir = await tempDir(t);
  const src = path.join(dir, 'src');
  const files = await makeTree(src, COUNT, { seed: 7, maxSize: 8192 });
  const cli = new Cli(path.join(dir, 'home'));
  const created = await cli.json<{ files: number; packages: Array<{ name: string; size: number; entries: number; datumId: string }> }>(
    'dataset', 'create', 'ds/v1', src, '--package', '--max-package-size', '256K');
  t.is(created.files, COUNT);
  const n = created.packages.length;
  t.true(n >= 3, `expected several parts, got ${n}`);
  created.packages.forEach((p, i) => {
    const m = PART_RE.exec(p.name);
    t.truthy(m, `part name ${p.name}`);
    t.is(Number(m?.[1]), i + 1, `${p.name}: part number`);
    t.is(Number(m?.[2]), n, `${p.name}: part count`);
    t.true(p.size <= MAX, `${p.name}: ${p.size} bytes > --max-package-size`);
  });
  t.is(created.packages.reduce((s, p) => s + p.entries, 0), COUNT, 'every file is in exactly one part');

  // The stored blobs, found through the store's own records, agree with what create reported.
  const stored = await storedPackages(cli.storeDir, 'ds', 'v1');
  t.deepEqual(stored.map((p) => p.name), created.packages.map((p) => p.name));
  const checks = await mapLimit(stored, 2, async (p) => {
    const data = await fs.readFile(p.file);
    return { p, data, unzip: await unzipTest(p.file), py: await pythonTestzip(p.file) };
  });
  for (const { p, data, unzip, py } of checks) {
    t.is(data.length, p.size, `${p.name}: blob size`);
    t.is(sha256(data), p.sha256, `${p.name}: blob is content-addressed`);
    t.is(path.basename(p.file), p.sha256);
    t.is(unzip.code, 0, `unzip -t ${p.name} (${p.file}):\n${unzip.out}${unzip.stderr}`);
    t.is(py.code, 0, `python testzip ${p.name}: ${py.out}${py.stderr}`);
  }
  const pyCount = checks.reduce((s, c) => s + Number(/^OK (\d+)/.exec(c.py.out)?.[1] ?? NaN), 0);
  t.is(pyCount, COUNT + stored.length, 'python sees every file once across the parts, and each part\'s chunk hash table');

  // package inspect on the version: one report per part, entries add up, all CRCs verify.
  const inspect = await cli.json<Array<{ package: string; entries: number; verified: number }>>('package', 'inspect', 'dataset://ds/v1', '--verify');
  t.deepEqual(inspect.map((r) => r.package), created.packages.map((p) => p.name));
  t.is(inspect.reduce((s, r) => s + r.verified, 0), COUNT);

  const listed = (await cli.ok('--quiet', 'ls', '-R', 'dataset://ds/v1')).out.split('\n').filter((l) => l !== '');
  t.deepEqual(listed.sort(compare), files.map((f) => f.path));

  const paths = files.map((f) => f.path);
  const cat = await cli.ok('--quiet', 'cat', 'dataset://ds/v1', ...paths);
  const want = await concatHash(src, paths);
  t.is(cat.stdout.length, want.size);
  t.is(sha256(cat.stdout), want.sha256, 'cat across every part is byte-identical');
  // Files on both sides of a part boundary, one at a time.
  let first = 0;
  const boundary: string[] = [];
  for (const p of created.packages.slice(0, -1)) {
    first += p.entries;
    boundary.push(paths[first - 1], paths[first]);
  }
  const one = await mapLimit(boundary.slice(0, 6), 2, async (p) => ({ p, r: await cli.ok('--quiet', 'cat', 'dataset://ds/v1', p) }));
  const byPath = new Map(files.map((f) => [f.path, f]));
  for (const { p, r } of one) t.is(sha256(r.stdout), byPath.get(p)!.sha256, `${p}`);
});

test('package build -o x.vhpkgzip: unzip -t and zipinfo accept it; every member is stored', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const src = path.join(dir, 'src');
  const files = await makeTree(src, 200, { seed: 11, maxSize: 8192 });
  const cli = new Cli(path.join(dir, 'home'));
  const out = path.join(dir, 'x.vhpkgzip');
  const built = await cli.json<Array<{ file: string; entries: number; size: number; zip64: boolean }>>('package', 'build', src, '-o', out);
  t.is(built.length, 1);
  t.is(built[0].file, out);
  t.is(built[0].entries, files.length);
  t.false(built[0].zip64);
  t.is((await fs.stat(out)).size, built[0].size);
  const unzip = await unzipTest(out);
  t.is(unzip.code, 0, unzip.out + unzip.stderr);
  const info = await zipinfo(out);
  t.is(info.code, 0, info.stderr);
  const lines = info.out.split('\n').filter((l) => /^[-d]r/.test(l));
  t.is(lines.length, files.length + 1, 'zipinfo lists every file and the chunk hash table member');
  t.true(lines.every((l) => /\bstor\b/.test(l)), 'every member is stored (no compression)');
  t.regex(info.out, new RegExp(`${files.length + 1} files`));
  // No temp files left next to the output (and no state: package build needs no home).
  t.deepEqual((await fs.readdir(dir)).filter((n) => n !== 'home').sort(), ['src', 'x.vhpkgzip']);
  // vhfs reads it back: same paths, all CRCs fine.
  const inspect = await cli.json<Array<{ entries: number; verified: number; members: Array<{ path: string; size: number }> }>>(
    'package', 'inspect', out, '--entries', '--verify');
  t.is(inspect[0].verified, files.length);
  t.deepEqual(inspect[0].members.map((m) => m.path).sort(compare), files.map((f) => f.path));
});

test('package build --max-part-size 256K: parts NAME.part-000K-of-000N.vhpkgzip, each a valid zip', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const src = path.join(dir, 'src');
  const files = await makeTree(src, 300, { seed: 12, maxSize: 8192 });
  const cli = new Cli(path.join(dir, 'home'));
  const outDir = path.join(dir, 'out');
  await fs.mkdir(outDir);
  const built = await cli.json<Array<{ file: string; entries: number; size: number }>>(
    'package', 'build', src, '-o', path.join(outDir, 'x.vhpkgzip'), '--max-part-size', '256K');
  const n = built.length;
  t.true(n >= 3, `expected several parts, got ${n}`);
  t.is(built.reduce((s, p) => s + p.entries, 0), files.length);
  const checks = await mapLimit(built, 2, async (p) => ({ p, unzip: await unzipTest(p.file), py: await pythonTestzip(p.file), info: await zipinfo(p.file) }));
  for (const { p, unzip, py, info } of checks) {
    t.true(p.size <= 256 * 1024, `${p.file}: ${p.size} bytes`);
    t.is(unzip.code, 0, `unzip -t ${p.file}: ${unzip.out}${unzip.stderr}`);
    t.is(py.code, 0, `testzip ${p.file}: ${py.out}${py.stderr}`);
    t.is(info.code, 0);
    t.regex(info.out, new RegExp(`${p.entries + 1} files`)); // and the part's chunk hash table
  }
  // Names: the help says "output file (NAME.vhpkgzip; parts get .part-0001-of-000N)".
  const pad = (k: number) => String(k).padStart(4, '0');
  t.deepEqual(
    built.map((p) => path.basename(p.file)),
    built.map((_, i) => `x.part-${pad(i + 1)}-of-${pad(n)}.vhpkgzip`),
    'parts of -o x.vhpkgzip must be x.part-000K-of-000N.vhpkgzip',
  );
  t.deepEqual((await fs.readdir(outDir)).sort(), built.map((p) => path.basename(p.file)).sort(), 'only the parts, no temp files');
});
