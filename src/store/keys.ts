/**
 * Object keys, list prefixes and byte ranges as every store checks them, so that code tested against the
 * local directory store behaves the same on a bucket: keys follow the one set of relative-path rules
 * (src/util/path-rules.ts), and `.tmp/` is reserved (the local store keeps uploads in progress there).
 * Keys sort by UTF-8 bytes, as object stores list them.
 */
import { VhfsError } from '../util/errors.js';
import { relativePathProblem } from '../util/path-rules.js';

/** Reserved for uploads in progress in a local directory store; never a key in any store. */
export const TMP_DIR = '.tmp';

/** Why `key` is not a valid object key, or undefined if it is. */
export function keyProblem(key: string): string | undefined {
  const bad = relativePathProblem(key);
  if (bad) return bad;
  if (key === TMP_DIR || key.startsWith(`${TMP_DIR}/`)) return `${TMP_DIR}/ is reserved for uploads in progress`;
  return undefined;
}

export function checkKey(url: string, key: string): void {
  const bad = keyProblem(key);
  if (bad) throw new VhfsError('BAD_ARGUMENT', `${url}: bad object key ${JSON.stringify(key)}: ${bad}`);
}

/** Only a prefix's complete segments name directories; the part after its last '/' just filters names. */
export function checkPrefix(url: string, prefix: string): void {
  const slash = prefix.lastIndexOf('/');
  const bad = prefix.includes('\0') ? 'contains NUL' : slash >= 0 ? keyProblem(prefix.slice(0, slash)) : undefined;
  if (bad) throw new VhfsError('BAD_ARGUMENT', `${url}: bad list prefix ${JSON.stringify(prefix)}: ${bad}`);
}

export function checkRangeArgs(url: string, key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new VhfsError('BAD_ARGUMENT', `${url}: bad range ${offset}+${length} for ${key}`);
  }
}

/** Object stores order keys by UTF-8 bytes; for BMP text that equals UTF-16 code-unit order. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
