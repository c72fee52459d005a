/**
 * Chunk hash tables: what lets a reader verify any aligned byte range of a large immutable object
 * (a package, a blob) without reading the whole object.
 *
 * An object is cut into fixed chunks of `chunkSize` bytes counted from offset 0 (the last one shorter);
 * each chunk's check value is its CRC-32 (the zip polynomial). The table covers the object's first `covered`
 * bytes (for a package: everything before the table itself). A range that starts on a chunk boundary
 * and ends on one (or at `covered`) can then be checked on its own: a block cache whose blocks are
 * multiples of the chunk size checks every block it fetches, before any reader sees it.
 *
 * Why 64 KiB and CRC-32: a smaller chunk makes tables bigger (4 bytes per 64 KiB is 0.006% of the data)
 * and a larger one would force reads to fetch more than they need. Every byte a mount serves is checked
 * on the one JavaScript thread that also answers FUSE, so the check must be cheap: zlib's native CRC-32
 * runs at ~2.7 GB/s here, SHA-256 at 0.6–1.2 GB/s (and WebCrypto's threaded digest at 0.2 GB/s, its
 * copies and dispatch costing more than the hash). CRC-32 detects every burst error up to 32 bits and
 * misses other random corruption with odds of 2^-32 per chunk. This is a check against corruption and
 * truncation, not against an attacker who can rewrite both the data and the table (a package's sha256
 * in its datum record covers that, for whoever reads the whole package).
 *
 * Serialized form (little-endian): magic `VHSUMS01`, u32 chunk size, u32 check bytes (4), u64 covered
 * length, then one u32 CRC-32 per chunk.
 */
import { crc32 } from 'node:zlib';
import { VhfsError } from './errors.js';

export const CHUNK_SIZE = 64 * 1024;
export const CHUNK_HASH_BYTES = 4;
const MAGIC = Buffer.from('VHSUMS01');
const HEADER_BYTES = MAGIC.length + 4 + 4 + 8;

/** The check value of one chunk's bytes. */
export function chunkHash(data: Uint8Array): number {
  return crc32(data);
}

/** Number of chunks of `chunkSize` covering `length` bytes. */
export function chunkCount(length: number, chunkSize = CHUNK_SIZE): number {
  return Math.ceil(length / chunkSize);
}

/** Bytes of a serialized table covering `length` bytes. */
export function chunkTableBytes(length: number, chunkSize = CHUNK_SIZE): number {
  return HEADER_BYTES + chunkCount(length, chunkSize) * CHUNK_HASH_BYTES;
}

/**
 * Builds a table from bytes fed in order from offset 0, in pieces of any size (a writer's stream, a
 * file being uploaded). Keeps at most one partial chunk.
 */
export class ChunkHasher {
  private readonly hashes: number[] = [];
  private partial = 0;
  private partialBytes = 0;
  private total = 0;

  constructor(readonly chunkSize = CHUNK_SIZE) {
    checkChunkSize(chunkSize);
  }

  get length(): number {
    return this.total;
  }

  update(data: Uint8Array): void {
    let at = 0;
    while (at < data.length) {
      const take = Math.min(this.chunkSize - this.partialBytes, data.length - at);
      this.partial = crc32(data.subarray(at, at + take), this.partial);
      this.partialBytes += take;
      at += take;
      if (this.partialBytes === this.chunkSize) this.closeChunk();
    }
    this.total += data.length;
  }

  /** The serialized table for everything fed so far. The hasher is not used afterwards. */
  finish(): Buffer {
    if (this.partialBytes > 0) this.closeChunk();
    const out = Buffer.alloc(HEADER_BYTES + this.hashes.length * CHUNK_HASH_BYTES);
    MAGIC.copy(out, 0);
    out.writeUInt32LE(this.chunkSize, 8);
    out.writeUInt32LE(CHUNK_HASH_BYTES, 12);
    out.writeBigUInt64LE(BigInt(this.total), 16);
    this.hashes.forEach((h, i) => out.writeUInt32LE(h, HEADER_BYTES + i * CHUNK_HASH_BYTES));
    return out;
  }

  private closeChunk(): void {
    this.hashes.push(this.partial);
    this.partial = 0;
    this.partialBytes = 0;
  }
}

/** A mismatch found by `ChunkTable.verify`: the chunk and the object's byte range it covers. */
export interface ChunkMismatch {
  chunk: number;
  start: number;
  end: number;
}

export class ChunkTable {
  private constructor(
    readonly chunkSize: number,
    /** Bytes of the object the table covers, from offset 0. */
    readonly covered: number,
    private readonly hashes: Buffer,
  ) {}

  /** Parse a serialized table; BAD_PACKAGE naming `label` when it is not one. */
  static parse(buf: Buffer, label: string): ChunkTable {
    const bad = (why: string) => new VhfsError('BAD_PACKAGE', `${label}: chunk hash table ${why}`);
    if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw bad('has no VHSUMS01 header');
    const chunkSize = buf.readUInt32LE(8);
    const hashBytes = buf.readUInt32LE(12);
    const covered = buf.readBigUInt64LE(16);
    if (hashBytes !== CHUNK_HASH_BYTES) throw bad(`has ${hashBytes}-byte check values (expected ${CHUNK_HASH_BYTES})`);
    try {
      checkChunkSize(chunkSize);
    } catch {
      throw bad(`has chunk size ${chunkSize} (expected a power of two from 4 KiB to 16 MiB)`);
    }
    if (covered > BigInt(Number.MAX_SAFE_INTEGER)) throw bad('covers an impossible length');
    const length = Number(covered);
    const expected = HEADER_BYTES + chunkCount(length, chunkSize) * CHUNK_HASH_BYTES;
    if (buf.length !== expected) throw bad(`is ${buf.length} bytes, expected ${expected} for ${length} covered bytes`);
    return new ChunkTable(chunkSize, length, Buffer.from(buf.subarray(HEADER_BYTES)));
  }

  /**
   * Parse a table read from where a package's central directory says it is, checking it against what the
   * directory records: its length, its CRC-32 (INTEGRITY: the table itself was damaged) and the bytes it
   * covers (BAD_PACKAGE). `label` (the package or object) prefixes every error.
   */
  static parseRecorded(buf: Buffer, recorded: { length: number; crc32: number; covered: number }, label: string): ChunkTable {
    if (buf.length !== recorded.length) {
      throw new VhfsError('BAD_ARGUMENT', `${label}: chunk hash table is ${recorded.length} bytes, got ${buf.length}`);
    }
    const crc = crc32(buf);
    if (crc !== recorded.crc32) {
      throw new VhfsError('INTEGRITY', `${label}: chunk hash table: CRC-32 ${hex8(crc)}, central directory says ${hex8(recorded.crc32)}`);
    }
    const table = ChunkTable.parse(buf, label);
    if (table.covered !== recorded.covered) {
      throw new VhfsError('BAD_PACKAGE', `${label}: chunk hash table covers ${table.covered} bytes but its member starts at ${recorded.covered} (package changed after it was written?)`);
    }
    return table;
  }

  /** The check values, one u32 (little-endian) per chunk: what a checker outside JavaScript is handed. */
  get checkValues(): Buffer {
    return this.hashes;
  }

  /** Whether `[offset, offset+length)` can be checked on its own: chunk-aligned and within the covered bytes. */
  covers(offset: number, length: number): boolean {
    const end = offset + length;
    return offset % this.chunkSize === 0 && end <= this.covered && (end % this.chunkSize === 0 || end === this.covered);
  }

  /**
   * Check `data`, the object's bytes at `offset`. The range must satisfy `covers`; otherwise BAD_ARGUMENT
   * (a caller bug: it fetched a range it cannot verify). Returns the first mismatching chunk, or undefined.
   */
  verify(offset: number, data: Uint8Array): ChunkMismatch | undefined {
    if (!this.covers(offset, data.length)) {
      throw new VhfsError('BAD_ARGUMENT', `range ${offset}+${data.length} is not aligned to ${this.chunkSize}-byte chunks within ${this.covered} covered bytes`);
    }
    const first = offset / this.chunkSize;
    for (let at = 0; at < data.length; at += this.chunkSize) {
      const chunk = first + at / this.chunkSize;
      const got = chunkHash(data.subarray(at, Math.min(at + this.chunkSize, data.length)));
      if (got !== this.hashes.readUInt32LE(chunk * CHUNK_HASH_BYTES)) {
        return { chunk, start: offset + at, end: Math.min(offset + at + this.chunkSize, offset + data.length) };
      }
    }
    return undefined;
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function checkChunkSize(size: number): void {
  if (!Number.isInteger(size) || size < 4096 || size > 16 << 20 || (size & (size - 1)) !== 0) {
    throw new VhfsError('BAD_ARGUMENT', `chunk size ${size}: must be a power of two from 4 KiB to 16 MiB`);
  }
}
