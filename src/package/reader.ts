/**
 * .vhpkgzip reader: lists a package from its tail and central directory (format: docs/vhpkgzip.md).
 *
 * Reads: one ranged read of the last 64 KiB + 98 bytes (the largest EOCD comment plus the EOCD,
 * ZIP64 locator and ZIP64 end record), which finds the end records; then the central directory in
 * one read, or none if it already lies in the tail. A ZIP64 end record that does not follow the
 * central directory directly (never the case for our writer) costs one more small read.
 *
 * Data offsets come from our 0x5648 central-directory extra field, so local headers are never
 * read. Zips from other tools lack it: their local headers are then read in batches (headers
 * separated by small gaps are coalesced into one read of up to 8 MiB), which is correct but costs
 * roughly one read per 8 MiB of small members or one per large member.
 *
 * A package vhfs wrote ends each part with a chunk hash table member (`.vhpkgzip/chunk-hashes`, the
 * last central record). The listing never counts it as a file: it reports where its bytes lie, and
 * checks that it covers every member's data; loading and checking the table itself is left to the
 * first reader that verifies a range (verify.ts), so listing a million entries costs no extra read.
 *
 * Every field is bounds-checked before use and every failure is a one-line VhfsError naming the
 * package and, where there is one, the entry: BAD_PACKAGE for structure, UNSAFE_PATH for names.
 * The listing is columnar (typed arrays plus one string array) so a million entries cost a few
 * tens of MB and no per-entry objects.
 */
import { constants as bufferConstants } from 'node:buffer';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { relativePathBytesProblem } from '../util/path-rules.js';
import { crc32 } from './crc32.js';
import {
  CENTRAL_HEADER_SIZE,
  parseArchiveComment,
  EOCD_SIZE,
  EXTRA_TIMESTAMP,
  EXTRA_UNICODE_PATH,
  EXTRA_VHFS,
  EXTRA_ZIP64,
  FLAG_ENCRYPTED,
  FLAG_STRONG_ENCRYPTION,
  FLAG_UTF8,
  LOCAL_HEADER_SIZE,
  MAX_COMMENT,
  MAX_U16,
  MAX_U32,
  METHOD_STORED,
  SIG_CENTRAL,
  SIG_EOCD,
  SIG_LOCAL,
  SIG_ZIP64_EOCD,
  SIG_ZIP64_LOCATOR,
  VHFS_EXTRA_DATA_SIZE,
  ZIP64_EOCD_SIZE,
  ZIP64_LOCATOR_SIZE,
  fromDosDateTime,
  i32,
  readI64,
  readU64,
  u16,
  u32,
} from './format.js';
import {
  CHUNK_TABLE_NAME,
  isChunkTableName,
  isDirectoryName,
  isReservedName,
  quoteName,
  RESERVED_NAME_PROBLEM,
} from './entry-names.js';
import type { RandomAccessSource } from './source.js';

/** Where a part's chunk hash table lies (docs/vhpkgzip.md, "Chunk hash table"). */
export interface ChunkTableLocation {
  /** Absolute offset of the serialized table (the member's data) in the package. */
  offset: number;
  length: number;
  /** The table member's CRC-32 from the central directory. */
  crc32: number;
  /** Bytes of the package the table must cover, from offset 0: all before the table member's local header. */
  covered: number;
}

export interface PackageListing {
  /** The package name given to the reader, for messages. */
  name: string;
  /** Package size in bytes. */
  size: number;
  /** Number of file members (directory records are skipped). */
  count: number;
  /** Member i's path, in central-directory order (path order for packages we wrote). */
  paths: string[];
  /** Absolute offset of member i's data in the package. */
  dataOffsets: Float64Array;
  sizes: Float64Array;
  crc32s: Uint32Array;
  mtimesMs: Float64Array;
  /** The chunk hash table, when the package has one (vhfs wrote it); never one of the `paths`. */
  chunkTable: ChunkTableLocation | undefined;
  /** Bytes and ranged reads the listing cost. */
  bytesRead: number;
  reads: number;
}

/** Largest tail that can hold EOCD + maximal comment + ZIP64 locator + ZIP64 end record. */
const TAIL_BYTES = MAX_COMMENT + 1 + EOCD_SIZE + ZIP64_LOCATOR_SIZE + ZIP64_EOCD_SIZE;
const BATCH_MAX_BYTES = 8 << 20;
const BATCH_MAX_GAP = 64 << 10;
const LOCAL_EXTRA_SLACK = 1024;
const SLASH = 0x2f;

/** List the members of the zip in `source`; `name` (the package's name or URI) prefixes every error. */
export async function readPackageListing(source: RandomAccessSource, name: string): Promise<PackageListing> {
  const io = new Io(source, name);
  const end = await locateCentralDirectory(io);
  const cd = await io.readCached(end.cdOffset, end.cdSize);
  if (end.cdCrc32 !== undefined && crc32(cd) !== end.cdCrc32) {
    throw io.bad('central directory does not match the CRC-32 its archive comment records (corrupt)');
  }
  const parsed = parseCentralDirectory(io, cd, end);
  if (end.claimsTable && parsed.listing.chunkTable === undefined) {
    throw io.bad('its comment says it ends with a chunk hash table, but its last central record is not one (corrupt central directory?)');
  }
  if (parsed.foreign.length > 0) await resolveLocalHeaders(io, cd, parsed, end.cdOffset);
  checkOverlaps(io, parsed);
  checkCoveredByTable(io, parsed.listing);
  checkTree(io, parsed.listing.paths, parsed.sortedUnique);
  parsed.listing.bytesRead = io.bytesRead;
  parsed.listing.reads = io.reads;
  return parsed.listing;
}

// ---- I/O and errors -----------------------------------------------------------------------------

class Io {
  reads = 0;
  bytesRead = 0;
  private tail: Buffer = Buffer.alloc(0);
  private tailStart = 0;

  constructor(
    readonly source: RandomAccessSource,
    readonly name: string,
  ) {}

  get size(): number {
    return this.source.size;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.reads++;
    let buf: Buffer;
    try {
      buf = await this.source.read(offset, length);
    } catch (err) {
      // The store refuses a range past the object's end: the package is shorter than its catalog size.
      if (isVhfsError(err, 'BAD_ARGUMENT')) {
        throw this.bad(`bytes ${offset}-${offset + length - 1} lie past the end of the stored object (truncated?): ${err.message}`);
      }
      throw err;
    }
    if (buf.length !== length) {
      throw new VhfsError('STORE', `${this.name}: read of ${length} bytes at ${offset} returned ${buf.length}`);
    }
    this.bytesRead += length;
    return buf;
  }

  async readTail(length: number): Promise<Buffer> {
    this.tailStart = this.size - length;
    this.tail = await this.read(this.tailStart, length);
    return this.tail;
  }

  /** A range, from the tail buffer when it lies there. */
  async readCached(offset: number, length: number): Promise<Buffer> {
    if (offset >= this.tailStart && offset + length <= this.tailStart + this.tail.length) {
      return this.tail.subarray(offset - this.tailStart, offset - this.tailStart + length);
    }
    return this.read(offset, length);
  }

  bad(what: string): VhfsError {
    return new VhfsError('BAD_PACKAGE', `${this.name}: ${what}`);
  }

  badEntry(entry: string, what: string): VhfsError {
    return new VhfsError('BAD_PACKAGE', `${this.name}: entry ${quoteName(entry)}: ${what}`);
  }

  unsafe(entry: string, what: string): VhfsError {
    return new VhfsError('UNSAFE_PATH', `${this.name}: entry ${quoteName(entry)}: ${what}`);
  }
}

// ---- end records --------------------------------------------------------------------------------

interface CentralDirectoryLocation {
  count: number;
  cdOffset: number;
  cdSize: number;
  /** The archive comment says the part ends with a chunk hash table (format.ts, CHUNK_TABLE_COMMENT). */
  claimsTable?: boolean;
  /** The central directory's CRC-32, as the archive comment records it. */
  cdCrc32?: number;
}

async function locateCentralDirectory(io: Io): Promise<CentralDirectoryLocation> {
  if (io.size < EOCD_SIZE) throw io.bad(`${io.size} bytes is too small to be a zip (truncated?)`);
  const tailLength = Math.min(io.size, TAIL_BYTES);
  const tail = await io.readTail(tailLength);
  const tailStart = io.size - tailLength;
  const at = findEocd(tail);
  if (at < 0) throw io.bad('no end-of-central-directory record (not a zip, or truncated)');
  const eocdOffset = tailStart + at;
  const hasLocator = at >= ZIP64_LOCATOR_SIZE && tail.readUInt32LE(at - ZIP64_LOCATOR_SIZE) === SIG_ZIP64_LOCATOR;
  const loc = hasLocator
    ? await readZip64End(io, tail.subarray(at - ZIP64_LOCATOR_SIZE, at), eocdOffset - ZIP64_LOCATOR_SIZE)
    : { ...readClassicEnd(io, tail.subarray(at, at + EOCD_SIZE)), limit: eocdOffset };
  const cdLimit = loc.limit;
  if (loc.cdOffset + loc.cdSize > cdLimit) {
    throw io.bad(
      `central directory [${loc.cdOffset}, +${loc.cdSize}) runs past the end records at ${cdLimit} ` +
        '(truncated or corrupt)',
    );
  }
  if (loc.count * CENTRAL_HEADER_SIZE > loc.cdSize) {
    throw io.bad(`central directory of ${loc.cdSize} bytes cannot hold the ${loc.count} entries the end record claims`);
  }
  if (loc.cdSize > bufferConstants.MAX_LENGTH) throw io.bad(`central directory of ${loc.cdSize} bytes is too large`);
  const comment = parseArchiveComment(tail.subarray(at + EOCD_SIZE));
  return { count: loc.count, cdOffset: loc.cdOffset, cdSize: loc.cdSize, ...comment };
}

/** Scan back for the EOCD signature whose comment length ends exactly at the end of the file. */
function findEocd(tail: Buffer): number {
  const lowest = Math.max(0, tail.length - EOCD_SIZE - MAX_COMMENT);
  for (let i = tail.length - EOCD_SIZE; i >= lowest; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tail.length) return i;
  }
  return -1;
}

function readClassicEnd(io: Io, e: Buffer): CentralDirectoryLocation {
  if (e.readUInt16LE(4) !== 0 || e.readUInt16LE(6) !== 0 || e.readUInt16LE(8) !== e.readUInt16LE(10)) {
    throw io.bad('multi-disk (spanned) zip archives are not supported');
  }
  return { count: e.readUInt16LE(10), cdSize: e.readUInt32LE(12), cdOffset: e.readUInt32LE(16) };
}

async function readZip64End(
  io: Io,
  locator: Buffer,
  locatorOffset: number,
): Promise<CentralDirectoryLocation & { limit: number }> {
  const at = readU64(locator, 8);
  if (locator.readUInt32LE(4) !== 0 || locator.readUInt32LE(16) > 1) {
    throw io.bad('multi-disk (spanned) zip archives are not supported');
  }
  if (at < 0 || at + ZIP64_EOCD_SIZE > locatorOffset) {
    throw io.bad(`ZIP64 end record offset ${at < 0 ? '>= 2^53' : at} lies outside the file`);
  }
  const r = await io.readCached(at, ZIP64_EOCD_SIZE);
  if (r.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw io.bad(`no ZIP64 end record at offset ${at}`);
  const recordSize = readU64(r, 4);
  if (recordSize < ZIP64_EOCD_SIZE - 12 || at + 12 + recordSize > locatorOffset) {
    throw io.bad(`ZIP64 end record at ${at} has an impossible size`);
  }
  if (r.readUInt32LE(16) !== 0 || r.readUInt32LE(20) !== 0) {
    throw io.bad('multi-disk (spanned) zip archives are not supported');
  }
  const onDisk = readU64(r, 24);
  const count = readU64(r, 32);
  const cdSize = readU64(r, 40);
  const cdOffset = readU64(r, 48);
  if (count < 0 || cdSize < 0 || cdOffset < 0) throw io.bad('ZIP64 end record holds values beyond 2^53');
  if (onDisk !== count) throw io.bad('multi-disk (spanned) zip archives are not supported');
  return { count, cdSize, cdOffset, limit: at };
}

// ---- central directory --------------------------------------------------------------------------

/** A member whose data offset must come from its local header (a zip we did not write). */
interface ForeignMember {
  index: number;
  lho: number;
  nameStart: number;
  nameLength: number;
  extraLength: number;
}

interface Parsed {
  listing: PackageListing;
  lhos: Float64Array;
  foreign: ForeignMember[];
  /** Raw names strictly increasing and bytes map one-to-one to strings: no duplicate check needed. */
  sortedUnique: boolean;
}

/** What the extra fields of one record contributed. */
interface Extras {
  size: number;
  compressed: number;
  lho: number;
  dataOffset: number;
  mtimeMs: number;
  unicodeName: string | undefined;
}

function parseCentralDirectory(io: Io, cd: Buffer, loc: CentralDirectoryLocation): Parsed {
  const cap = loc.count;
  const listing: PackageListing = {
    name: io.name,
    size: io.size,
    count: 0,
    paths: new Array<string>(cap),
    dataOffsets: new Float64Array(cap),
    sizes: new Float64Array(cap),
    crc32s: new Uint32Array(cap),
    mtimesMs: new Float64Array(cap),
    chunkTable: undefined,
    bytesRead: 0,
    reads: 0,
  };
  const lhos = new Float64Array(cap);
  const foreign: ForeignMember[] = [];
  const { paths, dataOffsets, sizes, crc32s, mtimesMs } = listing;
  const ex: Extras = { size: 0, compressed: 0, lho: 0, dataOffset: -1, mtimeMs: NaN, unicodeName: undefined };
  const order = new OrderTracker();
  let k = 0;
  let p = 0;
  for (let i = 0; i < cap; i++) {
    if (p + CENTRAL_HEADER_SIZE > cd.length) throw io.bad(`central directory record #${i} is truncated`);
    if (u32(cd, p) !== SIG_CENTRAL) {
      throw io.bad(`central directory record #${i} at offset ${loc.cdOffset + p} has a bad signature`);
    }
    if (listing.chunkTable !== undefined) {
      throw io.bad(`central directory record #${i} follows the chunk hash table's, which must be the last`);
    }
    const flags = u16(cd, p + 8);
    const nameStart = p + CENTRAL_HEADER_SIZE;
    const nameEnd = nameStart + u16(cd, p + 28);
    const extraEnd = nameEnd + u16(cd, p + 30);
    const recordEnd = extraEnd + u16(cd, p + 32);
    if (recordEnd > cd.length) {
      throw io.bad(`central directory record #${i}: name, extra and comment run past the central directory`);
    }
    if (isDirectoryName(cd, nameStart, nameEnd)) {
      p = recordEnd;
      continue;
    }
    const isTable = isChunkTableName(cd, nameStart, nameEnd);
    const utf8 = (flags & FLAG_UTF8) !== 0;
    const ascii = !utf8 && isAscii(cd, nameStart, nameEnd);
    let path = decodeName(cd, nameStart, nameEnd, utf8 || !ascii);
    let latin1 = false;
    if (path === undefined) {
      const shown = decode(cd, nameStart, nameEnd, false);
      if (utf8) throw io.badEntry(shown, 'name is flagged UTF-8 but is not valid UTF-8');
      path = shown;
      latin1 = true;
    }
    ex.size = u32(cd, p + 24);
    ex.lho = u32(cd, p + 42);
    ex.dataOffset = -1;
    ex.mtimeMs = NaN;
    ex.unicodeName = undefined;
    parseExtras(io, cd, p, nameStart, nameEnd, extraEnd, path, ex);
    if (isTable) {
      checkMember(io, cd, p, CHUNK_TABLE_NAME, flags, ex, nameEnd - nameStart, loc.cdOffset);
      if (ex.dataOffset < 0) throw io.badEntry(CHUNK_TABLE_NAME, 'chunk hash table has no data offset (VH extra field)');
      listing.chunkTable = { offset: ex.dataOffset, length: ex.size, crc32: u32(cd, p + 16), covered: ex.lho };
      p = recordEnd;
      continue;
    }
    let checkBytes = cd;
    let checkStart = nameStart;
    let checkEnd = nameEnd;
    if (ex.unicodeName !== undefined || latin1) {
      // The served name is this string: check its UTF-8 bytes, not the record's.
      if (ex.unicodeName !== undefined) path = ex.unicodeName;
      checkBytes = Buffer.from(path);
      checkStart = 0;
      checkEnd = checkBytes.length;
    }
    const problem = relativePathBytesProblem(checkBytes, checkStart, checkEnd);
    if (problem !== undefined) throw io.unsafe(path, `the path ${problem}`);
    if (isReservedName(checkBytes, checkStart, checkEnd)) throw io.unsafe(path, `the name ${RESERVED_NAME_PROBLEM}`);
    checkMember(io, cd, p, path, flags, ex, nameEnd - nameStart, loc.cdOffset);
    if (order.sorted) {
      const bijective = ex.unicodeName === undefined && (utf8 || ascii);
      const conflict = order.add(cd, nameStart, nameEnd, bijective);
      if (conflict !== undefined) {
        const file = decode(cd, conflict[0], conflict[1], utf8);
        throw io.unsafe(file, `is both a file and a directory (${quoteName(path)})`);
      }
    }
    paths[k] = path;
    sizes[k] = ex.size;
    crc32s[k] = u32(cd, p + 16);
    lhos[k] = ex.lho;
    dataOffsets[k] = ex.dataOffset;
    mtimesMs[k] = Number.isNaN(ex.mtimeMs) ? fromDosDateTime(u16(cd, p + 12), u16(cd, p + 14)) : ex.mtimeMs;
    if (ex.dataOffset < 0) {
      const nameLength = nameEnd - nameStart;
      foreign.push({ index: k, lho: ex.lho, nameStart, nameLength, extraLength: extraEnd - nameEnd });
    }
    k++;
    p = recordEnd;
  }
  if (p !== cd.length) {
    throw io.bad(`central directory has ${cd.length - p} bytes left over after its ${cap} records`);
  }
  listing.count = k;
  paths.length = k;
  if (k < cap) {
    listing.dataOffsets = dataOffsets.subarray(0, k);
    listing.sizes = sizes.subarray(0, k);
    listing.crc32s = crc32s.subarray(0, k);
    listing.mtimesMs = mtimesMs.subarray(0, k);
  }
  return { listing, lhos: lhos.subarray(0, k), foreign, sortedUnique: order.sorted };
}

/** Buffer's native slicers skip toString's argument checks: ~15% of the parse for a million names. */
interface NativeSlices {
  utf8Slice?(start: number, end: number): string;
  latin1Slice?(start: number, end: number): string;
}
const native = Buffer.prototype as unknown as NativeSlices;
const hasNativeSlices = typeof native.utf8Slice === 'function' && typeof native.latin1Slice === 'function';

/**
 * A name as UTF-8, or undefined if it is not valid UTF-8. Unflagged non-ASCII names are tried as
 * UTF-8 too: Info-ZIP on Linux stores UTF-8 names without the flag, and unzip extracts those bytes
 * as they are; only bytes that are not UTF-8 fall back to Latin-1.
 */
function decodeName(b: Buffer, start: number, end: number, utf8: boolean): string | undefined {
  const s = decode(b, start, end, utf8);
  if (!utf8 || !s.includes('\ufffd')) return s;
  return b.subarray(start, end).equals(Buffer.from(s)) ? s : undefined;
}

function decode(b: Buffer, start: number, end: number, utf8: boolean): string {
  if (!hasNativeSlices) return b.toString(utf8 ? 'utf8' : 'latin1', start, end);
  const n = b as unknown as Required<NativeSlices>;
  return utf8 ? n.utf8Slice(start, end) : n.latin1Slice(start, end);
}

/**
 * While names arrive in strictly increasing byte order (always, for packages we wrote), duplicates
 * are impossible and a file that is also a directory shows up as a prefix still on a stack of
 * prefixes of the latest name, as in the writer. That avoids hashing a million strings; the first
 * out-of-order name turns this off and `checkTree` does the general check instead.
 */
class OrderTracker {
  sorted = true;
  private prevStart = 0;
  private prevEnd = -1;
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Track name `b[start, end)`; returns the range of a file name it turns into a directory. */
  add(b: Buffer, start: number, end: number, bijective: boolean): [number, number] | undefined {
    if (!bijective || (this.prevEnd >= 0 && compareBytes(b, this.prevStart, this.prevEnd, start, end) >= 0)) {
      this.sorted = false;
      return undefined;
    }
    this.prevStart = start;
    this.prevEnd = end;
    const { starts, ends } = this;
    while (starts.length > 0) {
      const ts = starts[starts.length - 1];
      const tl = ends[ends.length - 1] - ts;
      if (tl < end - start && compareBytes(b, ts, ts + tl, start, start + tl) === 0) {
        if (b[start + tl] === SLASH) return [ts, ts + tl];
        break;
      }
      starts.pop();
      ends.pop();
    }
    starts.push(start);
    ends.push(end);
    return undefined;
  }
}

/** memcmp over two ranges of one buffer; a JS loop beats Buffer#compare's call overhead for short names. */
function compareBytes(b: Buffer, aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const n = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < n; i++) {
    const d = b[aStart + i] - b[bStart + i];
    if (d !== 0) return d;
  }
  return aEnd - aStart - (bEnd - bStart);
}

function isAscii(b: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (b[i] >= 0x80) return false;
  return true;
}

/**
 * Walk the record's extra fields: ZIP64 (values for the saturated 32-bit fields, in APPNOTE order),
 * our VH field (data offset, ms mtime), Info-ZIP UT (mtime) and up (UTF-8 name). Others are skipped.
 */
function parseExtras(
  io: Io,
  cd: Buffer,
  rec: number,
  nameStart: number,
  nameEnd: number,
  extraEnd: number,
  path: string,
  ex: Extras,
): void {
  const csize = u32(cd, rec + 20);
  const disk = u16(cd, rec + 34);
  let compressed = csize;
  let sawZip64 = false;
  for (let q = nameEnd; q < extraEnd; ) {
    if (q + 4 > extraEnd) throw io.badEntry(path, 'extra field header runs past the extra area');
    const id = u16(cd, q);
    const start = q + 4;
    const end = start + u16(cd, q + 2);
    if (end > extraEnd) throw io.badEntry(path, `extra field 0x${id.toString(16)} runs past the extra area`);
    if (id === EXTRA_ZIP64) {
      sawZip64 = true;
      let r = start;
      const take = (what: string): number => {
        if (r + 8 > end) throw io.badEntry(path, `ZIP64 extra field lacks the ${what}`);
        const v = readU64(cd, r);
        r += 8;
        if (v < 0) throw io.badEntry(path, `ZIP64 ${what} is beyond 2^53`);
        return v;
      };
      if (ex.size === MAX_U32) ex.size = take('size');
      if (compressed === MAX_U32) compressed = take('compressed size');
      if (ex.lho === MAX_U32) ex.lho = take('local header offset');
      if (disk === MAX_U16 && r + 4 > end) throw io.badEntry(path, 'ZIP64 extra field lacks the disk number');
    } else if (id === EXTRA_VHFS && end - start >= VHFS_EXTRA_DATA_SIZE) {
      ex.dataOffset = readU64(cd, start);
      if (ex.dataOffset < 0) throw io.badEntry(path, 'data offset is beyond 2^53');
      ex.mtimeMs = readI64(cd, start + 8);
    } else if (id === EXTRA_TIMESTAMP && end - start >= 5 && (cd[start] & 1) !== 0) {
      if (Number.isNaN(ex.mtimeMs)) ex.mtimeMs = i32(cd, start + 1) * 1000;
    } else if (id === EXTRA_UNICODE_PATH && end - start >= 5 && cd[start] === 1) {
      ex.unicodeName = unicodePathExtra(cd, start, end, nameStart, nameEnd);
    }
    q = end;
  }
  if (!sawZip64 && (ex.size === MAX_U32 || compressed === MAX_U32 || ex.lho === MAX_U32)) {
    throw io.badEntry(path, 'a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field');
  }
  ex.compressed = compressed;
}

/** Info-ZIP's UTF-8 name, used only if its CRC shows it describes the same raw name. */
function unicodePathExtra(
  cd: Buffer,
  start: number,
  end: number,
  nameStart: number,
  nameEnd: number,
): string | undefined {
  if ((crc32(cd.subarray(nameStart, nameEnd)) >>> 0) !== u32(cd, start + 1)) return undefined;
  const name = cd.toString('utf8', start + 5, end);
  return Buffer.from(name).equals(cd.subarray(start + 5, end)) ? name : undefined;
}

/** Member-level rules: one disk, no encryption, stored, local header and data inside the data area. */
function checkMember(
  io: Io,
  cd: Buffer,
  rec: number,
  path: string,
  flags: number,
  ex: Extras,
  nameLength: number,
  cdOffset: number,
): void {
  if (u16(cd, rec + 34) !== 0 && u16(cd, rec + 34) !== MAX_U16) {
    throw io.badEntry(path, 'lies on another disk of a spanned archive');
  }
  if ((flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION)) !== 0) throw io.badEntry(path, 'is encrypted');
  const method = u16(cd, rec + 10);
  if (method !== METHOD_STORED) {
    throw io.badEntry(path, `is compressed (method ${method}); .vhpkgzip members must be stored`);
  }
  if (ex.compressed !== ex.size) {
    throw io.badEntry(path, `compressed size ${ex.compressed} differs from size ${ex.size} in a stored member`);
  }
  const headerEnd = ex.lho + LOCAL_HEADER_SIZE + nameLength;
  if (headerEnd > cdOffset) {
    const where = `central directory at ${cdOffset}`;
    throw io.badEntry(path, `local header offset ${ex.lho} lies outside the data area (${where})`);
  }
  if (ex.dataOffset >= 0) checkDataRange(io, path, ex.dataOffset, ex.size, headerEnd, cdOffset);
}

function checkDataRange(
  io: Io,
  path: string,
  dataOffset: number,
  size: number,
  headerEnd: number,
  cdOffset: number,
): void {
  if (dataOffset < headerEnd) {
    throw io.badEntry(path, `data offset ${dataOffset} is before the end of its local header (${headerEnd})`);
  }
  if (dataOffset + size > cdOffset) {
    const where = `central directory at ${cdOffset}`;
    throw io.badEntry(path, `data [${dataOffset}, +${size}) runs past the data area (${where})`);
  }
}

// ---- local headers (foreign zips only) ----------------------------------------------------------

/** Fill in data offsets from local headers, reading runs of nearby headers together. */
async function resolveLocalHeaders(io: Io, cd: Buffer, parsed: Parsed, cdOffset: number): Promise<void> {
  const members = parsed.foreign.sort((a, b) => a.lho - b.lho);
  const guessEnd = (m: ForeignMember): number =>
    Math.min(cdOffset, m.lho + LOCAL_HEADER_SIZE + m.nameLength + m.extraLength + LOCAL_EXTRA_SLACK);
  for (let i = 0; i < members.length; ) {
    const start = members[i].lho;
    let end = guessEnd(members[i]);
    let j = i + 1;
    for (; j < members.length; j++) {
      const next = members[j];
      if (next.lho - end > BATCH_MAX_GAP || guessEnd(next) - start > BATCH_MAX_BYTES) break;
      end = Math.max(end, guessEnd(next));
    }
    const buf = await io.readCached(start, end - start);
    for (let m = i; m < j; m++) await resolveOne(io, cd, parsed, members[m], buf, start, cdOffset);
    i = j;
  }
}

async function resolveOne(
  io: Io,
  cd: Buffer,
  parsed: Parsed,
  m: ForeignMember,
  batch: Buffer,
  batchStart: number,
  cdOffset: number,
): Promise<void> {
  const path = parsed.listing.paths[m.index];
  let h = batch.subarray(m.lho - batchStart);
  if (h.length < LOCAL_HEADER_SIZE) h = await io.readCached(m.lho, LOCAL_HEADER_SIZE);
  if (h.readUInt32LE(0) !== SIG_LOCAL) throw io.badEntry(path, `no local header at offset ${m.lho}`);
  const nameLength = h.readUInt16LE(26);
  const headerLength = LOCAL_HEADER_SIZE + nameLength + h.readUInt16LE(28);
  if (m.lho + headerLength > cdOffset) throw io.badEntry(path, 'local header runs into the central directory');
  if (h.length < headerLength) h = await io.readCached(m.lho, headerLength);
  const localName = h.subarray(LOCAL_HEADER_SIZE, LOCAL_HEADER_SIZE + nameLength);
  if (!localName.equals(cd.subarray(m.nameStart, m.nameStart + m.nameLength))) {
    throw io.badEntry(path, 'local header name differs from the central directory');
  }
  if (h.readUInt16LE(8) !== METHOD_STORED) throw io.badEntry(path, 'local header says the member is compressed');
  const dataOffset = m.lho + headerLength;
  checkDataRange(io, path, dataOffset, parsed.listing.sizes[m.index], m.lho + LOCAL_HEADER_SIZE + nameLength, cdOffset);
  parsed.listing.dataOffsets[m.index] = dataOffset;
}

// ---- whole-listing checks -----------------------------------------------------------------------

/** No member's header or data may run into the next member's local header. */
function checkOverlaps(io: Io, parsed: Parsed): void {
  const { lhos } = parsed;
  const { dataOffsets, sizes, paths, count } = parsed.listing;
  let order: Uint32Array | undefined;
  for (let k = 1; k < count; k++) {
    if (lhos[k] <= lhos[k - 1]) {
      order = new Uint32Array(count);
      for (let i = 0; i < count; i++) order[i] = i;
      order.sort((a, b) => lhos[a] - lhos[b]);
      break;
    }
  }
  for (let k = 1; k < count; k++) {
    const a = order === undefined ? k - 1 : order[k - 1];
    const b = order === undefined ? k : order[k];
    if (dataOffsets[a] + sizes[a] > lhos[b]) {
      throw io.badEntry(paths[b], `overlaps the data of entry ${quoteName(paths[a])}`);
    }
  }
}

/**
 * Every member's data lies before the chunk hash table's local header, i.e. within the bytes the table
 * covers: otherwise a block of it could be served without any check the table promises.
 */
function checkCoveredByTable(io: Io, listing: PackageListing): void {
  const table = listing.chunkTable;
  if (table === undefined) return;
  const { dataOffsets, sizes, paths, count } = listing;
  for (let k = 0; k < count; k++) {
    if (dataOffsets[k] + sizes[k] > table.covered) {
      const what = `data [${dataOffsets[k]}, +${sizes[k]}) runs past the chunk hash table's local header at ${table.covered}`;
      throw io.badEntry(paths[k], what);
    }
  }
}

/** No duplicates, and no path that is both a file and a directory; the general (unsorted) case. */
function checkTree(io: Io, paths: string[], sortedUnique: boolean): void {
  if (sortedUnique) return; // already checked while parsing (OrderTracker)
  const seen = new Set<string>();
  for (const path of paths) {
    if (seen.has(path)) throw io.unsafe(path, 'duplicate name');
    seen.add(path);
  }
  const dirs = new Set<string>();
  let prevDir = '';
  for (const path of paths) {
    const slash = path.lastIndexOf('/');
    if (slash < 0) continue;
    let dir = path.slice(0, slash);
    if (dir === prevDir) continue;
    prevDir = dir;
    while (dir !== '' && !dirs.has(dir)) {
      dirs.add(dir);
      const up = dir.lastIndexOf('/');
      dir = up < 0 ? '' : dir.slice(0, up);
    }
  }
  for (const path of paths) {
    if (dirs.has(path)) throw io.unsafe(path, 'is both a file and a directory of other entries');
  }
}
