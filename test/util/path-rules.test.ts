/**
 * One table of relative paths, run through both forms of the rules (src/util/path-rules.ts) and through
 * the entry point of every place that checks a path: the package writer and reader, the object store's
 * keys, the catalog's version file paths and datum names, the input layout and the tree index. Each must
 * accept exactly the paths the rules accept and reject the others with the rules' own reason, so the
 * callers can never drift apart again. Each caller's additional rule (store keys: `.tmp/`; packages:
 * `.vhpkgzip/`) is tested at the end.
 *
 * Known, intended difference: in a zip, a name ending in `/` is a directory record, so the package
 * reader skips it (it is not a file) where every other caller rejects it.
 */
import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Catalog } from '../../src/catalog/index.js';
import { TreeIndexBuilder } from '../../src/index/tree-index.js';
import { layoutInput } from '../../src/inputs/layout.js';
import { readPackageListing } from '../../src/package/reader.js';
import { bufferSource } from '../../src/package/source.js';
import { keyProblem, LocalDirStore } from '../../src/store/local.js';
import { isVhfsError, type VhfsErrorCode } from '../../src/util/errors.js';
import { NAME_MAX_BYTES, PATH_MAX_BYTES, relativePathBytesProblem, relativePathProblem } from '../../src/util/path-rules.js';
import { buildRawZip, memEntry, writeToBuffer } from '../package/helpers.js';

interface Case {
  path: string;
  /** The rules' reason (a predicate), or undefined for a valid path. */
  problem?: string;
  /** Not expressible as UTF-8 bytes (a lone surrogate): only string callers see it. */
  stringOnly?: true;
}

const EMPTY_SEGMENT = 'has an empty segment ("//")';
const TRAILING = 'ends with "/" (a folder, not a file)';
const DOT = 'has a "." segment';
const DOTDOT = 'has a ".." segment';
const DRIVE = 'is absolute (starts with a drive letter)';
const LONG_SEGMENT = `has a segment longer than ${NAME_MAX_BYTES} bytes`;
const LONG_PATH = `is longer than ${PATH_MAX_BYTES} bytes`;
const seg255 = 'x'.repeat(NAME_MAX_BYTES);
/** Exactly PATH_MAX_BYTES: 15 × (255 + '/') + 255. */
const longest = `${`${seg255}/`.repeat(15)}${seg255}`;

const CASES: Case[] = [
  { path: 'a' },
  { path: 'a/b/c.txt' },
  { path: 'données/日本語.txt' },
  { path: 'emoji😀/ﬁ Ω' },
  { path: '.hidden/.x' },
  { path: '..a/a../...' },
  { path: 'C' },
  { path: '1:x' },
  { path: 'a/C:x' },
  { path: '.vhpkgzipx/.tmpx' },
  { path: seg255 },
  { path: 'é'.repeat(127) }, // 254 bytes
  { path: longest },
  { path: '', problem: 'is empty' },
  { path: '/', problem: 'is absolute' },
  { path: '/a', problem: 'is absolute' },
  { path: 'C:', problem: DRIVE },
  { path: 'c:/x', problem: DRIVE },
  { path: 'Z:\\x', problem: DRIVE },
  { path: 'a//b', problem: EMPTY_SEGMENT },
  { path: 'a//', problem: EMPTY_SEGMENT },
  { path: 'a/', problem: TRAILING },
  { path: '.', problem: DOT },
  { path: './a', problem: DOT },
  { path: 'a/./b', problem: DOT },
  { path: '..', problem: DOTDOT },
  { path: '../a', problem: DOTDOT },
  { path: 'a/../../b', problem: DOTDOT },
  { path: 'a/..', problem: DOTDOT },
  { path: 'a\0b', problem: 'contains NUL' },
  { path: '\0', problem: 'contains NUL' },
  { path: 'a\\b', problem: 'contains a backslash' },
  { path: '..\\x', problem: 'contains a backslash' },
  { path: 'x'.repeat(NAME_MAX_BYTES + 1), problem: LONG_SEGMENT },
  { path: `a/${'é'.repeat(128)}/b`, problem: LONG_SEGMENT }, // 128 characters, 256 bytes
  { path: '😀'.repeat(64), problem: LONG_SEGMENT }, // 64 characters, 256 bytes
  { path: `${longest}x`, problem: LONG_PATH },
  { path: `${'é/'.repeat(1365)}a`, problem: LONG_PATH }, // 2,731 characters, 4,096 bytes
  { path: 'a\ud800b', problem: 'is not valid Unicode (lone surrogate)', stringOnly: true },
];

const shown = (c: Case): string => JSON.stringify(c.path.length > 40 ? `${c.path.slice(0, 40)}…(${Buffer.byteLength(c.path)} bytes)` : c.path);

/** A rejection must be a VhfsError of `code` whose one-line message carries the rules' reason. */
async function expectOutcome(t: ExecutionContext, c: Case, code: VhfsErrorCode, caller: string, run: () => unknown): Promise<void> {
  let err: unknown;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  if (c.problem === undefined) {
    t.false(isVhfsError(err, code), `${caller} rejected valid ${shown(c)}: ${String(err)}`);
    return;
  }
  t.true(isVhfsError(err, code), `${caller} accepted ${shown(c)} or failed otherwise: ${String(err)}`);
  if (isVhfsError(err)) {
    t.true(err.message.includes(c.problem), `${caller}: ${err.message} lacks "${c.problem}"`);
    t.false(err.message.includes('\n'), `${caller}: multi-line message`);
  }
}

test('the table: the string form and the bytes form agree on every case', (t) => {
  for (const c of CASES) {
    t.is(relativePathProblem(c.path), c.problem, shown(c));
    if (c.stringOnly) continue;
    const bytes = Buffer.from(c.path);
    t.is(relativePathBytesProblem(bytes), c.problem, `${shown(c)} as bytes`);
    // a range inside a larger buffer, as the package reader passes it
    const framed = Buffer.concat([Buffer.from('//..'), bytes, Buffer.from('\\\0')]);
    t.is(relativePathBytesProblem(framed, 4, 4 + bytes.length), c.problem, `${shown(c)} as a framed range`);
  }
});

test('package writer', async (t) => {
  for (const c of CASES) {
    await expectOutcome(t, c, 'UNSAFE_PATH', 'writer', () => writeToBuffer([memEntry(c.path, Buffer.from('x'))]));
  }
});

test('package reader (a name ending in "/" is a directory record: skipped, not a file)', async (t) => {
  for (const c of CASES) {
    if (c.stringOnly) continue;
    const zip = buildRawZip([{ name: c.path, data: Buffer.from('x') }]);
    if (c.path.endsWith('/')) {
      const listing = await readPackageListing(bufferSource(zip), 'p.zip');
      t.is(listing.count, 0, `${shown(c)} skipped as a directory record`);
      continue;
    }
    await expectOutcome(t, c, 'UNSAFE_PATH', 'reader', async () => {
      const listing = await readPackageListing(bufferSource(zip), 'p.zip');
      t.deepEqual(listing.paths, [c.path]);
    });
  }
});

async function tempStore(t: ExecutionContext): Promise<{ dir: string; store: LocalDirStore }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-path-rules-'));
  const store = new LocalDirStore(path.join(dir, 'store'), { fsync: false });
  t.teardown(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  return { dir, store };
}

test('object store keys', async (t) => {
  const { store } = await tempStore(t);
  for (const c of CASES) {
    t.is(keyProblem(c.path), c.problem, `keyProblem ${shown(c)}`);
    // Accepted keys may still be refused by the file system (a 4 KiB key under the store's root exceeds
    // PATH_MAX): that is a STORE error, never the rules' BAD_ARGUMENT.
    await expectOutcome(t, c, 'BAD_ARGUMENT', 'store put', () => store.put(c.path, Buffer.from('x')));
    await expectOutcome(t, c, 'BAD_ARGUMENT', 'store get', () => store.get(c.path).catch((err: unknown) => {
      if (!isVhfsError(err, 'BAD_ARGUMENT')) return undefined;
      throw err;
    }));
  }
  // the store's own rule on top: uploads in progress live under .tmp/
  t.is(keyProblem('.tmp/x'), '.tmp/ is reserved for uploads in progress');
  t.is(keyProblem('.tmp'), '.tmp/ is reserved for uploads in progress');
  t.is(keyProblem('a/.tmp/x'), undefined);
});

test('catalog: version file paths and datum names', async (t) => {
  const { dir, store } = await tempStore(t);
  const catalog = await Catalog.open({ store, dbPath: path.join(dir, 'catalog.sqlite'), verifyVersionFiles: false });
  t.teardown(() => catalog.close());
  const producer = { tool: 'test' };
  const sha256 = '0'.repeat(64);
  for (const [i, c] of CASES.entries()) {
    await expectOutcome(t, c, 'UNSAFE_PATH', 'createVersion', () => catalog.createVersion({
      kind: 'dataset', collection: 'rules', version: `v${i}`, producer,
      files: [{ path: c.path, datumId: '01890a5d-ac96-774b-bcce-b302099a8057', size: 1, sha256 }],
    }));
    await expectOutcome(t, c, 'UNSAFE_PATH', 'putDatum', () => catalog.putDatum(Buffer.from('x'), { name: c.path, producer }));
  }
});

test('input layout', async (t) => {
  for (const c of CASES) {
    await expectOutcome(t, c, 'UNSAFE_PATH', 'layout', () =>
      layoutInput([{ uri: 'dataset://d/v', id: 'x', origin: 'version', key: c.path }], { input: 'i', keepDirectories: 'full' }));
  }
});

test('tree index', async (t) => {
  for (const c of CASES) {
    await expectOutcome(t, c, 'UNSAFE_PATH', 'tree index', () => {
      const builder = new TreeIndexBuilder('dataset://d/v');
      const source = builder.addSource({ key: 'k', size: 10 });
      builder.add({ path: c.path, size: 1, offset: 0, source });
      return builder.build();
    });
  }
});

test('packages reserve .vhpkgzip/ on top of the rules, in the writer and the reader', async (t) => {
  for (const name of ['.vhpkgzip', '.vhpkgzip/x', '.vhpkgzip/chunk-hashes/y']) {
    await expectOutcome(t, { path: name, problem: 'is reserved for package metadata' }, 'UNSAFE_PATH', 'writer', () => writeToBuffer([memEntry(name, Buffer.from('x'))]));
    // not the last record, so not taken for the chunk hash table
    const zip = buildRawZip([{ name, data: Buffer.from('x') }, { name: 'z', data: Buffer.from('y') }]);
    await expectOutcome(t, { path: name, problem: 'is reserved for package metadata' }, 'UNSAFE_PATH', 'reader', () => readPackageListing(bufferSource(zip), 'p.zip'));
  }
});
