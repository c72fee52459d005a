/**
 * Entry-name rules of a .vhpkgzip on top of the relative-path rules every vhfs path follows
 * (src/util/path-rules.ts): which names are directory records, which are reserved for the package's own
 * metadata, and how a name is quoted in a message. Checks run on encoded bytes, as the path rules do, so
 * the reader never builds a string for a name it only checks.
 */

const SLASH = 0x2f;

/**
 * Names under this directory hold the package's own metadata (today only the chunk hash table); no user
 * file may be called `.vhpkgzip` or live under `.vhpkgzip/`, so metadata is never mistaken for data.
 */
export const RESERVED_DIRECTORY = '.vhpkgzip';
/** The chunk hash table member: the last member of every part vhfs writes (docs/vhpkgzip.md). */
export const CHUNK_TABLE_NAME = `${RESERVED_DIRECTORY}/chunk-hashes`;

const RESERVED = Buffer.from(RESERVED_DIRECTORY);
const CHUNK_TABLE = Buffer.from(CHUNK_TABLE_NAME);

/** True if the name ends in `/`: a directory record, which packages never need. */
export function isDirectoryName(bytes: Uint8Array, start: number, end: number): boolean {
  return end > start && bytes[end - 1] === SLASH;
}

/** True if `bytes[start, end)` is `.vhpkgzip` or lies under `.vhpkgzip/`. */
export function isReservedName(bytes: Uint8Array, start: number, end: number): boolean {
  const n = RESERVED.length;
  if (end - start < n || bytes[start] !== RESERVED[0]) return false; // the common case: one byte compared
  for (let i = 1; i < n; i++) if (bytes[start + i] !== RESERVED[i]) return false;
  return end - start === n || bytes[start + n] === SLASH;
}

/** True if `bytes[start, end)` is exactly the chunk hash table's name. */
export function isChunkTableName(bytes: Uint8Array, start: number, end: number): boolean {
  if (end - start !== CHUNK_TABLE.length) return false;
  for (let i = 0; i < CHUNK_TABLE.length; i++) if (bytes[start + i] !== CHUNK_TABLE[i]) return false;
  return true;
}

export const RESERVED_NAME_PROBLEM = `is reserved for package metadata ("${RESERVED_DIRECTORY}" and names under "${RESERVED_DIRECTORY}/")`;

/** A name quoted for a one-line message (escapes newlines, NUL and quotes). */
export function quoteName(name: string): string {
  return JSON.stringify(name);
}
