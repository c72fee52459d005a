/**
 * Shared helpers for the package tests: entry factories, writing parts to temp files, counting
 * sources, a sparse-file sink (multi-GiB zips without the disk traffic), external-tool runners,
 * and a tiny raw zip builder for inputs our writer refuses to produce.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import yauzl from 'yauzl';
import { crc32 } from '../../src/package/crc32.js';
import type { RandomAccessSource } from '../../src/package/source.js';
import {
  writePackage,
  type PackageEntry,
  type PackagePart,
  type WritePackageOptions,
} from '../../src/package/writer.js';

export { rng } from '../helpers/rng.js';

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

/** An entry over in-memory bytes, yielded in uneven chunks to exercise chunk handling. */
export function memEntry(path: string, data: Buffer, mtime?: Date): PackageEntry {
  return {
    path,
    size: data.length,
    mtime,
    open: () => {
      const chunks: Buffer[] = [];
      for (let i = 0; i < data.length; ) {
        const n = Math.min(data.length - i, 1 + ((i * 7919) % 70000));
        chunks.push(data.subarray(i, i + n));
        i += n;
      }
      return Readable.from(chunks);
    },
  };
}

const ZEROS = Buffer.alloc(8 << 20);

/** An entry of `size` zero bytes, yielded from one shared buffer (fast, no allocation). */
export function zeroEntry(path: string, size: number): PackageEntry {
  return {
    path,
    size,
    open: async function* () {
      for (let left = size; left > 0; left -= ZEROS.length) yield ZEROS.subarray(0, Math.min(left, ZEROS.length));
    },
  };
}

export function tempDir(prefix = 'vhpkg-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function partPath(dir: string, part: number): string {
  return join(dir, `part-${part}.vhpkgzip`);
}

/** Write entries as parts `dir/part-N.vhpkgzip`. */
export async function writeToDir(
  entries: Iterable<PackageEntry> | AsyncIterable<PackageEntry>,
  dir: string,
  opts: Omit<WritePackageOptions, 'openPart'> = {},
): Promise<{ parts: PackagePart[]; files: string[] }> {
  const parts = await writePackage(entries, { ...opts, openPart: (n) => createWriteStream(partPath(dir, n)) });
  return { parts, files: parts.map((p) => partPath(dir, p.part)) };
}

/** Collect a single part in memory. */
export async function writeToBuffer(
  entries: Iterable<PackageEntry> | AsyncIterable<PackageEntry>,
  opts: Omit<WritePackageOptions, 'openPart'> = {},
): Promise<{ parts: PackagePart[]; buffers: Buffer[] }> {
  const collected: Buffer[][] = [];
  const parts = await writePackage(entries, {
    ...opts,
    openPart: () => {
      const chunks: Buffer[] = [];
      collected.push(chunks);
      return new Writable({
        write(chunk: Buffer, _enc, cb) {
          chunks.push(Buffer.from(chunk));
          cb();
        },
      });
    },
  });
  return { parts, buffers: collected.map((c) => Buffer.concat(c)) };
}

/** Wrap a source to count its reads. */
export function counting(src: RandomAccessSource): RandomAccessSource & { reads: number } {
  const wrapped = {
    size: src.size,
    reads: 0,
    read(offset: number, length: number): Promise<Buffer> {
      wrapped.reads++;
      return src.read(offset, length);
    },
  };
  return wrapped;
}

/**
 * A Writable onto a file that skips all-zero chunks (leaving holes) and sets the length at the end:
 * a 5 GiB zip of zeros costs a few KiB of disk, and unzip/Python still read all 5 GiB of it.
 */
export function sparseFileWritable(path: string): Writable {
  let fh: FileHandle | undefined;
  let pos = 0;
  return new Writable({
    highWaterMark: 16 << 20,
    async construct(cb) {
      try {
        fh = await open(path, 'w');
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    write(chunk: Buffer, _enc, cb) {
      const at = pos;
      pos += chunk.length;
      const zero = chunk.length <= ZEROS.length && chunk.equals(ZEROS.subarray(0, chunk.length));
      if (zero) return cb();
      fh!.write(chunk, 0, chunk.length, at).then(() => cb(), cb);
    },
    final(cb) {
      fh!.truncate(pos).then(() => fh!.close()).then(() => cb(), cb);
    },
  });
}

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'pipe'] });
}

const PY_TEST = `
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    if bad is not None:
        sys.exit('bad member: ' + bad)
    infos = z.infolist()
    print(len(infos))
    if len(sys.argv) > 2:
        for i in infos:
            print(i.filename, i.file_size, i.CRC, i.header_offset)
`;

/** Python's zipfile opens the archive and testzip() CRC-checks every member; returns the member count. */
export function pythonTestzip(path: string): number {
  return Number(run('python3', ['-c', PY_TEST, path]).split('\n')[0]);
}

export interface YauzlEntry {
  name: string;
  size: number;
  crc32: number;
}

export function yauzlList(path: string): Promise<YauzlEntry[]> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, decodeStrings: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error('no zip'));
      const out: YauzlEntry[] = [];
      zip.on('entry', (e: yauzl.Entry) => {
        out.push({ name: e.fileName, size: e.uncompressedSize, crc32: e.crc32 });
        zip.readEntry();
      });
      zip.on('end', () => resolve(out));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

// ---- raw zip builder ----------------------------------------------------------------------------

export interface RawEntry {
  name: string | Buffer;
  data?: Buffer;
  method?: number;
  flags?: number;
  /** Extra bytes for the central record (raw, already framed). */
  centralExtra?: Buffer;
}

/**
 * A minimal classic zip: local header + data per entry, central directory, EOCD. No validation, so
 * tests can build what our writer refuses (unsafe names, duplicates, compressed or encrypted members).
 */
export function buildRawZip(entries: RawEntry[], comment = Buffer.alloc(0)): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = typeof e.name === 'string' ? Buffer.from(e.name) : e.name;
    const data = e.data ?? Buffer.alloc(0);
    const flags = e.flags ?? 0x0800;
    const method = e.method ?? 0;
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(flags, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(lh, name, data);
    const extra = e.centralExtra ?? Buffer.alloc(0);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(flags, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt16LE(0x21, 14); // 1980-01-01
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(extra.length, 30);
    ch.writeUInt32LE(offset, 42);
    centrals.push(ch, name, extra);
    offset += 30 + name.length + data.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  eocd.writeUInt16LE(comment.length, 20);
  return Buffer.concat([...locals, cd, eocd, comment]);
}

/** Offset of the EOCD: the last signature whose comment ends exactly at the end of the buffer. */
export function eocdOffset(zip: Buffer): number {
  for (let p = zip.length - 22; p >= 0; p--) {
    if (zip.readUInt32LE(p) === 0x06054b50 && p + 22 + zip.readUInt16LE(p + 20) === zip.length) return p;
  }
  throw new Error('no EOCD');
}

/** Offsets of the end records in a zip buffer. */
export function endRecords(zip: Buffer): { eocd: number; cdOffset: number; cdSize: number; zip64: boolean } {
  const eocd = eocdOffset(zip);
  const zip64 = eocd >= 20 && zip.readUInt32LE(eocd - 20) === 0x07064b50;
  return { eocd, cdOffset: zip.readUInt32LE(eocd + 16), cdSize: zip.readUInt32LE(eocd + 12), zip64 };
}

/** Offsets of each central record in a zip without a comment. */
export function centralRecords(zip: Buffer): number[] {
  const end = endRecords(zip);
  let cdOffset = end.cdOffset;
  if (end.zip64) cdOffset = Number(zip.readBigUInt64LE(Number(zip.readBigUInt64LE(end.eocd - 20 + 8)) + 48));
  const out: number[] = [];
  for (let p = cdOffset; zip.readUInt32LE(p) === 0x02014b50; ) {
    out.push(p);
    p += 46 + zip.readUInt16LE(p + 28) + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
  }
  return out;
}

/** Offset of extra field `id` in central record at `rec`. */
export function centralExtra(zip: Buffer, rec: number, id: number): number {
  const n = zip.readUInt16LE(rec + 28);
  const e = zip.readUInt16LE(rec + 30);
  for (let q = rec + 46 + n; q < rec + 46 + n + e; q += 4 + zip.readUInt16LE(q + 2)) {
    if (zip.readUInt16LE(q) === id) return q;
  }
  throw new Error(`no extra 0x${id.toString(16)}`);
}

/**
 * Replace the classic EOCD with ZIP64 end record + locator + saturated EOCD (keeping the comment);
 * returns their offsets.
 */
export function toZip64End(zip: Buffer): { zip: Buffer; z64: number; locator: number; eocd: number } {
  const { eocd, cdOffset, cdSize } = endRecords(zip);
  const comment = zip.subarray(eocd + 22);
  const count = zip.readUInt16LE(eocd + 10);
  const tail = Buffer.alloc(56 + 20 + 22);
  tail.writeUInt32LE(0x06064b50, 0);
  tail.writeBigUInt64LE(44n, 4);
  tail.writeUInt16LE(45, 12);
  tail.writeUInt16LE(45, 14);
  tail.writeBigUInt64LE(BigInt(count), 24);
  tail.writeBigUInt64LE(BigInt(count), 32);
  tail.writeBigUInt64LE(BigInt(cdSize), 40);
  tail.writeBigUInt64LE(BigInt(cdOffset), 48);
  tail.writeUInt32LE(0x07064b50, 56);
  tail.writeBigUInt64LE(BigInt(eocd), 64);
  tail.writeUInt32LE(1, 72);
  tail.writeUInt32LE(0x06054b50, 76);
  tail.writeUInt16LE(0xffff, 84);
  tail.writeUInt16LE(0xffff, 86);
  tail.writeUInt32LE(0xffffffff, 88);
  tail.writeUInt32LE(0xffffffff, 92);
  tail.writeUInt16LE(comment.length, 96);
  return { zip: Buffer.concat([zip.subarray(0, eocd), tail, comment]), z64: eocd, locator: eocd + 56, eocd: eocd + 76 };
}

/**
 * Rewrite the central directory's CRC-32 in a vhfs part's archive comment to match its (edited) central
 * directory, so a test that damages the directory on purpose reaches the check it means to exercise
 * rather than the comment's CRC. A zip without that comment is returned unchanged.
 */
export function resealCentralDirectory(zip: Buffer): Buffer {
  const end = endRecords(zip);
  const comment = zip.subarray(end.eocd + 22);
  const m = /; central directory crc32 [0-9a-f]{8}$/.exec(comment.toString('latin1'));
  if (!m) return zip;
  let cdOffset = end.cdOffset;
  let cdSize = end.cdSize;
  if (end.zip64) {
    const z64 = Number(zip.readBigUInt64LE(end.eocd - 20 + 8));
    cdSize = Number(zip.readBigUInt64LE(z64 + 40));
    cdOffset = Number(zip.readBigUInt64LE(z64 + 48));
  }
  const out = Buffer.from(zip);
  const crc = crc32(zip.subarray(cdOffset, Math.min(cdOffset + cdSize, zip.length)));
  out.write(crc.toString(16).padStart(8, '0'), out.length - 8, 'latin1');
  return out;
}
