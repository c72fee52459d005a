/**
 * The one set of rules for a relative file path, shared by every place a path enters vhfs: package
 * entry names (writer and reader), object-store keys, catalog file paths and datum names, input layout
 * paths and the tree index. A path that passes here can be joined under any directory (a mountpoint, a
 * store root, an extraction directory) on Linux or Windows and stays inside it, and every component of
 * it can be created and opened on Linux.
 *
 * A path is valid when it is:
 *  - non-empty and at most PATH_MAX_BYTES (4095) UTF-8 bytes long;
 *  - relative: no leading `/`, no drive letter (`C:`, which Windows treats as absolute or drive-relative);
 *  - `/`-separated, with no empty (`a//b`, trailing `/`), `.` or `..` segment;
 *  - free of NUL (ends a C string) and backslash (a separator on Windows, so `a\..\b` would escape there);
 *  - made of segments of at most NAME_MAX_BYTES (255) UTF-8 bytes each (Linux's NAME_MAX: a longer name
 *    cannot be created on ext4/xfs, and FUSE refuses to look it up);
 *  - valid Unicode (the string form refuses lone surrogates, which have no UTF-8 encoding).
 *
 * The total length is bounded because Linux refuses any path argument of PATH_MAX (4096) bytes or more,
 * terminating NUL included: a longer relative path could never be opened by its full name from a job, so
 * it is refused when a package, version or key is made rather than failing later inside the job. The
 * mount adds its own prefix (`/valohai/inputs/<input>/`), so a path near the bound can still be too long
 * for some absolute uses; that depends on where it is mounted and is not ours to guess.
 *
 * Callers add rules of their own on top: store keys reserve `.tmp/`, packages reserve `.vhpkgzip/`.
 *
 * Two forms, one implementation: the bytes form checks a range of a buffer (the package reader checks a
 * million names straight from the central directory without building strings for them); the string form
 * encodes into a scratch buffer and runs the bytes form. This works because `/`, `\`, `.`, `:` and NUL are
 * ASCII and never occur inside a UTF-8 multi-byte sequence. Problems are reported as a predicate that
 * reads after a noun ("the path …", "key …"), the first one found scanning left to right.
 */

export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4095;

const SLASH = 0x2f;
const DOT = 0x2e;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

/** Every UTF-16 code unit is at most 3 UTF-8 bytes, and a longer string is refused before encoding. */
const scratch = Buffer.allocUnsafe(PATH_MAX_BYTES * 3);

/** Why `path` is not a valid relative path (a predicate like `has a ".." segment`), or undefined. */
export function relativePathProblem(path: string): string | undefined {
  if (typeof path !== 'string') return 'is not a string';
  // Each code unit encodes to at least one byte: a string this long is too long in any encoding.
  if (path.length > PATH_MAX_BYTES) return `is longer than ${PATH_MAX_BYTES} bytes`;
  if (!(path as unknown as WellFormed).isWellFormed()) return 'is not valid Unicode (lone surrogate)';
  const n = scratch.write(path, 0, 'utf8');
  return relativePathBytesProblem(scratch, 0, n);
}

interface WellFormed {
  isWellFormed(): boolean;
}

/** The same rules over the UTF-8 bytes `bytes[start, end)`. */
export function relativePathBytesProblem(bytes: Uint8Array, start = 0, end = bytes.length): string | undefined {
  if (end === start) return 'is empty';
  if (end - start > PATH_MAX_BYTES) return `is longer than ${PATH_MAX_BYTES} bytes`;
  const first = bytes[start];
  if (first === SLASH) return 'is absolute';
  if (end - start >= 2 && bytes[start + 1] === COLON && isAsciiLetter(first)) return 'is absolute (starts with a drive letter)';
  let segStart = start;
  for (let i = start; i <= end; i++) {
    const c = i < end ? bytes[i] : SLASH;
    if (c === SLASH) {
      const len = i - segStart;
      if (len === 0) return i === end ? 'ends with "/" (a folder, not a file)' : 'has an empty segment ("//")';
      if (bytes[segStart] === DOT && (len === 1 || (len === 2 && bytes[segStart + 1] === DOT))) {
        return len === 1 ? 'has a "." segment' : 'has a ".." segment';
      }
      if (len > NAME_MAX_BYTES) return `has a segment longer than ${NAME_MAX_BYTES} bytes`;
      segStart = i + 1;
    } else if (c === 0) {
      return 'contains NUL';
    } else if (c === BACKSLASH) {
      return 'contains a backslash';
    }
  }
  return undefined;
}

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
