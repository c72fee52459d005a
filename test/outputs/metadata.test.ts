import test from 'ava';
import { planMetadata, type MetadataInput } from '../../src/outputs/metadata.js';

function input(files: Record<string, string>, live: string[] = []): MetadataInput {
  return {
    files: Object.keys(files).sort(),
    live,
    read: async (p) => {
      if (!(p in files)) throw new Error(`ENOENT ${p}`);
      return files[p];
    },
    outputsDir: '/valohai/outputs',
  };
}

const jsonl = (...lines: unknown[]) => lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';

test('sidecar: tags, alias, properties; the sidecar is consumed', async (t) => {
  const plan = await planMetadata(input({
    'model.pkl': 'x',
    'model.pkl.metadata.json': JSON.stringify({ 'valohai.tags': ['a', 'b'], 'valohai.alias': 'best', accuracy: 0.9, nested: { k: [1] } }),
  }));
  t.deepEqual(plan.warnings, []);
  t.deepEqual([...plan.consumed], ['model.pkl.metadata.json']);
  const m = plan.byPath.get('model.pkl')!;
  t.deepEqual(m.tags, ['a', 'b']);
  t.is(m.alias, 'best');
  t.deepEqual(m.properties, { accuracy: 0.9, nested: { k: [1] } });
  t.deepEqual(m.sources, ['model.pkl.metadata.json']);
});

test('jsonl then sidecar: later keys win, tags and dataset versions accumulate', async (t) => {
  const plan = await planMetadata(input({
    'a.csv': '1',
    'sub/b.csv': '2',
    'valohai.metadata.jsonl': jsonl(
      { file: 'a.csv', metadata: { 'valohai.tags': ['j1'], p: 'jsonl', q: 1, 'valohai.dataset-versions': ['dataset://ds/v1'] } },
      { file: './a.csv', metadata: { q: 2, 'valohai.tags': ['j2', 'j1'] } },
      { file: '/valohai/outputs/sub/b.csv', metadata: { r: true } },
    ),
    'a.csv.metadata.json': JSON.stringify({ p: 'sidecar', 'valohai.tags': ['s'], 'valohai.dataset-versions': ['dataset://ds/v1', 'dataset://ds/v2'] }),
  }));
  t.deepEqual(plan.warnings, []);
  t.deepEqual([...plan.consumed].sort(), ['a.csv.metadata.json', 'valohai.metadata.jsonl']);
  const a = plan.byPath.get('a.csv')!;
  t.deepEqual(a.properties, { p: 'sidecar', q: 2 });
  t.deepEqual(a.tags, ['j1', 'j2', 's']);
  t.deepEqual(a.versions.map((v) => v.uri), ['dataset://ds/v1', 'dataset://ds/v2']);
  t.deepEqual(a.sources, ['valohai.metadata.jsonl line 1', 'valohai.metadata.jsonl line 2', 'a.csv.metadata.json']);
  t.deepEqual(plan.byPath.get('sub/b.csv')!.properties, { r: true });
  t.deepEqual([...plan.versions.keys()], ['dataset://ds/v1', 'dataset://ds/v2']);
  t.deepEqual(plan.versions.get('dataset://ds/v1')!.files, ['a.csv']);
});

test('dataset version objects merge across files: from, exclude, targeting aliases, packaging', async (t) => {
  const v = (extra: object) => ({ 'valohai.dataset-versions': [{ uri: 'dataset://imgs/v2', ...extra }] });
  const plan = await planMetadata(input({
    'x/1.jpg': '1', 'x/2.jpg': '2', 'x/3.jpg': '3',
    'valohai.metadata.jsonl': jsonl(
      { file: 'x/1.jpg', metadata: v({ from: 'dataset://imgs/v1', exclude: ['old.jpg'], targeting_aliases: ['latest'] }) },
      { file: 'x/2.jpg', metadata: v({ packaging: true, exclude: ['bad.jpg'], targeting_aliases: ['prod'] }) },
      { file: 'x/3.jpg', metadata: v({ from: 'dataset://imgs/other' }) },
    ),
  }));
  const req = plan.versions.get('dataset://imgs/v2')!;
  t.deepEqual(req.files, ['x/1.jpg', 'x/2.jpg', 'x/3.jpg']);
  t.is(req.from?.uri, 'dataset://imgs/v1');
  t.deepEqual(req.exclude, ['old.jpg', 'bad.jpg']);
  t.deepEqual(req.targetingAliases, ['latest', 'prod']);
  t.true(req.packaging);
  t.is(plan.warnings.length, 1);
  t.regex(plan.warnings[0], /valohai\.metadata\.jsonl line 3: dataset:\/\/imgs\/v2 "from" dataset:\/\/imgs\/other conflicts with dataset:\/\/imgs\/v1 \(valohai\.metadata\.jsonl line 1\)/);
});

test('bad input: one line each naming the file and jsonl line; the metadata file is then uploaded too', async (t) => {
  const plan = await planMetadata(input({
    'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c', 'd.txt': 'd',
    'a.txt.metadata.json': '{"valohai.tags": ["ok"]',                        // invalid JSON
    'b.txt.metadata.json': '[1, 2]',                                        // not an object
    'c.txt.metadata.json': JSON.stringify({ 'valohai.alias': ['x', 'y'], 'valohai.tags': 'one', keep: 1 }),
    'ghost.bin.metadata.json': '{}',                                        // metadata for a missing file
    'valohai.metadata.jsonl': [
      '{"file": "d.txt", "metadata": {"k": 1}}',
      '{not json',
      '{"file": "missing.txt", "metadata": {}}',
      '{"file": "../etc/passwd", "metadata": {}}',
      '{"metadata": {}}',
      '{"file": "d.txt", "metadata": {"valohai.dataset-versions": ["s3://b/k", {"uri": "dataset://ds/v1", "from": 7}], "valohai.model-versions": ["model://m/"], "valohai.unknown": 1}}',
    ].join('\n'),
  }));
  const w = plan.warnings.join('\n');
  t.regex(w, /a\.txt\.metadata\.json: not valid JSON .*no metadata applied to "a\.txt"/);
  t.regex(w, /b\.txt\.metadata\.json: expected a JSON object, got a list/);
  t.regex(w, /c\.txt\.metadata\.json: "valohai\.alias" for "c\.txt" must be a single alias name \(a string\), got a list; key ignored/);
  t.regex(w, /c\.txt\.metadata\.json: "valohai\.tags" for "c\.txt" must be a list of non-empty strings/);
  t.regex(w, /ghost\.bin\.metadata\.json: metadata for "ghost\.bin", which is not among the outputs; uploaded as an ordinary output/);
  t.regex(w, /valohai\.metadata\.jsonl line 2: not valid JSON/);
  t.regex(w, /valohai\.metadata\.jsonl line 3: metadata for "missing\.txt", which is not among the outputs/);
  t.regex(w, /valohai\.metadata\.jsonl line 4: "file" "\.\.\/etc\/passwd" is not a path inside outputs\/ \(the path has a "\.\." segment\)/);
  t.regex(w, /valohai\.metadata\.jsonl line 5: expected \{"file"/);
  t.regex(w, /line 6: "valohai\.dataset-versions" item 1 for "d\.txt" "s3:\/\/b\/k": not a dataset/);
  t.regex(w, /line 6: "valohai\.dataset-versions" item 2 for "d\.txt" \(dataset:\/\/ds\/v1\): "from" must be a string, got number 7; version not created/);
  t.regex(w, /line 6: "valohai\.model-versions" for "d\.txt": model versions are not built/);
  t.regex(w, /line 6: unknown key "valohai\.unknown" for "d\.txt"; kept as a custom property/);
  // Nothing with a problem is consumed: those files are uploaded as ordinary outputs.
  t.deepEqual([...plan.consumed], []);
  t.deepEqual(plan.byPath.get('c.txt')!.properties, { keep: 1 });
  t.is(plan.byPath.get('c.txt')!.alias, undefined);
  t.deepEqual(plan.byPath.get('d.txt')!.properties, { k: 1, 'valohai.unknown': 1 });
  t.is(plan.versions.size, 0);
});

test('one datum alias claimed by two outputs: not moved, both named', async (t) => {
  const plan = await planMetadata(input({
    'm1.pkl': '1', 'm2.pkl': '2', 'm3.pkl': '3',
    'm1.pkl.metadata.json': JSON.stringify({ 'valohai.alias': 'best' }),
    'valohai.metadata.jsonl': jsonl({ file: 'm2.pkl', metadata: { 'valohai.alias': 'best' } }, { file: 'm3.pkl', metadata: { 'valohai.alias': 'other' } }),
  }));
  t.is(plan.warnings.length, 1);
  t.regex(plan.warnings[0], /datum alias "best" is claimed by 2 outputs \("m1\.pkl" \(m1\.pkl\.metadata\.json\), "m2\.pkl" \(valohai\.metadata\.jsonl line 1\)\); alias not moved/);
  t.is(plan.byPath.get('m1.pkl')!.alias, undefined);
  t.is(plan.byPath.get('m2.pkl')!.alias, undefined);
  t.is(plan.byPath.get('m3.pkl')!.alias, 'other');
});

test('metadata for a live-uploaded file still applies (it is an output, no longer in the tree)', async (t) => {
  const plan = await planMetadata(input({
    'ckpt.pt.metadata.json': JSON.stringify({ 'valohai.alias': 'last-ckpt' }),
  }, ['ckpt.pt']));
  t.deepEqual(plan.warnings, []);
  t.deepEqual([...plan.consumed], ['ckpt.pt.metadata.json']);
  t.is(plan.byPath.get('ckpt.pt')!.alias, 'last-ckpt');
});

test('start_fresh: true ignores from, with a warning', async (t) => {
  const plan = await planMetadata(input({
    'f': 'x',
    'f.metadata.json': JSON.stringify({ 'valohai.dataset-versions': [{ uri: 'dataset://d/v3', from: 'dataset://d/v2', start_fresh: true }] }),
  }));
  t.is(plan.versions.get('dataset://d/v3')!.from, undefined);
  t.regex(plan.warnings.join('\n'), /"start_fresh": true, so "from" is ignored/);
});
