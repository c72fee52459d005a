/**
 * The one order of names and paths in vhfs: by UTF-8 bytes (= Unicode code point order, `LC_ALL=C sort`),
 * which is what object stores list in, what package members are written in and what index lookups compare.
 * JavaScript's `<` on strings compares UTF-16 code units, which agrees except around surrogate pairs
 * (characters beyond U+FFFF), so those few names are compared as bytes.
 */
const NON_BMP = /[\ud800-\udfff]/;

export function compareNames(a: string, b: string): number {
  if (NON_BMP.test(a) || NON_BMP.test(b)) return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return a < b ? -1 : a > b ? 1 : 0;
}
