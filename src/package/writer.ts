/**
 * Streaming .vhpkgzip writer (format: docs/vhpkgzip.md).
 *
 * Members arrive in path order (UTF-8 byte order; the caller sorts, we only check) with their sizes
 * known up front, so a member's local header, padding and data can be written straight to a
 * non-seekable stream. The CRC is known only once the data has streamed through, so members carry
 * it in a data descriptor (flag bit 3) unless the caller supplies it; the central directory, which
 * is what every reader (ours, unzip, zipinfo, Python) trusts, holds the real sizes and CRC.
 *
 * Each member of 64 KiB or more starts on a 4 KiB boundary, and one smaller than 4 KiB never straddles
 * one: an alignment extra field (0xd935) in the local
 * header absorbs the padding. The central directory accumulates in memory in large chunks (about
 * 100 bytes a member) and is written at the end of each part, followed by ZIP64 end records only
 * when a count, size or offset overflows the classic fields.
 *
 * Integrity: every byte pushed into a part also feeds a ChunkHasher (src/util/chunk-hashes.ts), and
 * when the part closes its chunk hash table (a CRC-32 of every 64 KiB of the part so far) becomes the
 * part's last member, `.vhpkgzip/chunk-hashes`, stored with its CRC known up front, and the archive
 * comment says the part has one. A reader can then verify any chunk-aligned range of the part on its
 * own (docs/vhpkgzip.md, "Chunk hash table").
 *
 * Parts: when `maxPartSize` is set and the next member would push the current part past it, the
 * part is finished (a complete zip on its own) and a new one opened via `openPart`. Only the caller
 * knows when the total is final, so the writer reports parts and the caller names them afterwards
 * (see `packagePartName`).
 */
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { ChunkHasher, chunkTableBytes } from '../util/chunk-hashes.js';
import { VhfsError } from '../util/errors.js';
import { relativePathProblem } from '../util/path-rules.js';
import { crc32 } from './crc32.js';
import {
  CENTRAL_HEADER_SIZE,
  CHUNK_TABLE_COMMENT_LENGTH,
  chunkTableComment,
  DATA_ALIGNMENT,
  EOCD_SIZE,
  EXTRA_ALIGNMENT,
  EXTRA_TIMESTAMP,
  EXTRA_VHFS,
  EXTRA_ZIP64,
  FLAG_DATA_DESCRIPTOR,
  FLAG_UTF8,
  LOCAL_HEADER_SIZE,
  MADE_BY_UNIX,
  MAX_U16,
  MAX_U32,
  SIG_CENTRAL,
  SIG_DESCRIPTOR,
  SIG_EOCD,
  SIG_LOCAL,
  SIG_ZIP64_EOCD,
  SIG_ZIP64_LOCATOR,
  UNIX_FILE_ATTRS,
  VERSION_DEFAULT,
  VERSION_ZIP64,
  VHFS_EXTRA_DATA_SIZE,
  ZIP64_EOCD_SIZE,
  ZIP64_LOCATOR_SIZE,
  toDosDateTime,
  writeI64,
  writeU64,
} from './format.js';
import { CHUNK_TABLE_NAME, isReservedName, quoteName, RESERVED_NAME_PROBLEM } from './entry-names.js';

export type EntryBody = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface PackageEntry {
  /** Relative `/`-separated path; entries must come in strictly increasing UTF-8 byte order. */
  path: string;
  /** Exact byte count `open()` yields; a mismatch fails the write with INTEGRITY. */
  size: number;
  /** Defaults to `WritePackageOptions.defaultMtime`. */
  mtime?: Date;
  /**
   * CRC-32 if already known (e.g. re-packaging). Then it goes in the local header and no data
   * descriptor is written; the streamed bytes are still checked against it.
   */
  crc32?: number;
  /** Called once, when the member's data is due. Chunks must not be reused after being yielded. */
  open(): EntryBody | Promise<EntryBody>;
}

export interface WritePackageOptions {
  /** Destination of part `part` (1-based). The writer ends it on success and destroys it on failure. */
  openPart(part: number): Writable | Promise<Writable>;
  /** Start a new part rather than let one grow past this many bytes (one oversized member excepted). */
  maxPartSize?: number;
  /** Total bytes written so far (all parts) and members completed; at least once per member. */
  onProgress?(bytes: number, entries: number): void;
  /** mtime for entries without one; default 1980-01-01T00:00:00Z so output is reproducible. */
  defaultMtime?: Date;
  /** Prefix for error messages, e.g. the package's future name or the version URI. */
  name?: string;
  /**
   * End each part with its chunk hash table (default true). Off only to produce what another zip tool
   * would, e.g. to test how such packages are served.
   */
  chunkHashes?: boolean;
}

export interface PackagePart {
  /** 1-based, the number passed to `openPart`. */
  part: number;
  entries: number;
  size: number;
  /** First and last member paths ('' for the single part of an empty package). */
  firstPath: string;
  lastPath: string;
  /** Whether the part needed ZIP64 end records. */
  zip64: boolean;
  /** Where the part's chunk hash table member's data lies (absent with `chunkHashes: false`). */
  chunkTable?: { offset: number; length: number };
}

const DEFAULT_MTIME_MS = Date.UTC(1980, 0, 1);
const FLUSH_BYTES = 1 << 20;
const CD_CHUNK_BYTES = 4 << 20;
const PROGRESS_EVERY_BYTES = 16 << 20;
const MAX_END_RECORDS = ZIP64_EOCD_SIZE + ZIP64_LOCATOR_SIZE + EOCD_SIZE;
const ALIGNMENT_EXTRA_MIN = 6; // id, size, u16 alignment
/** Members at least this large start on a page boundary. */
export const ALIGN_MIN_SIZE = 64 * 1024;
const TIMESTAMP_EXTRA_SIZE = 9; // id, size, flags, u32 mtime
const ZIP64_LOCAL_EXTRA_SIZE = 20; // id, size, u64 size, u64 compressed size
const VHFS_EXTRA_SIZE = 4 + VHFS_EXTRA_DATA_SIZE;
const SLASH = 0x2f;

/** Write `entries` as one or more .vhpkgzip parts; returns what each part holds. */
export async function writePackage(
  entries: Iterable<PackageEntry> | AsyncIterable<PackageEntry>,
  options: WritePackageOptions,
): Promise<PackagePart[]> {
  const writer = new PackageWriter(options);
  try {
    for await (const entry of entries) await writer.add(entry);
    return await writer.finish();
  } catch (err) {
    writer.abort(err);
    throw err;
  }
}

/** One member as the writer lays it out. */
interface Member {
  path: string;
  name: Buffer;
  size: number;
  mtimeMs: number;
  dosTime: number;
  dosDate: number;
  knownCrc: number | undefined;
  /** Size needs 64 bits: ZIP64 extra in the local header, 8-byte descriptor sizes. */
  bigSize: boolean;
  descriptor: boolean;
  hasTimestamp: boolean;
}

interface OpenPart {
  part: number;
  sink: PartSink;
  cd: ChunkList;
  /** Hashes every byte pushed into the part, for its chunk hash table; undefined when there is none. */
  hasher: ChunkHasher | undefined;
  entries: number;
  firstPath: string;
  lastPath: string;
}

class PackageWriter {
  private readonly parts: PackagePart[] = [];
  private current: OpenPart | undefined;
  private prevName: Buffer | undefined;
  /** Files that are a prefix of the latest name: a later `file/...` name would make them directories. */
  private readonly prefixFiles: Buffer[] = [];
  private doneBytes = 0;
  private doneEntries = 0;
  private lastProgress = 0;

  constructor(private readonly opts: WritePackageOptions) {
    const max = opts.maxPartSize;
    if (max !== undefined && !(Number.isSafeInteger(max) && max > 0)) {
      throw new VhfsError('BAD_ARGUMENT', `${this.label}: maxPartSize must be a positive integer, got ${max}`);
    }
  }

  private get label(): string {
    return this.opts.name ?? 'package';
  }

  async add(entry: PackageEntry): Promise<void> {
    const member = this.plan(entry);
    const part = await this.partFor(member);
    const lho = part.sink.offset;
    await part.sink.push(encodeLocalHeader(member, lho));
    const dataOffset = part.sink.offset;
    const crc = await this.copyBody(entry, member, part.sink);
    if (member.descriptor) await part.sink.push(encodeDescriptor(member, crc));
    appendCentralRecord(part.cd, member, crc, lho, dataOffset);
    part.entries++;
    if (part.entries === 1) part.firstPath = member.path;
    part.lastPath = member.path;
    this.doneEntries++;
    this.report(true);
  }

  async finish(): Promise<PackagePart[]> {
    if (this.current === undefined && this.parts.length === 0) await this.openNext();
    await this.closeCurrent();
    return this.parts;
  }

  abort(err: unknown): void {
    this.current?.sink.abort(err);
    this.current = undefined;
  }

  private fail(code: 'UNSAFE_PATH' | 'BAD_ARGUMENT' | 'INTEGRITY', path: string, what: string): VhfsError {
    return new VhfsError(code, `${this.label}: entry ${quoteName(path)}: ${what}`);
  }

  /** Validate an entry against the format's rules and the previous entry; compute its layout. */
  private plan(entry: PackageEntry): Member {
    const { path, size } = entry;
    if (typeof path !== 'string') throw new VhfsError('BAD_ARGUMENT', `${this.label}: entry path is not a string`);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw this.fail('BAD_ARGUMENT', path, `size must be a non-negative integer, got ${size}`);
    }
    const name = this.checkName(path);
    const mtimeMs = Math.floor(entry.mtime?.getTime() ?? this.opts.defaultMtime?.getTime() ?? DEFAULT_MTIME_MS);
    if (!Number.isFinite(mtimeMs)) throw this.fail('BAD_ARGUMENT', path, 'invalid mtime');
    const knownCrc = entry.crc32 ?? (size === 0 ? 0 : undefined); // an empty member's CRC is 0
    if (knownCrc !== undefined && !(Number.isInteger(knownCrc) && knownCrc >= 0 && knownCrc <= MAX_U32)) {
      throw this.fail('BAD_ARGUMENT', path, `crc32 must be a 32-bit unsigned integer, got ${knownCrc}`);
    }
    const seconds = mtimeMs / 1000;
    const dos = toDosDateTime(mtimeMs);
    return {
      path,
      name,
      size,
      mtimeMs,
      dosTime: dos.time,
      dosDate: dos.date,
      knownCrc,
      bigSize: size >= MAX_U32,
      descriptor: knownCrc === undefined,
      hasTimestamp: seconds >= 0 && seconds <= 0x7fffffff,
    };
  }

  private checkName(path: string): Buffer {
    const problem = relativePathProblem(path);
    if (problem !== undefined) throw this.fail('UNSAFE_PATH', path, `the path ${problem}`);
    const name = Buffer.from(path, 'utf8');
    if (isReservedName(name, 0, name.length)) throw this.fail('UNSAFE_PATH', path, `the name ${RESERVED_NAME_PROBLEM}`);
    if (this.prevName !== undefined) {
      const order = Buffer.compare(this.prevName, name);
      if (order === 0) throw this.fail('UNSAFE_PATH', path, 'duplicate path');
      if (order > 0) {
        const prev = quoteName(this.prevName.toString('utf8'));
        throw this.fail('UNSAFE_PATH', path, `out of order after ${prev}: entries must be sorted by UTF-8 bytes`);
      }
    }
    this.checkFileVsDirectory(path, name);
    this.prevName = name;
    return name;
  }

  /**
   * Names sharing a prefix are contiguous in sorted order, so the files that could still turn out to
   * be directories form a chain of prefixes of the latest name: a stack, popped as names move on.
   */
  private checkFileVsDirectory(path: string, name: Buffer): void {
    const stack = this.prefixFiles;
    while (stack.length > 0 && !isPrefix(stack[stack.length - 1], name)) stack.pop();
    const top = stack[stack.length - 1];
    if (top !== undefined && name[top.length] === SLASH) {
      throw this.fail('UNSAFE_PATH', path, `${quoteName(top.toString('utf8'))} is both a file and a directory`);
    }
    stack.push(name);
  }

  /** The part this member goes into, finishing the current one first if the member would overflow it. */
  private async partFor(member: Member): Promise<OpenPart> {
    const cur = this.current;
    const max = this.opts.maxPartSize;
    if (cur !== undefined && max !== undefined && cur.entries > 0 && projectedSize(cur, member) > max) {
      await this.closeCurrent();
    }
    return this.current ?? (await this.openNext());
  }

  private async openNext(): Promise<OpenPart> {
    const part = this.parts.length + 1;
    const stream = await this.opts.openPart(part);
    const hasher = this.opts.chunkHashes === false ? undefined : new ChunkHasher();
    const sink = new PartSink(stream, `${this.label}: part ${part}`, hasher);
    this.current = { part, sink, cd: new ChunkList(), hasher, entries: 0, firstPath: '', lastPath: '' };
    return this.current;
  }

  private async closeCurrent(): Promise<void> {
    const cur = this.current;
    if (cur === undefined) return;
    const { sink, cd } = cur;
    const chunkTable = cur.hasher === undefined ? undefined : await this.writeChunkTable(cur, cur.hasher);
    const records = cur.entries + (chunkTable === undefined ? 0 : 1);
    const cdOffset = sink.offset;
    const cdLength = cd.length;
    let cdCrc = 0;
    for (const chunk of cd.take()) {
      cdCrc = crc32(chunk, cdCrc);
      await sink.push(chunk);
    }
    const zip64 = records >= MAX_U16 || cdOffset >= MAX_U32 || cdLength >= MAX_U32;
    if (zip64) await sink.push(encodeZip64End(records, cdLength, cdOffset, sink.offset));
    await sink.push(encodeEnd(records, cdLength, cdOffset, chunkTable === undefined ? undefined : chunkTableComment(cdCrc)));
    await sink.close();
    this.current = undefined;
    this.parts.push({
      part: cur.part,
      entries: cur.entries,
      size: sink.offset,
      firstPath: cur.firstPath,
      lastPath: cur.lastPath,
      zip64,
      ...(chunkTable === undefined ? {} : { chunkTable }),
    });
    this.doneBytes += sink.offset;
  }

  /**
   * The part's last member: the chunk hash table of every byte before its own local header. Its size
   * and CRC are known before it is written, so it needs no data descriptor.
   */
  private async writeChunkTable(part: OpenPart, hasher: ChunkHasher): Promise<{ offset: number; length: number }> {
    const { sink } = part;
    const lho = sink.offset;
    sink.stopHashing();
    const table = hasher.finish();
    const crc = crc32(table);
    const member = chunkTableMember(table.length, crc);
    await sink.push(encodeLocalHeader(member, lho));
    const offset = sink.offset;
    await sink.push(table);
    appendCentralRecord(part.cd, member, crc, lho, offset);
    return { offset, length: table.length };
  }

  /** Stream the member's bytes into the part, counting and CRC-ing them on the way. */
  private async copyBody(entry: PackageEntry, member: Member, sink: PartSink): Promise<number> {
    const body = await entry.open();
    let crc = 0;
    let seen = 0;
    for await (const chunk of body as AsyncIterable<unknown>) {
      if (!(chunk instanceof Uint8Array)) {
        throw this.fail('BAD_ARGUMENT', member.path, 'data stream yielded a non-binary chunk');
      }
      seen += chunk.length;
      if (seen > member.size) {
        throw this.fail('INTEGRITY', member.path, `data stream yielded more than the declared ${member.size} bytes`);
      }
      crc = crc32(chunk, crc);
      await sink.push(chunk);
      this.report(false);
    }
    if (seen !== member.size) {
      throw this.fail('INTEGRITY', member.path, `data stream yielded ${seen} bytes, declared ${member.size}`);
    }
    if (member.knownCrc !== undefined && crc !== member.knownCrc) {
      const hex = (v: number) => v.toString(16).padStart(8, '0');
      throw this.fail('INTEGRITY', member.path, `CRC-32 ${hex(crc)} differs from the supplied ${hex(member.knownCrc)}`);
    }
    return crc;
  }

  private report(entryDone: boolean): void {
    const cb = this.opts.onProgress;
    if (cb === undefined) return;
    const bytes = this.doneBytes + (this.current?.sink.offset ?? 0);
    if (!entryDone && bytes - this.lastProgress < PROGRESS_EVERY_BYTES) return;
    this.lastProgress = bytes;
    cb(bytes, this.doneEntries);
  }
}

const CHUNK_TABLE_NAME_BYTES = Buffer.from(CHUNK_TABLE_NAME);

/** The chunk hash table laid out as a member: stored, CRC known, the fixed default mtime. */
function chunkTableMember(size: number, crc: number): Member {
  const dos = toDosDateTime(DEFAULT_MTIME_MS);
  return {
    path: CHUNK_TABLE_NAME,
    name: CHUNK_TABLE_NAME_BYTES,
    size,
    mtimeMs: DEFAULT_MTIME_MS,
    dosTime: dos.time,
    dosDate: dos.date,
    knownCrc: crc,
    bigSize: false, // 4 bytes per 64 KiB: 4 GiB of table would cover 64 PiB
    descriptor: false,
    hasTimestamp: true,
  };
}

function isPrefix(prefix: Buffer, name: Buffer): boolean {
  return prefix.length < name.length && name.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

// ---- layout -------------------------------------------------------------------------------------

function localHeaderLength(member: Member, lho: number): number {
  const base =
    LOCAL_HEADER_SIZE +
    member.name.length +
    (member.bigSize ? ZIP64_LOCAL_EXTRA_SIZE : 0) +
    (member.hasTimestamp ? TIMESTAMP_EXTRA_SIZE : 0);
  // Padding costs up to a page per member, so it is spent only where it buys something: members of
  // ALIGN_MIN_SIZE or more start on a page (≤ 6% overhead), a member smaller than a page never straddles
  // one, and members in between are packed tightly (page-aligning 16 KiB members cost 25% more bytes:
  // each one's data ends on a page boundary, so the next header pushed its data a whole page further).
  if (member.size === 0) return base;
  if (member.size < ALIGN_MIN_SIZE) {
    if (member.size >= DATA_ALIGNMENT) return base;
    const start = lho + base;
    if (Math.floor(start / DATA_ALIGNMENT) === Math.floor((start + member.size - 1) / DATA_ALIGNMENT)) return base;
  }
  const unpadded = lho + base + ALIGNMENT_EXTRA_MIN;
  const pad = (DATA_ALIGNMENT - (unpadded % DATA_ALIGNMENT)) % DATA_ALIGNMENT;
  return base + ALIGNMENT_EXTRA_MIN + pad;
}

function descriptorLength(member: Member): number {
  if (!member.descriptor) return 0;
  return member.bigSize ? 24 : 16;
}

function zip64CentralFields(member: Member, lho: number): number {
  return (member.bigSize ? 2 : 0) + (lho >= MAX_U32 ? 1 : 0);
}

function centralRecordLength(member: Member, lho: number): number {
  const z = zip64CentralFields(member, lho);
  return (
    CENTRAL_HEADER_SIZE +
    member.name.length +
    (z > 0 ? 4 + 8 * z : 0) +
    (member.hasTimestamp ? TIMESTAMP_EXTRA_SIZE : 0) +
    VHFS_EXTRA_SIZE
  );
}

/**
 * Size of the part if `member` were added and the part then closed: its chunk hash table member laid out
 * exactly as it would be, and end records at their largest.
 */
function projectedSize(part: OpenPart, member: Member): number {
  const lho = part.sink.offset;
  const afterMember = lho + localHeaderLength(member, lho) + member.size + descriptorLength(member);
  let table = 0;
  if (part.hasher !== undefined) {
    const tableMember = chunkTableMember(chunkTableBytes(afterMember), 0);
    table = localHeaderLength(tableMember, afterMember) + tableMember.size + centralRecordLength(tableMember, afterMember);
  }
  const comment = part.hasher === undefined ? 0 : CHUNK_TABLE_COMMENT_LENGTH;
  return afterMember + part.cd.length + centralRecordLength(member, lho) + table + MAX_END_RECORDS + comment;
}

// ---- encoders -----------------------------------------------------------------------------------

function flagsOf(member: Member): number {
  return FLAG_UTF8 | (member.descriptor ? FLAG_DATA_DESCRIPTOR : 0);
}

/**
 * With a data descriptor the local CRC and sizes are zero as APPNOTE 4.4.4 asks (readers take them
 * from the central directory); a big member still gets a ZIP64 extra so that streaming readers know
 * its descriptor holds 8-byte sizes.
 */
function encodeLocalHeader(member: Member, lho: number): Buffer {
  const len = localHeaderLength(member, lho);
  const b = Buffer.alloc(len); // zero-filled, so the alignment padding needs no writes
  const { name, size } = member;
  const known = !member.descriptor;
  b.writeUInt32LE(SIG_LOCAL, 0);
  b.writeUInt16LE(member.bigSize ? VERSION_ZIP64 : VERSION_DEFAULT, 4);
  b.writeUInt16LE(flagsOf(member), 6);
  b.writeUInt16LE(0, 8); // stored
  b.writeUInt16LE(member.dosTime, 10);
  b.writeUInt16LE(member.dosDate, 12);
  b.writeUInt32LE(known ? member.knownCrc ?? 0 : 0, 14);
  const size32 = member.bigSize ? MAX_U32 : known ? size : 0;
  b.writeUInt32LE(size32, 18);
  b.writeUInt32LE(size32, 22);
  b.writeUInt16LE(name.length, 26);
  b.writeUInt16LE(len - LOCAL_HEADER_SIZE - name.length, 28);
  name.copy(b, LOCAL_HEADER_SIZE);
  let p = LOCAL_HEADER_SIZE + name.length;
  if (member.bigSize) {
    b.writeUInt16LE(EXTRA_ZIP64, p);
    b.writeUInt16LE(16, p + 2);
    writeU64(b, known ? size : 0, p + 4);
    writeU64(b, known ? size : 0, p + 12);
    p += ZIP64_LOCAL_EXTRA_SIZE;
  }
  if (member.hasTimestamp) p = writeTimestampExtra(b, p, member.mtimeMs);
  if (p < len) {
    b.writeUInt16LE(EXTRA_ALIGNMENT, p);
    b.writeUInt16LE(len - p - 4, p + 2);
    b.writeUInt16LE(DATA_ALIGNMENT, p + 4);
  }
  return b;
}

function writeTimestampExtra(b: Buffer, p: number, mtimeMs: number): number {
  b.writeUInt16LE(EXTRA_TIMESTAMP, p);
  b.writeUInt16LE(5, p + 2);
  b.writeUInt8(1, p + 4); // mtime present
  b.writeUInt32LE(Math.floor(mtimeMs / 1000), p + 5);
  return p + TIMESTAMP_EXTRA_SIZE;
}

function encodeDescriptor(member: Member, crc: number): Buffer {
  const b = Buffer.alloc(descriptorLength(member));
  b.writeUInt32LE(SIG_DESCRIPTOR, 0);
  b.writeUInt32LE(crc, 4);
  if (member.bigSize) {
    writeU64(b, member.size, 8);
    writeU64(b, member.size, 16);
  } else {
    b.writeUInt32LE(member.size, 8);
    b.writeUInt32LE(member.size, 12);
  }
  return b;
}

function appendCentralRecord(cd: ChunkList, member: Member, crc: number, lho: number, dataOffset: number): void {
  const len = centralRecordLength(member, lho);
  const { buf: b, pos: o } = cd.reserve(len);
  const { name, size } = member;
  const z = zip64CentralFields(member, lho);
  b.writeUInt32LE(SIG_CENTRAL, o);
  b.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, o + 4);
  b.writeUInt16LE(z > 0 ? VERSION_ZIP64 : VERSION_DEFAULT, o + 6);
  b.writeUInt16LE(flagsOf(member), o + 8);
  b.writeUInt16LE(0, o + 10); // stored
  b.writeUInt16LE(member.dosTime, o + 12);
  b.writeUInt16LE(member.dosDate, o + 14);
  b.writeUInt32LE(crc, o + 16);
  b.writeUInt32LE(member.bigSize ? MAX_U32 : size, o + 20);
  b.writeUInt32LE(member.bigSize ? MAX_U32 : size, o + 24);
  b.writeUInt16LE(name.length, o + 28);
  b.writeUInt16LE(len - CENTRAL_HEADER_SIZE - name.length, o + 30);
  b.writeUInt16LE(0, o + 32); // comment
  b.writeUInt16LE(0, o + 34); // disk
  b.writeUInt16LE(0, o + 36); // internal attributes
  b.writeUInt32LE(UNIX_FILE_ATTRS, o + 38);
  b.writeUInt32LE(lho >= MAX_U32 ? MAX_U32 : lho, o + 42);
  name.copy(b, o + CENTRAL_HEADER_SIZE);
  let p = o + CENTRAL_HEADER_SIZE + name.length;
  if (z > 0) {
    // APPNOTE order: uncompressed size, compressed size, local header offset (only those saturated).
    b.writeUInt16LE(EXTRA_ZIP64, p);
    b.writeUInt16LE(8 * z, p + 2);
    p += 4;
    if (member.bigSize) {
      writeU64(b, size, p);
      writeU64(b, size, p + 8);
      p += 16;
    }
    if (lho >= MAX_U32) {
      writeU64(b, lho, p);
      p += 8;
    }
  }
  if (member.hasTimestamp) p = writeTimestampExtra(b, p, member.mtimeMs);
  b.writeUInt16LE(EXTRA_VHFS, p);
  b.writeUInt16LE(VHFS_EXTRA_DATA_SIZE, p + 2);
  writeU64(b, dataOffset, p + 4);
  writeI64(b, member.mtimeMs, p + 12);
}

function encodeZip64End(entries: number, cdSize: number, cdOffset: number, at: number): Buffer {
  const b = Buffer.alloc(ZIP64_EOCD_SIZE + ZIP64_LOCATOR_SIZE);
  b.writeUInt32LE(SIG_ZIP64_EOCD, 0);
  writeU64(b, ZIP64_EOCD_SIZE - 12, 4); // size of the rest of the record
  b.writeUInt16LE(MADE_BY_UNIX | VERSION_ZIP64, 12);
  b.writeUInt16LE(VERSION_ZIP64, 14);
  b.writeUInt32LE(0, 16); // this disk
  b.writeUInt32LE(0, 20); // disk with the central directory
  writeU64(b, entries, 24);
  writeU64(b, entries, 32);
  writeU64(b, cdSize, 40);
  writeU64(b, cdOffset, 48);
  const l = ZIP64_EOCD_SIZE;
  b.writeUInt32LE(SIG_ZIP64_LOCATOR, l);
  b.writeUInt32LE(0, l + 4);
  writeU64(b, at, l + 8);
  b.writeUInt32LE(1, l + 16); // total disks
  return b;
}

function encodeEnd(entries: number, cdSize: number, cdOffset: number, comment = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(EOCD_SIZE + comment.length);
  b.writeUInt16LE(comment.length, 20);
  comment.copy(b, EOCD_SIZE);
  b.writeUInt32LE(SIG_EOCD, 0);
  b.writeUInt16LE(Math.min(entries, MAX_U16), 8);
  b.writeUInt16LE(Math.min(entries, MAX_U16), 10);
  b.writeUInt32LE(Math.min(cdSize, MAX_U32), 12);
  b.writeUInt32LE(Math.min(cdOffset, MAX_U32), 16);
  return b;
}

// ---- buffers and sinks --------------------------------------------------------------------------

/** Growable byte store in large chunks: a million central records without a million Buffers. */
class ChunkList {
  private chunks: Buffer[] = [];
  private cur = Buffer.allocUnsafe(0);
  private used = 0;
  length = 0;

  reserve(n: number): { buf: Buffer; pos: number } {
    if (this.used + n > this.cur.length) {
      if (this.used > 0) this.chunks.push(this.cur.subarray(0, this.used));
      this.cur = Buffer.alloc(Math.max(n, CD_CHUNK_BYTES));
      this.used = 0;
    }
    const pos = this.used;
    this.used += n;
    this.length += n;
    return { buf: this.cur, pos };
  }

  take(): Buffer[] {
    const all = this.used > 0 ? [...this.chunks, this.cur.subarray(0, this.used)] : this.chunks;
    this.chunks = [];
    this.cur = Buffer.allocUnsafe(0);
    this.used = 0;
    return all;
  }
}

/**
 * The caller's Writable, with small writes coalesced (corked into one writev), backpressure
 * honoured, and any stream error surfaced on our next call rather than as an unhandled event.
 */
class PartSink {
  offset = 0;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private failure: Error | undefined;

  constructor(
    private readonly stream: Writable,
    private readonly label: string,
    /** Sees every byte of the part, in order, until `stopHashing`. */
    private hasher: ChunkHasher | undefined,
  ) {
    stream.on('error', (err: Error) => {
      this.failure ??= err;
    });
  }

  stopHashing(): void {
    this.hasher = undefined;
  }

  async push(chunk: Uint8Array): Promise<void> {
    this.hasher?.update(chunk);
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.offset += chunk.length;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  async close(): Promise<void> {
    await this.flush();
    this.stream.end();
    try {
      await finished(this.stream);
    } catch (err) {
      throw this.wrap(err);
    }
    this.check();
  }

  abort(err: unknown): void {
    if (!this.stream.destroyed) this.stream.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  private async flush(): Promise<void> {
    this.check();
    if (this.pending.length === 0) return;
    const s = this.stream;
    s.cork();
    for (const chunk of this.pending) s.write(chunk);
    s.uncork();
    this.pending = [];
    this.pendingBytes = 0;
    if (s.writableNeedDrain) await waitDrain(s).catch((err: unknown) => Promise.reject(this.wrap(err)));
    this.check();
  }

  private check(): void {
    if (this.failure !== undefined) throw this.wrap(this.failure);
  }

  private wrap(err: unknown): VhfsError {
    if (err instanceof VhfsError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new VhfsError('STORE', `${this.label}: write failed: ${msg}`, { cause: err });
  }
}

function waitDrain(s: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      s.off('drain', onDrain);
      s.off('error', onError);
      s.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(new Error('stream closed before it drained'));
    s.on('drain', onDrain);
    s.on('error', onError);
    s.on('close', onClose);
  });
}
