/**
 * Package file names: `<collection>.<version>.vhpkgzip` for a single part, otherwise
 * `<collection>.<version>.part-0001-of-0003.vhpkgzip` (1-based, zero-padded to at least 4 digits so
 * names sort in part order). The part count is known only when writing ends, so callers write parts
 * under temporary names (or keys) and name them with this once `writePackage` returns.
 */
import { VhfsError } from '../util/errors.js';

export const PACKAGE_EXTENSION = '.vhpkgzip';

const PART_RE = /^(.+)\.part-(\d{4,})-of-(\d{4,})\.vhpkgzip$/;

export function packagePartName(collection: string, version: string, part: number, parts: number): string {
  if (!Number.isSafeInteger(parts) || parts < 1 || !Number.isSafeInteger(part) || part < 1 || part > parts) {
    throw new VhfsError('BAD_ARGUMENT', `package part ${part} of ${parts} is not a valid part number`);
  }
  for (const [what, value] of [['collection', collection], ['version', version]] as const) {
    if (value === '' || value.includes('/')) {
      throw new VhfsError('BAD_ARGUMENT', `package ${what} name ${JSON.stringify(value)} is empty or contains "/"`);
    }
  }
  return partFileName(`${collection}.${version}`, part, parts);
}

/** `<stem>.vhpkgzip` for a single part, else `<stem>.part-0001-of-0003.vhpkgzip`. */
export function partFileName(stem: string, part: number, parts: number): string {
  if (parts === 1) return `${stem}${PACKAGE_EXTENSION}`;
  const pad = (n: number): string => String(n).padStart(4, '0');
  return `${stem}.part-${pad(part)}-of-${pad(parts)}${PACKAGE_EXTENSION}`;
}

/**
 * Split a package file name into its stem (`<collection>.<version>`; both may contain dots, so the
 * stem is not split further) and part numbers. Undefined if it is not a package name.
 */
export function parsePackagePartName(fileName: string): { stem: string; part: number; parts: number } | undefined {
  const m = PART_RE.exec(fileName);
  if (m !== null) {
    const part = Number(m[2]);
    const parts = Number(m[3]);
    if (part < 1 || part > parts) return undefined;
    return { stem: m[1], part, parts };
  }
  if (fileName.endsWith(PACKAGE_EXTENSION) && fileName.length > PACKAGE_EXTENSION.length) {
    return { stem: fileName.slice(0, -PACKAGE_EXTENSION.length), part: 1, parts: 1 };
  }
  return undefined;
}
