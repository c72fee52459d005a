import test from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { isVhfsError } from '../../src/util/errors.js';
import { isUuid, uuidv7 } from '../../src/util/ids.js';
import { LocalDirStore } from '../../src/store/local.js';
import { FaultyStore } from '../../src/store/faulty.js';
import { Catalog, storeKeys, type VersionFile } from '../../src/catalog/index.js';
import { casAlias } from '../../src/catalog/store-records.js';
import { SCAN_CACHE_SIZE } from '../../src/catalog/db.js';

const producer = { tool: 'test' };

interface Env {
  dir: string;
  store: LocalDirStore;
  cat: Catalog;
  /** A second host: same store, its own SQLite. */
  host2: () => Promise<Catalog>;
  done: () => Promise<void>;
}

async function env(): Promise<Env> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-cat-'));
  const store = new LocalDirStore(path.join(dir, 'store'), { fsync: false });
  const cat = await Catalog.open({ store, dbPath: path.join(dir, 'host1.sqlite') });
  const others: Catalog[] = [];
  return {
    dir,
    store,
    cat,
    host2: async () => {
      const c = await Catalog.open({ store: new LocalDirStore(path.join(dir, 'store')), dbPath: path.join(dir, `host${others.length + 2}.sqlite`) });
      others.push(c);
      return c;
    },
    done: async () => {
      cat.close();
      for (const c of others) c.close();
      await store.close();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

async function putFiles(cat: Catalog, names: string[], tag?: string): Promise<VersionFile[]> {
  const out: VersionFile[] = [];
  for (const name of names) {
    const d = await cat.putDatum(Buffer.from(`content of ${name}`), { name, producer, tags: tag ? [tag] : [] });
    out.push({ path: name, datumId: d.id, size: d.size, sha256: d.sha256 });
  }
  return out;
}

test('ids: UUIDv7 strictly increasing, well-formed', (t) => {
  const ids = Array.from({ length: 5000 }, () => uuidv7());
  t.true(ids.every(isUuid));
  t.true(ids.every((id) => id[14] === '7' && '89ab'.includes(id[19])));
  t.deepEqual([...ids].sort(), ids);
  t.is(new Set(ids).size, ids.length);
  t.false(isUuid('not-a-uuid'));
});

test('datum put/get: bytes in blobs/sha256, record in datums/, dedup of equal content', async (t) => {
  const e = await env();
  const body = Buffer.from('hello datum');
  const sha = createHash('sha256').update(body).digest('hex');
  const a = await e.cat.putDatum(body, { name: 'greetings/hello.txt', producer, tags: ['x'], properties: { split: 'train' } });
  t.true(isUuid(a.id));
  t.is(a.sha256, sha);
  t.is(a.blobKey, `blobs/sha256/${sha}`);
  t.is((await e.store.get(a.blobKey)).toString(), 'hello datum');
  t.deepEqual(JSON.parse((await e.store.get(`datums/${a.id}.json`)).toString()), a);
  t.deepEqual(await e.cat.getDatum(a.id), a);

  const putsBefore = e.store.stats.puts;
  const headsBefore = e.store.stats.heads;
  const b = await e.cat.putDatum(Readable.from([Buffer.from('hello '), Buffer.from('datum')]), { name: 'copy.txt', producer });
  t.not(b.id, a.id);
  t.is(b.blobKey, a.blobKey);
  // A small blob is put create-if-absent without asking first: a dedup hit is one refused put (the round
  // trip a head would have cost), one head to check the existing blob's size, and the record.
  t.is(e.store.stats.puts - putsBefore, 2, 'dedup: a refused blob put and the datum record');
  t.is(e.store.stats.heads - headsBefore, 1, 'dedup: the existing blob size checked');
  t.is((await e.store.get(a.blobKey)).toString(), 'hello datum', 'the existing blob is untouched');

  const file = path.join(e.dir, 'on-disk.bin');
  await fs.writeFile(file, Buffer.alloc(5 << 20, 3));
  const c = await e.cat.putDatum({ path: file }, { name: 'on-disk.bin', producer, size: 5 << 20 });
  t.is(c.size, 5 << 20);
  t.is((await e.store.head(c.blobKey))?.size, 5 << 20);

  const err = await t.throwsAsync(e.cat.putDatum(Buffer.from('abc'), { name: 'x', producer, size: 4 }));
  t.true(isVhfsError(err, 'INTEGRITY'));
  const bad = await t.throwsAsync(e.cat.putDatum(Buffer.from('abc'), { name: '../escape', producer }));
  t.true(isVhfsError(bad, 'UNSAFE_PATH'));
  await e.done();
});

test('getDatum: NOT_FOUND names datum:// and the store; another host finds it via the store', async (t) => {
  const e = await env();
  const id = uuidv7();
  const err = await t.throwsAsync(e.cat.getDatum(id));
  t.true(isVhfsError(err, 'NOT_FOUND'));
  t.is(err!.message, `datum://${id} not found in ${e.store.url}`);
  const d = await e.cat.putDatum(Buffer.from('x'), { name: 'x', producer });
  const h2 = await e.host2();
  t.false(h2.db.hasDatum(d.id));
  t.deepEqual(await h2.getDatum(d.id), d);
  t.true(h2.db.hasDatum(d.id), 'ingested on first lookup');
  await e.done();
});

test('versions: create, read back, immutable, validated', async (t) => {
  const e = await env();
  const files = await putFiles(e.cat, ['b.txt', 'a/1.txt', 'a/2.txt']);
  const v1 = await e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v1', files, producer });
  t.deepEqual(v1.files.map((f) => f.path), ['a/1.txt', 'a/2.txt', 'b.txt'], 'stored in path order');
  t.deepEqual(await e.cat.getVersion('dataset', 'images', 'v1'), v1);
  t.deepEqual(JSON.parse((await e.store.get('datasets/images/versions/v1.json')).toString()), v1);

  const dup = await t.throwsAsync(e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v1', files: [], producer }));
  t.true(isVhfsError(dup, 'CONFLICT'));
  t.is(dup!.message, 'dataset version images/v1 already exists; versions are immutable');

  const summary = await e.cat.getVersionSummary('dataset', 'images', 'v1');
  t.is(summary.fileCount, 3);
  t.deepEqual([...(await e.cat.versionFiles('dataset', 'images', 'v1'))], v1.files);
  // A scan runs with a small page cache (SCAN_CACHE_SIZE; the connection cannot be asked while a scan is
  // open) and gives the connection its own back, whether it ran to the end (above) or was left early.
  const cacheSize = () => e.cat.db.db.pragma('cache_size', { simple: true }) as number;
  t.is(cacheSize(), -65536);
  t.not(SCAN_CACHE_SIZE, -65536);
  const scan = await e.cat.versionFiles('dataset', 'images', 'v1');
  t.is(scan.next().value?.path, 'a/1.txt');
  scan.return?.();
  t.is(cacheSize(), -65536);

  const unsafe = await t.throwsAsync(
    e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v2', files: [{ ...files[0], path: 'a/../b' }], producer }),
  );
  t.true(isVhfsError(unsafe, 'UNSAFE_PATH'));
  const repeat = await t.throwsAsync(
    e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v2', files: [files[0], files[0]], producer }),
  );
  t.true(isVhfsError(repeat, 'UNSAFE_PATH'));
  const ghost = await t.throwsAsync(
    e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v2', files: [{ ...files[0], datumId: uuidv7() }], producer }),
  );
  t.true(isVhfsError(ghost, 'NOT_FOUND'));
  const lying = await t.throwsAsync(
    e.cat.createVersion({ kind: 'dataset', collection: 'images', version: 'v2', files: [{ ...files[0], size: 999 }], producer }),
  );
  t.true(isVhfsError(lying, 'INTEGRITY'));
  const badName = await t.throwsAsync(e.cat.createVersion({ kind: 'dataset', collection: 'im/ages', version: 'v2', files: [], producer }));
  t.true(isVhfsError(badName, 'BAD_ARGUMENT'));
  t.deepEqual(await e.cat.listVersions('dataset', 'images'), ['v1']);
  await e.done();
});

test('aliases: set, move, history, resolve, not-found listing, dangling', async (t) => {
  const e = await env();
  const files = await putFiles(e.cat, ['f']);
  for (const v of ['v1', 'v2', 'v10']) await e.cat.createVersion({ kind: 'dataset', collection: 'images', version: v, files, producer });
  await e.cat.setAlias('dataset', 'images', 'prod', 'v1');
  t.is((await e.cat.getVersion('dataset', 'images', 'prod')).version, 'v1');
  await e.cat.setAlias('dataset', 'images', 'prod', 'v2');
  await e.cat.setAlias('dataset', 'images', 'prod', 'v2'); // same target: no new history entry
  t.is((await e.cat.getVersion('dataset', 'images', 'prod')).version, 'v2');
  t.deepEqual((await e.cat.aliasHistory('dataset', 'images', 'prod')).map((h) => h.target), ['v1', 'v2']);
  await e.cat.setAlias('dataset', 'images', 'v2', 'v1'); // a version name wins over an alias of that name
  t.is((await e.cat.getVersion('dataset', 'images', 'v2')).version, 'v2');

  const missing = await t.throwsAsync(e.cat.setAlias('dataset', 'images', 'x', 'v9'));
  t.true(isVhfsError(missing, 'NOT_FOUND'));

  const nf = await t.throwsAsync(e.cat.getVersion('dataset', 'images', 'v9'));
  t.true(isVhfsError(nf, 'NOT_FOUND'));
  t.is(nf!.message, 'dataset://images/v9: no such version or alias of dataset "images" (versions: v1, v2, v10; aliases: prod, v2)');
  const noDs = await t.throwsAsync(e.cat.getVersion('dataset', 'nosuch', 'v1'));
  t.is(noDs!.message, `dataset://nosuch/v1: no dataset "nosuch" in ${e.store.url}`);

  // another host moves the alias: this host sees it at once (aliases are read from the store)
  const h2 = await e.host2();
  await h2.setAlias('dataset', 'images', 'prod', 'v10');
  t.is((await e.cat.getVersion('dataset', 'images', 'prod')).version, 'v10');
  t.deepEqual((await e.cat.listAliases('dataset', 'images')).map((a) => [a.name, a.target]), [['prod', 'v10'], ['v2', 'v1']]);

  // dangling: an alias whose version record is gone (written by hand: the catalog never allows it)
  await casAlias(e.store, 'dataset', 'images', 'stale', 'v404');
  const dangling = await t.throwsAsync(e.cat.getVersion('dataset', 'images', 'stale'));
  t.true(isVhfsError(dangling, 'ALIAS_DANGLING'));
  t.is(dangling!.message, 'dataset alias images/stale points to dataset://images/v404 which does not exist');
  t.deepEqual(await e.cat.listCollections('dataset'), ['images']);
  await e.done();
});

test('datum aliases: resolveDatumRef by id, datum:// URI and alias; dangling', async (t) => {
  const e = await env();
  const d = await e.cat.putDatum(Buffer.from('model weights'), { name: 'w.bin', producer });
  t.deepEqual(await e.cat.resolveDatumRef(d.id), d);
  t.deepEqual(await e.cat.resolveDatumRef(`datum://${d.id}`), d);
  await e.cat.setAlias('datum', '', 'best-model', d.id);
  t.deepEqual(await e.cat.resolveDatumRef('datum://best-model'), d);
  t.deepEqual(await e.cat.resolveDatumRef('best-model'), d);
  const nf = await t.throwsAsync(e.cat.resolveDatumRef('nope'));
  t.true(isVhfsError(nf, 'NOT_FOUND'));
  const ghost = uuidv7();
  await casAlias(e.store, 'datum', '', 'ghost', ghost);
  const err = await t.throwsAsync(e.cat.resolveDatumRef('ghost'));
  t.true(isVhfsError(err, 'ALIAS_DANGLING'));
  t.is(err!.message, `datum alias "ghost" points to datum://${ghost} which does not exist`);
  const notId = await t.throwsAsync(e.cat.setAlias('datum', '', 'x', 'best-model'));
  t.true(isVhfsError(notId, 'BAD_ARGUMENT'));
  await e.done();
});

test('findDatums by tag, name, property', async (t) => {
  const e = await env();
  const a = await e.cat.putDatum(Buffer.from('a'), { name: 'a.png', producer, tags: ['cat', 'train'], properties: { split: 'train', n: 3, meta: { b: 1, a: 2 } } });
  const b = await e.cat.putDatum(Buffer.from('b'), { name: 'b.png', producer, tags: ['dog', 'train'], properties: { split: 'test', n: 3 } });
  const ids = (q: Parameters<Catalog['findDatums']>[0]) => e.cat.findDatums(q).map((d) => d.id);
  t.deepEqual(ids({ tag: 'train' }), [a.id, b.id]);
  t.deepEqual(ids({ tag: 'cat' }), [a.id]);
  t.deepEqual(ids({ name: 'b.png' }), [b.id]);
  t.deepEqual(ids({ property: { key: 'split', value: 'test' } }), [b.id]);
  t.deepEqual(ids({ property: { key: 'n', value: 3 } }), [a.id, b.id]);
  t.deepEqual(ids({ property: { key: 'n', value: '3' } }), [], 'values compare as JSON: 3 is not "3"');
  t.deepEqual(ids({ property: { key: 'meta', value: { a: 2, b: 1 } } }), [a.id], 'object key order does not matter');
  t.deepEqual(ids({ tag: 'train', property: { key: 'split', value: 'train' } }), [a.id]);
  t.deepEqual(ids({ tag: 'train', limit: 1 }), [a.id]);
  t.deepEqual(e.cat.findDatums({ tag: 'cat' })[0], a);
  await e.done();
});

test('sync: a fresh SQLite on the same store (second host) gives the same answers; idempotent', async (t) => {
  const e = await env();
  const files = await putFiles(e.cat, ['x/1', 'x/2', 'y'], 'synced');
  await e.cat.createVersion({ kind: 'dataset', collection: 'imgs', version: 'v1', files, producer, from: undefined });
  await e.cat.createVersion({ kind: 'model', collection: 'resnet', version: 'v1', files: files.slice(0, 1), producer, properties: { acc: 0.9 } });
  await e.cat.setAlias('dataset', 'imgs', 'latest', 'v1');
  await e.cat.setAlias('datum', '', 'first', files[0].datumId);
  const h2 = await e.host2();
  const phases = new Set<string>();
  const r = await h2.sync((p) => phases.add(p.phase));
  t.deepEqual(r, { datums: 3, versions: 2, aliases: 2 });
  t.deepEqual([...phases].sort(), ['aliases', 'datums', 'versions']);
  t.deepEqual(h2.findDatums({ tag: 'synced' }), e.cat.findDatums({ tag: 'synced' }));
  t.deepEqual(await h2.getVersion('dataset', 'imgs', 'latest'), await e.cat.getVersion('dataset', 'imgs', 'v1'));
  t.deepEqual(await h2.getVersion('model', 'resnet', 'v1'), await e.cat.getVersion('model', 'resnet', 'v1'));
  t.deepEqual(await h2.aliasHistory('datum', '', 'first'), await e.cat.aliasHistory('datum', '', 'first'));
  t.deepEqual(h2.db.getAlias('dataset', 'imgs', 'latest')?.record.target, 'v1', 'aliases are in SQLite after sync');
  t.deepEqual(await h2.sync(), { datums: 0, versions: 0, aliases: 0 }, 'second sync finds nothing new');
  await e.cat.setAlias('dataset', 'imgs', 'latest', 'v1'); // unchanged: still nothing to do
  t.is((await h2.sync()).aliases, 0);
  await e.done();
});

test('concurrent alias moves from two hosts keep every step in history', async (t) => {
  const e = await env();
  const files = await putFiles(e.cat, ['f']);
  const versions = Array.from({ length: 6 }, (_, i) => `v${i}`);
  for (const v of versions) await e.cat.createVersion({ kind: 'dataset', collection: 'd', version: v, files, producer });
  const h2 = await e.host2();
  await Promise.all(versions.map((v, i) => (i % 2 ? h2 : e.cat).setAlias('dataset', 'd', 'prod', v)));
  const hist = await e.cat.aliasHistory('dataset', 'd', 'prod');
  t.deepEqual(hist.map((h) => h.target).sort(), versions);
  await e.done();
});

test('a 100k-file version round-trips through the store to a fresh host, in path order', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-cat-bench-'));
  const store = new LocalDirStore(path.join(dir, 'store'), { fsync: false });
  const cat = await Catalog.open({ store, dbPath: path.join(dir, 'c.sqlite'), verifyVersionFiles: false });
  const n = 100_000;
  const sha = 'ab'.repeat(32);
  const files: VersionFile[] = Array.from({ length: n }, (_, i) => ({
    path: `train/class-${i % 100}/img-${String(i).padStart(7, '0')}.jpg`,
    datumId: uuidv7(),
    size: 1000 + i,
    sha256: sha,
  }));
  let t0 = performance.now();
  await cat.createVersion({ kind: 'dataset', collection: 'big', version: 'v1', files, producer });
  const create = performance.now() - t0;
  const h2 = await Catalog.open({ store, dbPath: path.join(dir, 'c2.sqlite'), verifyVersionFiles: false });
  t0 = performance.now();
  await h2.sync();
  const sync = performance.now() - t0;
  t0 = performance.now();
  let count = 0;
  let previous = '';
  let ordered = true;
  for (const f of await h2.versionFiles('dataset', 'big', 'v1')) {
    if (f.path <= previous) ordered = false;
    previous = f.path;
    count++;
  }
  const iter = performance.now() - t0;
  t.is(count, n);
  t.true(ordered, 'files come back in path order');
  t.log(`100k files: createVersion ${create.toFixed(0)} ms (sort + JSON + store + SQLite), sync on a fresh host ${sync.toFixed(0)} ms, iterate ${iter.toFixed(0)} ms`);
  cat.close();
  h2.close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('store first: a failed record write leaves SQLite untouched, and a retry dedups the blob', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-cat-faulty-'));
  const inner = new LocalDirStore(path.join(dir, 'store'), { fsync: false });
  // put #1 is the blob, put #2 the datum record: fail the record
  const store = new FaultyStore(inner, { fail: [{ op: 'put', nth: 2 }] });
  const cat = await Catalog.open({ store, dbPath: path.join(dir, 'c.sqlite') });
  const err = await t.throwsAsync(cat.putDatum(Buffer.from('payload'), { name: 'p', producer, tags: ['t'] }));
  t.true(isVhfsError(err, 'STORE'));
  t.deepEqual(cat.findDatums({ tag: 't' }), []);
  t.deepEqual((await inner.list('datums/')).objects, []);
  const d = await cat.putDatum(Buffer.from('payload'), { name: 'p', producer, tags: ['t'] });
  t.is(store.calls.put, 4, 'blob already there: its put was refused, then the record was put');
  t.deepEqual((await inner.list('blobs/')).objects.map((o) => o.key), [d.blobKey], 'one blob, no chunk table (one chunk only)');
  t.deepEqual(cat.findDatums({ tag: 't' }), [d]);
  cat.close();
  await inner.close();
  await fs.rm(dir, { recursive: true, force: true });
});
