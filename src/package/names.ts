/**
 * Entry-name rules shared by the writer (which refuses to produce a bad package) and the reader
 * (which refuses to serve one). Names are relative `/`-separated paths; every check runs on the
 * encoded bytes because `/`, `\`, `.`, `:` and NUL are ASCII and never occur inside a UTF-8
 * multi-byte sequence, so no string has to be built for a name that is rejected or merely checked.
 */

const SLASH = 0x2f;
const DOT = 0x2e;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

function isAsciiLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/**
 * Why the file name in `bytes[start, end)` is unsafe, or undefined if it is fine. A trailing `/`
 * (a directory entry) is reported as a problem here; the reader checks for it first and skips.
 */
export function nameProblem(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (end === start) return 'empty name';
  const first = bytes[start];
  if (first === SLASH) return 'absolute path';
  if (end - start >= 2 && bytes[start + 1] === COLON && isAsciiLetter(first)) {
    return 'absolute path (drive letter)';
  }
  let segStart = start;
  for (let i = start; i <= end; i++) {
    const c = i < end ? bytes[i] : SLASH;
    if (c === SLASH) {
      const len = i - segStart;
      if (len === 0) return 'empty path segment';
      if (bytes[segStart] === DOT && (len === 1 || (len === 2 && bytes[segStart + 1] === DOT))) {
        return len === 1 ? '"." path segment' : '".." path segment';
      }
      segStart = i + 1;
    } else if (c === 0) {
      return 'NUL byte in name';
    } else if (c === BACKSLASH) {
      return 'backslash in name';
    }
  }
  return undefined;
}

/** True if the name ends in `/`: a directory record, which packages never need. */
export function isDirectoryName(bytes: Uint8Array, start: number, end: number): boolean {
  return end > start && bytes[end - 1] === SLASH;
}

/** A name quoted for a one-line message (escapes newlines, NUL and quotes). */
export function quoteName(name: string): string {
  return JSON.stringify(name);
}
