/**
 * TreeIndex: an immutable file tree that maps every path of an input to a byte range of a store object,
 * compact enough for millions of entries and loadable from disk without parsing.
 *
 * Layout (no object per entry; everything is a typed array or one string buffer):
 *  - directories are numbered in breadth-first order, root = 0, so the child directories of any directory
 *    are one contiguous, name-sorted run: `dirChildStart[d] .. + dirChildCount[d]`;
 *  - files are ordered by (directory, name), so the files of a directory are one contiguous, name-sorted run:
 *    `dirFileStart[d] .. + dirFileCount[d]`;
 *  - names are UTF-8 bytes in `fileNames` / `dirNames`, delimited by `*NameStart` offsets (n+1 entries);
 *  - each file points at `(source, offset, size)`: `source` indexes the sources table (store keys of packages
 *    or blobs), `offset` is where the member's data starts inside that object.
 *
 * Lookup walks the path one component at a time with a binary search over the sibling run, comparing raw
 * bytes (no string decoding, no allocation beyond encoding the query), so a lookup costs O(depth · log
 * siblings). A file costs 32 bytes plus its name's bytes.
 *
 * Names sort by UTF-8 byte order (= code point order). JS string comparison is UTF-16 order, which agrees
 * except around surrogate pairs, so the builder compares bytes whenever a name has a non-BMP character.
 */
import { VhfsError } from '../util/errors.js';
import { compareNames } from '../util/utf8-order.js';
import { relativePathProblem } from '../util/path-rules.js';
import type { ObjectRef } from '../store/types.js';

/** A lookup result: `>= 0` is a file index, `<= -1` is directory `-1 - result`, NOT_FOUND otherwise. */
export type NodeRef = number;
export const NOT_FOUND: NodeRef = Number.MIN_SAFE_INTEGER;
export const ROOT_DIR: NodeRef = -1;

export function isFile(ref: NodeRef): boolean {
  return ref >= 0;
}
export function isDir(ref: NodeRef): boolean {
  return ref < 0 && ref !== NOT_FOUND;
}
export function dirIndex(ref: NodeRef): number {
  return -1 - ref;
}

export interface TreeIndexArrays {
  fileNames: Buffer;
  fileNameStart: Uint32Array;
  fileSize: Float64Array;
  fileOffset: Float64Array;
  fileSource: Uint32Array;
  fileMtime: Uint32Array;   // seconds since the epoch
  fileCrc: Uint32Array;
  dirNames: Buffer;
  dirNameStart: Uint32Array;
  dirParent: Uint32Array;
  dirChildStart: Uint32Array;
  dirChildCount: Uint32Array;
  dirFileStart: Uint32Array;
  dirFileCount: Uint32Array;
}

export class TreeIndex {
  readonly fileCount: number;
  readonly dirCount: number;
  /** Total bytes of all files. */
  readonly totalSize: number;

  constructor(
    readonly arrays: TreeIndexArrays,
    readonly sources: readonly ObjectRef[],
  ) {
    this.fileCount = arrays.fileSize.length;
    this.dirCount = arrays.dirParent.length;
    let total = 0;
    for (let i = 0; i < this.fileCount; i++) total += arrays.fileSize[i];
    this.totalSize = total;
  }

  /** Resolve a relative path (`''` is the root; no leading `/`). */
  lookup(path: string): NodeRef {
    if (path === '' || path === '/') return ROOT_DIR;
    let dir = 0;
    let start = path.charCodeAt(0) === 47 ? 1 : 0;
    for (;;) {
      const slash = path.indexOf('/', start);
      const last = slash === -1 || slash === path.length - 1;
      const name = Buffer.from(slash === -1 ? path.slice(start) : path.slice(start, slash));
      const child = this.findChildDir(dir, name);
      if (last) {
        if (child >= 0) return -1 - child;
        if (slash !== -1) return NOT_FOUND; // "file/" is not a file
        return this.findFile(dir, name);
      }
      if (child < 0) return NOT_FOUND;
      dir = child;
      start = slash + 1;
    }
  }

  fileName(i: number): string {
    const a = this.arrays;
    return a.fileNames.toString('utf8', a.fileNameStart[i], a.fileNameStart[i + 1]);
  }

  dirName(d: number): string {
    const a = this.arrays;
    return a.dirNames.toString('utf8', a.dirNameStart[d], a.dirNameStart[d + 1]);
  }

  /** Directory names then file names of directory `d`, each run sorted. */
  list(d: number): string[] {
    const a = this.arrays;
    const names: string[] = [];
    const c0 = a.dirChildStart[d];
    for (let c = c0; c < c0 + a.dirChildCount[d]; c++) names.push(this.dirName(c));
    const f0 = a.dirFileStart[d];
    for (let f = f0; f < f0 + a.dirFileCount[d]; f++) names.push(this.fileName(f));
    return names;
  }

  /** Relative path of file `i` (walks parents; for listings and messages, not the hot path). */
  filePath(i: number): string {
    return joinPath(this.dirPath(this.fileDir(i)), this.fileName(i));
  }

  dirPath(d: number): string {
    const parts: string[] = [];
    while (d !== 0) {
      parts.push(this.dirName(d));
      d = this.arrays.dirParent[d];
    }
    return parts.reverse().join('/');
  }

  /** The directory holding file `i` (binary search over the directories' file runs). */
  fileDir(i: number): number {
    const a = this.arrays;
    let lo = 0;
    let hi = this.dirCount - 1;
    // dirFileStart is non-decreasing in directory order, so the owner is the last d with start <= i
    // whose run is non-empty; scan back over empty runs sharing the same start.
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (a.dirFileStart[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    while (lo > 0 && a.dirFileCount[lo] === 0) lo--;
    return lo;
  }

  /** Number of subdirectories of d (for st_nlink = 2 + subdirs). */
  subdirCount(d: number): number {
    return this.arrays.dirChildCount[d];
  }

  /** Every file path, in index order (directory by directory). */
  *walk(): Generator<{ index: number; path: string }> {
    for (let d = 0; d < this.dirCount; d++) {
      const base = this.dirPath(d);
      const f0 = this.arrays.dirFileStart[d];
      for (let f = f0; f < f0 + this.arrays.dirFileCount[d]; f++) {
        yield { index: f, path: joinPath(base, this.fileName(f)) };
      }
    }
  }

  private findChildDir(d: number, name: Buffer): number {
    const a = this.arrays;
    return binarySearch(a.dirNames, a.dirNameStart, a.dirChildStart[d], a.dirChildCount[d], name);
  }

  private findFile(d: number, name: Buffer): NodeRef {
    const a = this.arrays;
    const i = binarySearch(a.fileNames, a.fileNameStart, a.dirFileStart[d], a.dirFileCount[d], name);
    return i >= 0 ? i : NOT_FOUND;
  }
}

function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function binarySearch(names: Buffer, starts: Uint32Array, first: number, count: number, key: Buffer): number {
  let lo = first;
  let hi = first + count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const cmp = names.compare(key, 0, key.length, starts[mid], starts[mid + 1]);
    if (cmp === 0) return mid;
    // names.compare(target...) compares names' range against key: > 0 means name > key.
    if (cmp > 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return -1;
}

/** One file to put in an index, as the builder receives it. */
export interface FileEntry {
  path: string;
  size: number;
  source: number;
  offset: number;
  mtimeMs?: number;
  crc32?: number;
}

/**
 * Accumulates files column-wise and builds a TreeIndex. Paths must be relative, `/`-separated, with no
 * empty, `.` or `..` segments; a path that is both a file and a directory, or appears twice, is rejected
 * naming `label` (the input or package) so the user knows where the bad entry came from.
 */
export class TreeIndexBuilder {
  private paths: string[] = [];
  private sizes: number[] = [];
  private sourcesOf: number[] = [];
  private offsets: number[] = [];
  private mtimes: number[] = [];
  private crcs: number[] = [];
  readonly sources: ObjectRef[] = [];

  constructor(private readonly label: string) {}

  addSource(source: ObjectRef): number {
    this.sources.push(source);
    return this.sources.length - 1;
  }

  add(entry: FileEntry): void {
    this.paths.push(entry.path);
    this.sizes.push(entry.size);
    this.sourcesOf.push(entry.source);
    this.offsets.push(entry.offset);
    this.mtimes.push(Math.floor((entry.mtimeMs ?? 0) / 1000));
    this.crcs.push(entry.crc32 ?? 0);
  }

  get count(): number {
    return this.paths.length;
  }

  build(): TreeIndex {
    const n = this.paths.length;
    // Split each path into (directory path, base name) and collect every directory with its ancestors.
    const fileDirPath: string[] = new Array(n);
    const fileBase: string[] = new Array(n);
    const dirSet = new Map<string, number>([['', 0]]);
    for (let i = 0; i < n; i++) {
      const p = this.paths[i];
      checkRelativePath(p, this.label);
      const slash = p.lastIndexOf('/');
      const dir = slash === -1 ? '' : p.slice(0, slash);
      fileDirPath[i] = dir;
      fileBase[i] = p.slice(slash + 1);
      let d = dir;
      while (d !== '' && !dirSet.has(d)) {
        dirSet.set(d, 0);
        const s = d.lastIndexOf('/');
        d = s === -1 ? '' : d.slice(0, s);
      }
    }
    for (let i = 0; i < n; i++) {
      if (dirSet.has(this.paths[i])) {
        throw new VhfsError('UNSAFE_PATH', `${this.label}: "${this.paths[i]}" is both a file and a directory`);
      }
    }

    const dirOrder = breadthFirstOrder([...dirSet.keys()]);
    dirOrder.forEach((path, index) => dirSet.set(path, index));
    const dirCount = dirOrder.length;

    // Files ordered by (directory index, name bytes).
    const fileDir = new Uint32Array(n);
    for (let i = 0; i < n; i++) fileDir[i] = dirSet.get(fileDirPath[i])!;
    const order = Array.from({ length: n }, (_, i) => i);
    order.sort((x, y) => fileDir[x] - fileDir[y] || compareNames(fileBase[x], fileBase[y]));
    for (let k = 1; k < n; k++) {
      const x = order[k - 1];
      const y = order[k];
      if (fileDir[x] === fileDir[y] && fileBase[x] === fileBase[y]) {
        throw new VhfsError('UNSAFE_PATH', `${this.label}: duplicate path "${this.paths[y]}"`);
      }
    }

    const [fileNames, fileNameStart] = packNames(order.map((i) => fileBase[i]));
    const arrays: TreeIndexArrays = {
      fileNames,
      fileNameStart,
      fileSize: new Float64Array(n),
      fileOffset: new Float64Array(n),
      fileSource: new Uint32Array(n),
      fileMtime: new Uint32Array(n),
      fileCrc: new Uint32Array(n),
      dirNames: Buffer.alloc(0),
      dirNameStart: new Uint32Array(dirCount + 1),
      dirParent: new Uint32Array(dirCount),
      dirChildStart: new Uint32Array(dirCount),
      dirChildCount: new Uint32Array(dirCount),
      dirFileStart: new Uint32Array(dirCount),
      dirFileCount: new Uint32Array(dirCount),
    };
    for (let k = 0; k < n; k++) {
      const i = order[k];
      const source = this.sourcesOf[i];
      const src = this.sources[source];
      if (src === undefined) throw new VhfsError('BAD_ARGUMENT', `${this.label}: "${this.paths[i]}" names unknown source ${source}`);
      if (this.offsets[i] + this.sizes[i] > src.size) {
        throw new VhfsError('BAD_PACKAGE', `${this.label}: "${this.paths[i]}" lies past the end of ${src.key} (${this.offsets[i]}+${this.sizes[i]} > ${src.size})`);
      }
      arrays.fileSize[k] = this.sizes[i];
      arrays.fileOffset[k] = this.offsets[i];
      arrays.fileSource[k] = source;
      arrays.fileMtime[k] = this.mtimes[i];
      arrays.fileCrc[k] = this.crcs[i];
      arrays.dirFileCount[fileDir[i]]++;
    }
    let run = 0;
    for (let d = 0; d < dirCount; d++) {
      arrays.dirFileStart[d] = run;
      run += arrays.dirFileCount[d];
    }

    const dirBaseNames: string[] = [];
    for (let d = 0; d < dirCount; d++) {
      const path = dirOrder[d];
      const slash = path.lastIndexOf('/');
      dirBaseNames.push(path.slice(slash + 1));
      if (d === 0) continue;
      const parent = dirSet.get(slash === -1 ? '' : path.slice(0, slash))!;
      arrays.dirParent[d] = parent;
      if (arrays.dirChildCount[parent] === 0) arrays.dirChildStart[parent] = d;
      arrays.dirChildCount[parent]++;
    }
    const [dirNames, dirNameStart] = packNames(dirBaseNames);
    arrays.dirNames = dirNames;
    arrays.dirNameStart = dirNameStart;
    return new TreeIndex(arrays, this.sources);
  }
}

/** BFS order with each directory's children contiguous and name-sorted; root ('') first. */
function breadthFirstOrder(dirs: string[]): string[] {
  const children = new Map<string, string[]>();
  for (const d of dirs) {
    if (d === '') continue;
    const s = d.lastIndexOf('/');
    const parent = s === -1 ? '' : d.slice(0, s);
    let list = children.get(parent);
    if (!list) children.set(parent, (list = []));
    list.push(d);
  }
  const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  const order = [''];
  for (let k = 0; k < order.length; k++) {
    const kids = children.get(order[k]);
    if (!kids) continue;
    kids.sort((a, b) => compareNames(baseName(a), baseName(b)));
    order.push(...kids);
  }
  return order;
}

/**
 * Names as consecutive UTF-8 bytes in one buffer, and where each starts (n + 1 offsets). Encoded straight
 * into place: a Buffer per name first would cost a million short-lived objects (~100 MB of heap) for a
 * million names.
 */
function packNames(names: string[]): [Buffer, Uint32Array] {
  const starts = new Uint32Array(names.length + 1);
  let total = 0;
  for (let i = 0; i < names.length; i++) {
    starts[i] = total;
    total += Buffer.byteLength(names[i]);
  }
  starts[names.length] = total;
  const bytes = Buffer.alloc(total);
  for (let i = 0; i < names.length; i++) bytes.write(names[i], starts[i]);
  return [bytes, starts];
}

/** The relative-path rules of src/util/path-rules.ts. */
export function checkRelativePath(path: string, label: string): void {
  const bad = relativePathProblem(path);
  if (bad) throw new VhfsError('UNSAFE_PATH', `${label}: unsafe path "${path.replace(/\0/g, '\\0')}": ${bad}`);
}
