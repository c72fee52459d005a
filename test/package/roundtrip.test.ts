import test from 'ava';
import { readFileSync, statSync } from 'node:fs';
import { Readable, Writable } from 'node:stream';
import { isVhfsError } from '../../src/util/errors.js';
import { crc32 } from '../../src/package/crc32.js';
import { packagePartName, parsePackagePartName } from '../../src/package/part-names.js';
import { CHUNK_TABLE_NAME } from '../../src/package/entry-names.js';
import { CHUNK_TABLE_COMMENT_LENGTH } from '../../src/package/format.js';
import { readPackageListing, type PackageListing } from '../../src/package/reader.js';
import { loadChunkTable, readChunkTable, verifyMember, verifyPackage } from '../../src/package/verify.js';
import { ChunkHasher, chunkTableBytes } from '../../src/util/chunk-hashes.js';
import { bufferSource, fileSource } from '../../src/package/source.js';
import { writePackage, type PackageEntry } from '../../src/package/writer.js';
import {
  endRecords,
  memEntry,
  pythonTestzip,
  randomBytes,
  rng,
  run,
  tempDir,
  writeToBuffer,
  writeToDir,
  yauzlList,
} from './helpers.js';

interface Fixture {
  path: string;
  data: Buffer;
  mtime: Date;
}

const NAME_PARTS = ['a', 'b', 'données', '日本語', 'emoji😀', 'x y', 'train', 'val', 'ﬁ', 'Ω'];

/** A few hundred files: random sizes (many 0, some > 4 KiB, a few > 1 MiB), unicode, nested dirs. */
function fixtures(count: number, seed: number): Fixture[] {
  const rand = rng(seed);
  const byPath = new Map<string, Fixture>();
  while (byPath.size < count) {
    const depth = (rand() * 4) | 0;
    const segs: string[] = [];
    for (let d = 0; d < depth; d++) segs.push(`${NAME_PARTS[(rand() * NAME_PARTS.length) | 0]}${d}`);
    segs.push(`f${(rand() * 100000) | 0}.${NAME_PARTS[(rand() * NAME_PARTS.length) | 0]}`);
    const r = rand();
    const size = r < 0.15 ? 0 : r < 0.8 ? (rand() * 5000) | 0 : r < 0.97 ? (rand() * 200000) | 0 : 1_000_000 + ((rand() * 500000) | 0);
    const mtime = new Date(1_600_000_000_000 + Math.floor(rand() * 1e11));
    const path = segs.join('/');
    byPath.set(path, { path, data: randomBytes(rand, size), mtime });
  }
  return sortFixtures([...byPath.values()]);
}

function sortFixtures(list: Fixture[]): Fixture[] {
  return list.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

function entriesOf(list: Fixture[]): PackageEntry[] {
  return list.map((f) => memEntry(f.path, f.data, f.mtime));
}

async function assertListingMatches(
  t: import('ava').ExecutionContext,
  file: string,
  expected: Fixture[],
): Promise<PackageListing> {
  const src = await fileSource(file);
  try {
    const listing = await readPackageListing(src, file);
    t.is(listing.count, expected.length);
    t.deepEqual(listing.paths, expected.map((f) => f.path));
    const bytes = readFileSync(file);
    for (let i = 0; i < listing.count; i++) {
      const f = expected[i];
      t.is(listing.sizes[i], f.data.length);
      t.is(listing.crc32s[i], crc32(f.data));
      t.is(listing.mtimesMs[i], f.mtime.getTime());
      const off = listing.dataOffsets[i];
      if (f.data.length >= 64 * 1024) t.is(off % 4096, 0, `${f.path} aligned`);
      else if (f.data.length > 0 && f.data.length < 4096) t.is(Math.floor(off / 4096), Math.floor((off + f.data.length - 1) / 4096), `${f.path} within one page`);
      t.true(bytes.subarray(off, off + f.data.length).equals(f.data), `${f.path} bytes`);
      await verifyMember(src, listing, i);
    }
    return listing;
  } finally {
    await src.close();
  }
}

/** unzip -t, zipinfo and Python's testzip accept the part: `count` files plus the chunk hash table member. */
function checkExternalTools(t: import('ava').ExecutionContext, file: string, count: number): void {
  t.regex(run('unzip', ['-t', file]), /No errors detected/);
  const zi = run('zipinfo', ['-t', file]);
  t.regex(zi, new RegExp(`^${count + 1} files?,`, 'm'));
  t.is(pythonTestzip(file), count + 1);
}

test('round trip: a few hundred files, aligned data, equal bytes, external tools and yauzl agree', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const files = fixtures(300, 1);
  const progress: Array<[number, number]> = [];
  const { parts, files: paths } = await writeToDir(entriesOf(files), tmp.dir, {
    onProgress: (bytes, entries) => progress.push([bytes, entries]),
  });
  t.is(parts.length, 1);
  t.like(parts[0], { part: 1, entries: 300, firstPath: files[0].path, lastPath: files[299].path, zip64: false });
  t.is(parts[0].size, statSync(paths[0]).size);
  const listing = await assertListingMatches(t, paths[0], files);
  const table = listing.chunkTable!;
  t.deepEqual(parts[0].chunkTable, { offset: table.offset, length: table.length });
  // Progress counts the last user member's bytes; the table member is written when the part closes.
  t.deepEqual(progress.at(-1), [table.covered, 300]);
  t.is(listing.reads, 1, 'central directory lies inside the tail read');
  checkExternalTools(t, paths[0], 300);
  const y = await yauzlList(paths[0]);
  const bytes = readFileSync(paths[0]);
  const tableBytes = bytes.subarray(table.offset, table.offset + table.length);
  t.deepEqual(
    y.map((e) => [e.name, e.size, e.crc32]),
    [...files.map((f) => [f.path, f.data.length, crc32(f.data)]), [CHUNK_TABLE_NAME, table.length, crc32(tableBytes)]],
  );
});

test('each part ends with a chunk hash table of every byte before it', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const files = fixtures(80, 4);
  const { parts, files: paths } = await writeToDir(entriesOf(files), tmp.dir, { maxPartSize: 2_000_000 });
  t.true(parts.length >= 2, `${parts.length} parts`);
  for (const [i, part] of parts.entries()) {
    const bytes = readFileSync(paths[i]);
    const src = bufferSource(bytes);
    const listing = await readPackageListing(src, paths[i]);
    const location = listing.chunkTable!;
    t.false(listing.paths.includes(CHUNK_TABLE_NAME), 'the table is not a file');
    t.deepEqual(part.chunkTable, { offset: location.offset, length: location.length });
    // The table is the last member: its local header starts right where its coverage ends.
    t.is(bytes.readUInt32LE(location.covered), 0x04034b50);
    t.is(bytes.toString('utf8', location.covered + 30, location.covered + 30 + CHUNK_TABLE_NAME.length), CHUNK_TABLE_NAME);
    t.is(location.length, chunkTableBytes(location.covered));
    const expected = new ChunkHasher();
    expected.update(bytes.subarray(0, location.covered));
    t.true(bytes.subarray(location.offset, location.offset + location.length).equals(expected.finish()));
    const table = await readChunkTable(src, location, paths[i]);
    t.is(table.covered, location.covered);
    t.is(await loadChunkTable(src, listing), await loadChunkTable(src, listing), 'loaded once per listing');
    await verifyPackage(src, listing);
  }
});

test('small archives carry no ZIP64 records or fields', async (t) => {
  const files = fixtures(50, 2);
  const { buffers } = await writeToBuffer(entriesOf(files));
  const zip = buffers[0];
  const end = endRecords(zip);
  t.false(end.zip64);
  t.is(zip.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06])), -1);
  t.is(zip.indexOf(Buffer.from([0x50, 0x4b, 0x06, 0x07])), -1);
  // no central record carries a ZIP64 extra (id 0x0001)
  let p = end.cdOffset;
  while (p < end.eocd) {
    const n = zip.readUInt16LE(p + 28);
    const e = zip.readUInt16LE(p + 30);
    t.is(zip.readUInt16LE(p + 6), 20, 'version needed 2.0');
    for (let q = p + 46 + n; q < p + 46 + n + e; q += 4 + zip.readUInt16LE(q + 2)) t.not(zip.readUInt16LE(q), 1);
    p += 46 + n + e + zip.readUInt16LE(p + 32);
  }
});

test('split: parts respect maxPartSize, each is a standalone zip, together they hold everything', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const rand = rng(3);
  const files: Fixture[] = [];
  for (let i = 0; i < 60; i++) {
    const size = i === 30 ? 900_000 : (rand() * 60_000) | 0; // member 30 alone exceeds the limit
    files.push({ path: `d${i % 4}/file-${String(i).padStart(3, '0')}`, data: randomBytes(rand, size), mtime: new Date(1.7e12 + i * 1000) });
  }
  sortFixtures(files);
  const maxPartSize = 400_000;
  const { parts, files: paths } = await writeToDir(entriesOf(files), tmp.dir, { maxPartSize });
  t.true(parts.length >= 4, `${parts.length} parts`);
  let at = 0;
  for (const [i, part] of parts.entries()) {
    t.is(part.part, i + 1);
    t.is(part.size, statSync(paths[i]).size);
    const members = files.slice(at, at + part.entries);
    at += part.entries;
    t.is(part.firstPath, members[0].path);
    t.is(part.lastPath, members.at(-1)!.path);
    if (part.entries > 1) t.true(part.size <= maxPartSize, `part ${part.part} is ${part.size} bytes`);
    else t.true(part.size <= maxPartSize || members[0].data.length > maxPartSize / 2);
    await assertListingMatches(t, paths[i], members);
    checkExternalTools(t, paths[i], members.length);
  }
  t.is(at, files.length);
  t.true(parts.some((p) => p.entries === 1 && p.firstPath === files.find((f) => f.data.length === 900_000)!.path));
});

test('empty package: one part, a valid empty zip', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const { parts, files } = await writeToDir([], tmp.dir);
  // Local header (30 + 22-byte name + 9-byte UT extra), the 24-byte table of zero chunks, its central
  // record (46 + 22 + 9 + 20-byte VH extra) and the EOCD with its comment.
  t.deepEqual(parts, [{ part: 1, entries: 0, size: 61 + 24 + 97 + 22 + CHUNK_TABLE_COMMENT_LENGTH, firstPath: '', lastPath: '', zip64: false, chunkTable: { offset: 61, length: 24 } }]);
  const listing = await readPackageListing(bufferSource(readFileSync(files[0])), 'empty');
  t.is(listing.count, 0);
  t.deepEqual(listing.chunkTable, { offset: 61, length: 24, covered: 0, crc32: listing.chunkTable!.crc32 });
  t.is(pythonTestzip(files[0]), 1);
  const bare = await writeToDir([], tmp.dir, { chunkHashes: false });
  t.deepEqual(bare.parts, [{ part: 1, entries: 0, size: 22, firstPath: '', lastPath: '', zip64: false }]);
});

test('supplied CRC: no data descriptor, still verified', async (t) => {
  const data = Buffer.from('hello world');
  const entry = { ...memEntry('a.txt', data), crc32: crc32(data) };
  const { buffers } = await writeToBuffer([entry]);
  t.is(buffers[0].readUInt16LE(6) & 8, 0, 'local header has no descriptor flag');
  t.is(buffers[0].readUInt32LE(14), crc32(data));
  const listing = await readPackageListing(bufferSource(buffers[0]), 'p');
  t.is(listing.crc32s[0], crc32(data));
  const bad = { ...memEntry('a.txt', data), crc32: 1234 };
  const err = await t.throwsAsync(writeToBuffer([bad]));
  t.true(isVhfsError(err, 'INTEGRITY'));
  t.regex(err!.message, /^package: entry "a.txt": CRC-32 .* differs/);
});

test('writer rejects bad input with one-line VhfsErrors naming the entry', async (t) => {
  const e = (path: string, size = 1): PackageEntry => memEntry(path, Buffer.alloc(size, 1));
  const cases: Array<[PackageEntry[], string, RegExp]> = [
    [[e('b'), e('a')], 'UNSAFE_PATH', /entry "a": out of order after "b"/],
    [[e('a'), e('a')], 'UNSAFE_PATH', /entry "a": duplicate path/],
    // every path rule goes through the writer in test/util/path-rules.test.ts; these check the message
    [[e('/abs')], 'UNSAFE_PATH', /entry "\/abs": the path is absolute$/],
    [[e('a\0b')], 'UNSAFE_PATH', /entry "a\\u0000b": the path contains NUL$/],
    [[e('dir/')], 'UNSAFE_PATH', /entry "dir\/": the path ends with "\/" \(a folder, not a file\)$/],
    [[e('a\ud800')], 'UNSAFE_PATH', /lone surrogate/],
    [[e('.vhpkgzip')], 'UNSAFE_PATH', /entry "\.vhpkgzip": the name is reserved for package metadata/],
    [[e('.vhpkgzip/chunk-hashes')], 'UNSAFE_PATH', /entry "\.vhpkgzip\/chunk-hashes": the name is reserved/],
    [[e('.vhpkgzip/other')], 'UNSAFE_PATH', /entry "\.vhpkgzip\/other": the name is reserved/],
    [[e('a'), e('a-b'), e('a/c')], 'UNSAFE_PATH', /entry "a\/c": "a" is both a file and a directory/],
    [[{ ...e('a', 5), size: 4 }], 'INTEGRITY', /entry "a": data stream yielded more than the declared 4 bytes/],
    [[{ ...e('a', 5), size: 6 }], 'INTEGRITY', /entry "a": data stream yielded 5 bytes, declared 6/],
    [[{ ...e('a'), size: -1 }], 'BAD_ARGUMENT', /size must be a non-negative integer/],
  ];
  for (const [entries, code, re] of cases) {
    const err = await t.throwsAsync(writeToBuffer(entries, { name: 'ds.v1' }));
    t.true(isVhfsError(err) && err.code === code, `${re}: ${String(err)}`);
    t.regex(err!.message, re);
    t.regex(err!.message, /^ds\.v1: /);
    t.false(err!.message.includes('\n'));
  }
});

test('a failed write destroys the open part stream', async (t) => {
  let destroyed: Error | null | undefined;
  const sink = new Writable({
    write: (_c, _e, cb) => cb(),
    destroy: (err, cb) => {
      destroyed = err;
      cb(err);
    },
  });
  const entries: PackageEntry[] = [
    memEntry('a', Buffer.alloc(10)),
    { path: 'b', size: 10, open: () => Readable.from([Buffer.alloc(3)]) },
  ];
  const err = await t.throwsAsync(writePackage(entries, { openPart: () => sink }));
  t.true(isVhfsError(err, 'INTEGRITY'));
  t.is(destroyed, err);
});

test('a failing part stream surfaces as a STORE error', async (t) => {
  const sink = new Writable({ write: (_c, _e, cb) => cb(new Error('disk full')) });
  const err = await t.throwsAsync(writePackage([memEntry('a', Buffer.alloc(3 << 20))], { openPart: () => sink }));
  t.true(isVhfsError(err, 'STORE'));
  t.regex(err!.message, /part 1: write failed: disk full/);
});

test('default mtime is fixed: identical input gives identical bytes', async (t) => {
  const mk = (): PackageEntry[] => [memEntry('x/1', Buffer.from('one')), memEntry('x/2', Buffer.from('two'))];
  const a = await writeToBuffer(mk());
  const b = await writeToBuffer(mk());
  t.true(a.buffers[0].equals(b.buffers[0]));
  const listing = await readPackageListing(bufferSource(a.buffers[0]), 'p');
  t.is(listing.mtimesMs[0], Date.UTC(1980, 0, 1));
});

test('packagePartName and parsePackagePartName', (t) => {
  t.is(packagePartName('imagenet', 'v3', 1, 1), 'imagenet.v3.vhpkgzip');
  t.is(packagePartName('imagenet', 'v3', 2, 3), 'imagenet.v3.part-0002-of-0003.vhpkgzip');
  t.is(packagePartName('big', '1.0', 12345, 20000), 'big.1.0.part-12345-of-20000.vhpkgzip');
  t.throws(() => packagePartName('a', 'b', 4, 3), { message: /not a valid part number/ });
  t.throws(() => packagePartName('a/b', 'v', 1, 1), { message: /contains "\/"/ });
  t.deepEqual(parsePackagePartName('imagenet.v3.part-0002-of-0003.vhpkgzip'), { stem: 'imagenet.v3', part: 2, parts: 3 });
  t.deepEqual(parsePackagePartName('imagenet.v3.vhpkgzip'), { stem: 'imagenet.v3', part: 1, parts: 1 });
  t.is(parsePackagePartName('imagenet.v3.zip'), undefined);
});
