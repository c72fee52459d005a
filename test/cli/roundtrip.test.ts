/**
 * Issue 2, "round trip": 10,000 small files (0–8 KiB, random bytes, nested dirs, unicode names) →
 * `vhfs dataset create ds/v1 DIR --package --alias latest` → `ls -R` lists exactly those paths →
 * `cat` (2,000 paths per call, and single files) reproduces every byte. With `--stats`: a full cat pass
 * reads about the package once, an `ls` reads only the package tail + central directory (as reported by
 * `package inspect --json`), and a second `ls` reads nothing (the index is persisted under cache/indexes).
 *
 * VHFS_CLI_FILES overrides the file count (default 10,000) for quick local runs.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  Cli, chunks, compare, concatHash, makeTree, mapLimit, sha256, storedPackages, tempBase, type StoreStats, type TreeFile,
} from './helpers.js';

const COUNT = Number(process.env.VHFS_CLI_FILES ?? 10_000);
const BATCH = 2_000;
const BLOCK = 1 << 20; // the block cache's block size: reads come in whole blocks

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
  const inspect = await cli.json<Array<{ package: string; size: number; entries: number; centralDirectoryReads: number; bytesRead: number }>>(
    'package', 'inspect', 'dataset://ds/v1');
  t.is(inspect.length, 1);
  t.is(inspect[0].entries, COUNT);
  const [stored] = await storedPackages(cli.storeDir, 'ds', 'v1');
  t.is(inspect[0].size, (await fs.stat(stored.file)).size);

  await fs.rm(path.join(cli.home, 'cache', 'indexes'), { recursive: true, force: true });
  const first = await cli.stats('--quiet', 'ls', '-R', 'dataset://ds/v1');
  const listed = first.result.out.split('\n').filter((l) => l !== '');
  t.is(listed.length, COUNT);
  t.deepEqual([...listed].sort(compare), files.map((f) => f.path), 'ls -R must list exactly the source paths');
  t.is(new Set(listed).size, COUNT);

  // Only the tail and central directory: what `package inspect` reports for reading the listing.
  t.true(first.stats.gets <= inspect[0].centralDirectoryReads, `ls made ${first.stats.gets} GETs, inspect ${inspect[0].centralDirectoryReads}`);
  t.true(first.stats.bytesRead <= inspect[0].bytesRead, `ls read ${first.stats.bytesRead} bytes, listing costs ${inspect[0].bytesRead}`);
  t.true(first.stats.bytesRead < inspect[0].size / 10, `ls read ${first.stats.bytesRead} of a ${inspect[0].size}-byte package`);
  t.is(first.stats.puts, 0);
  // With --quiet, stderr holds only the stats line: no runtime warnings (e.g. a store file handle left
  // for the garbage collector to close, "Closing file descriptor N on garbage collection").
  t.deepEqual(first.result.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('store stats: ')), [], 'stderr of ls --quiet --stats');
  t.true((await fs.readdir(path.join(cli.home, 'cache', 'indexes'))).length > 0, 'ls persists the index');

  const second = await cli.stats('--quiet', 'ls', '-R', 'dataset://ds/v1');
  t.is(second.result.out, first.result.out);
  t.is(second.stats.bytesRead, 0, 'the second ls must load the persisted index, not the package');
  t.is(second.stats.gets, 0);

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

test.serial('cat of every file, 2,000 paths per call, is byte-identical and reads about the package once', async (t) => {
  t.timeout(300_000);
  const { cli, files, src } = fx();
  const [inspect] = await cli.json<Array<{ size: number; bytesRead: number; members: Array<{ path: string; offset: number; size: number }> }>>(
    'package', 'inspect', 'dataset://ds/v1', '--entries');
  const member = new Map(inspect.members.map((m) => [m.path, m]));
  const batches = chunks(files.map((f) => f.path), BATCH);
  const at = Date.now();
  const results = await mapLimit(batches, 2, async (paths) => {
    const r = await cli.stats('--quiet', 'cat', 'dataset://ds/latest', ...paths);
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
  // What the calls must read at least: the whole blocks their files' data touch (a block straddling two
  // batches is read by both).
  let touched = 0;
  for (const paths of batches) {
    const blocks = new Set<number>();
    for (const p of paths) {
      const m = member.get(p)!;
      if (m.size === 0) continue;
      for (let b = Math.floor(m.offset / BLOCK); b <= Math.floor((m.offset + m.size - 1) / BLOCK); b++) blocks.add(b);
    }
    for (const b of blocks) touched += Math.min(BLOCK, inspect.size - b * BLOCK);
  }
  // Budget (issue 2: "≤ package size + small slack"): the package once, its listing once (the first call
  // may have to read it), and per call at most two more blocks (the one straddling the batch boundary
  // and one of readahead past the last file).
  const budget = inspect.size + inspect.bytesRead + batches.length * 2 * BLOCK;
  t.log(`cat of ${files.length} files in ${batches.length} calls: ${total.gets} GETs, ${total.bytesRead} bytes read; package ${inspect.size} bytes; ` +
    `blocks touched ${touched}; budget ${budget}; ${fx().timings.cat} ms`);
  t.true(total.bytesRead >= files.reduce((n, f) => n + f.size, 0), 'cannot have read less than the data');
  t.true(total.bytesRead <= budget,
    `read ${total.bytesRead} bytes for a ${inspect.size}-byte package (budget ${budget}; the calls' files lie in ${touched} bytes of blocks, ` +
    `so ${total.bytesRead - touched - inspect.bytesRead} bytes were read ahead past what any call needed)`);
  t.is(total.puts, 0);
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
