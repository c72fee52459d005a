/**
 * The fuzz corpus: a few valid base packages and a seeded generator of mutations of them, plus the
 * oracle a reader of a mutated package is held to. Used by fuzz.test.ts (the package reader leg); any
 * other leg (a mounted read, the block cache) builds the same cases from the same (seed, index) and
 * checks what it serves with `servedBytesProblem`.
 *
 * Bases: packages vhfs writes (with a chunk hash table; one with ZIP64 end records; one with members
 * spanning several 64 KiB chunks), one without a table (`chunkHashes: false`) and a foreign zip (no VH
 * field, no table: local headers are read). Every member's content is distinct, so a member served
 * with another member's bytes cannot pass its CRC by accident.
 *
 * A case applies one to three mutations: at most one structural edit of the central directory (names
 * with NUL, `..`, backslash, reserved names, duplicates, file/directory clashes; records duplicated,
 * dropped or swapped; ZIP64 extras with huge values), then byte-level ones (bit flips and byte writes
 * biased to the metadata, header fields spliced with boundary values or another record's value, huge
 * ZIP64 end-record values, chunk-table corruption with and without a fixed-up CRC), then maybe a
 * truncation. Some cases instead change one data byte together with its member's CRC, alone: the one
 * change only the chunk hash table can see. Each case's RNG derives from (seed, index)
 * alone, so `fuzzCase(bases, seed, index)` rebuilds any case without the ones before it.
 */
import { isVhfsError } from '../../src/util/errors.js';
import { crc32 } from '../../src/package/crc32.js';
import type { PackageEntry } from '../../src/package/writer.js';
import { buildRawZip, centralExtra, centralRecords, endRecords, memEntry, randomBytes, resealCentralDirectory, rng, toZip64End, writeToBuffer } from './helpers.js';

export interface FuzzBase {
  name: string;
  zip: Buffer;
  /** Offset of the EOCD (a comment may follow it). */
  eocd: number;
  /** Every member's original bytes, by path. */
  files: Map<string, Buffer>;
  /** Offsets of the central records (the chunk table's, when there is one, is the last). */
  records: number[];
  cdOffset: number;
  zip64: boolean;
  /** The chunk hash table member, for bases vhfs wrote with one. */
  table: { record: number; offset: number; length: number } | undefined;
}

export interface FuzzCase {
  seed: number;
  index: number;
  base: FuzzBase;
  /** What was done, in order: enough to read a failure without re-running it. */
  mutations: string[];
  zip: Buffer;
}

/** The only errors a reader may raise for a mutated package. */
export const ALLOWED_CODES = ['BAD_PACKAGE', 'UNSAFE_PATH', 'INTEGRITY'] as const;

/** Why `err` is not an acceptable rejection, or undefined when it is. */
export function errorProblem(err: unknown): string | undefined {
  if (!isVhfsError(err)) return `escaped as ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
  if (!(ALLOWED_CODES as readonly string[]).includes(err.code)) return `${err.code} is not an allowed code: ${err.message}`;
  if (err.message.includes('\n')) return `multi-line message: ${JSON.stringify(err.message)}`;
  return undefined;
}

/**
 * Why bytes a reader served as member `path` at `offset` after verifying them are wrong, or undefined.
 * A path the base has must be served with that file's bytes; a path a mutation made up (a renamed
 * record) with the base's bytes at the same place, i.e. nothing the writer did not write there.
 */
export function servedBytesProblem(c: FuzzCase, path: string, offset: number, served: Buffer): string | undefined {
  const original = c.base.files.get(path);
  const expected = original ?? (offset + served.length <= c.base.zip.length ? c.base.zip.subarray(offset, offset + served.length) : undefined);
  if (expected === undefined) return `entry ${JSON.stringify(path)} verified with ${served.length} bytes at ${offset}, past the original package`;
  if (!expected.equals(served)) {
    return `entry ${JSON.stringify(path)} verified with bytes that differ from the original${original === undefined ? ' package at that range' : ' file'}`;
  }
  return undefined;
}

/** The bases, built once per process (about 1 MiB in all). */
export async function makeBases(): Promise<FuzzBase[]> {
  const rand = rng(20240611);
  const made = (names: string[], size: (i: number) => number): Map<string, Buffer> =>
    new Map(names.map((n, i) => [n, Buffer.concat([Buffer.from(`${n}#`), randomBytes(rand, size(i))])]));
  const small = made(
    ['a.txt', 'd0/empty-ish', 'd0/x.bin', 'd1/deep/er/f.bin', 'd1/g', 'données/é.txt', 'z/1', 'z/2', 'z/3', 'zz'],
    (i) => [0, 3, 700, 5000, 12, 2100, 1, 4095, 4097, 9000][i],
  );
  const chunky = made(['a', 'b/big1', 'b/big2', 'c', 'd/e'], (i) => [100, 150_000, 70_000, 30_000, 65_536][i]);
  const foreign = made(['f/1.txt', 'f/2.txt', 'g.bin', 'h/i/j.dat', 'k'], (i) => [10, 0, 3000, 20_000, 77][i]);
  const entries = (files: Map<string, Buffer>): PackageEntry[] => [...files].map(([p, d]) => memEntry(p, d));
  const vhfs = async (name: string, files: Map<string, Buffer>, opts: { chunkHashes?: boolean } = {}): Promise<FuzzBase> =>
    describe(name, (await writeToBuffer(entries(files), opts)).buffers[0], files);
  const bases = [
    await vhfs('vhfs-small', small),
    await vhfs('vhfs-chunky', chunky),
    await vhfs('vhfs-no-table', small, { chunkHashes: false }),
    describe('foreign', buildRawZip([...foreign].map(([name, data]) => ({ name, data }))), foreign),
  ];
  bases.push(describe('vhfs-zip64-end', toZip64End(bases[0].zip).zip, small));
  return bases;
}

function describe(name: string, zip: Buffer, files: Map<string, Buffer>): FuzzBase {
  const records = centralRecords(zip);
  const end = endRecords(zip);
  const cdOffset = records[0] ?? end.cdOffset;
  let table: FuzzBase['table'];
  const last = records.at(-1);
  if (last !== undefined && zip.toString('utf8', last + 46, last + 46 + zip.readUInt16LE(last + 28)) === '.vhpkgzip/chunk-hashes') {
    let vh: number | undefined;
    try {
      vh = centralExtra(zip, last, 0x5648);
    } catch {
      vh = undefined; // a record renamed to the table's name by a mutation, in a zip without VH fields
    }
    if (vh !== undefined) table = { record: records.length - 1, offset: Number(zip.readBigUInt64LE(vh + 4)), length: zip.readUInt32LE(last + 24) };
  }
  return { name, zip, eocd: end.eocd, files, records, cdOffset, zip64: end.zip64, table };
}

/** Case `index` of run `seed`. */
export function fuzzCase(bases: FuzzBase[], seed: number, index: number): FuzzCase {
  const rand = rng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0);
  const pick = <T>(list: readonly T[]): T => list[(rand() * list.length) | 0];
  const base = pick(bases);
  const c: FuzzCase = { seed, index, base, mutations: [], zip: base.zip };
  const m = new Mutator(c, rand, pick);
  if (base.table !== undefined && rand() < 0.08) {
    // Alone: it is the one change the CRC cannot see, so it must not be combined with a random flip
    // that, by luck, also disables the table (two coordinated changes are beyond what it guards against).
    m.dataWithCrc();
    return c;
  }
  if (rand() < 0.35) m.structural();
  const steps = 1 + ((rand() * 2) | 0);
  for (let s = 0; s < steps; s++) m.byteLevel();
  if (c.mutations.length === 0) m.byteLevel();
  // Half the cases fix up the archive comment's CRC-32 of the central directory after the edits, so the
  // checks behind it (record structure, names, offsets, the table's own record) get exercised too.
  if (rand() < 0.5) {
    const resealed = resealCentralDirectoryIfPossible(c.zip);
    if (resealed !== c.zip) {
      c.zip = resealed;
      c.mutations.push('central directory CRC-32 in the comment fixed up');
    }
  }
  if (rand() < 0.12) m.truncate();
  return c;
}

const BAD_NAMES = ['a\0b', '../x', 'a/../../etc/passwd', 'a\\b', '..\\..\\x', '/abs', 'C:x', '.', '', 'x/', `${'n'.repeat(300)}`, '.vhpkgzip', '.vhpkgzip/x', '.vhpkgzip/chunk-hashes'];
const HUGE = [2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 32n, 2n ** 32n - 1n];

/** Central record fields worth splicing: [offset in the record, bytes, name]. */
const CD_FIELDS: Array<[number, 2 | 4, string]> = [
  [8, 2, 'flags'], [10, 2, 'method'], [16, 4, 'crc'], [20, 4, 'compressed size'], [24, 4, 'size'],
  [28, 2, 'name length'], [30, 2, 'extra length'], [32, 2, 'comment length'], [34, 2, 'disk'], [42, 4, 'local header offset'],
];
const EOCD_FIELDS: Array<[number, 2 | 4, string]> = [[8, 2, 'entries on disk'], [10, 2, 'entries'], [12, 4, 'cd size'], [16, 4, 'cd offset'], [20, 2, 'comment length']];
const LOCAL_FIELDS: Array<[number, 2 | 4, string]> = [[6, 2, 'flags'], [8, 2, 'method'], [26, 2, 'name length'], [28, 2, 'extra length']];

class Mutator {
  /** Where records, the table and the end records are in the current bytes (moves after a structural edit). */
  private layout: FuzzBase;

  constructor(
    private readonly c: FuzzCase,
    private readonly rand: () => number,
    private readonly pick: <T>(list: readonly T[]) => T,
  ) {
    this.layout = c.base;
  }

  private int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  private edit(what: string, f: (b: Buffer) => void): void {
    const b = Buffer.from(this.c.zip);
    f(b);
    this.c.zip = b;
    this.c.mutations.push(what);
  }

  /** One edit of the central directory's record list, rebuilt with consistent end records. */
  structural(): void {
    const { base } = this.c;
    const zip = base.zip;
    const recs: Buffer[] = base.records.map((p, i) => zip.subarray(p, base.records[i + 1] ?? recordEnd(zip, p)));
    const userCount = base.table === undefined ? recs.length : recs.length - 1;
    if (userCount === 0) return;
    const r = this.int(userCount);
    const kind = this.int(5);
    let what: string;
    if (kind === 0 || kind === 1) {
      const other = this.pick(recs.filter((_, i) => i !== r && i < userCount));
      const otherName = other === undefined ? 'x' : nameOf(other);
      const choices: Array<string | Buffer> = [...BAD_NAMES, otherName, `${otherName}/x`, Buffer.from([0x61, 0xff, 0xfe])];
      const name = this.pick(choices);
      recs[r] = withName(recs[r], typeof name === 'string' ? Buffer.from(name) : name);
      what = `record #${r} renamed ${JSON.stringify(typeof name === 'string' ? name : name.toString('latin1'))}`;
    } else if (kind === 2) {
      const op = this.int(3);
      if (op === 0) recs.splice(this.int(recs.length + 1), 0, recs[r]);
      else if (op === 1) recs.splice(r, 1);
      else {
        const s = this.int(recs.length);
        [recs[r], recs[s]] = [recs[s], recs[r]];
      }
      what = `record #${r} ${['duplicated', 'dropped', 'swapped'][op]}`;
    } else {
      // A ZIP64 extra with huge values for saturated fields.
      const fields = this.int(7) + 1; // bit 0 size, bit 1 compressed, bit 2 offset
      const values: bigint[] = [];
      const rec = Buffer.from(recs[r]);
      if (fields & 1) { rec.writeUInt32LE(0xffffffff, 24); values.push(this.pick(HUGE)); }
      if (fields & 2) { rec.writeUInt32LE(0xffffffff, 20); values.push(this.pick(HUGE)); }
      if (fields & 4) { rec.writeUInt32LE(0xffffffff, 42); values.push(this.pick(HUGE)); }
      const extra = Buffer.alloc(4 + 8 * values.length);
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(8 * values.length, 2);
      values.forEach((v, i) => extra.writeBigUInt64LE(v, 4 + 8 * i));
      recs[r] = withExtraFirst(rec, extra);
      what = `record #${r} given a ZIP64 extra ${values.join(',')}`;
    }
    const cd = Buffer.concat(recs);
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    eocd.writeUInt16LE(Math.min(recs.length, 0xffff), 8);
    eocd.writeUInt16LE(Math.min(recs.length, 0xffff), 10);
    eocd.writeUInt32LE(cd.length, 12);
    eocd.writeUInt32LE(base.cdOffset, 16);
    const comment = zip.subarray(base.eocd + 22);
    eocd.writeUInt16LE(comment.length, 20);
    let rebuilt: Buffer = Buffer.concat([zip.subarray(0, base.cdOffset), cd, eocd, comment]);
    if (base.zip64) rebuilt = toZip64End(rebuilt).zip;
    this.c.zip = rebuilt;
    this.c.mutations.push(what);
    this.layout = describe(base.name, rebuilt, base.files);
  }

  byteLevel(): void {
    const kind = this.int(this.layout.table === undefined ? 5 : 6);
    if (kind === 0 || kind === 4) this.flip();
    else if (kind === 1 || kind === 2) this.splice();
    else if (kind === 3) this.zip64Values();
    else this.corruptTable();
  }

  private flip(): void {
    const b = this.c.zip;
    const meta = this.layout.table?.offset ?? this.layout.cdOffset;
    const at = this.rand() < 0.5 && meta < b.length ? meta + this.int(b.length - meta) : this.int(b.length);
    if (this.rand() < 0.5) {
      const bit = this.int(8);
      this.edit(`bit ${bit} of byte ${at} flipped`, (z) => { z[at] ^= 1 << bit; });
    } else {
      const v = this.int(256);
      this.edit(`byte ${at} set to ${v}`, (z) => { z[at] = v; });
    }
  }

  /** A header field overwritten with a boundary value, a random one, its neighbour or another record's. */
  private splice(): void {
    const base = this.layout;
    const zip = this.c.zip;
    const where = this.int(3);
    let at: number;
    let field: [number, 2 | 4, string];
    let other: number | undefined;
    if (where === 0 && base.records.length > 0) {
      const r = this.int(base.records.length);
      field = this.pick(CD_FIELDS);
      at = base.records[r] + field[0];
      other = base.records[this.int(base.records.length)] + field[0];
    } else if (where === 1 && base.records.length > 0) {
      const r = this.int(base.records.length);
      field = this.pick(LOCAL_FIELDS);
      at = zip.readUInt32LE(base.records[r] + 42) + field[0];
    } else {
      field = this.pick(EOCD_FIELDS);
      at = base.eocd + field[0];
    }
    const [, size, name] = field;
    if (at + size > zip.length) return this.flip();
    const max = size === 2 ? 0xffff : 0xffffffff;
    const read = (p: number): number => (size === 2 ? zip.readUInt16LE(p) : zip.readUInt32LE(p));
    const orig = read(at);
    const value = this.pick([0, 1, max, max - 1, this.int(max + 1), Math.min(max, orig + 1), Math.max(0, orig - 1), other !== undefined && other + size <= zip.length ? read(other) : 0]);
    this.edit(`${name} at ${at} set to ${value} (was ${orig})`, (z) => (size === 2 ? z.writeUInt16LE(value, at) : z.writeUInt32LE(value, at)));
  }

  /** ZIP64 end record and locator values far beyond the file, or just past it. */
  private zip64Values(): void {
    const zip = this.c.zip;
    if (!this.layout.zip64) return this.splice();
    const z64 = this.layout.eocd - 20 - 56;
    const fields: Array<[number, string]> = [[z64 + 4, 'ZIP64 record size'], [z64 + 24, 'ZIP64 entries on disk'], [z64 + 32, 'ZIP64 entries'], [z64 + 40, 'ZIP64 cd size'], [z64 + 48, 'ZIP64 cd offset'], [z64 + 56 + 8, 'ZIP64 locator offset']];
    const [at, name] = this.pick(fields);
    if (at + 8 > zip.length) return this.flip();
    const value = this.pick([...HUGE, BigInt(zip.length), BigInt(zip.length - 1), BigInt(this.int(zip.length))]);
    this.edit(`${name} set to ${value}`, (z) => z.writeBigUInt64LE(value, at));
  }

  /** The chunk hash table's bytes, header or CRC damaged; sometimes the CRC fixed up so parsing is reached. */
  private corruptTable(): void {
    const table = this.layout.table!;
    const crcAt = this.layout.records[table.record] + 16;
    const kind = this.int(4);
    const fix = this.rand() < 0.6;
    let what: string;
    let f: (z: Buffer) => void;
    if (kind === 0) {
      const at = table.offset + 24 + this.int(Math.max(1, table.length - 24));
      what = `chunk table hash byte ${at} flipped`;
      f = (z) => { z[at] ^= 1 << this.int(8); };
    } else if (kind === 1) {
      const v = this.pick([0, 3, 4096, 1 << 30, 0xffffffff]);
      what = `chunk table chunk size set to ${v}`;
      f = (z) => z.writeUInt32LE(v, table.offset + 8);
    } else if (kind === 2) {
      const v = this.pick([0, 8, 32]);
      what = `chunk table hash length set to ${v}`;
      f = (z) => z.writeUInt32LE(v, table.offset + 12);
    } else {
      const covered = this.c.zip.readBigUInt64LE(table.offset + 16);
      const v = this.pick([covered + 1n, covered - 1n, 0n, 2n ** 60n, 2n ** 64n - 1n]);
      what = `chunk table covered length set to ${v}`;
      f = (z) => z.writeBigUInt64LE(BigInt.asUintN(64, v), table.offset + 16);
    }
    this.edit(`${what}${fix ? ', CRC fixed up' : ''}`, (z) => {
      if (table.offset + table.length > z.length) return;
      f(z);
      if (fix) z.writeUInt32LE(crc32(z.subarray(table.offset, table.offset + table.length)), crcAt);
    });
  }

  /** A data byte changed and its member's central CRC made to match: only the chunk table can tell. */
  dataWithCrc(): void {
    const { records, table } = this.layout;
    const zip = this.c.zip;
    const candidates = records.filter((_, i) => i !== table?.record && zip.readUInt32LE(records[i] + 24) > 0);
    if (candidates.length === 0) return this.flip();
    const rec = this.pick(candidates);
    const size = zip.readUInt32LE(rec + 24);
    const offset = Number(zip.readBigUInt64LE(centralExtra(zip, rec, 0x5648) + 4)); // bases with a table: vhfs wrote them
    const at = offset + this.int(size);
    this.edit(`data byte ${at} flipped and its entry's CRC fixed up`, (z) => {
      z[at] ^= 0x20;
      z.writeUInt32LE(crc32(z.subarray(offset, offset + size)), rec + 16);
    });
  }

  truncate(): void {
    const n = this.int(this.c.zip.length);
    this.c.zip = this.c.zip.subarray(0, n);
    this.c.mutations.push(`truncated to ${n} bytes`);
  }
}

function recordEnd(zip: Buffer, p: number): number {
  return p + 46 + zip.readUInt16LE(p + 28) + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
}

function nameOf(rec: Buffer): string {
  return rec.toString('utf8', 46, 46 + rec.readUInt16LE(28));
}

function withName(rec: Buffer, name: Buffer): Buffer {
  const n = rec.readUInt16LE(28);
  const head = Buffer.from(rec.subarray(0, 46));
  head.writeUInt16LE(name.length, 28);
  return Buffer.concat([head, name, rec.subarray(46 + n)]);
}

function withExtraFirst(rec: Buffer, extra: Buffer): Buffer {
  const n = rec.readUInt16LE(28);
  const head = Buffer.from(rec.subarray(0, 46));
  head.writeUInt16LE(rec.readUInt16LE(30) + extra.length, 30);
  return Buffer.concat([head, rec.subarray(46, 46 + n), extra, rec.subarray(46 + n)]);
}

/** `resealCentralDirectory`, or the zip unchanged when its end records are too damaged to find the directory. */
function resealCentralDirectoryIfPossible(zip: Buffer): Buffer {
  try {
    return resealCentralDirectory(zip);
  } catch {
    return zip;
  }
}
