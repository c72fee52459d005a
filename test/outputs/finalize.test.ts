/**
 * finalize and recovery as a library, on a hand-made staging tree: what lands in the store (names, bytes,
 * lineage, metadata, versions, aliases), bad input, store failures, and every crash window the journal
 * has to make idempotent, each staged exactly as a killed process would leave it.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { putOutputDatum } from '../../src/outputs/datum-upload.js';
import { finalizeRun, recoverRuns } from '../../src/outputs/finalize.js';
import { Journal } from '../../src/outputs/journal.js';
import { outputsStatus } from '../../src/outputs/status.js';
import { FaultyStore } from '../../src/store/faulty.js';
import { createVersion } from '../../src/catalog/create-version.js';
import { blobBytes, contentFor, datumsByName, outputsEnv, PRODUCER, storeDatums } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('every file becomes one datum named by its path, with the execution lineage and exact bytes', async (t) => {
  const env = await outputsEnv(t);
  const files = new Map<string, Buffer>();
  for (const [p, size] of [['a.txt', 10], ['models/best.pkl', 300_000], ['deep/er/x.bin', 2_500_000], ['empty', 0]] as const) {
    files.set(p, await env.write(p, contentFor(p, size)));
  }
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  t.deepEqual(result.failed, []);
  t.deepEqual(result.warnings, []);
  const by = await datumsByName(env.store);
  t.deepEqual([...by.keys()].sort(), [...files.keys()].sort());
  for (const [p, data] of files) {
    const [d] = by.get(p)!;
    t.is(by.get(p)!.length, 1);
    t.is(d.size, data.length);
    t.is(d.sha256, sha(data));
    t.true((await blobBytes(env.store, d)).equals(data), p);
    t.deepEqual(d.producer, PRODUCER);
  }
  // Staging is gone, the journal says finalized with every file done.
  await t.throwsAsync(fs.stat(env.staging.runDir(env.run.id)), { code: 'ENOENT' });
  const [status] = await outputsStatus(env.journal, env.staging);
  t.is(status.state, 'finalized');
  t.deepEqual(status.counts, { pending: 0, uploading: 0, done: 4, failed: 0 });
  t.true(status.files.every((f) => f.datum === `datum://${by.get(f.path)![0].id}`));
});

test('metadata: tags, properties, datum alias; sidecars and the jsonl are consumed', async (t) => {
  const env = await outputsEnv(t);
  await env.write('model.pkl', 'weights');
  await env.write('model.pkl.metadata.json', JSON.stringify({ 'valohai.tags': ['prod'], 'valohai.alias': 'best-model', accuracy: 0.97 }));
  await env.write('log.txt', 'log');
  await env.write('valohai.metadata.jsonl', `${JSON.stringify({ file: 'log.txt', metadata: { 'valohai.tags': ['logs'], lines: 1 } })}\n`);
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  t.deepEqual(result.warnings, []);
  const by = await datumsByName(env.store);
  t.deepEqual([...by.keys()].sort(), ['log.txt', 'model.pkl']);
  t.deepEqual(by.get('model.pkl')![0].tags, ['prod']);
  t.deepEqual(by.get('model.pkl')![0].properties, { accuracy: 0.97 });
  t.deepEqual(by.get('log.txt')![0].properties, { lines: 1 });
  const alias = await env.catalog.getAlias('datum', '', 'best-model');
  t.is(alias?.target, by.get('model.pkl')![0].id);
});

test('dataset version from outputs: from/exclude, targeting aliases, packaging with the seed\'s log lines, files are the outputs\' own datums', async (t) => {
  const env = await outputsEnv(t, { packaging: true });
  // A base version v1 to inherit from.
  const baseDir = path.join(env.dir, 'base');
  await fs.mkdir(baseDir);
  for (const n of ['keep.jpg', 'old.jpg', 'cats/c1.jpg']) {
    await fs.mkdir(path.dirname(path.join(baseDir, n)), { recursive: true });
    await fs.writeFile(path.join(baseDir, n), contentFor(n, 100));
  }
  await createVersion(env.catalog, {
    collection: 'imgs', version: 'v1', producer: { tool: 'test' }, quiet: true,
    files: await Promise.all(['keep.jpg', 'old.jpg', 'cats/c1.jpg'].map(async (n) => ({ path: n, file: path.join(baseDir, n), size: 100 }))),
  });
  await env.catalog.setAlias('dataset', 'imgs', 'production', 'v1');
  const lines: string[] = [];
  for (const n of ['cats/c1.jpg', 'cats/c2.jpg', 'dogs/d1.jpg']) {
    await env.write(n, contentFor(n, 5000, 1));
    lines.push(JSON.stringify({ file: n, metadata: { 'valohai.dataset-versions': [{ uri: 'dataset://imgs/v2', from: 'dataset://imgs/production', exclude: ['old.jpg'], targeting_aliases: ['latest'], packaging: true }] } }));
  }
  await env.write('valohai.metadata.jsonl', lines.join('\n'));
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete, JSON.stringify(result.warnings));
  t.deepEqual(result.versions, ['dataset://imgs/v2']);
  const v2 = await env.catalog.getVersion('dataset', 'imgs', 'v2');
  t.deepEqual(v2.files.map((f) => f.path), ['cats/c1.jpg', 'cats/c2.jpg', 'dogs/d1.jpg', 'keep.jpg']);
  t.is(v2.from, 'dataset://imgs/v1');
  const outputs = result.uploaded.map((u) => u.datumId).sort();
  t.deepEqual(v2.files.filter((f) => f.path !== 'keep.jpg').map((f) => f.datumId).sort(), outputs);
  // One datum per output name (no second copy made for the version), plus the package datum.
  const by = await datumsByName(env.store);
  for (const n of ['cats/c2.jpg', 'dogs/d1.jpg']) t.is(by.get(n)!.length, 1);
  t.is(v2.packages.length, 1);
  t.is(v2.packages[0].name, 'imgs.v2.vhpkgzip');
  t.is(by.get('imgs.v2.vhpkgzip')!.length, 1);
  const pkgLog = env.logs.filter((l) => l.startsWith('(dataset version package'));
  t.regex(pkgLog[0], /^\(dataset version package 1\/1\) uploading imgs\.v2\.vhpkgzip \(\d+(\.\d)? kB\)$/);
  t.regex(pkgLog[1], /^\(dataset version package 1\/1\) uploading to file:\/\//);
  t.is(pkgLog[2], `(dataset version package 1/1) upload complete (datum ${v2.packages[0].datumId})`);
  t.is((await env.catalog.getAlias('dataset', 'imgs', 'latest'))?.target, 'v2');
  t.is((await env.catalog.getAlias('dataset', 'imgs', 'production'))?.target, 'v1');
});

test('packaging asked for without VH_ENABLE_DATASET_VERSION_PACKAGING: version made, not packaged, and said so', async (t) => {
  const env = await outputsEnv(t, { packaging: false });
  await env.write('f.csv', 'a,b');
  await env.write('f.csv.metadata.json', JSON.stringify({ 'valohai.dataset-versions': [{ uri: 'dataset://d/v1', packaging: true }] }));
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  t.is((await env.catalog.getVersion('dataset', 'd', 'v1')).packages.length, 0);
  t.true(env.logs.some((l) => /dataset:\/\/d\/v1: "packaging": true, but VH_ENABLE_DATASET_VERSION_PACKAGING is not set/.test(l)));
});

test('bad input never costs an output: unknown from, existing version, conflicting aliases, unsafe names, odd symlinks', async (t) => {
  const env = await outputsEnv(t);
  const written = new Map<string, Buffer>();
  const w = async (p: string, d: string) => written.set(p, await env.write(p, d));
  await w('a.txt', 'A');
  await w('b.txt', 'B');
  await w('c.txt', 'C');
  await w('back\\slash.txt', 'S');
  await w('broken.json.metadata.json', '{oops');
  await w('broken.json', '{}');
  await fs.symlink('a.txt', path.join(env.tree, 'link-in'));
  await fs.symlink('/etc/hostname', path.join(env.tree, 'link-out'));
  await fs.symlink('nowhere', path.join(env.tree, 'link-dangling'));
  await fs.symlink('/valohai/outputs/b.txt', path.join(env.tree, 'link-abs'));
  await env.catalog.createVersion({ kind: 'dataset', collection: 'taken', version: 'v1', files: [], producer: { tool: 'other' } });
  await w('valohai.metadata.jsonl', [
    { file: 'a.txt', metadata: { 'valohai.dataset-versions': [{ uri: 'dataset://ds/v9', from: 'dataset://ds/nope' }], 'valohai.alias': 'dup' } },
    { file: 'b.txt', metadata: { 'valohai.alias': 'dup', 'valohai.dataset-versions': ['dataset://taken/v1'] } },
  ].map((x) => JSON.stringify(x)).join('\n'));
  const result = await finalizeRun(env.ctx(), env.run.id);
  const warnings = result.warnings.join('\n');
  t.regex(warnings, /valohai\.metadata\.jsonl line 1: dataset:\/\/ds\/v9 not created: dataset:\/\/ds\/nope: no dataset "ds"/);
  t.regex(warnings, /valohai\.metadata\.jsonl line 2: dataset:\/\/taken\/v1 not created: .*already exists/);
  t.regex(warnings, /datum alias "dup" is claimed by 2 outputs/);
  t.regex(warnings, /"back\\slash\.txt" is unsafe as a datum name \(the path contains a backslash\); uploaded as "back%5Cslash\.txt"/);
  t.regex(warnings, /broken\.json\.metadata\.json: not valid JSON/);
  t.regex(warnings, /link-out: symlink points outside outputs\/ \(\/etc\/hostname\); not uploaded/);
  t.regex(warnings, /link-dangling: symlink is dangling \(nowhere\); not uploaded/);
  // Bad input did not fail the run: it is complete, and every output file is in the store.
  t.true(result.complete);
  const by = await datumsByName(env.store);
  const expectNames = ['a.txt', 'b.txt', 'c.txt', 'back%5Cslash.txt', 'broken.json', 'broken.json.metadata.json', 'link-in', 'link-abs'];
  t.deepEqual([...by.keys()].sort(), expectNames.sort());
  t.is(by.get('link-in')![0].sha256, by.get('a.txt')![0].sha256);
  t.is(by.get('link-abs')![0].sha256, by.get('b.txt')![0].sha256);
  t.true((await blobBytes(env.store, by.get('back%5Cslash.txt')![0])).equals(written.get('back\\slash.txt')!));
  t.is(await env.catalog.getAlias('datum', '', 'dup'), undefined);
});

test('crash window: datum record written, journal not told: finalize makes no second datum', async (t) => {
  const env = await outputsEnv(t);
  const data = await env.write('x.bin', contentFor('x', 3000));
  await env.write('y.bin', contentFor('y', 3000));
  // What a killed finalize leaves: the row (with its datum id) and the datum, but the row still "uploading".
  const [row] = env.journal.beginUploads([{ runId: env.run.id, path: 'x.bin', name: 'x.bin', source: 'tree' }]);
  await putOutputDatum(env.catalog, row.id, path.join(env.tree, 'x.bin'), { name: 'x.bin', producer: PRODUCER, tags: [], properties: {} });
  t.is(env.journal.upload(row.id)!.state, 'uploading');
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  const by = await datumsByName(env.store);
  t.is(by.get('x.bin')!.length, 1);
  t.is(by.get('x.bin')![0].id, row.id);
  t.true((await blobBytes(env.store, by.get('x.bin')![0])).equals(data));
  t.is(by.get('y.bin')!.length, 1);
});

test('crash window: uploaded and recorded, staged copy not yet deleted: nothing uploaded again', async (t) => {
  const env = await outputsEnv(t);
  await env.write('done.txt', 'already up');
  await env.write('todo.txt', 'not yet');
  const [row] = env.journal.beginUploads([{ runId: env.run.id, path: 'done.txt', name: 'done.txt', source: 'tree' }]);
  const d = await putOutputDatum(env.catalog, row.id, path.join(env.tree, 'done.txt'), { name: 'done.txt', producer: PRODUCER, tags: [], properties: {} });
  env.journal.markUploaded(row.id, d.size, d.sha256);
  const putsBefore = env.store.stats.puts;
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  t.deepEqual(result.uploaded.map((u) => u.path), ['todo.txt']);
  t.is(env.store.stats.puts - putsBefore, 2); // todo.txt's blob and record only
  const by = await datumsByName(env.store);
  t.is(by.get('done.txt')!.length, 1);
});

test('crash windows of a live upload: row written but file not yet moved, and moved but not uploaded', async (t) => {
  const env = await outputsEnv(t);
  const a = await env.write('live-a.txt', 'A');
  const b = await env.write('live-b.txt', 'B');
  const [ra, rb] = env.journal.beginUploads([
    { runId: env.run.id, path: 'live-a.txt', name: 'live-a.txt', source: 'live', tags: ['from-sidecar'] },
    { runId: env.run.id, path: 'live-b.txt', name: 'live-b.txt', source: 'live' },
  ]);
  // a: killed before the rename (still in the tree); b: renamed to live/<id>, killed before the upload.
  await fs.rename(path.join(env.tree, 'live-b.txt'), env.staging.liveFile(env.run.id, rb.id));
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete);
  const by = await datumsByName(env.store);
  t.is(by.get('live-a.txt')!.length, 1);
  t.is(by.get('live-a.txt')![0].id, ra.id);
  t.deepEqual(by.get('live-a.txt')![0].tags, ['from-sidecar']);
  t.is(by.get('live-b.txt')!.length, 1);
  t.is(by.get('live-b.txt')![0].id, rb.id);
  t.true((await blobBytes(env.store, by.get('live-a.txt')![0])).equals(a));
  t.true((await blobBytes(env.store, by.get('live-b.txt')![0])).equals(b));
});

test('crash window: version record written, action not recorded: finalize adopts it and sets its aliases', async (t) => {
  const env = await outputsEnv(t);
  await env.write('f.txt', 'F');
  await env.write('f.txt.metadata.json', JSON.stringify({ 'valohai.dataset-versions': [{ uri: 'dataset://ds/v1', targeting_aliases: ['latest'] }] }));
  const [row] = env.journal.beginUploads([{ runId: env.run.id, path: 'f.txt', name: 'f.txt', source: 'tree' }]);
  const d = await putOutputDatum(env.catalog, row.id, path.join(env.tree, 'f.txt'), { name: 'f.txt', producer: PRODUCER, tags: [], properties: {} });
  env.journal.markUploaded(row.id, d.size, d.sha256);
  env.journal.setAction(env.run.id, 'version:dataset://ds/v1', 'started');
  await env.catalog.createVersion({ kind: 'dataset', collection: 'ds', version: 'v1', producer: PRODUCER, files: [{ path: 'f.txt', datumId: d.id, size: d.size, sha256: d.sha256 }] });
  const result = await finalizeRun(env.ctx(), env.run.id);
  t.true(result.complete, result.warnings.join('\n'));
  t.deepEqual(result.versions, ['dataset://ds/v1']);
  t.deepEqual(result.warnings, []);
  t.is((await env.catalog.getAlias('dataset', 'ds', 'latest'))?.target, 'v1');
});

test('store down: uploads fail after retries, files stay staged, run pending; recover later finishes it exactly once', async (t) => {
  let faulty!: FaultyStore;
  const env = await outputsEnv(t, { store: (s) => (faulty = new FaultyStore(s, { fail: [{ op: 'put', nth: 3, sticky: true }] })) });
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 6; i++) files.set(`f${i}.bin`, await env.write(`f${i}.bin`, contentFor(`f${i}`, 2000)));
  await env.write('f0.bin.metadata.json', JSON.stringify({ 'valohai.alias': 'first', 'valohai.dataset-versions': ['dataset://ds/v1'] }));
  const first = await finalizeRun(env.ctx({ retryDelaysMs: [1, 1] }), env.run.id);
  t.false(first.complete);
  t.true(first.failed.length >= 5);
  t.regex(env.logs.join('\n'), /error: output "f\d\.bin" not uploaded \(.*injected failure of put/);
  t.is(env.journal.run(env.run.id)!.state, 'finalizing');
  for (const p of files.keys()) await fs.access(path.join(env.tree, p)); // still staged
  const [status] = await outputsStatus(env.journal, env.staging);
  t.true(status.counts.failed >= 5);

  // The store comes back; a recovery from "another process" (the run's owner is not alive any more).
  faulty.plan = {};
  const j2 = Journal.open(env.staging.journalFile);
  t.teardown(() => j2.close());
  // Pretend the owner died: rewrite the owner to a pid that does not exist.
  t.true(j2.claimRun(env.run.id, env.run.owner, { pid: 999_999_999, start: '1' }));
  const results = await recoverRuns({ ...env.ctx(), journal: j2 });
  t.is(results.length, 1);
  t.true(results[0].complete, results[0].warnings.join('\n'));
  const by = await datumsByName(env.store);
  for (const [p, data] of files) {
    t.is(by.get(p)?.length, 1, p);
    t.true((await blobBytes(env.store, by.get(p)![0])).equals(data));
  }
  t.is((await env.catalog.getAlias('datum', '', 'first'))?.target, by.get('f0.bin')![0].id);
  t.is((await env.catalog.getVersion('dataset', 'ds', 'v1')).files.length, 1);
  t.is((await storeDatums(env.store)).length, files.size);
});

test('recover leaves a run alone while its owner is alive', async (t) => {
  const env = await outputsEnv(t);
  await env.write('a', 'a');
  const results = await recoverRuns(env.ctx(), { except: 'nothing' });
  // The run is owned by this very process: "mine", so it is finalized (a daemon retrying its own failed run).
  t.is(results.length, 1);
  const env2 = await outputsEnv(t);
  await env2.write('b', 'b');
  t.true(env2.journal.claimRun(env2.run.id, env2.run.owner, { pid: 1, start: 'someone-else-alive?' }));
  // pid 1 is alive but its start time differs: not the owner; the run counts as orphaned and is recovered.
  t.is((await recoverRuns(env2.ctx())).length, 1);
  const env3 = await outputsEnv(t);
  await env3.write('c', 'c');
  const { processStart } = await import('../../src/outputs/journal.js');
  t.true(env3.journal.claimRun(env3.run.id, env3.run.owner, { pid: 1, start: processStart(1)! }));
  t.deepEqual(await recoverRuns(env3.ctx()), []);
  t.is(env3.journal.run(env3.run.id)!.state, 'capturing');
});
