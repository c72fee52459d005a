/**
 * Issue 2, "bad input": every failure exits with its kind's code (README: 2 bad URI/argument, 3 not found,
 * 4 conflict, 5 bad package, 6 store failure or timeout, 7 not supported) and prints exactly one stderr
 * line, `vhfs: …`, naming the thing at fault; with `--json` the error is also `{"error":{code,message}}`
 * on stdout. Store faults that a directory cannot produce on its own (a store that does not answer, a
 * rival writer winning every compare-and-swap) are injected into the real binary by
 * test/helpers/store-faults-preload.ts.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { assertFails, BIN, Cli, python, storedPackages, tempDir, vhfs, type RunResult } from './helpers.js';
import { faultsEnv } from '../helpers/store-faults-preload.js';
import { zipLayout } from '../helpers/zip-oracle.js';

const MISSING_ID = '0190f0f0-0000-7000-8000-000000000000';

/** A home with dataset ds/v1 (packaged, alias latest) of a few files. */
async function packagedHome(t: ExecutionContext, files = 20): Promise<{ dir: string; cli: Cli; src: string }> {
  const dir = await tempDir(t);
  const src = path.join(dir, 'src');
  await fs.mkdir(path.join(src, 'sub'), { recursive: true });
  for (let i = 0; i < files; i++) await fs.writeFile(path.join(src, i % 2 ? 'sub' : '', `f${i}.txt`), `file ${i}\n`.repeat(i * 10));
  const cli = new Cli(path.join(dir, 'home'));
  await cli.ok('--quiet', 'dataset', 'create', 'ds/v1', src, '--package', '--alias', 'latest');
  return { dir, cli, src };
}

/** The single package blob of ds/v1, with its bytes; the persisted indexes are dropped so it is re-read. */
async function packageBlob(cli: Cli): Promise<{ file: string; name: string; data: Buffer }> {
  const [pkg] = await storedPackages(cli.storeDir, 'ds', 'v1');
  await fs.rm(path.join(cli.home, 'cache', 'indexes'), { recursive: true, force: true });
  await fs.chmod(pkg.file, 0o644).catch(() => {});
  return { file: pkg.file, name: pkg.name, data: await fs.readFile(pkg.file) };
}

function jsonError(t: ExecutionContext, r: RunResult, code: string): { code: string; message: string } {
  let parsed: { error?: { code?: string; message?: string } } = {};
  t.notThrows(() => { parsed = JSON.parse(r.out); }, `--json stdout must be one JSON document, got ${JSON.stringify(r.out)}`);
  t.deepEqual(Object.keys(parsed), ['error']);
  t.is(parsed.error?.code, code);
  t.is(typeof parsed.error?.message, 'string');
  return parsed.error as { code: string; message: string };
}

test('truncated package blob: ls fails with BAD_PACKAGE (exit 5) naming the package', async (t) => {
  const { cli } = await packagedHome(t);
  const blob = await packageBlob(cli);
  await fs.truncate(blob.file, Math.floor(blob.data.length / 2));
  const r = await cli.run('ls', 'dataset://ds/v1');
  assertFails(t, r, 5, blob.name);
  const j = await cli.run('--json', 'ls', '-R', 'dataset://ds/latest');
  const err = jsonError(t, j, 'BAD_PACKAGE');
  t.true(err.message.includes(blob.name), err.message);
});

test('package blob truncated after its index was cached: cat fails with exit 5 naming what it was reading', async (t) => {
  const { cli } = await packagedHome(t);
  const [pkg] = await storedPackages(cli.storeDir, 'ds', 'v1');
  const ok = await cli.ok('-q', 'cat', 'dataset://ds/v1', 'sub/f19.txt'); // persists the index
  t.is(ok.out, 'file 19\n'.repeat(190));
  await fs.truncate(pkg.file, Math.floor(pkg.size / 4));
  const r = await cli.run('-q', 'cat', 'dataset://ds/v1', 'sub/f19.txt');
  t.is(r.stdout.length, 0, 'no partial output');
  assertFails(t, r, 5, 'sub/f19.txt');
});

test('corrupt central directory signature: ls fails with exit 5 naming the package and the central directory', async (t) => {
  const { cli } = await packagedHome(t);
  const blob = await packageBlob(cli);
  const cd = (await zipLayout(blob.file)).cdOffset;
  t.is(blob.data.readUInt32LE(cd), 0x02014b50, 'the central directory starts where Python\'s zipfile says');
  const bad = Buffer.from(blob.data);
  bad.write('XX', cd, 'latin1');
  await fs.writeFile(blob.file, bad);
  const r = await cli.run('ls', '-R', 'dataset://ds/v1');
  assertFails(t, r, 5, blob.name, 'central directory');
  // cat goes through the same listing: same error.
  assertFails(t, await cli.run('cat', 'dataset://ds/v1', 'f0.txt'), 5, blob.name);
  // package inspect on the version too.
  assertFails(t, await cli.run('package', 'inspect', 'dataset://ds/v1'), 5, blob.name);
});

test('corrupt end-of-central-directory record: exit 5, names the package', async (t) => {
  const { cli } = await packagedHome(t);
  const blob = await packageBlob(cli);
  const eocd = (await zipLayout(blob.file)).eocdOffset;
  t.is(blob.data.readUInt32LE(eocd), 0x06054b50);
  const bad = Buffer.from(blob.data);
  bad.write('XX', eocd, 'latin1');
  await fs.writeFile(blob.file, bad);
  assertFails(t, await cli.run('ls', 'dataset://ds/v1'), 5, blob.name);
});

const UNSAFE_ZIPS: Array<{ label: string; names: string[]; entry: string; reason: RegExp }> = [
  { label: 'parent segment', names: ['ok.txt', '../evil'], entry: '../evil', reason: /\.\./ },
  { label: 'absolute path', names: ['/abs'], entry: '/abs', reason: /absolute/ },
  { label: 'duplicate name', names: ['dup.txt', 'other.txt', 'dup.txt'], entry: 'dup.txt', reason: /duplicate/ },
  { label: 'inner parent segment', names: ['a/../../b'], entry: 'a/../../b', reason: /\.\./ },
];

for (const z of UNSAFE_ZIPS) {
  test(`package inspect refuses a zip with an unsafe entry (${z.label}): exit 5, names the entry`, async (t) => {
    const dir = await tempDir(t);
    const file = path.join(dir, 'hostile.zip');
    const py = await python([
      'import sys, zipfile, warnings',
      'warnings.simplefilter("ignore")',
      'with zipfile.ZipFile(sys.argv[1], "w") as z:',
      '    for n in sys.argv[2:]:',
      '        z.writestr(zipfile.ZipInfo(n), b"data")',
    ].join('\n'), file, ...z.names);
    t.is(py.code, 0, py.stderr);
    const cli = new Cli(path.join(dir, 'home'));
    const line = assertFails(t, await cli.run('package', 'inspect', file), 5, file, `"${z.entry}"`);
    t.regex(line, z.reason);
    const j = await cli.run('--json', 'package', 'inspect', file);
    jsonError(t, j, 'UNSAFE_PATH');
  });
}

test('package inspect of a file that is not a zip: exit 5', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'not.zip');
  await fs.writeFile(file, 'hello, this is not a zip file at all');
  assertFails(t, await new Cli(path.join(dir, 'home')).run('package', 'inspect', file), 5, file);
});

test('unknown URI scheme ftp://x/y: exit 2 naming the scheme', async (t) => {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  assertFails(t, await cli.run('ls', 'ftp://x/y'), 2, 'ftp://x/y', '"ftp"');
  assertFails(t, await cli.run('cat', 'ftp://x/y'), 2, 'ftp');
  jsonError(t, await cli.run('--json', 'ls', 'ftp://x/y'), 'BAD_URI');
});

test('missing datum: exit 3 naming the id', async (t) => {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  assertFails(t, await cli.run('ls', `datum://${MISSING_ID}`), 3, MISSING_ID);
  assertFails(t, await cli.run('cat', `datum://${MISSING_ID}`), 3, MISSING_ID);
  assertFails(t, await cli.run('cat', 'datum://no-such-alias'), 3, 'no-such-alias');
  const err = jsonError(t, await cli.run('--json', 'cat', `datum://${MISSING_ID}`), 'NOT_FOUND');
  t.true(err.message.includes(MISSING_ID));
});

test('unknown version or alias: exit 3, the message lists the versions and aliases there are', async (t) => {
  const { cli } = await packagedHome(t, 4);
  assertFails(t, await cli.run('ls', 'dataset://ds/nope'), 3, 'nope', 'v1', 'latest');
  assertFails(t, await cli.run('ls', 'dataset://nods/v1'), 3, 'nods');
  assertFails(t, await cli.run('dataset', 'ls', 'nods'), 3, 'nods');
  // A path that is not in the version, and a directory given to cat. These fail after the package was
  // listed, which prints an informational line ("package …: N entries from …") unless --quiet.
  assertFails(t, await cli.run('-q', 'cat', 'dataset://ds/v1', 'no/such/file'), 3, 'no/such/file');
  assertFails(t, await cli.run('-q', 'ls', 'dataset://ds/v1', 'nodir'), 3, 'nodir');
  assertFails(t, await cli.run('-q', 'cat', 'dataset://ds/v1', 'sub'), 2, 'sub');
  assertFails(t, await cli.run('-q', 'cat', 'dataset://ds/v1'), 2, 'dataset://ds/v1');
  const err = jsonError(t, await cli.run('--json', 'ls', 'dataset://ds/nope'), 'NOT_FOUND');
  t.regex(err.message, /nope/);
});

test('alias whose version record was deleted from the store: ALIAS_DANGLING, exit 3', async (t) => {
  const { dir, cli, src } = await packagedHome(t, 4);
  await cli.ok('--quiet', 'dataset', 'create', 'ds/v2', src);
  await fs.rm(path.join(cli.storeDir, 'datasets', 'ds', 'versions', 'v1.json'));
  // A second host (fresh --home, same store) only knows what the store says.
  const other = new Cli(path.join(dir, 'home2'), cli.storeDir);
  assertFails(t, await other.run('ls', 'dataset://ds/latest'), 3, 'latest', 'v1');
  const err = jsonError(t, await other.run('--json', 'ls', 'dataset://ds/latest'), 'ALIAS_DANGLING');
  t.regex(err.message, /latest/);
  // After a sync the same; the listing shows the alias as dangling.
  await other.ok('catalog', 'sync');
  assertFails(t, await other.run('cat', 'dataset://ds/latest', 'f0.txt'), 3, 'latest');
  const listing = await other.ok('dataset', 'ls', 'ds');
  t.regex(listing.out, /dataset:\/\/ds\/v2/);
  t.regex(listing.out, /latest\t→ v1 \(missing version\)/);
});

test('version already exists: exit 4; dataset create on a missing directory: exit 3', async (t) => {
  const { dir, cli, src } = await packagedHome(t, 4);
  assertFails(t, await cli.run('dataset', 'create', 'ds/v1', src), 4, 'dataset://ds/v1');
  jsonError(t, await cli.run('--json', 'dataset', 'create', 'ds/v1', src), 'CONFLICT');
  const missing = path.join(dir, 'does-not-exist');
  assertFails(t, await cli.run('dataset', 'create', 'ds/v9', missing), 3, missing);
  // Nothing was made for either.
  const versions = await cli.json<{ versions: Array<{ version: string }> }>('dataset', 'ls', 'ds');
  t.deepEqual(versions.versions.map((v) => v.version), ['v1']);
});

test('bad arguments: exit 2 naming the argument', async (t) => {
  const { dir, cli, src } = await packagedHome(t, 2);
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', src, '--package', '--max-package-size', 'banana'), 2, 'banana');
  assertFails(t, await cli.run('dataset', 'create', 'bad name/v2', src), 2, 'bad name');
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', src, '--exclude', 'f0.txt'), 2, '--exclude');
  const empty = path.join(dir, 'empty');
  await fs.mkdir(empty);
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', empty), 2, empty);
  assertFails(t, await cli.run('put', path.join(dir, 'nofile')), 3, 'nofile');
});

test('--json errors print {"error":{"code","message"}} on stdout and still one line on stderr', async (t) => {
  const { cli } = await packagedHome(t, 2);
  const cases: Array<[string[], string, number]> = [
    [['ls', `datum://${MISSING_ID}`], 'NOT_FOUND', 3],
    [['ls', 'ftp://x/y'], 'BAD_URI', 2],
    [['ls', 'dataset://ds/nope'], 'NOT_FOUND', 3],
  ];
  for (const [args, code, exit] of cases) {
    const r = await cli.run('--json', ...args);
    const err = jsonError(t, r, code);
    const line = assertFails(t, r, exit);
    t.is(line, `vhfs: ${err.message}`, 'stderr carries the same message');
  }
});

// ------------------------------------------------------------------------------- 6: store failure, timeout

/** A home with one datum `note.txt`; returns the datum id and the path of its blob in the store. */
async function datumHome(t: ExecutionContext): Promise<{ dir: string; cli: Cli; id: string; blob: string }> {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  await fs.writeFile(path.join(dir, 'note.txt'), 'a note\n');
  const [d] = await cli.json<Array<{ id: string; blobKey: string }>>('put', path.join(dir, 'note.txt'));
  return { dir, cli, id: d.id, blob: path.join(cli.storeDir, ...d.blobKey.split('/')) };
}

test('a store that fails to read (a blob that is a symlink loop): exit 6 naming the URI, file and object', async (t) => {
  const { cli, id, blob } = await datumHome(t);
  await fs.rm(blob);
  await fs.symlink(path.basename(blob), blob);
  const line = assertFails(t, await cli.run('cat', `datum://${id}`), 6, `datum://${id}`, 'note.txt', path.relative(cli.storeDir, blob));
  t.regex(line, /ELOOP/);
  jsonError(t, await cli.run('--json', 'cat', `datum://${id}`), 'STORE');
});

test('a store that cannot be written (its root is a file): put exits 6 naming the store', async (t) => {
  const dir = await tempDir(t);
  const notADir = path.join(dir, 'store-file');
  await fs.writeFile(notADir, 'not a directory');
  await fs.writeFile(path.join(dir, 'x.txt'), 'x');
  const cli = new Cli(path.join(dir, 'home'), notADir);
  assertFails(t, await cli.run('put', path.join(dir, 'x.txt')), 6, `file://${notADir}`);
  t.is(await fs.readFile(notADir, 'utf8'), 'not a directory', 'nothing written');
});

test('a store that does not answer: cat exits 6 after the fetch deadline, naming the object and range', async (t) => {
  t.timeout(60_000);
  const { cli, id, blob } = await datumHome(t);
  const r = await vhfs(['--home', cli.home, 'cat', '--fetch-timeout', '500ms', `datum://${id}`], { env: faultsEnv({ keys: '^blobs/', delayMs: 3_600_000 }) });
  t.is(r.stdout.length, 0, 'no output');
  assertFails(t, r, 6, `datum://${id}`, path.relative(cli.storeDir, blob), 'no answer for bytes 0-6 within 500 ms');
});

test('a blob that is a FIFO (not a regular file) ends cat at once with a one-line error', async (t) => {
  t.timeout(60_000);
  const { cli, id, blob } = await datumHome(t);
  await fs.rm(blob);
  await python('import os, sys; os.mkfifo(sys.argv[1])', blob);
  // Killed after 10 s: twenty times the deadline.
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    execFile(process.execPath, [BIN, '--home', cli.home, 'cat', '--fetch-timeout', '500ms', `datum://${id}`], { timeout: 10_000 }, (err, _out, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr: String(stderr) });
    });
  });
  // No such object (3) or a store failure (6): either way an answer, not a process that never ends.
  t.true(r.code === 3 || r.code === 6, `exit ${r.code}; stderr: ${r.stderr}`);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
});

// ------------------------------------------------------------------------------ 4: lost compare-and-swap

// Serial (runs before the file's concurrent tests): 40 lost rounds of head/get/put, each with the rival's
// get/put, are slow on a loaded 2-core machine when 20 other tests spawn CLIs at the same time.
test.serial('an alias whose every compare-and-swap is lost to another writer: exit 4 naming the alias; it stays where it was', async (t) => {
  t.timeout(120_000);
  const { dir, cli, id } = await datumHome(t);
  await cli.ok('alias', 'set', 'datum://best', id);
  await fs.writeFile(path.join(dir, 'other.txt'), 'other\n');
  const [other] = await cli.json<Array<{ id: string }>>('put', path.join(dir, 'other.txt'));
  // Before each of this process's alias writes, a rival rewrites the alias object (same content, new etag).
  const r = await vhfs(['--home', cli.home, 'alias', 'set', 'datum://best', other.id], { env: faultsEnv({ keys: '^aliases/', rival: true }) });
  assertFails(t, r, 4, 'aliases/datums/best.json', 'gave up');
  t.deepEqual((await cli.json<Array<{ target: string }>>('alias', 'history', 'datum://best')).map((h) => h.target), [id]);
  t.is((await cli.ok('cat', 'datum://best')).out, 'a note\n');
});

// ------------------------------------------------------------------------------------ 7: not supported

test('not supported by this build: swift:// URIs and a catalog written by a newer vhfs exit 7', async (t) => {
  const { cli } = await datumHome(t);
  assertFails(t, await cli.run('ls', 'swift://container/object'), 7, 'swift://container/object');
  assertFails(t, await cli.run('cat', 'swift://container/object'), 7, 'swift://');
  jsonError(t, await cli.run('--json', 'ls', 'swift://container/object'), 'UNSUPPORTED');
  const db = path.join(cli.home, 'catalog.sqlite');
  const bump = await python('import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version = 999"); c.commit()', db);
  t.is(bump.code, 0, bump.stderr);
  assertFails(t, await cli.run('dataset', 'ls'), 7, db, 'schema version 999');
});

test('--version prints the version of package.json and exits 0', async (t) => {
  const pkg = JSON.parse(await fs.readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  const r = await vhfs(['--version']);
  t.is(r.code, 0, r.stderr);
  t.is(r.out, `${pkg.version}\n`);
});
