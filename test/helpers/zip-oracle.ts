/**
 * Expected values for package reads, derived without vhfs's own reader: Python's `zipfile` (an
 * independent zip implementation) reports where the central directory and each member's local header
 * are, and the zip format's fixed sizes (local header 30 bytes + name + extra) give each member's data
 * offset; the chunk hash table member is told apart by its documented name. The read cost of listing a
 * package follows from the reading algorithm docs/vhpkgzip.md
 * ("Reading") promises: one read of the last min(size, 65,535 + 1 + 22 + 20 + 56) bytes, then the central
 * directory in one read unless it lies inside that tail, plus one 56-byte read for a ZIP64 end record
 * that is not right before the ZIP64 locator.
 */
import { execFile } from 'node:child_process';

export interface ZipLayout {
  size: number;
  cdOffset: number;
  cdSize: number;
  /** Offset of the end-of-central-directory record. */
  eocdOffset: number;
  /** Offset of the ZIP64 end-of-central-directory record, when there is one. */
  zip64EndOffset?: number;
  /** The user's files: path, offset of the first data byte, size, in central-directory order. */
  members: Array<{ path: string; offset: number; size: number }>;
  /** The chunk hash table member (docs/vhpkgzip.md: `.vhpkgzip/chunk-hashes`, last), when the part has one. */
  chunkTable?: { offset: number; size: number };
}

/** Name of the member that holds a part's chunk hash table (docs/vhpkgzip.md). */
export const CHUNK_TABLE_MEMBER = '.vhpkgzip/chunk-hashes';

const PY_LAYOUT = String.raw`
import json, struct, sys, zipfile
path = sys.argv[1]
with open(path, "rb") as f:
    end = zipfile._EndRecData(f)
    size = f.seek(0, 2)
    z64 = None
    loc = end[zipfile._ECD_LOCATION] - 20
    if loc >= 0:
        f.seek(loc)
        sig, _, z64off, _ = struct.unpack("<IIQI", f.read(20))
        if sig == 0x07064b50:
            z64 = z64off
    members = []
    z = zipfile.ZipFile(f)
    for info in z.infolist():
        f.seek(info.header_offset)
        head = f.read(30)
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        members.append([info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size])
print(json.dumps({"size": size, "cdOffset": z.start_dir, "cdSize": end[zipfile._ECD_SIZE], "eocdOffset": end[zipfile._ECD_LOCATION], "zip64EndOffset": z64, "members": members}))
`;

/** The layout of a zip file as Python's zipfile sees it. */
export function zipLayout(file: string): Promise<ZipLayout> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', PY_LAYOUT, file], { maxBuffer: 1 << 30 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python3 zipfile on ${file}: ${stderr.trim() || err.message}`));
      const raw = JSON.parse(stdout) as Omit<ZipLayout, 'members' | 'zip64EndOffset'> & { zip64EndOffset: number | null; members: Array<[string, number, number]> };
      const all = raw.members.map(([path, offset, size]) => ({ path, offset, size }));
      const table = all.find((m) => m.path === CHUNK_TABLE_MEMBER);
      resolve({
        size: raw.size, cdOffset: raw.cdOffset, cdSize: raw.cdSize, eocdOffset: raw.eocdOffset,
        ...(raw.zip64EndOffset !== null ? { zip64EndOffset: raw.zip64EndOffset } : {}),
        members: all.filter((m) => m !== table),
        ...(table ? { chunkTable: { offset: table.offset, size: table.size } } : {}),
      });
    });
  });
}

/** Largest tail the reader fetches first: biggest EOCD comment + EOCD + ZIP64 locator + ZIP64 end record. */
export const TAIL_BYTES = 65_535 + 1 + 22 + 20 + 56;

/** Ranged reads and bytes that listing this package costs, per docs/vhpkgzip.md. */
export function listingCost(z: ZipLayout): { reads: number; bytes: number } {
  const tail = Math.min(z.size, TAIL_BYTES);
  const tailStart = z.size - tail;
  let reads = 1;
  let bytes = tail;
  // The ZIP64 locator (20 bytes) sits right before the EOCD; an end record right before it is in the tail.
  if (z.zip64EndOffset !== undefined && z.zip64EndOffset + 56 !== z.eocdOffset - 20) {
    reads++;
    bytes += 56;
  }
  if (z.cdOffset < tailStart) {
    reads++;
    bytes += z.cdSize;
  }
  return { reads, bytes };
}

/**
 * Bytes a reader with an empty cache of `blockSize` blocks must fetch to read `paths`' data, and the most
 * it may fetch when readahead fills the gaps up to the last byte it needs (readahead never passes that:
 * `readaheadLimit`). Empty members need no block.
 */
export function blockSpan(z: ZipLayout, paths: readonly string[], blockSize: number): { touched: number; span: number } {
  const byPath = new Map(z.members.map((m) => [m.path, m]));
  const blocks = new Set<number>();
  let first = Infinity;
  let last = -1;
  for (const p of paths) {
    const m = byPath.get(p);
    if (!m) throw new Error(`${p}: not a member`);
    if (m.size === 0) continue;
    const a = Math.floor(m.offset / blockSize);
    const b = Math.floor((m.offset + m.size - 1) / blockSize);
    for (let k = a; k <= b; k++) blocks.add(k);
    first = Math.min(first, a);
    last = Math.max(last, b);
  }
  const bytesOf = (k: number) => Math.min(blockSize, z.size - k * blockSize);
  let touched = 0;
  for (const k of blocks) touched += bytesOf(k);
  let span = 0;
  for (let k = first; k <= last; k++) span += bytesOf(k);
  return { touched, span };
}
