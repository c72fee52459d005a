import test from 'ava';
import { VhfsError } from '../../src/util/errors.js';
import { compileGlob } from '../../src/uri/glob.js';
import { parseUri } from '../../src/uri/parse.js';
import { layoutInput, localPath, pathProblem, type KeepDirectories, type ResolvedFile } from '../../src/inputs/layout.js';

/** What a resolver would produce for a wildcard store URI and the keys it listed. */
function storeFiles(uri: string, keys: string[]): ResolvedFile[] {
  const p = parseUri(uri);
  if (p.kind !== 'object') throw new Error('not an object URI');
  const m = compileGlob(p.key);
  return keys.filter((k) => m.match(k)).map((key) => ({
    uri, id: `${p.scheme}://${p.bucket}/${key}`, origin: 'store' as const, key, wildcardRoot: p.wildcardRoot,
  }));
}

const paths = (files: ResolvedFile[], keepDirectories: KeepDirectories, filename?: string) =>
  layoutInput(files, { input: 'myinput', keepDirectories, filename }).files.map((f) => f.path);

test('spec §1.6 example: s3://special-bucket/foo/bar/**.jpg matching foo/bar/dataset1/a.jpg', (t) => {
  const files = storeFiles('s3://special-bucket/foo/bar/**.jpg', ['foo/bar/dataset1/a.jpg', 'foo/baz/b.jpg', 'foo/bar/x.png']);
  t.is(files.length, 1);
  t.deepEqual(paths(files, 'none'), ['a.jpg']);
  t.deepEqual(paths(files, 'full'), ['foo/bar/dataset1/a.jpg']);
  t.deepEqual(paths(files, 'suffix'), ['dataset1/a.jpg']);
});

test('a URI without wildcards: none/suffix give the basename, full the key', (t) => {
  const files = [{ uri: 's3://b/models/m361100.pb', id: 's3://b/models/m361100.pb', origin: 'store' as const, key: 'models/m361100.pb' }];
  t.deepEqual(paths(files, 'none'), ['m361100.pb']);
  t.deepEqual(paths(files, 'suffix'), ['m361100.pb']);
  t.deepEqual(paths(files, 'full'), ['models/m361100.pb']);
});

test('filename renames the only file (spec §1.7)', (t) => {
  const files = [{ uri: 's3://foo/model361100.pb', id: 's3://foo/model361100.pb', origin: 'store' as const, key: 'model361100.pb' }];
  const layout = layoutInput(files, { input: 'model', keepDirectories: 'full', filename: 'model.pb' });
  t.deepEqual(layout.files.map((f) => f.path), ['model.pb']);
  t.deepEqual(layout.warnings, []);
  t.is(layout.files[0].file, files[0]);
});

test('filename is ignored, with a warning, when there are several files', (t) => {
  const files = storeFiles('s3://b/imgs/*.jpg', ['imgs/a.jpg', 'imgs/b.jpg']);
  const layout = layoutInput(files, { input: 'images', keepDirectories: 'none', filename: 'x.jpg' });
  t.deepEqual(layout.files.map((f) => f.path), ['a.jpg', 'b.jpg']);
  t.deepEqual(layout.warnings, ['input "images": filename "x.jpg" ignored: the input has 2 files, not one']);
});

test('dataset/model version files keep their paths in every mode', (t) => {
  const files: ResolvedFile[] = ['cats/cats_00000.jpg', 'dogs/dogs_00000.jpg'].map((key) => ({
    uri: 'dataset://my-images/train-v1', id: `datum://${key}`, origin: 'version', key,
  }));
  for (const mode of ['none', 'full', 'suffix'] as const) {
    t.deepEqual(paths(files, mode), ['cats/cats_00000.jpg', 'dogs/dogs_00000.jpg'], mode);
  }
});

test('datum names with "/": basename unless full; url files keep their file name', (t) => {
  const datum: ResolvedFile = { uri: 'datum://abc', id: 'datum://abc', origin: 'datum', key: 'run/outputs/model.pb' };
  t.is(localPath(datum, { input: 'm', keepDirectories: 'none' }), 'model.pb');
  t.is(localPath(datum, { input: 'm', keepDirectories: 'suffix' }), 'model.pb');
  t.is(localPath(datum, { input: 'm', keepDirectories: 'full' }), 'run/outputs/model.pb');
  const url: ResolvedFile = { uri: 'https://h/x.gz', id: 'https://h/x.gz', origin: 'url', key: 'x.gz' };
  t.is(localPath(url, { input: 'm', keepDirectories: 'full' }), 'x.gz');
});

test('output is sorted by path and keeps the data payload', (t) => {
  const files: ResolvedFile<{ size: number }>[] = [
    { uri: 's3://b/*', id: 's3://b/z', origin: 'store', key: 'z', wildcardRoot: '', data: { size: 1 } },
    { uri: 's3://b/*', id: 's3://b/a', origin: 'store', key: 'a', wildcardRoot: '', data: { size: 2 } },
  ];
  const layout = layoutInput(files, { input: 'i', keepDirectories: 'none' });
  t.deepEqual(layout.files.map((f) => [f.path, f.file.data?.size]), [['a', 2], ['z', 1]]);
});

test('collision: two sources, one basename → UNSAFE_PATH naming input, path and both URIs', (t) => {
  const files = [
    ...storeFiles('s3://b1/x/*.jpg', ['x/a.jpg']),
    ...storeFiles('gs://b2/y/*.jpg', ['y/a.jpg']),
  ];
  const err = t.throws(() => layoutInput(files, { input: 'images', keepDirectories: 'none' }), { instanceOf: VhfsError });
  t.is(err?.code, 'UNSAFE_PATH');
  t.is(err?.message, 'input "images": local path "a.jpg" would come from both s3://b1/x/*.jpg (s3://b1/x/a.jpg) and gs://b2/y/*.jpg (gs://b2/y/a.jpg) (set keep-directories to full or suffix, or split the input)');
  // keeping directories resolves it
  t.deepEqual(layoutInput(files, { input: 'images', keepDirectories: 'full' }).files.map((f) => f.path), ['x/a.jpg', 'y/a.jpg']);
});

test('collision within one flat wildcard', (t) => {
  const files = storeFiles('s3://b/**.jpg', ['d1/a.jpg', 'd2/a.jpg']);
  t.throws(() => layoutInput(files, { input: 'i', keepDirectories: 'none' }), { message: /local path "a\.jpg" would come from both/ });
  t.deepEqual(paths(files, 'suffix'), ['d1/a.jpg', 'd2/a.jpg']);
});

test('the same source reached twice is one file, not a collision', (t) => {
  const files = [...storeFiles('s3://b/**.jpg', ['d/a.jpg']), ...storeFiles('s3://b/d/*.jpg', ['d/a.jpg'])];
  const layout = layoutInput(files, { input: 'i', keepDirectories: 'none' });
  t.deepEqual(layout.files.map((f) => f.path), ['a.jpg']);
  t.is(layout.files[0].file.uri, 's3://b/**.jpg');
});

test('file/directory clash is a collision', (t) => {
  const files: ResolvedFile[] = [
    { uri: 's3://b/*', id: 's3://b/a', origin: 'store', key: 'a' },
    { uri: 's3://b/**', id: 's3://b/a/b', origin: 'store', key: 'a/b' },
  ];
  t.throws(() => layoutInput(files, { input: 'i', keepDirectories: 'full' }), {
    code: 'UNSAFE_PATH', message: /local path "a" would be a file for s3:\/\/b\/\* \(s3:\/\/b\/a\) and a directory for s3:\/\/b\/\*\* \(s3:\/\/b\/a\/b\)/,
  });
  t.throws(() => layoutInput([files[1], files[0]], { input: 'i', keepDirectories: 'full' }), {
    message: /local path "a" would be a directory for .* and a file for/,
  });
});

test('unsafe paths are rejected with the input, URI and key', (t) => {
  const bad = (key: string, mode: KeepDirectories = 'full') => () =>
    layoutInput([{ uri: 's3://b/**', id: `s3://b/${key}`, origin: 'store', key, wildcardRoot: '' }], { input: 'i', keepDirectories: mode });
  t.throws(bad('a/../b'), { message: /^input "i": s3:\/\/b\/\*\*: local path "a\/\.\.\/b" \(from "a\/\.\.\/b"\) is unsafe: the path has a "\.\." segment$/ });
  t.throws(bad('a//b'), { message: /empty segment/ });
  t.throws(bad('/a'), { message: /empty segment|absolute/ });
  t.throws(bad('dir/'), { message: /ends with "\/"/ });
  t.throws(bad('dir/', 'none'), { message: /the path is empty/ });
  t.throws(bad('./a'), { message: /"\." segment/ });
  t.throws(bad(`${'x'.repeat(256)}`), { message: /longer than 255 bytes/ });
  const versionBad = () => layoutInput([{ uri: 'dataset://d/v', id: 'x', origin: 'version', key: '../etc/passwd' }], { input: 'i', keepDirectories: 'none' });
  t.throws(versionBad, { code: 'UNSAFE_PATH' });
});

test('pathProblem', (t) => {
  t.is(pathProblem('a/b.c'), undefined);
  t.is(pathProblem(''), 'the path is empty');
  t.is(pathProblem('/x'), 'the path is absolute');
  t.is(pathProblem('a\u0000'), 'the path contains NUL');
});

test('a key outside its wildcard root is a bug report, not a silent path', (t) => {
  const f: ResolvedFile = { uri: 's3://b/x/*', id: 's3://b/y/a', origin: 'store', key: 'y/a', wildcardRoot: 'x/' };
  t.throws(() => layoutInput([f], { input: 'i', keepDirectories: 'suffix' }), { message: /is not under its wildcard root "x\/"/ });
});

test('an empty input lays out to nothing', (t) => {
  t.deepEqual(layoutInput([], { input: 'i', keepDirectories: 'none', filename: 'x' }), { files: [], warnings: [] });
});
