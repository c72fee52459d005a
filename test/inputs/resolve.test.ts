/**
 * Below the mount: `InputResolver` (URIs → one TreeIndex per input) and `InputSet` (each input resolved
 * once, on first touch) on the in-memory store behind `FaultyStore`, no FUSE. Expected paths and bytes come
 * from the fixture's source trees (test/helpers/catalog-fixture.ts), read costs from the package layout as
 * Python's zipfile sees it (test/helpers/zip-oracle.ts).
 */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { InputResolver, type ResolvedInput } from '../../src/inputs/resolve.js';
import { InputSet } from '../../src/inputs/input-set.js';
import { parseInputFlags, type InputSpec } from '../../src/inputs/config.js';
import { isVhfsError, VhfsError } from '../../src/util/errors.js';
import { memoryCatalog, packageKey, TREES, WEIGHTS, type MemoryCatalog } from '../helpers/catalog-fixture.js';
import { listingCost, zipLayout } from '../helpers/zip-oracle.js';

function spec(name: string, uri: string, extra: Partial<InputSpec> = {}): InputSpec {
  return { ...parseInputFlags([`${name}=${uri}`])[0], ...extra };
}

/** Path → bytes of every file of a resolved input, read straight from the store at the index's ranges. */
async function contents(c: MemoryCatalog, input: ResolvedInput): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  const a = input.index.arrays;
  for (const { index: i, path: p } of input.index.walk()) {
    const source = input.index.sources[a.fileSource[i]];
    if (source.store !== undefined) throw new Error(`${p}: reads from ${source.store}, not from the catalog's store`);
    out[p] = await c.mem.getRange(source.key, a.fileOffset[i], a.fileSize[i]);
  }
  return out;
}

/** The listing cost of a version's one package, from its bytes as Python's zipfile sees them. */
async function packageListingCost(t: ExecutionContext, c: MemoryCatalog, kind: 'dataset' | 'model', name: string): Promise<{ reads: number; bytes: number }> {
  const key = await packageKey(c, kind, name, 'v1');
  const file = path.join(c.dir, 'package.zip');
  await fs.writeFile(file, c.mem.objects.get(key)!.data);
  t.teardown(() => fs.rm(file, { force: true }));
  return listingCost(await zipLayout(file));
}

test('a packaged dataset resolves to its files at the right package ranges, reading only the tail and central directory', async (t) => {
  const c = await memoryCatalog(t);
  const cost = await packageListingCost(t, c, 'dataset', 'pkg');
  const resolver = new InputResolver({ catalog: c.catalog });
  const input = await resolver.resolve(spec('images', 'dataset://pkg/v1'));
  t.false(input.fromCache);
  t.deepEqual(input.warnings, []);
  t.deepEqual(await contents(c, input), TREES.pkg);
  t.deepEqual(input.index.list(0).sort(), ['a', 'empty.txt', 'top.txt']);
  // Resolving read the package listing and nothing else (the contents above were read afterwards).
  t.is(c.store.calls.getRange, cost.reads);
});

test('model:// and an unpackaged dataset resolve the same way; a datum alias gives the datum under its name', async (t) => {
  const c = await memoryCatalog(t);
  const resolver = new InputResolver({ catalog: c.catalog });
  t.deepEqual(await contents(c, await resolver.resolve(spec('m', 'model://net/v1'))), TREES.net);
  const plain = await resolver.resolve(spec('p', 'dataset://plain/v1'));
  t.deepEqual(await contents(c, plain), TREES.plain);
  t.is(plain.index.sources.length, Object.keys(TREES.plain).length, 'one blob per file');
  t.deepEqual(await contents(c, await resolver.resolve(spec('w', 'datum://weights'))), { 'weights.bin': WEIGHTS });
  t.deepEqual(await contents(c, await resolver.resolve(spec('w', `datum://${c.weights.id}`, { filename: 'model.pt' }))), { 'model.pt': WEIGHTS });
});

test('describe() lists every file for inputs.json with its datum and checksum', async (t) => {
  const c = await memoryCatalog(t);
  const input = await new InputResolver({ catalog: c.catalog }).resolve(spec('m', 'model://net/v1'));
  const rows = [];
  for await (const f of input.describe()) rows.push(f);
  t.deepEqual(rows.map((r) => [r.name, r.size]).sort(), Object.entries(TREES.net).map(([p, d]) => [p, d.length]).sort());
  for (const r of rows) {
    t.is(r.uri, `datum://${r.datumId}`);
    t.is(r.sha256, (await c.catalog.getDatum(r.datumId ?? '')).sha256);
  }
});

test('a persisted index serves the next resolution of the same version without reading the store', async (t) => {
  const c = await memoryCatalog(t);
  const cacheDir = path.join(c.dir, 'cache');
  const first = await new InputResolver({ catalog: c.catalog, cacheDir }).resolve(spec('i', 'dataset://pkg/latest'));
  t.false(first.fromCache);
  const gets = c.mem.stats.gets;
  const again = await new InputResolver({ catalog: c.catalog, cacheDir }).resolve(spec('i', 'dataset://pkg/v1'));
  t.true(again.fromCache);
  t.is(c.mem.stats.gets, gets, 'no store read at all');
  t.deepEqual(await contents(c, again), TREES.pkg);
});

test('local paths: a wildcard with keep-directories suffix and full, file://, and errors naming the URI', async (t) => {
  const c = await memoryCatalog(t);
  const resolver = new InputResolver({ catalog: c.catalog });
  const root = path.join(c.src, 'pkg');
  const paths = async (uri: string, keep: InputSpec['keepDirectories']) =>
    [...(await resolver.resolve(spec('l', uri, { keepDirectories: keep }))).index.walk()].map((e) => e.path).sort();
  t.deepEqual(await paths(`${root}/**.txt`, 'suffix'), ['a/x.txt', 'empty.txt', 'top.txt']);
  t.deepEqual(await paths(`${root}/**.txt`, 'none'), ['empty.txt', 'top.txt', 'x.txt']);
  t.deepEqual(await paths(`${root}/*.txt`, 'none'), ['empty.txt', 'top.txt']);
  t.deepEqual(await paths(`${root}/a/*`, 'full'), [`${root.slice(1)}/a/x.txt`]);
  t.deepEqual(await paths(`file://${root}/top.txt`, 'none'), ['top.txt']);
  const missing = await t.throwsAsync(resolver.resolve(spec('l', `${root}/nope.txt`)));
  t.true(isVhfsError(missing, 'NOT_FOUND'));
  t.is(missing!.message, `${root}/nope.txt: no such file`);
  const dir = await t.throwsAsync(resolver.resolve(spec('l', root)));
  t.true(isVhfsError(dir, 'BAD_URI'));
  t.regex(dir!.message, /is a directory; use .*\/\*\*/);
});

test('errors: an unknown version is NOT_FOUND naming it; a failing store is STORE', async (t) => {
  const c = await memoryCatalog(t);
  const resolver = new InputResolver({ catalog: c.catalog });
  const nf = await t.throwsAsync(resolver.resolve(spec('x', 'dataset://pkg/v9')));
  t.true(isVhfsError(nf, 'NOT_FOUND'));
  t.regex(nf!.message, /v9/);
  c.store.plan = { keys: /^blobs\//, fail: [{ op: 'getRange', nth: 1, sticky: true }] };
  const st = await t.throwsAsync(resolver.resolve(spec('x', 'dataset://pkg/v1')));
  t.true(isVhfsError(st, 'STORE'), String(st));
});

// ------------------------------------------------------------------------------------------- InputSet

test('InputSet: concurrent touches of an input resolve it once; get() answers only once it is ready', async (t) => {
  const c = await memoryCatalog(t);
  const cost = await packageListingCost(t, c, 'dataset', 'pkg');
  c.store.plan = { delayMs: 20 };
  const lines: string[] = [];
  const set = new InputSet([spec('pkg', 'dataset://pkg/v1'), spec('plain', 'dataset://plain/v1')], new InputResolver({ catalog: c.catalog }), { log: (l) => lines.push(l) });
  t.deepEqual(set.names, ['pkg', 'plain']);
  t.is(set.get('pkg'), undefined);
  const all = await Promise.all(Array.from({ length: 10 }, () => set.ensure('pkg')));
  t.true(all.every((r) => r === all[0]), 'every touch got the one resolution');
  t.is(set.get('pkg'), all[0]);
  t.is(c.store.calls.getRange, cost.reads, 'the package listing was read once');
  t.is(await set.ensure('pkg'), all[0]);
  t.is(c.store.calls.getRange, cost.reads);
  t.is(set.get('plain'), undefined, 'the other input is untouched');
  t.deepEqual(lines.filter((l) => l.startsWith('input "pkg"')).length, 1);
  t.regex(lines[0], /^input "pkg": 4 files, 3 directories resolved from the store in \d+ ms$/);
  const unknown = await t.throwsAsync(set.ensure('nope'));
  t.is(unknown!.message, 'no input named "nope"');
});

test('InputSet: a failed resolution is remembered (one error, no new store call) and retried once retryAfterMs passed', async (t) => {
  const c = await memoryCatalog(t);
  const injected = new VhfsError('STORE', 'mem://test: injected');
  c.store.plan = { keys: /^blobs\//, fail: [{ op: 'getRange', nth: 1, error: injected }] };
  const lines: string[] = [];
  const remembering = new InputSet([spec('pkg', 'dataset://pkg/v1')], new InputResolver({ catalog: c.catalog }), { retryAfterMs: 3_600_000, log: (l) => lines.push(l) });
  t.is(await t.throwsAsync(remembering.ensure('pkg')), injected);
  const calls = c.store.calls.getRange;
  t.is(await t.throwsAsync(remembering.ensure('pkg')), injected, 'the same error again');
  t.is(c.store.calls.getRange, calls, 'no new store call while the failure is remembered');
  t.deepEqual(lines, ['error: input "pkg": mem://test: injected'], 'one error line, not one per touch');
  const failures = await remembering.ensureAll();
  t.deepEqual([...failures.entries()], [['pkg', injected]]);

  // The store has recovered (the fault hit call #1 only): an input set that retries at once now succeeds.
  const retrying = new InputSet([spec('pkg', 'dataset://pkg/v1')], new InputResolver({ catalog: c.catalog }), { retryAfterMs: 0 });
  c.store.plan = { keys: /^blobs\//, fail: [{ op: 'getRange', nth: c.store.calls.getRange + 1, error: injected }] };
  t.is(await t.throwsAsync(retrying.ensure('pkg')), injected);
  const input = await retrying.ensure('pkg');
  t.is(input.index.fileCount, Object.keys(TREES.pkg).length);
  t.is(retrying.get('pkg'), input);
  t.deepEqual([...(await retrying.ensureAll()).keys()], []);
});
