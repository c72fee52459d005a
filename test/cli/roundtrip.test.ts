/**
 * Issue 2, "round trip": 10,000 small files (0–8 KiB, random bytes, nested dirs, unicode names) →
 * `vhfs dataset create ds/v1 DIR --package --alias latest` → `ls -R` lists exactly those paths →
 * `cat` (2,000 paths per call, and single files) reproduces every byte. With `--stats`: an `ls` reads exactly
 * the package tail + central directory, a second `ls` reads nothing (the index is persisted under
 * cache/indexes), and a full cat pass reads exactly the blocks its files lie in (plus each call's first
 * file, fetched on its own).
 *
 * Expected read counts never come from vhfs itself: the package's layout is read with Python's zipfile
 * and the read algorithm is the one docs/vhpkgzip.md documents (test/helpers/zip-oracle.ts).
 *
 * VHFS_CLI_FILES overrides the file count (default 10,000) for quick local runs.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  Cli, chunks, compare, concatHash, makeTree, mapLimit, sha256, storedPackages, tempBase, type StoreStats, type TreeFile,
} from './helpers.js';
import { blockSpan, listingCost, zipLayout } from '../helpers/zip-oracle.js';

const COUNT = Number(process.env.VHFS_CLI_FILES ?? 10_000);
const BATCH = 2_000;
/** The block size `cat` is told to read with (`--block-size`). */
const BLOCK = 256 * 1024;

interface Fixture {
  root: string;
  src: string;
  cli: Cli;
  files: TreeFile[];
  created: { files: number; bytes: number; packages: Array<{ name: string; size: number; entries: number }>; aliases: string[] };
  timings: Record<string, number>;
}

let fixture: Fixture | undefined;

test.before(async (t) => {
  t.timeout(600_000);
  const root = await fs.mkdtemp(path.join(tempBase(), 'vhfs-cli-roundtrip-'));
  const src = path.join(root, 'src');
  const cli = new Cli(path.join(root, 'home'));
  const timings: Record<string, number> = {};
  let at = Date.now();
  const files = await makeTree(src, COUNT, { seed: 20240601, maxSize: 8192 });
  timings.generate = Date.now() - at;
  at = Date.now();
  const created = await cli.json('--quiet', 'dataset', 'create', 'ds/v1', src, '--package', '--alias', 'latest');
  timings.create = Date.now() - at;
  fixture = { root, src, cli, files, created, timings };
  t.log(`generated ${COUNT} files in ${timings.generate} ms; dataset create --package took ${timings.create} ms`);
});

test.after.always(async () => {
  if (fixture) await fs.rm(fixture.root, { recursive: true, force: true });
});

function fx(): Fixture {
  if (!fixture) throw new Error('fixture not built');
  return fixture;
}

test.serial('dataset create --package reports every file and one package', (t) => {
  const { created, files } = fx();
  t.is(created.files, COUNT);
  t.is(created.bytes, files.reduce((n, f) => n + f.size, 0));
  t.deepEqual(created.aliases, ['latest']);
  t.is(created.packages.length, 1);
  t.is(created.packages[0].name, 'ds.v1.vhpkgzip');
  t.is(created.packages[0].entries, COUNT);
});

test.serial('ls -R lists exactly the files; it reads only tail + central directory, and nothing the second time', async (t) => {
  t.timeout(120_000);
  const { cli, files } = fx();
  const [stored] = await storedPackages(cli.storeDir, 'ds', 'v1');
  const layout = await zipLayout(stored.file);
  t.is(layout.members.length, COUNT, 'Python\'s zipfile sees every file');
  const cost = listingCost(layout);

  await fs.rm(path.join(cli.home, 'cache', 'indexes'), { recursive: true, force: true });
  const first = await cli.stats('--quiet', 'ls', '-R', 'dataset://ds/v1');
  const listed = first.result.out.split('\n').filter((l) => l !== '');
  t.is(listed.length, COUNT);
  t.deepEqual([...listed].sort(compare), files.map((f) => f.path), 'ls -R must list exactly the source paths');
  t.is(new Set(listed).size, COUNT);

  // Exactly the tail and the central directory, as docs/vhpkgzip.md's reading algorithm says.
  t.is(first.stats.gets, cost.reads, `ls made ${first.stats.gets} GETs; the tail + central directory take ${cost.reads}`);
  t.is(first.stats.bytesRead, cost.bytes, `ls read ${first.stats.bytesRead} bytes of a ${layout.size}-byte package; tail + central directory are ${cost.bytes}`);
  t.is(first.stats.puts, 0);
  // With --quiet, stderr holds only the stats line: no runtime warnings (e.g. a store file handle left
  // for the garbage collector to close, "Closing file descriptor N on garbage collection").
  t.deepEqual(first.result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('store stats: ')), [], 'stderr of ls --quiet --stats');
  t.is((await fs.readdir(path.join(cli.home, 'cache', 'indexes'))).length, 1, 'ls persists the index');

  const second = await cli.stats('--quiet', 'ls', '-R', 'dataset://ds/v1');
  t.is(second.result.out, first.result.out);
  t.is(second.stats.bytesRead, 0, 'the second ls must load the persisted index, not the package');
  t.is(second.stats.gets, 0);

  // package inspect reports the same layout and cost.
  const inspect = await cli.json<Array<{ size: number; entries: number; centralDirectoryReads: number; bytesRead: number }>>(
    'package', 'inspect', 'dataset://ds/v1');
  t.deepEqual(inspect.map((r) => [r.size, r.entries, r.centralDirectoryReads, r.bytesRead]), [[stored.size, COUNT, cost.reads, cost.bytes]]);

  // --json and -l describe the same files with their sizes.
  const rows = await cli.json<Array<{ path: string; type: string; size: number }>>('ls', '-R', 'dataset://ds/latest');
  const bySize = new Map(files.map((f) => [f.path, f.size]));
  t.is(rows.length, COUNT);
  t.true(rows.every((r) => r.type === 'file' && bySize.get(r.path) === r.size), 'ls --json sizes match the source files');
  // A directory inside: only its direct children.
  const top = (await cli.ok('--quiet', 'ls', 'dataset://ds/v1')).out.split('\n').filter((l) => l !== '');
  const expectedTop = [...new Set(files.map((f) => (f.path.includes('/') ? `${f.path.split('/')[0]}/` : f.path)))].sort(compare);
  t.deepEqual([...top].sort(compare), expectedTop);
});

test.serial('cat of every file, 2,000 paths per call, is byte-identical and reads exactly the blocks its files lie in', async (t) => {
  t.timeout(300_000);
  const { cli, files, src } = fx();
  const [stored] = await storedPackages(cli.storeDir, 'ds', 'v1');
  const layout = await zipLayout(stored.file);
  // What `cat dataset://ds/latest` reads besides file data: the alias pointer (docs/DESIGN.md: an alias is
  // read from the store, as it may move). One cat first, so that the index `cat` resolves with is persisted
  // and the measured calls read no package tail.
  const alias = (await fs.stat(path.join(cli.storeDir, 'aliases', 'datasets', 'ds', 'latest.json'))).size;
  await cli.ok('--quiet', 'cat', '--block-size', '256K', 'dataset://ds/latest', files[0].path);
  const batches = chunks(files.map((f) => f.path), BATCH);
  const at = Date.now();
  const results = await mapLimit(batches, 2, async (paths) => {
    const r = await cli.stats('--quiet', 'cat', '--block-size', '256K', 'dataset://ds/latest', ...paths);
    const want = await concatHash(src, paths);
    return { paths, got: { sha256: sha256(r.result.stdout), size: r.result.stdout.length }, want, stats: r.stats };
  });
  fx().timings.cat = Date.now() - at;
  for (const [i, r] of results.entries()) {
    t.is(r.got.size, r.want.size, `batch ${i}: byte count`);
    t.is(r.got.sha256, r.want.sha256, `batch ${i} (${r.paths[0]} … ${r.paths[r.paths.length - 1]}): sha256 of the concatenation`);
  }
  const total: StoreStats = results.reduce((s, r) => ({
    gets: s.gets + r.stats.gets, bytesRead: s.bytesRead + r.stats.bytesRead, puts: s.puts + r.stats.puts,
    bytesWritten: s.bytesWritten + r.stats.bytesWritten, heads: s.heads + r.stats.heads, lists: s.lists + r.stats.lists,
  }), { gets: 0, bytesRead: 0, puts: 0, bytesWritten: 0, heads: 0, lists: 0 });
  // Each call starts with an empty cache (src/cache/block-cache.ts): its first file, read at random, is
  // fetched as exactly its own bytes (an extent, checked by its CRC-32); the files after it are read in
  // order, so through whole blocks: every block their data touch, and readahead no further than the last
  // block the call needs (a block straddling two batches is read by both). Blocks are checked against the
  // part's chunk hash table, read once per call (docs/vhpkgzip.md, "Chunk hash table").
  t.truthy(layout.chunkTable, 'the package has a chunk hash table');
  const table = layout.chunkTable?.size ?? 0;
  let least = 0;
  let most = 0;
  const sizeOf = new Map(files.map((f) => [f.path, f.size]));
  for (const paths of batches) {
    const first = paths.findIndex((p) => sizeOf.get(p)! > 0);
    const extent = sizeOf.get(paths[first])!;
    least += extent + table + blockSpan(layout, paths.slice(first + 1), BLOCK).touched;
    most += extent + table + blockSpan(layout, paths, BLOCK).span;
  }
  const pointers = batches.length * alias;
  t.log(`cat of ${files.length} files in ${batches.length} calls: ${total.gets} GETs, ${total.bytesRead} bytes read; package ${layout.size} bytes; ` +
    `expected ${least}–${most} bytes of package data; ${fx().timings.cat} ms`);
  t.true(total.bytesRead >= least + pointers && total.bytesRead <= most + pointers,
    `read ${total.bytesRead} bytes; the calls need ${least} bytes of package data (first file of each as an extent, the chunk table, then whole ${BLOCK}-byte blocks), ` +
    `${most} with readahead up to each call's last block, plus ${pointers} bytes of alias pointer`);
  t.is(total.puts, 0);
});

test('cat after ls of the same version reads no package tail (one persisted index per resolved version)', async (t) => {
  const { cli, files } = fx();
  await fs.rm(path.join(cli.home, 'cache', 'indexes'), { recursive: true, force: true });
  await cli.ok('--quiet', 'ls', 'dataset://ds/v1');
  const [stored] = await storedPackages(cli.storeDir, 'ds', 'v1');
  const layout = await zipLayout(stored.file);
  const small = files.find((f) => f.size > 0)!;
  const cat = await cli.stats('--quiet', 'cat', 'dataset://ds/v1', small.path);
  // A single small file read at random is fetched as exactly its own bytes: nothing else may be read.
  t.is(cat.stats.bytesRead, small.size, `read ${cat.stats.bytesRead} bytes for a ${small.size}-byte file of a ${layout.size}-byte package`);
});

test.serial('cat of single files, one per call, is byte-identical (spot checks, incl. empty and unicode names)', async (t) => {
  t.timeout(120_000);
  const { cli, files } = fx();
  const picks = new Set<TreeFile>();
  picks.add(files[0]);
  picks.add(files[files.length - 1]);
  const empty = files.find((f) => f.size === 0);
  if (empty) picks.add(empty);
  const unicode = files.filter((f) => /[^\x00-\x7f]/.test(f.path));
  for (const f of unicode.slice(0, 3)) picks.add(f);
  const astral = files.find((f) => f.path.includes('😀'));
  if (astral) picks.add(astral);
  const spaced = files.find((f) => f.path.includes(' '));
  if (spaced) picks.add(spaced);
  for (let i = 1; picks.size < 12 && i < 12; i++) picks.add(files[Math.floor((files.length * i) / 12)]);
  const list = [...picks];
  const got = await mapLimit(list, 2, async (f) => ({ f, r: await cli.ok('--quiet', 'cat', 'dataset://ds/latest', f.path) }));
  for (const { f, r } of got) {
    t.is(r.stdout.length, f.size, `${f.path}: size`);
    t.is(sha256(r.stdout), f.sha256, `${f.path}: sha256`);
  }
  // -o writes the same bytes to a file.
  const out = path.join(fx().root, 'one.out');
  await cli.ok('--quiet', 'cat', 'dataset://ds/v1', list[3].path, '-o', out);
  t.is(sha256(await fs.readFile(out)), list[3].sha256);
});
