import test, { type ExecutionContext } from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VhfsError, isVhfsError, type VhfsErrorCode } from '../../src/util/errors.js';
import { crc32 } from '../../src/package/crc32.js';
import { readPackageListing } from '../../src/package/reader.js';
import { verifyMember } from '../../src/package/verify.js';
import { bufferSource } from '../../src/package/source.js';
import type { PackageEntry } from '../../src/package/writer.js';
import {
  buildRawZip,
  centralExtra,
  centralRecords,
  counting,
  endRecords,
  memEntry,
  randomBytes,
  rng,
  run,
  tempDir,
  toZip64End,
  writeToBuffer,
  type RawEntry,
  resealCentralDirectory,
} from './helpers.js';

const PKG = 'ds.v1.vhpkgzip';

async function sample(n = 20): Promise<Buffer> {
  const rand = rng(7);
  const entries: PackageEntry[] = [];
  for (let i = 0; i < n; i++) {
    entries.push(memEntry(`dir${i % 3}/file${String(i).padStart(3, '0')}.bin`, randomBytes(rand, (rand() * 9000) | 0)));
  }
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return (await writeToBuffer(entries)).buffers[0];
}

/** Listing must fail with a one-line VhfsError of `code` whose message starts with the package name. */
async function rejects(t: ExecutionContext, zip: Buffer, code: VhfsErrorCode, re: RegExp): Promise<VhfsError> {
  const err = await t.throwsAsync(readPackageListing(bufferSource(zip), PKG));
  t.true(err instanceof VhfsError, `not a VhfsError: ${String(err)}`);
  const e = err as VhfsError;
  t.is(e.code, code, e.message);
  t.regex(e.message, re);
  t.true(e.message.startsWith(`${PKG}: `), e.message);
  t.false(e.message.includes('\n'));
  return e;
}

test('a ZIP64 end record written by hand is read like the classic one', async (t) => {
  const zip = await sample();
  const plain = await readPackageListing(bufferSource(zip), PKG);
  const z = toZip64End(zip);
  const listing = await readPackageListing(bufferSource(z.zip), PKG);
  t.deepEqual(listing.paths, plain.paths);
  t.deepEqual([...listing.dataOffsets], [...plain.dataOffsets]);
});

test('truncated packages are BAD_PACKAGE, wherever they are cut', async (t) => {
  const zip = await sample();
  const { cdOffset } = endRecords(zip);
  for (const cut of [0, 10, 21, 22, 4096, zip.length >> 1, cdOffset, cdOffset + 10, zip.length - 23, zip.length - 22, zip.length - 1]) {
    await rejects(t, zip.subarray(0, cut), 'BAD_PACKAGE', /too small|no end-of-central-directory|runs past/);
  }
  // front cut: every offset is now wrong
  for (const cut of [1, 30, 4096]) {
    await rejects(t, zip.subarray(cut), 'BAD_PACKAGE', /runs past|bad signature|local header|data/);
  }
});

test('corrupt central directory and end records are BAD_PACKAGE with a precise message', async (t) => {
  const zip = await sample();
  const recs = centralRecords(zip);
  const { eocd, cdSize } = endRecords(zip);
  // Each edit is resealed (the comment's CRC-32 of the directory made to match), so it reaches the check
  // it means to exercise; the last assertion shows an unsealed edit is caught by that CRC first.
  const patch = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(zip);
    f(b);
    return resealCentralDirectory(b);
  };
  await rejects(t, patch((b) => (b[recs[3]] ^= 0xff)), 'BAD_PACKAGE', /central directory record #3 at offset \d+ has a bad signature/);
  const last = recs.length - 1; // the chunk hash table's record
  await rejects(t, patch((b) => b.writeUInt16LE(0xffff, recs[last] + 28)), 'BAD_PACKAGE', new RegExp(`record #${last}: name, extra and comment run past`));
  await rejects(t, patch((b) => b.writeUInt16LE(0xfff, recs[0] + 30)), 'BAD_PACKAGE', /record #0|bad signature/);
  const n = recs.length;
  await rejects(t, patch((b) => b.writeUInt16LE(n + 1, eocd + 8) + b.writeUInt16LE(n + 1, eocd + 10)), 'BAD_PACKAGE', new RegExp(`record #${n} is truncated`));
  await rejects(t, patch((b) => b.writeUInt16LE(n - 1, eocd + 8) + b.writeUInt16LE(n - 1, eocd + 10)), 'BAD_PACKAGE', new RegExp(`bytes left over after its ${n - 1} records`));
  await rejects(t, patch((b) => b.writeUInt16LE(3000, eocd + 8) + b.writeUInt16LE(3000, eocd + 10)), 'BAD_PACKAGE', /cannot hold the 3000 entries/);
  await rejects(t, patch((b) => b.writeUInt32LE(zip.length + 100, eocd + 16)), 'BAD_PACKAGE', /central directory \[\d+, \+\d+\) runs past the end records/);
  await rejects(t, patch((b) => b.writeUInt32LE(cdSize + 1, eocd + 12)), 'BAD_PACKAGE', /runs past the end records/);
  await rejects(t, patch((b) => b.writeUInt16LE(1, eocd + 4)), 'BAD_PACKAGE', /multi-disk/);
  // extra field length that overruns its record's extra area
  const vh = centralExtra(zip, recs[2], 0x5648);
  await rejects(t, patch((b) => b.writeUInt16LE(200, vh + 2)), 'BAD_PACKAGE', /entry "dir\d\/file\d+\.bin": extra field 0x5648 runs past/);
  // data offset pointing into the central directory / before its header
  await rejects(t, patch((b) => b.writeUInt32LE(zip.length - 100, vh + 4)), 'BAD_PACKAGE', /entry ".*": data \[\d+, \+\d+\) runs past the data area/);
  await rejects(t, patch((b) => b.writeUInt32LE(1, vh + 4)), 'BAD_PACKAGE', /is before the end of its local header/);
  // two records sharing one local header
  await rejects(t, patch((b) => b.writeUInt32LE(zip.readUInt32LE(recs[4] + 42), recs[5] + 42)), 'BAD_PACKAGE', /overlaps the data of entry/);
  // size 0xFFFFFFFF without a ZIP64 extra
  await rejects(t, patch((b) => b.writeUInt32LE(0xffffffff, recs[1] + 24)), 'BAD_PACKAGE', /0xFFFFFFFF but there is no ZIP64 extra/);
  await rejects(t, patch((b) => b.writeUInt32LE(7, recs[1] + 20)), 'BAD_PACKAGE', /compressed size 7 differs from size/);
  await rejects(t, patch((b) => b.writeUInt32LE(0x7fffffff, recs[1] + 42)), 'BAD_PACKAGE', /local header offset 2147483647 lies outside the data area/);
});

test('absurd ZIP64 values are BAD_PACKAGE, never a RangeError', async (t) => {
  const base = toZip64End(await sample());
  const patch = (f: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(base.zip);
    f(b);
    return b;
  };
  const { z64, locator } = base;
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 62n, locator + 8)), 'BAD_PACKAGE', /ZIP64 end record offset >= 2\^53 lies outside/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 40n, locator + 8)), 'BAD_PACKAGE', /ZIP64 end record offset 1099511627776 lies outside/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(100n, locator + 8)), 'BAD_PACKAGE', /no ZIP64 end record at offset 100/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 60n, z64 + 48)), 'BAD_PACKAGE', /beyond 2\^53/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 50n, z64 + 48)), 'BAD_PACKAGE', /runs past the end records/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 40n, z64 + 40)), 'BAD_PACKAGE', /runs past the end records/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 40n, z64 + 32) + b.writeBigUInt64LE(1n << 40n, z64 + 24)), 'BAD_PACKAGE', /cannot hold the 1099511627776 entries/);
  await rejects(t, patch((b) => b.writeBigUInt64LE(1n << 63n, z64 + 4)), 'BAD_PACKAGE', /impossible size/);
  // a member's ZIP64 extra with an absurd local header offset
  const raw = buildRawZip([{ name: 'a', data: Buffer.from('x') }]);
  const rec = centralRecords(raw)[0];
  const extra = Buffer.alloc(12);
  extra.writeUInt16LE(1, 0);
  extra.writeUInt16LE(8, 2);
  extra.writeBigUInt64LE(1n << 61n, 4);
  const withExtra = buildRawZip([{ name: 'a', data: Buffer.from('x'), centralExtra: extra }]);
  withExtra.writeUInt32LE(0xffffffff, rec + 42);
  await rejects(t, withExtra, 'BAD_PACKAGE', /entry "a": ZIP64 local header offset is beyond 2\^53/);
  extra.writeBigUInt64LE(1n << 40n, 4);
  const farAway = buildRawZip([{ name: 'a', data: Buffer.from('x'), centralExtra: extra }]);
  farAway.writeUInt32LE(0xffffffff, rec + 42);
  await rejects(t, farAway, 'BAD_PACKAGE', /entry "a": local header offset 1099511627776 lies outside/);
  const empty64 = Buffer.from([1, 0, 0, 0]); // a ZIP64 extra with no values
  const short = buildRawZip([{ name: 'a', data: Buffer.from('x'), centralExtra: empty64 }]);
  short.writeUInt32LE(0xffffffff, rec + 42);
  await rejects(t, short, 'BAD_PACKAGE', /entry "a": ZIP64 extra field lacks the local header offset/);
});

// Every path rule is tried through the reader by test/util/path-rules.test.ts; these check the message.
const UNSAFE: Array<[string | Buffer, RegExp]> = [
  ['/etc/passwd', /entry "\/etc\/passwd": the path is absolute$/],
  ['C:x', /entry "C:x": the path is absolute \(starts with a drive letter\)$/],
  ['../x', /entry "\.\.\/x": the path has a "\.\." segment$/],
  ['a\\b', /entry "a\\\\b": the path contains a backslash$/],
  ['a\0b', /entry "a\\u0000b": the path contains NUL$/],
  [`${'n'.repeat(256)}/x`, /entry "n{256}\/x": the path has a segment longer than 255 bytes$/],
  ['.vhpkgzip/chunk-hashes/x', /entry "\.vhpkgzip\/chunk-hashes\/x": the name is reserved for package metadata/],
  ['.vhpkgzip', /entry "\.vhpkgzip": the name is reserved for package metadata/],
];

test('unsafe names are UNSAFE_PATH naming the entry', async (t) => {
  for (const [name, re] of UNSAFE) {
    const zip = buildRawZip([{ name: 'ok', data: Buffer.from('1') }, { name, data: Buffer.from('2') }, { name: 'zz', data: Buffer.from('3') }]);
    await rejects(t, zip, 'UNSAFE_PATH', re);
  }
  // The table's own name is taken for a table, which must be the last record and carry its data offset.
  const table = { name: '.vhpkgzip/chunk-hashes', data: Buffer.alloc(24) };
  const noOffset = buildRawZip([{ name: 'ok', data: Buffer.from('1') }, table]);
  await rejects(t, noOffset, 'BAD_PACKAGE', /entry "\.vhpkgzip\/chunk-hashes": chunk hash table has no data offset/);
  const zip = await sample(3);
  const recs = centralRecords(zip);
  const tableRecord = zip.subarray(recs[3], endRecords(zip).eocd);
  const { cdOffset, eocd } = endRecords(zip);
  const moved = Buffer.concat([zip.subarray(0, cdOffset), tableRecord, zip.subarray(cdOffset, recs[3]), zip.subarray(eocd)]);
  await rejects(t, resealCentralDirectory(moved), 'BAD_PACKAGE', /central directory record #1 follows the chunk hash table's, which must be the last/);
  // One flipped byte turns the table's record into an ordinary name: the archive comment still says there
  // is a table, so the package is refused rather than served with no table to check its blocks.
  const renamed = Buffer.from(zip);
  renamed[recs[3] + 46] = 0x5f; // ".vhpkgzip/chunk-hashes" -> "_vhpkgzip/chunk-hashes"
  await rejects(t, resealCentralDirectory(renamed), 'BAD_PACKAGE', /its comment says it ends with a chunk hash table, but its last central record is not one/);
  await rejects(t, renamed, 'BAD_PACKAGE', /central directory does not match the CRC-32 its archive comment records/);
});

test('duplicates (also after decoding) and file/directory clashes are UNSAFE_PATH', async (t) => {
  const d = (name: string | Buffer, flags?: number): RawEntry => ({ name, data: Buffer.from('x'), flags });
  await rejects(t, buildRawZip([d('a'), d('b'), d('a')]), 'UNSAFE_PATH', /entry "a": duplicate name/);
  await rejects(t, buildRawZip([d('a'), d('a')]), 'UNSAFE_PATH', /entry "a": duplicate name/);
  // é as latin-1 without the UTF-8 flag, then as UTF-8: the same name once decoded
  await rejects(t, buildRawZip([d(Buffer.from([0xe9]), 0), d('é')]), 'UNSAFE_PATH', /entry "é": duplicate name/);
  await rejects(t, buildRawZip([d('a'), d('a-b'), d('a/c')]), 'UNSAFE_PATH', /entry "a": is both a file and a directory \("a\/c"\)/);
  await rejects(t, buildRawZip([d('x/y/z'), d('x/y')]), 'UNSAFE_PATH', /entry "x\/y": is both a file and a directory/);
});

test('compressed, encrypted and mis-encoded members are BAD_PACKAGE naming the entry', async (t) => {
  await rejects(
    t,
    buildRawZip([{ name: 'img/0001.jpg', data: Buffer.from('x'), method: 8 }]),
    'BAD_PACKAGE',
    /^ds\.v1\.vhpkgzip: entry "img\/0001\.jpg": is compressed \(method 8\); \.vhpkgzip members must be stored$/,
  );
  await rejects(t, buildRawZip([{ name: 'a', data: Buffer.from('x'), flags: 0x0801 }]), 'BAD_PACKAGE', /entry "a": is encrypted/);
  await rejects(t, buildRawZip([{ name: Buffer.from([0x61, 0xff, 0x62]), flags: 0x0800 }]), 'BAD_PACKAGE', /not valid UTF-8/);
});

test('a Python-made deflated zip is rejected as compressed', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const file = join(tmp.dir, 'deflated.zip');
  run('python3', ['-c', `import zipfile; z = zipfile.ZipFile(${JSON.stringify(file)}, 'w', zipfile.ZIP_DEFLATED); z.writestr('a.txt', 'hello' * 100); z.close()`]);
  await rejects(t, readFileSync(file), 'BAD_PACKAGE', /entry "a\.txt": is compressed \(method 8\)/);
});

test('foreign stored zips (Info-ZIP, Python) are read via batched local-header reads; directories skipped', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.cleanup);
  const rand = rng(5);
  const src = join(tmp.dir, 'src');
  const expected = new Map<string, Buffer>();
  for (let i = 0; i < 200; i++) {
    const rel = `d${i % 5}/sub${i % 2}/f${i}${i % 7 === 0 ? '-ü' : ''}.bin`;
    const data = randomBytes(rand, i % 10 === 0 ? 200_000 : (rand() * 3000) | 0);
    mkdirSync(join(src, rel, '..'), { recursive: true });
    writeFileSync(join(src, rel), data);
    expected.set(rel, data);
  }
  const infozip = join(tmp.dir, 'infozip.zip');
  run('bash', ['-c', `cd ${JSON.stringify(src)} && zip -q -0 -r ${JSON.stringify(infozip)} .`]);
  const python = join(tmp.dir, 'python.zip');
  run('python3', [
    '-c',
    `import os, sys, zipfile
z = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_STORED)
for root, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(root, f)
        z.write(p, os.path.relpath(p, sys.argv[1]))
z.close()`,
    src,
    python,
  ]);
  for (const file of [infozip, python]) {
    const zip = readFileSync(file);
    const source = counting(bufferSource(zip));
    const listing = await readPackageListing(source, file);
    t.is(listing.count, expected.size, file);
    // Headers of small members are coalesced; each member over the 64 KiB gap limit costs a read.
    const big = [...expected.values()].filter((d) => d.length > 64 << 10).length;
    t.true(listing.reads <= 2 + big + 2, `${file}: ${listing.reads} reads`);
    for (let i = 0; i < listing.count; i++) {
      const want = expected.get(listing.paths[i]);
      t.truthy(want, listing.paths[i]);
      const off = listing.dataOffsets[i];
      t.true(zip.subarray(off, off + listing.sizes[i]).equals(want!), listing.paths[i]);
      t.is(listing.crc32s[i], crc32(want!));
      await verifyMember(source, listing, i);
    }
  }
  // a local header whose name differs from its central record
  const raw = buildRawZip([{ name: 'abc', data: Buffer.from('x') }]);
  raw[30] = 0x78;
  await rejects(t, raw, 'BAD_PACKAGE', /entry "abc": local header name differs/);
});

test('verifyMember: a flipped data byte fails the chunk hash table, and without one the CRC-32', async (t) => {
  const zip = await sample(3);
  const listing = await readPackageListing(bufferSource(zip), PKG);
  const i = listing.sizes.findIndex((s) => s > 0);
  const flipped = Buffer.from(zip);
  flipped[listing.dataOffsets[i] + 5] ^= 1;
  const err = await t.throwsAsync(verifyMember(bufferSource(flipped), listing, i));
  t.true(isVhfsError(err, 'INTEGRITY'));
  const chunkEnd = Math.min(64 << 10, listing.chunkTable!.covered);
  t.is(err!.message, `${PKG}: bytes [0, ${chunkEnd}) (chunk 0, holding data of entry "${listing.paths[i]}") do not match the package's chunk hash table`);

  // Chunks intact but the central directory's CRC-32 wrong: the CRC check still runs.
  let badCrc: Buffer = Buffer.from(zip);
  badCrc.writeUInt32LE((listing.crc32s[i] ^ 1) >>> 0, centralRecords(zip)[i] + 16);
  badCrc = resealCentralDirectory(badCrc);
  const crcErr = await t.throwsAsync(verifyMember(bufferSource(badCrc), await readPackageListing(bufferSource(badCrc), PKG), i));
  t.true(isVhfsError(crcErr, 'INTEGRITY'));
  t.regex(crcErr!.message, /^ds\.v1\.vhpkgzip: entry "dir\d\/file\d+\.bin": CRC-32 [0-9a-f]{8}, central directory says [0-9a-f]{8}$/);

  // A package without a table (as another tool writes it): the CRC-32 is the check.
  const entries = [memEntry('a', Buffer.from('first')), memEntry('b', Buffer.from('second'))];
  const bare = (await writeToBuffer(entries, { chunkHashes: false })).buffers[0];
  const bareListing = await readPackageListing(bufferSource(bare), PKG);
  t.is(bareListing.chunkTable, undefined);
  bare[bareListing.dataOffsets[1]] ^= 1;
  await verifyMember(bufferSource(bare), bareListing, 0);
  const bareErr = await t.throwsAsync(verifyMember(bufferSource(bare), bareListing, 1));
  t.regex(bareErr!.message, /^ds\.v1\.vhpkgzip: entry "b": CRC-32 [0-9a-f]{8}, central directory says [0-9a-f]{8}$/);
});

test('a 10,000-entry package is listed in at most 2 reads', async (t) => {
  const entries: PackageEntry[] = [];
  for (let i = 0; i < 10_000; i++) entries.push(memEntry(`shard${String(i % 16).padStart(2, '0')}/${String(i).padStart(5, '0')}.txt`, Buffer.from(`#${i}`)));
  entries.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  const zip = (await writeToBuffer(entries)).buffers[0];
  const source = counting(bufferSource(zip));
  const listing = await readPackageListing(source, PKG);
  t.is(listing.count, 10_000);
  t.is(source.reads, 2);
  t.is(listing.reads, 2);
  t.is(listing.bytesRead, 65_634 + endRecords(zip).cdSize);
  const i = listing.paths.indexOf('shard03/00003.txt');
  const off = listing.dataOffsets[i];
  t.is(zip.toString('utf8', off, off + listing.sizes[i]), '#3');
});

test('comments: the EOCD is found behind a comment, and a comment containing a fake EOCD does not fool it', async (t) => {
  const entries = [{ name: 'a', data: Buffer.from('x') }];
  const plain = await readPackageListing(bufferSource(buildRawZip(entries, Buffer.from('hello'))), PKG);
  t.deepEqual(plain.paths, ['a']);
  const fake = Buffer.alloc(22);
  fake.writeUInt32LE(0x06054b50, 0);
  const tricky = await readPackageListing(bufferSource(buildRawZip(entries, Buffer.concat([fake, Buffer.from('tail')]))), PKG);
  t.deepEqual(tricky.paths, ['a']);
  const long = await readPackageListing(bufferSource(buildRawZip(entries, Buffer.alloc(0xffff, 0x20))), PKG);
  t.deepEqual(long.paths, ['a']);
});
