import test from 'ava';
import { VhfsError, type VhfsErrorCode } from '../../src/util/errors.js';
import {
  displayUri, formatUri, interpolateParameters, parseUri, redact, type ParsedUri,
} from '../../src/uri/parse.js';

const UUID = '01890a5d-ac96-774b-bcce-b302099a8057';

function roundTrip(t: import('ava').ExecutionContext, p: ParsedUri): void {
  t.deepEqual(parseUri(formatUri(p)), p);
}

/** Assert a BAD_URI (or given code) error whose message starts with `prefix` and matches `what`. */
function rejects(t: import('ava').ExecutionContext, uri: string, what: RegExp, prefix = uri, code: VhfsErrorCode = 'BAD_URI'): void {
  const err = t.throws(() => parseUri(uri), { instanceOf: VhfsError });
  t.is(err?.code, code, err?.message);
  t.true(err?.message.startsWith(`${prefix}: `), `message "${err?.message}" should start with "${prefix}: "`);
  t.regex(err?.message ?? '', what);
}

// --- datum ---------------------------------------------------------------------------------------

test('datum by id', (t) => {
  const p = parseUri(`datum://${UUID}`);
  t.deepEqual(p, { kind: 'datum', ref: UUID, byId: true });
  roundTrip(t, p);
});

test('datum by id: upper-case UUID is normalised to lower case', (t) => {
  t.deepEqual(parseUri(`DATUM://${UUID.toUpperCase()}`), { kind: 'datum', ref: UUID, byId: true });
});

test('datum by id: any 8-4-4-4-12 hex shape is an id (v4 too)', (t) => {
  t.deepEqual(parseUri('datum://123e4567-e89b-42d3-a456-426614174000'),
    { kind: 'datum', ref: '123e4567-e89b-42d3-a456-426614174000', byId: true });
});

test('datum by alias', (t) => {
  const p = parseUri('datum://production-model');
  t.deepEqual(p, { kind: 'datum', ref: 'production-model', byId: false });
  roundTrip(t, p);
  // almost a UUID: an alias
  t.deepEqual(parseUri('datum://01890a5d-ac96-774b-bcce-b302099a805'), { kind: 'datum', ref: '01890a5d-ac96-774b-bcce-b302099a805', byId: false });
});

test('datum errors', (t) => {
  rejects(t, 'datum://', /missing datum id or alias/);
  rejects(t, 'datum://a/b', /a datum URI has no path/);
  rejects(t, 'datum://-bad', /"-bad" is neither a datum id \(UUID\) nor a valid alias name/);
  rejects(t, 'datum://model*', /wildcards are only allowed in store and local paths/);
});

// --- dataset / model -----------------------------------------------------------------------------

test('dataset version and alias', (t) => {
  const p = parseUri('dataset://imagenet/train-v3');
  t.deepEqual(p, { kind: 'dataset', name: 'imagenet', selector: 'train-v3' });
  roundTrip(t, p);
  t.deepEqual(parseUri('dataset://customer-churn/production'), { kind: 'dataset', name: 'customer-churn', selector: 'production' });
});

test('model version', (t) => {
  const p = parseUri('model://customer-churn/v1');
  t.deepEqual(p, { kind: 'model', name: 'customer-churn', selector: 'v1' });
  roundTrip(t, p);
});

test('dataset/model errors', (t) => {
  rejects(t, 'dataset://images', /^dataset:\/\/images: missing version or alias \(dataset:\/\/<name>\/<version-or-alias>\)$/);
  rejects(t, 'dataset://images/', /missing version or alias/);
  rejects(t, 'model://churn', /^model:\/\/churn: missing version \(model:\/\/<name>\/<version>\)$/);
  rejects(t, 'dataset://', /missing dataset name/);
  rejects(t, 'dataset:///v1', /missing dataset name/);
  rejects(t, 'dataset://images/v1/cats/a.jpg', /too many path segments.*sub-paths are not supported/);
  rejects(t, 'dataset://images/v1/', /too many path segments/);
  rejects(t, 'dataset://my images/v1', /invalid dataset name "my images"/);
  rejects(t, 'dataset://.hidden/v1', /invalid dataset name ".hidden"/);
  rejects(t, `dataset://images/${'v'.repeat(129)}`, /invalid version or alias/);
  rejects(t, 'model://m/v1?x=1', /invalid version "v1\?x=1"/);
  rejects(t, 'dataset://images/*', /wildcards are only allowed in store and local paths/);
  rejects(t, 'model://m*/v1', /wildcards are only allowed/);
});

test('dataset name of 128 characters is allowed', (t) => {
  const name = `a${'b'.repeat(127)}`;
  t.deepEqual(parseUri(`dataset://${name}/v1`), { kind: 'dataset', name, selector: 'v1' });
});

// --- object stores -------------------------------------------------------------------------------

test('s3 and gs objects', (t) => {
  const s3 = parseUri('s3://bucket/path/to/model.pb');
  t.deepEqual(s3, { kind: 'object', scheme: 's3', bucket: 'bucket', key: 'path/to/model.pb', wildcard: false });
  roundTrip(t, s3);
  const gs = parseUri('gs://b/k');
  t.deepEqual(gs, { kind: 'object', scheme: 'gs', bucket: 'b', key: 'k', wildcard: false });
  roundTrip(t, gs);
});

test('object keys are literal: spaces, %, ?, # and braces kept', (t) => {
  const p = parseUri('s3://b/my dir/a%20b?c#d{e}.txt');
  t.is(p.kind === 'object' ? p.key : '', 'my dir/a%20b?c#d{e}.txt');
  roundTrip(t, p);
});

test('s3 wildcards and wildcard roots (spec §1.6 example)', (t) => {
  const p = parseUri('s3://special-bucket/foo/bar/**.jpg');
  t.deepEqual(p, { kind: 'object', scheme: 's3', bucket: 'special-bucket', key: 'foo/bar/**.jpg', wildcard: true, wildcardRoot: 'foo/bar/' });
  roundTrip(t, p);
  t.like(parseUri('s3://b/dataset/images/*.jpg'), { wildcard: true, wildcardRoot: 'dataset/images/' });
  t.like(parseUri('s3://b/**/*.json'), { wildcard: true, wildcardRoot: '' });
  t.like(parseUri('gs://b/a/ims*/x/*.png'), { wildcard: true, wildcardRoot: 'a/' });
  t.like(parseUri('s3://b/data/**'), { wildcard: true, wildcardRoot: 'data/' });
});

test('azure: az:// and azure:// are the same; account and container kept apart', (t) => {
  const expected = {
    kind: 'object', scheme: 'az', account: 'acct', container: 'cont', bucket: 'acct/cont',
    key: 'dir/blob.bin', wildcard: false,
  };
  t.deepEqual(parseUri('az://acct/cont/dir/blob.bin'), expected as ParsedUri);
  const p = parseUri('azure://acct/cont/dir/blob.bin');
  t.deepEqual(p, expected as ParsedUri);
  t.is(formatUri(p), 'azure://acct/cont/dir/blob.bin');
  roundTrip(t, p);
  t.like(parseUri('azure://acct/cont/imgs/**.png'), { wildcard: true, wildcardRoot: 'imgs/' });
});

test('object store errors', (t) => {
  rejects(t, 's3://', /missing bucket \(s3:\/\/<bucket>\/<key>\)/);
  rejects(t, 's3://bucket', /missing object key/);
  rejects(t, 's3://bucket/', /missing object key/);
  rejects(t, 's3:///key', /missing bucket/);
  rejects(t, 'gs://my bucket/k', /bucket "my bucket" contains whitespace/);
  rejects(t, 's3://buck*/k', /wildcards are not allowed in the bucket/);
  rejects(t, 's3://b/dir/', /key "dir\/" ends with "\/" and names a folder.*dir\/\*\*/);
  rejects(t, 's3://b/a/***.jpg', /"\*\*\*" is not a wildcard/);
  rejects(t, 'az://acct', /missing container \(azure:\/\/<account>\/<container>\/<blob>\)/);
  rejects(t, 'azure://acct/cont', /missing object key/);
  rejects(t, 'azure://acct/cont/', /missing object key/);
  rejects(t, 'azure:///cont/b', /missing storage account/);
});

// --- http(s) -------------------------------------------------------------------------------------

test('https: file name is the last segment without the query', (t) => {
  const p = parseUri('https://example.com/data/t10k-images.gz?token=abc&x=1#frag');
  t.deepEqual(p, { kind: 'https', scheme: 'https', url: 'https://example.com/data/t10k-images.gz?token=abc&x=1#frag', filename: 't10k-images.gz' });
  roundTrip(t, p);
  t.like(parseUri('http://host:8080/a/b.csv'), { kind: 'https', scheme: 'http', filename: 'b.csv' });
  t.like(parseUri('HTTPS://host/a%20b.csv'), { scheme: 'https', filename: 'a%20b.csv' });
});

test('https: a `*` in the query string is not a wildcard', (t) => {
  t.like(parseUri('https://host/search.json?q=*'), { filename: 'search.json' });
});

test('https with basic auth: kept in url, masked by redact/displayUri', (t) => {
  const p = parseUri('https://alice:s3cret@host/f.zip');
  t.like(p, { url: 'https://alice:s3cret@host/f.zip', filename: 'f.zip' });
  t.is(displayUri(p), 'https://alice:***@host/f.zip');
  t.is(redact('https://tok123@host/f.zip'), 'https://***@host/f.zip');
  t.is(redact('https://u:p@ss@host/a@b.zip'), 'https://u:***@host/a@b.zip');
  t.is(redact('s3://bucket/a@b/c'), 's3://bucket/a@b/c');
  t.is(redact('https://host/f.zip?X-Amz-Signature=abc&X-Amz-Credential=k&x=1'), 'https://host/f.zip?X-Amz-Signature=***&X-Amz-Credential=***&x=1');
});

test('https errors never show the password', (t) => {
  const err = t.throws(() => parseUri('https://alice:s3cret@host/dir/'), { instanceOf: VhfsError });
  t.false(err?.message.includes('s3cret'));
  t.true(err?.message.startsWith('https://alice:***@host/dir/: '));
  t.regex(err?.message ?? '', /no file name/);
  rejects(t, 'https://host', /no file name/);
  rejects(t, 'https://host/', /no file name/);
  rejects(t, 'https://host/a/*.jpg', /wildcards are only allowed in store and local paths/);
  rejects(t, 'https://', /not a valid URL/);
  rejects(t, 'https://host/..', /not a usable file name/);
});

// --- local ---------------------------------------------------------------------------------------

test('local absolute, relative and file:// paths', (t) => {
  const abs = parseUri('/data/train.csv');
  t.deepEqual(abs, { kind: 'local', path: '/data/train.csv', wildcard: false });
  roundTrip(t, abs);
  t.deepEqual(parseUri('./x/y.csv', { cwd: '/work' }), { kind: 'local', path: '/work/x/y.csv', wildcard: false });
  t.deepEqual(parseUri('../y.csv', { cwd: '/work/a' }), { kind: 'local', path: '/work/y.csv', wildcard: false });
  t.deepEqual(parseUri('file:///data/a%20b.csv'), { kind: 'local', path: '/data/a b.csv', wildcard: false });
  t.deepEqual(parseUri('file://localhost/data/a.csv'), { kind: 'local', path: '/data/a.csv', wildcard: false });
  t.like(parseUri('./rel'), { path: `${process.cwd()}/rel` });
});

test('local wildcards', (t) => {
  const p = parseUri('/data/img/**.jpg');
  t.deepEqual(p, { kind: 'local', path: '/data/img/**.jpg', wildcard: true, wildcardRoot: '/data/img/' });
  roundTrip(t, p);
  t.like(parseUri('./imgs/*/a.png', { cwd: '/w' }), { path: '/w/imgs/*/a.png', wildcardRoot: '/w/imgs/' });
  t.like(parseUri('file:///d/**/*.json'), { path: '/d/**/*.json', wildcardRoot: '/d/' });
});

test('local errors', (t) => {
  rejects(t, 'images/x.jpg', /not a URI .*local paths must start with "\/", "\.\/" or "\.\.\/"/);
  rejects(t, '~/x.jpg', /not a URI/);
  rejects(t, 'file://otherhost/x', /absolute path on this host/);
  rejects(t, 'file:///x%zz', /invalid percent-encoding/);
  rejects(t, 'file:///x%00y', /NUL/);
  rejects(t, '/a/*/../b', /"\." and "\.\." are not allowed after a wildcard/);
  rejects(t, '/a/***', /is not a wildcard/);
});

// --- schemes and text ------------------------------------------------------------------------------

test('unknown scheme', (t) => {
  rejects(t, 'ftp://x/y', /^ftp:\/\/x\/y: unknown URI scheme "ftp" \(expected datum:\/\/, dataset:\/\/, model:\/\/, s3:\/\/, gs:\/\/, az:\/\/, https:\/\/, or a local path\)$/);
  rejects(t, 's3:/bucket/key', /malformed URI: expected "s3:\/\/" after the scheme/);
  rejects(t, 'swift://p/c/k', /OpenStack Swift URIs are not supported/, 'swift://p/c/k', 'UNSUPPORTED');
});

test('empty, blank, padded and control characters', (t) => {
  rejects(t, '', /empty URI/, '""');
  rejects(t, '   ', /blank URI/, '"   "');
  rejects(t, ' s3://b/k', /leading or trailing whitespace/, '" s3://b/k"');
  rejects(t, 's3://b/k\n', /leading or trailing whitespace/, '"s3://b/k\\n"');
  rejects(t, 's3://b/a\u0000b', /control character \\u0000 at offset 8/, 's3://b/a\\u0000b');
  rejects(t, 's3://b/a\tb', /control character \\u0009/, 's3://b/a\\u0009b');
});

test('uninterpolated parameter references are rejected', (t) => {
  rejects(t, 's3://b/images/{parameter:user-id}/*.jpeg', /parameter reference \{parameter:user-id\} was not interpolated/);
});

// --- interpolation -------------------------------------------------------------------------------

test('interpolateParameters', (t) => {
  t.is(interpolateParameters('s3://b/images/{parameter:user-id}/*.jpeg', { 'user-id': 42 }), 's3://b/images/42/*.jpeg');
  t.is(interpolateParameters('dataset://{parameter:ds}/{parameter:v}', { ds: 'imgs', v: 'v2' }), 'dataset://imgs/v2');
  t.is(interpolateParameters('s3://b/k', {}), 's3://b/k');
  t.is(interpolateParameters('s3://b/{parameter:f}', { f: true }), 's3://b/true');
});

test('interpolateParameters errors', (t) => {
  t.throws(() => interpolateParameters('s3://b/{parameter:nope}/x', { a: 1, b: 2 }), {
    instanceOf: VhfsError, message: 's3://b/{parameter:nope}/x: unknown parameter "nope" in {parameter:nope} (known: a, b)',
  });
  t.throws(() => interpolateParameters('s3://b/{parameter:x}', {}), { message: /no parameters are defined/ });
  t.throws(() => interpolateParameters('s3://b/{parameter:}', {}), { message: /^s3:\/\/b\/\{parameter:\}: malformed parameter reference/ });
  t.throws(() => interpolateParameters('s3://b/{parameter:x', { x: 1 }), { message: /malformed parameter reference "\{parameter:x"/ });
  t.throws(() => interpolateParameters('https://u:pw@h/{parameter:x}', {}), { message: /^https:\/\/u:\*\*\*@h\// });
});

test('errors are VhfsError BAD_URI with exit code 2', (t) => {
  const err = t.throws(() => parseUri('nope://x'), { instanceOf: VhfsError });
  t.is(err?.exitCode, 2);
});
