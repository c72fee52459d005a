/**
 * On-disk form of a TreeIndex, so a second mount of the same version reads no package tail at all.
 *
 * File: 8-byte magic `VHFSIX01`, u32 LE header length, a JSON header (counts, sources, and for each
 * array its name, type, byte offset and length), then each array's raw bytes at an 8-byte-aligned offset.
 * Loading reads the file into one ArrayBuffer and wraps typed-array views around it: no parsing, no copy,
 * whatever the entry count. Writes go to a temp file and are renamed into place, so a crash never leaves
 * a half-written index that a later mount would trust.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { VhfsError } from '../util/errors.js';
import { TreeIndex, type TreeIndexArrays } from './tree-index.js';
import type { ObjectRef } from '../store/types.js';

const MAGIC = Buffer.from('VHFSIX01');

type ArrayName = keyof TreeIndexArrays;
type ArrayKind = 'buffer' | 'u32' | 'f64';
const ARRAY_KINDS: Record<ArrayName, ArrayKind> = {
  fileNames: 'buffer',
  fileNameStart: 'u32',
  fileSize: 'f64',
  fileOffset: 'f64',
  fileSource: 'u32',
  fileMtime: 'u32',
  fileCrc: 'u32',
  dirNames: 'buffer',
  dirNameStart: 'u32',
  dirParent: 'u32',
  dirChildStart: 'u32',
  dirChildCount: 'u32',
  dirFileStart: 'u32',
  dirFileCount: 'u32',
};

interface Header {
  format: 1;
  sources: ObjectRef[];
  arrays: Array<{ name: ArrayName; offset: number; bytes: number }>;
  meta: Record<string, unknown>;
}

const align8 = (n: number) => (n + 7) & ~7;

/**
 * The file's bytes as consecutive pieces: magic, header and padding, then each array's own memory (views, not
 * copies) with the padding that aligns the next. Saving writes them one after the other, so persisting a
 * million-entry index allocates nothing near its size (a single 40 MB copy would stay resident until V8's next
 * full collection, which a daemon with a small heap may not run for a long time).
 */
function serializedPieces(index: TreeIndex, meta: Record<string, unknown>): Buffer[] {
  const names = Object.keys(ARRAY_KINDS) as ArrayName[];
  const views = names.map((name) => {
    const a = index.arrays[name];
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  });
  // Offsets are relative to the start of the data section, which begins 8-aligned after the header.
  const entries: Header['arrays'] = [];
  let at = 0;
  views.forEach((v, k) => {
    entries.push({ name: names[k], offset: at, bytes: v.length });
    at = align8(at + v.length);
  });
  const header: Header = { format: 1, sources: [...index.sources], arrays: entries, meta };
  const headerBuf = Buffer.from(JSON.stringify(header));
  const dataStart = align8(MAGIC.length + 4 + headerBuf.length);
  const prefix = Buffer.alloc(dataStart);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(headerBuf.length, MAGIC.length);
  headerBuf.copy(prefix, MAGIC.length + 4);
  const pieces: Buffer[] = [prefix];
  views.forEach((v, k) => {
    pieces.push(v);
    const padding = align8(entries[k].offset + v.length) - (entries[k].offset + v.length);
    if (padding > 0) pieces.push(Buffer.alloc(padding));
  });
  return pieces;
}

export function serializeIndex(index: TreeIndex, meta: Record<string, unknown> = {}): Buffer {
  return Buffer.concat(serializedPieces(index, meta));
}

export function deserializeIndex(buf: Buffer, label: string): { index: TreeIndex; meta: Record<string, unknown> } {
  const corrupt = (why: string) => new VhfsError('BAD_PACKAGE', `index ${label}: ${why}`);
  if (buf.length < MAGIC.length + 4 || !buf.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt('not a vhfs index (bad magic)');
  const headerLen = buf.readUInt32LE(MAGIC.length);
  if (MAGIC.length + 4 + headerLen > buf.length) throw corrupt('truncated header');
  let header: Header;
  try {
    header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + headerLen)) as Header;
  } catch {
    throw corrupt('unreadable header');
  }
  if (header.format !== 1) throw corrupt(`unknown format ${String(header.format)}`);
  // Typed arrays need 8-byte alignment of the underlying memory, which a pooled Buffer may lack.
  const data = buf.byteOffset % 8 === 0 ? buf : Buffer.from(buf);
  const dataStart = align8(MAGIC.length + 4 + headerLen);
  const arrays: Partial<Record<ArrayName, unknown>> = {};
  for (const { name, offset, bytes } of header.arrays) {
    const kind = ARRAY_KINDS[name];
    if (kind === undefined) throw corrupt(`unknown array ${name}`);
    const start = dataStart + offset;
    if (start + bytes > data.length || offset % 8 !== 0) throw corrupt(`array ${name} out of bounds`);
    const abs = data.byteOffset + start;
    arrays[name] =
      kind === 'buffer' ? Buffer.from(data.buffer, abs, bytes)
      : kind === 'u32' ? new Uint32Array(data.buffer, abs, bytes / 4)
      : new Float64Array(data.buffer, abs, bytes / 8);
  }
  for (const name of Object.keys(ARRAY_KINDS)) if (!(name in arrays)) throw corrupt(`missing array ${name}`);
  return { index: new TreeIndex(arrays as TreeIndexArrays, header.sources), meta: header.meta };
}

export async function saveIndex(file: string, index: TreeIndex, meta: Record<string, unknown> = {}): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await fs.open(tmp, 'w');
  try {
    // Successive writeFile calls on one handle append (each loops over short writes).
    for (const piece of serializedPieces(index, meta)) await handle.writeFile(piece);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
}

/** The index stored at `file`, or undefined if there is none (a corrupt one is discarded and reported). */
export async function loadIndex(
  file: string,
  onCorrupt?: (err: VhfsError) => void,
): Promise<{ index: TreeIndex; meta: Record<string, unknown> } | undefined> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return deserializeIndex(buf, file);
  } catch (err) {
    if (!(err instanceof VhfsError)) throw err;
    onCorrupt?.(err);
    await fs.rm(file, { force: true });
    return undefined;
  }
}
