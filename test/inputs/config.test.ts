import test from 'ava';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { VhfsError } from '../../src/util/errors.js';
import {
  applyInputFlags, castDownload, castKeepDirectories, checkRequiredInputs, loadInputsFile,
  parseInputFlags, parseInputsJson, parseValohaiYaml, type InputSpec,
} from '../../src/inputs/config.js';

const json = (v: unknown) => JSON.stringify(v);

test('JSON list form with every key', (t) => {
  const specs = parseInputsJson(json({
    inputs: [
      { name: 'images', default: ['s3://b/imgs/**.jpg', 'dataset://imgs/v1'], 'keep-directories': 'SUFFIX', optional: false, download: 'On-Demand', description: 'pics' },
      { name: 'model', default: 'datum://prod-model', filename: 'model.pb' },
    ],
  }), 'inputs.json');
  t.deepEqual(specs, [
    {
      name: 'images',
      uris: [
        { kind: 'object', scheme: 's3', bucket: 'b', key: 'imgs/**.jpg', wildcard: true, wildcardRoot: 'imgs/' },
        { kind: 'dataset', name: 'imgs', selector: 'v1' },
      ],
      keepDirectories: 'suffix', optional: false, download: 'on-demand', description: 'pics',
    },
    {
      name: 'model', uris: [{ kind: 'datum', ref: 'prod-model', byId: false }],
      keepDirectories: 'none', optional: false, download: 'always', filename: 'model.pb',
    },
  ] satisfies InputSpec[]);
});

test('JSON map form and bare array form', (t) => {
  const map = parseInputsJson(json({ a: 's3://b/k', b: ['gs://c/k1', 'gs://c/k2'], c: { default: 'model://m/v1', 'keep-directories': true } }), 'x.json');
  t.deepEqual(map.map((s) => [s.name, s.uris.length, s.keepDirectories]), [['a', 1, 'none'], ['b', 2, 'none'], ['c', 1, 'full']]);
  const arr = parseInputsJson(json([{ name: 'a', default: 's3://b/k' }]), 'x.json');
  t.is(arr[0].name, 'a');
  // an input literally called "inputs" in the map form
  const named = parseInputsJson(json({ inputs: ['s3://b/k'] }), 'x.json');
  t.deepEqual(named.map((s) => s.name), ['inputs']);
  t.deepEqual(parseInputsJson(json({ inputs: [] }), 'x.json'), []);
});

test('casting rules (spec §1.2)', (t) => {
  t.is(castKeepDirectories(true, 'w'), 'full');
  t.is(castKeepDirectories(false, 'w'), 'none');
  t.is(castKeepDirectories(undefined, 'w'), 'none');
  t.is(castKeepDirectories(null, 'w'), 'none');
  t.is(castKeepDirectories('', 'w'), 'none');
  t.is(castKeepDirectories('Full', 'w'), 'full');
  t.is(castKeepDirectories('SUFFIX', 'w'), 'suffix');
  t.throws(() => castKeepDirectories('yes', 'f.json: input "x"'), { message: 'f.json: input "x": keep-directories must be none, full, suffix, true or false, not "yes"' });
  t.throws(() => castKeepDirectories(1, 'w'), { instanceOf: VhfsError });
  t.is(castDownload(undefined, 'w'), 'always');
  t.is(castDownload('ALWAYS', 'w'), 'always');
  t.is(castDownload('on-demand', 'w'), 'on-demand');
  t.throws(() => castDownload('lazy', 'w'), { message: /download must be always or on-demand, not "lazy"/ });
});

test('empty defaults mean no URI', (t) => {
  const specs = parseInputsJson(json({ inputs: [{ name: 'a', default: '' }, { name: 'b', default: [] }, { name: 'c', default: null }, { name: 'd', optional: true }] }), 'f.json');
  t.deepEqual(specs.map((s) => s.uris), [[], [], [], []]);
  t.true(specs[3].optional);
});

test('bad JSON files: each error names the file and the input', (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ inputs: [{ name: 'a', default: 's3://b/k', keep_directories: 'full' }] }, /^f\.json: input "a": unknown key "keep_directories" \(did you mean "keep-directories"\?\)$/],
    [{ inputs: [{ name: 'a', colour: 'red' }] }, /^f\.json: input "a": unknown key "colour" \(allowed: name, default, optional, description, filename, keep-directories, download\)$/],
    [{ inputs: [{ name: 'x'.repeat(65) }] }, /^f\.json: input #1: name "x{65}" is longer than 64 characters$/],
    [{ inputs: [{ name: 'a' }, { name: 'a' }] }, /^f\.json: input "a" is defined more than once$/],
    [{ inputs: [{ default: 's3://b/k' }] }, /^f\.json: input #1: "name" must be a non-empty string, found undefined/],
    [{ inputs: [{ name: '../x' }] }, /cannot be a directory name/],
    [{ inputs: [{ name: 'a', optional: 'yes' }] }, /^f\.json: input "a": optional must be true or false, not "yes"$/],
    [{ inputs: [{ name: 'a', default: 42 }] }, /^f\.json: input "a": default must be a URI or a list of URIs, not number 42$/],
    [{ inputs: [{ name: 'a', default: ['s3://b/k', 7] }] }, /^f\.json: input "a": default\[1\] must be a URI string/],
    [{ inputs: [{ name: 'a', filename: 'sub/x.pb' }] }, /^f\.json: input "a": filename "sub\/x\.pb" must be a single file name/],
    [{ inputs: [{ name: 'a', description: 3 }] }, /description must be a string/],
    [{ a: 42 }, /^f\.json: input "a": expected a URI, a list of URIs or an input object, found number 42$/],
    [{ a: { name: 'b' } }, /^f\.json: input "a": its "name" is "b"/],
    ['str', /^f\.json: expected an object or an array at the top level, found string "str"$/],
    [[3], /^f\.json: input #1 must be an object, found number 3$/],
  ];
  for (const [doc, re] of cases) {
    const err = t.throws(() => parseInputsJson(json(doc), 'f.json'), { instanceOf: VhfsError });
    t.is(err?.code, 'BAD_ARGUMENT');
    t.regex(err?.message ?? '', re);
  }
  t.throws(() => parseInputsJson('{"inputs": [', 'f.json'), { code: 'BAD_ARGUMENT', message: /^f\.json: invalid JSON: / });
});

test('a bad URI in a file keeps BAD_URI and names file, input and URI', (t) => {
  const err = t.throws(() => parseInputsJson(json({ inputs: [{ name: 'imgs', default: 'dataset://images' }] }), 'f.json'), { instanceOf: VhfsError });
  t.is(err?.code, 'BAD_URI');
  t.is(err?.message, 'f.json: input "imgs": dataset://images: missing version or alias (dataset://<name>/<version-or-alias>)');
});

test('parameters are interpolated; unknown ones are errors', (t) => {
  const specs = parseInputsJson(json({ a: 's3://b/images/{parameter:user-id}/*.jpeg' }), 'f.json', { parameters: { 'user-id': 'u7' } });
  t.like(specs[0].uris[0], { key: 'images/u7/*.jpeg' });
  t.throws(() => parseInputsJson(json({ a: 's3://b/{parameter:who}/k' }), 'f.json'), { code: 'BAD_URI', message: /^f\.json: input "a": s3:\/\/b\/\{parameter:who\}\/k: unknown parameter "who"/ });
});

test('relative local paths resolve against options.cwd', (t) => {
  const specs = parseInputsJson(json({ a: './data/x.csv' }), 'f.json', { cwd: '/proj' });
  t.deepEqual(specs[0].uris, [{ kind: 'local', path: '/proj/data/x.csv', wildcard: false }]);
});

const YAML = `
- step:
    name: train
    image: python:3.12
    command: python train.py
    parameters:
      - name: user-id
        type: string
        default: alice
    inputs:
      - name: images
        default:
          - s3://b/images/{parameter:user-id}/**.jpg
          - azure://acct/cont/more/*.jpg
        keep-directories: true
      - name: model
        default: datum://01890a5d-ac96-774b-bcce-b302099a8057
        filename: model.pb
        optional: true
      - name: labels
- step:
    name: eval
    image: python:3.12
    command: python eval.py
    inputs:
      - name: model
        default: model://churn/v3
        download: on-demand
- pipeline:
    name: p
    nodes: []
    edges: []
`;

test('valohai.yaml: pick the step, apply parameter defaults', (t) => {
  const train = parseValohaiYaml(YAML, 'valohai.yaml', { step: 'train' });
  t.deepEqual(train.map((s) => s.name), ['images', 'model', 'labels']);
  t.like(train[0], { keepDirectories: 'full' });
  t.like(train[0].uris[0], { key: 'images/alice/**.jpg' });
  t.like(train[0].uris[1], { scheme: 'az', account: 'acct', container: 'cont' });
  t.like(train[1], { filename: 'model.pb', optional: true, uris: [{ kind: 'datum', byId: true }] });
  t.deepEqual(train[2].uris, []);
  const overridden = parseValohaiYaml(YAML, 'valohai.yaml', { step: 'train', parameters: { 'user-id': 'bob' } });
  t.like(overridden[0].uris[0], { key: 'images/bob/**.jpg' });
  const evalStep = parseValohaiYaml(YAML, 'valohai.yaml', { step: 'eval' });
  t.like(evalStep[0], { name: 'model', download: 'on-demand', uris: [{ kind: 'model', name: 'churn', selector: 'v3' }] });
});

test('valohai.yaml: the only step is picked without --step', (t) => {
  const specs = parseValohaiYaml('- step:\n    name: only\n    inputs:\n      - name: a\n        default: s3://b/k\n', 'v.yaml');
  t.is(specs[0].name, 'a');
  t.deepEqual(parseValohaiYaml('- step:\n    name: only\n', 'v.yaml'), []);
});

test('valohai.yaml errors', (t) => {
  t.throws(() => parseValohaiYaml(YAML, 'valohai.yaml'), { code: 'BAD_ARGUMENT', message: 'valohai.yaml: 2 steps (train, eval): choose one with --step NAME' });
  t.throws(() => parseValohaiYaml(YAML, 'valohai.yaml', { step: 'nope' }), { message: 'valohai.yaml: no step named "nope" (steps: train, eval)' });
  t.throws(() => parseValohaiYaml('- pipeline:\n    name: p\n', 'v.yaml'), { message: 'v.yaml: no "- step:" entries' });
  t.throws(() => parseValohaiYaml('step: {name: a}\n', 'v.yaml'), { message: /^v\.yaml: expected a list of "- step:" entries/ });
  t.throws(() => parseValohaiYaml('- step: [unclosed\n', 'v.yaml'), { message: /^v\.yaml: invalid YAML: / });
  t.throws(() => parseValohaiYaml('- step:\n    name: s\n    inputs:\n      - name: a\n        keep-directories: maybe\n', 'v.yaml'),
    { message: 'v.yaml: step "s": input "a": keep-directories must be none, full, suffix, true or false, not "maybe"' });
  t.throws(() => parseValohaiYaml('- step:\n    name: s\n    inputs:\n      - name: a\n        downlaod: always\n', 'v.yaml'),
    { message: /^v\.yaml: step "s": input "a": unknown key "downlaod"/ });
  t.throws(() => parseValohaiYaml('- step:\n    name: s\n    inputs: {a: 1}\n', 'v.yaml'), { message: /^v\.yaml: step "s": "inputs" must be a list/ });
  // the YAML loader is the safe one: JS tags are refused
  t.throws(() => parseValohaiYaml('- step: !!js/function "function () {}"\n', 'v.yaml'), { message: /^v\.yaml: invalid YAML: / });
});

test('CLI flags: NAME=URI[,URI…], repeated flags append, commas inside URIs survive', (t) => {
  const specs = parseInputFlags([
    'images=s3://b/a/*.jpg,gs://c/b.jpg',
    'images=./local/x.jpg',
    'page=https://h/q.csv?a=1,2&b=3',
    'empty=',
  ], { cwd: '/w' });
  t.deepEqual(specs.map((s) => [s.name, s.uris.length]), [['images', 3], ['page', 1], ['empty', 0]]);
  t.like(specs[0].uris[2], { kind: 'local', path: '/w/local/x.jpg' });
  t.like(specs[1].uris[0], { url: 'https://h/q.csv?a=1,2&b=3' });
  t.like(specs[0], { keepDirectories: 'none', optional: false, download: 'always' });
});

test('CLI flag errors', (t) => {
  t.throws(() => parseInputFlags(['s3://b/k']), { code: 'BAD_ARGUMENT', message: /^command line: "s3:\/\/b\/k": expected NAME=URI/ });
  t.throws(() => parseInputFlags(['=s3://b/k']), { message: /expected NAME=URI/ });
  t.throws(() => parseInputFlags(['a=ftp://x/y']), { code: 'BAD_URI', message: /^command line: input "a": ftp:\/\/x\/y: unknown URI scheme "ftp"/ });
});

test('applyInputFlags replaces defaults and keeps options; checkRequiredInputs', (t) => {
  const defs = parseValohaiYaml(YAML, 'valohai.yaml', { step: 'train' });
  t.throws(() => checkRequiredInputs(defs, 'valohai.yaml'), { message: 'valohai.yaml: input "labels" is required but has no URI (no default, and none given)' });
  const merged = applyInputFlags(defs, parseInputFlags(['labels=s3://b/labels.csv', 'images=gs://g/one.jpg']));
  t.like(merged[0], { name: 'images', keepDirectories: 'full', uris: [{ scheme: 'gs', key: 'one.jpg' }] });
  t.like(merged[2], { name: 'labels', uris: [{ key: 'labels.csv' }] });
  t.notThrows(() => checkRequiredInputs(merged, 'valohai.yaml'));
  t.throws(() => applyInputFlags(defs, parseInputFlags(['nope=s3://b/k'])), { message: 'command line: unknown input "nope" (defined inputs: images, model, labels)' });
  t.deepEqual(applyInputFlags([], parseInputFlags(['x=s3://b/k'])).map((s) => s.name), ['x']);
});

test('loadInputsFile: JSON and YAML by extension; relative paths against the file; missing file', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vhfs-config-'));
  await writeFile(path.join(dir, 'inputs.json'), json({ a: './data/x.csv' }));
  await writeFile(path.join(dir, 'valohai.yml'), '- step:\n    name: s\n    inputs:\n      - name: b\n        default: ../y.csv\n');
  const a = await loadInputsFile(path.join(dir, 'inputs.json'));
  t.deepEqual(a[0].uris, [{ kind: 'local', path: path.join(dir, 'data/x.csv'), wildcard: false }]);
  const b = await loadInputsFile(path.join(dir, 'valohai.yml'));
  t.deepEqual(b[0].uris, [{ kind: 'local', path: path.join(path.dirname(dir), 'y.csv'), wildcard: false }]);
  const missing = path.join(dir, 'nope.json');
  await t.throwsAsync(loadInputsFile(missing), { code: 'NOT_FOUND', message: `${missing}: no such file` });
});
