/**
 * Constants and small encoders shared by the .vhpkgzip writer and reader (see docs/vhpkgzip.md).
 *
 * A .vhpkgzip is a plain stored zip with three conventions layered on top, all in extra fields so
 * standard tools ignore them: member data aligned to 4 KiB (Android zipalign's 0xd935 field pads the
 * local header), the data offset and millisecond mtime recorded in the central directory (our 0x5648
 * "VH" field, so a reader never touches local headers), and ZIP64 records only when a value overflows.
 */

export const SIG_LOCAL = 0x04034b50;
export const SIG_CENTRAL = 0x02014b50;
export const SIG_DESCRIPTOR = 0x08074b50;
export const SIG_EOCD = 0x06054b50;
export const SIG_ZIP64_EOCD = 0x06064b50;
export const SIG_ZIP64_LOCATOR = 0x07064b50;

export const LOCAL_HEADER_SIZE = 30;
export const CENTRAL_HEADER_SIZE = 46;
export const EOCD_SIZE = 22;
export const ZIP64_EOCD_SIZE = 56;
export const ZIP64_LOCATOR_SIZE = 20;
export const MAX_COMMENT = 0xffff;

/** Extra field ids. */
export const EXTRA_ZIP64 = 0x0001;
export const EXTRA_TIMESTAMP = 0x5455; // Info-ZIP "UT": unix mtime in seconds
export const EXTRA_UNICODE_PATH = 0x7075; // Info-ZIP "up": UTF-8 name for a non-UTF-8 record
export const EXTRA_ALIGNMENT = 0xd935; // Android zipalign: u16 alignment, then zero padding
export const EXTRA_VHFS = 0x5648; // ours: u64 data offset, i64 mtime in ms (central directory only)
export const VHFS_EXTRA_DATA_SIZE = 16;

export const FLAG_ENCRYPTED = 0x0001;
export const FLAG_DATA_DESCRIPTOR = 0x0008;
export const FLAG_STRONG_ENCRYPTION = 0x0040;
export const FLAG_UTF8 = 0x0800;

export const METHOD_STORED = 0;

/**
 * The archive comment of every part that ends with a chunk hash table, e.g.
 * `vhpkgzip: chunk hashes in .vhpkgzip/chunk-hashes; central directory crc32 1a2b3c4d`.
 *  - The table's own central record can be damaged into an ordinary name; this second, independent mark
 *    makes such a part fail to list instead of silently losing its table (and the check of every block).
 *  - The CRC-32 of the central directory (the end records come after it, so it can say it) covers every
 *    member's recorded CRC, size and offset: a small member fetched alone is checked against its CRC, and
 *    this makes that CRC itself trustworthy, since a directory edited to agree with changed data no longer
 *    agrees with the comment.
 * Parts written before the CRC was added carry only the first sentence; they still list.
 */
export const CHUNK_TABLE_COMMENT = Buffer.from('vhpkgzip: chunk hashes in .vhpkgzip/chunk-hashes');
const CD_CRC_PREFIX = '; central directory crc32 ';
/** Length of the comment a part with a chunk table gets (fixed: the CRC is 8 hex digits). */
export const CHUNK_TABLE_COMMENT_LENGTH = CHUNK_TABLE_COMMENT.length + CD_CRC_PREFIX.length + 8;

export function chunkTableComment(cdCrc32: number): Buffer<ArrayBuffer> {
  return Buffer.from(`${CHUNK_TABLE_COMMENT.toString('latin1')}${CD_CRC_PREFIX}${cdCrc32.toString(16).padStart(8, '0')}`, 'latin1');
}

/** What a part's archive comment says: whether it ends with a chunk table, and its directory's CRC-32 if recorded. */
export function parseArchiveComment(comment: Buffer): { claimsTable: boolean; cdCrc32?: number } {
  if (comment.equals(CHUNK_TABLE_COMMENT)) return { claimsTable: true };
  const m = /^vhpkgzip: chunk hashes in \.vhpkgzip\/chunk-hashes; central directory crc32 ([0-9a-f]{8})$/.exec(comment.toString('latin1'));
  return m ? { claimsTable: true, cdCrc32: parseInt(m[1], 16) } : { claimsTable: false };
}

/** Member data starts on this boundary so the FUSE layer can serve page-aligned ranges. */
export const DATA_ALIGNMENT = 4096;

/** Field values at or above these need ZIP64; the all-ones value itself means "see ZIP64 extra". */
export const MAX_U16 = 0xffff;
export const MAX_U32 = 0xffffffff;

/** Version "needed to extract": 2.0 for plain members, 4.5 when a ZIP64 field is used. */
export const VERSION_DEFAULT = 20;
export const VERSION_ZIP64 = 45;
/** Version "made by": host 3 (Unix) so external attributes are read as a file mode. */
export const MADE_BY_UNIX = 3 << 8;
/** Regular file, rw-r--r--, in the high half of the external attributes (Unix host). */
export const UNIX_FILE_ATTRS = (0o100644 << 16) >>> 0;

const TWO_32 = 0x1_0000_0000;

/** Little-endian u64 for values up to 2^53, the range of every offset and size we handle. */
export function writeU64(buf: Buffer, value: number, offset: number): void {
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

/**
 * Unchecked little-endian reads for the central-directory hot loop: Buffer#readUInt32LE's range
 * checks cost ~10% of a million-entry parse, and every caller has already bounds-checked the record.
 */
export function u16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

export function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}

export function i32(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
}

/** Little-endian u64, or -1 when it does not fit a double exactly (no sane file is that large). */
export function readU64(buf: Uint8Array, offset: number): number {
  const hi = u32(buf, offset + 4);
  if (hi > 0x1fffff) return -1;
  return hi * TWO_32 + u32(buf, offset);
}

/** Signed little-endian 64-bit value assumed to fit a double (millisecond timestamps). */
export function writeI64(buf: Buffer, value: number, offset: number): void {
  buf.writeBigInt64LE(BigInt(value), offset);
}

export function readI64(buf: Uint8Array, offset: number): number {
  return i32(buf, offset + 4) * TWO_32 + u32(buf, offset);
}

/**
 * MS-DOS time and date fields. We encode in UTC (not local time) so packages are byte-identical
 * whatever the writer's time zone; the UT and VH extras carry the exact instant anyway.
 */
export function toDosDateTime(ms: number): { time: number; date: number } {
  const d = new Date(ms);
  let year = d.getUTCFullYear();
  if (year < 1980) return { time: 0, date: (1 << 5) | 1 };
  if (year > 2107) {
    year = 2107;
    return { time: (23 << 11) | (59 << 5) | 29, date: ((year - 1980) << 9) | (12 << 5) | 31 };
  }
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (d.getUTCSeconds() >> 1);
  const date = ((year - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
  return { time, date };
}

export function fromDosDateTime(time: number, date: number): number {
  return Date.UTC(
    1980 + (date >> 9),
    ((date >> 5) & 15) - 1,
    date & 31,
    time >> 11,
    (time >> 5) & 63,
    (time & 31) * 2,
  );
}
