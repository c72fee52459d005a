/**
 * Issue 2, everyday workflow through the CLI: datums and datum aliases (`put --alias`, `alias set`,
 * `alias history`), dataset aliases, listing datasets, `dataset create --from --exclude`, and a second
 * host (`--home` of its own, same `--store`) after `catalog sync`.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Cli, compare, concatHash, makeTree, sha256, storedPackages, tempDir } from './helpers.js';
import { listingCost, zipLayout } from '../helpers/zip-oracle.js';

interface PutRow { uri: string; id: string; name: string; size: number; sha256: string }

test('put --alias, cat datum://ALIAS, alias set to another datum, alias history in order', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const f1 = path.join(dir, 'weights.bin');
  const f2 = path.join(dir, 'weights-v2.bin');
  const d1 = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) & 0xff));
  const d2 = Buffer.from('second version\n');
  await fs.writeFile(f1, d1);
  await fs.writeFile(f2, d2);

  const [p1] = await cli.json<PutRow[]>('put', f1, '--alias', 'a');
  t.is(p1.uri, `datum://${p1.id}`);
  t.is(p1.size, d1.length);
  t.is(p1.sha256, sha256(d1));
  const byAlias = await cli.ok('cat', 'datum://a');
  t.true(byAlias.stdout.equals(d1), 'cat datum://a reproduces the file');
  t.true((await cli.ok('cat', p1.uri)).stdout.equals(d1), 'cat datum://ID too');
  t.is((await cli.ok('ls', 'datum://a')).out, 'weights.bin\n');

  const [p2] = await cli.json<PutRow[]>('put', f2);
  t.not(p2.id, p1.id);
  const set = await cli.json<{ target: string; history: Array<{ target: string }> }>('alias', 'set', 'datum://a', p2.id);
  t.is(set.target, p2.id);
  t.true((await cli.ok('cat', 'datum://a')).stdout.equals(d2), 'the alias moved');
  t.true((await cli.ok('cat', p1.uri)).stdout.equals(d1), 'the old datum is still there');

  const history = await cli.json<Array<{ target: string; at: string }>>('alias', 'history', 'datum://a');
  t.deepEqual(history.map((h) => h.target), [p1.id, p2.id]);
  t.true(Date.parse(history[0].at) <= Date.parse(history[1].at), 'oldest first');
  const human = (await cli.ok('alias', 'history', 'datum://a')).out.trim().split('\n');
  t.is(human.length, 2);
  t.true(human[0].endsWith(p1.id) && human[1].endsWith(p2.id), human.join('\n'));

  // Pointing an alias at a datum that does not exist fails and leaves it where it was.
  const bad = await cli.run('alias', 'set', 'datum://a', '0190f0f0-0000-7000-8000-000000000000');
  t.is(bad.code, 3, bad.stderr);
  t.deepEqual((await cli.json<Array<{ target: string }>>('alias', 'history', 'datum://a')).map((h) => h.target), [p1.id, p2.id]);
});

test('dataset aliases, dataset listing, and create --from --exclude', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const src1 = path.join(dir, 'v1');
  const files1 = await makeTree(src1, 60, { seed: 3, maxSize: 4096 });
  await cli.ok('--quiet', 'dataset', 'create', 'ds/v1', src1, '--package', '--alias', 'latest');
  await cli.ok('--quiet', 'dataset', 'create', 'other/v1', src1);

  // alias set dataset://ds/prod v1, then ls through it.
  const set = await cli.json<{ target: string }>('alias', 'set', 'dataset://ds/prod', 'v1');
  t.is(set.target, 'v1');
  const viaProd = (await cli.ok('--quiet', 'ls', '-R', 'dataset://ds/prod')).out.split('\n').filter(Boolean);
  t.deepEqual(viaProd.sort(compare), files1.map((f) => f.path));

  // Listing datasets: `dataset ls`, `ls dataset://`, and one dataset's versions with their aliases.
  t.deepEqual((await cli.json<string[]>('dataset', 'ls')).sort(), ['ds', 'other']);
  t.deepEqual((await cli.ok('ls', 'dataset://')).out.trim().split('\n').sort(), ['dataset://ds/', 'dataset://other/']);
  const one = await cli.json<{ versions: Array<{ version: string; aliases: string[] }> }>('dataset', 'ls', 'ds');
  t.deepEqual(one.versions.map((v) => ({ version: v.version, aliases: [...v.aliases].sort() })), [{ version: 'v1', aliases: ['latest', 'prod'] }]);
  t.regex((await cli.ok('ls', 'dataset://ds')).out, /^dataset:\/\/ds\/v1\t\(aliases: .*latest.*\)$/m);

  // v2 = v1 minus one excluded path, plus new files (one of which replaces a v1 path), packaged.
  const excluded = files1[5].path;
  const replaced = files1[10].path;
  const src2 = path.join(dir, 'v2');
  const added = ['new/one.txt', 'new/ünï two.txt', replaced];
  for (const [i, p] of added.entries()) {
    await fs.mkdir(path.dirname(path.join(src2, p)), { recursive: true });
    await fs.writeFile(path.join(src2, p), `added file ${i}: ${p}\n`);
  }
  const created = await cli.json<{ files: number; from: string | null }>(
    'dataset', 'create', 'ds/v2', src2, '--from', 'ds/latest', '--exclude', excluded, '--package', '--alias', 'latest');
  t.is(created.from, 'dataset://ds/v1', 'the alias is resolved to the version it names');
  const expected = [...new Set([...files1.map((f) => f.path).filter((p) => p !== excluded), ...added])].sort(compare);
  t.is(created.files, expected.length);
  const listed = (await cli.ok('--quiet', 'ls', '-R', 'dataset://ds/v2')).out.split('\n').filter(Boolean);
  t.deepEqual(listed.sort(compare), expected);
  t.false(listed.includes(excluded));

  // Contents: inherited files from v1's source, new and replacing files from v2's source.
  const fromV2 = new Set(added);
  const inherited = expected.filter((p) => !fromV2.has(p));
  const catInherited = await cli.ok('--quiet', 'cat', 'dataset://ds/latest', ...inherited);
  t.is(sha256(catInherited.stdout), (await concatHash(src1, inherited)).sha256, 'inherited files (streamed back from the store into the package)');
  const catAdded = await cli.ok('--quiet', 'cat', 'dataset://ds/v2', ...added);
  t.is(sha256(catAdded.stdout), (await concatHash(src2, added)).sha256, 'new files, and the replacing one');
  // v1 is unchanged (immutable) and still reachable through prod.
  t.is(sha256((await cli.ok('--quiet', 'cat', 'dataset://ds/prod', replaced)).stdout), files1[10].sha256);
  t.is((await cli.ok('--quiet', 'cat', 'dataset://ds/v1', excluded)).stdout.length, files1[5].size);

  // latest moved; its history shows both.
  const hist = await cli.json<Array<{ target: string }>>('alias', 'history', 'dataset://ds/latest');
  t.deepEqual(hist.map((h) => h.target), ['v1', 'v2']);
});

test('a second host (own --home, same --store) sees everything after catalog sync', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const store = path.join(dir, 'shared-store');
  const hostA = new Cli(path.join(dir, 'homeA'), store);
  const hostB = new Cli(path.join(dir, 'homeB'), store);
  const src = path.join(dir, 'src');
  const files = await makeTree(src, 80, { seed: 5, maxSize: 4096 });
  await hostA.ok('--quiet', 'dataset', 'create', 'ds/v1', src, '--package', '--alias', 'latest');
  await hostA.ok('--quiet', 'dataset', 'create', 'plain/v1', src);
  const note = path.join(dir, 'note.txt');
  await fs.writeFile(note, 'a datum from host A\n');
  await hostA.ok('put', note, '--alias', 'note');

  const sync = await hostB.json<{ datums: number; versions: number; aliases: number }>('catalog', 'sync');
  t.is(sync.versions, 2);
  t.is(sync.aliases, 2);
  // Every datum record in the store (docs/DESIGN.md: datums/<id>.json on its own, or in datums/batches/): a
  // datum per file of each version, the package part, and the note.
  const single = (await fs.readdir(path.join(store, 'datums'))).filter((n) => n.endsWith('.json')).length;
  let batched = 0;
  for (const name of await fs.readdir(path.join(store, 'datums', 'batches'))) {
    batched += (JSON.parse(await fs.readFile(path.join(store, 'datums', 'batches', name), 'utf8')) as { records: unknown[] }).records.length;
  }
  t.is(sync.datums, single + batched);
  t.is(sync.datums, 2 * files.length + 1 + 1);

  t.deepEqual((await hostB.json<string[]>('dataset', 'ls')).sort(), ['ds', 'plain']);
  t.deepEqual((await hostB.ok('ls', 'dataset://')).out.trim().split('\n').sort(), ['dataset://ds/', 'dataset://plain/']);
  const versions = await hostB.json<{ versions: Array<{ version: string; aliases: string[] }> }>('dataset', 'ls', 'ds');
  t.deepEqual(versions.versions, [{ version: 'v1', aliases: ['latest'] }]);
  const paths = files.map((f) => f.path);
  const want = await concatHash(src, paths);
  for (const uri of ['dataset://ds/latest', 'dataset://plain/v1']) {
    const listed = (await hostB.ok('--quiet', 'ls', '-R', uri)).out.split('\n').filter(Boolean);
    t.deepEqual(listed.sort(compare), paths, `${uri}: ls -R on host B`);
    const cat = await hostB.ok('--quiet', 'cat', uri, ...paths);
    t.is(sha256(cat.stdout), want.sha256, `${uri}: cat on host B`);
  }
  t.is((await hostB.ok('cat', 'datum://note')).out, 'a datum from host A\n');
  // Host B's state is its own: its catalog and cache live in homeB, the store is untouched by reads.
  await fs.access(path.join(dir, 'homeB', 'catalog.sqlite'));
  await t.throwsAsync(fs.access(path.join(dir, 'homeB', 'store')), undefined, 'with --store, no <home>/store is made');
});

test('cache info counts persisted indexes; cache clear drops them and the next ls reads the package tail again', async (t) => {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const src = path.join(dir, 'src');
  await fs.mkdir(path.join(src, 'sub'), { recursive: true });
  await fs.writeFile(path.join(src, 'a.txt'), 'a');
  await fs.writeFile(path.join(src, 'sub', 'b.txt'), 'b');
  await cli.ok('-q', 'dataset', 'create', 'c/v1', src, '--package');

  const first = await cli.stats('ls', '-R', 'dataset://c/v1');
  const [pkg] = await storedPackages(cli.storeDir, 'c', 'v1');
  t.is(first.stats.bytesRead, listingCost(await zipLayout(pkg.file)).bytes, 'the first ls reads the package tail');
  const info = await cli.json<{ indexes: { files: number; bytes: number } }>('cache', 'info');
  const indexDir = path.join(cli.home, 'cache', 'indexes');
  const indexFiles = await fs.readdir(indexDir);
  t.is(info.indexes.files, 1);
  t.is(indexFiles.length, 1);
  t.is(info.indexes.bytes, (await fs.stat(path.join(indexDir, indexFiles[0]))).size);
  t.is((await cli.stats('ls', '-R', 'dataset://c/v1')).stats.bytesRead, 0, 'the persisted index serves the second ls');

  await cli.ok('cache', 'clear', '--indexes');
  t.is((await cli.json<{ indexes: { files: number } }>('cache', 'info')).indexes.files, 0);
  const again = await cli.stats('ls', '-R', 'dataset://c/v1');
  t.is(again.stats.bytesRead, first.stats.bytesRead, 'after clear the tail is read again');
  t.deepEqual(again.result.stdout, first.result.stdout);
});
