/**
 * The read-only FUSE tree of `inputs/`: `/` lists the inputs, `/<input>/…` is that input's TreeIndex.
 *
 * Handlers stay thin: a path lookup in the index (binary searches over typed arrays) and, for reads, a
 * block-cache hit copied straight into the kernel's buffer with the callback called synchronously. Only a
 * first touch of an input (resolution) or a cache miss goes async. Every failure maps to an errno and a
 * logged line; nothing a handler does can throw into fuse-native (which would take the mount down).
 *
 * Deliberately absent handlers, each saving a hop to this thread per call:
 *  - `open`/`release`: libfuse succeeds on its own; `read` finds the file by path (and with the native
 *    read path the kernel stops sending them at all: native/vhfs-fuse.c `vhfs_open`);
 *  - `flush`, `access`, `getxattr`/`listxattr`: libfuse answers ENOSYS once and the kernel stops asking
 *    (an `ls -l` of 20k files: 0.11 s without getxattr, 1.2 s with one);
 *  - `opendir`/`releasedir`: libfuse answers them itself (stubbing `opendir` crashes the daemon);
 *  - every write op: the mount is `ro`, so the kernel refuses writes with EROFS before they get here.
 * Measurements: native-notes/README.md.
 */
import Fuse, { type Ops, type Stat } from 'fuse-native';
import type { InputSet } from '../inputs/input-set.js';
import type { ResolvedInput } from '../inputs/resolve.js';
import type { ReadPath } from '../inputs/read-path.js';
import { NOT_FOUND, dirIndex, isFile, type NodeRef } from '../index/tree-index.js';
import { describeError, isVhfsError } from '../util/errors.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const EPOCH = new Date(0);
const DIR_ENTRY: Stat = { mode: S_IFDIR | 0o555, size: 0, uid: 0, gid: 0, mtime: EPOCH, atime: EPOCH, ctime: EPOCH };
const FILE_ENTRY: Stat = { mode: S_IFREG | 0o444, size: 0, uid: 0, gid: 0, mtime: EPOCH, atime: EPOCH, ctime: EPOCH };

export interface InputsFsOptions {
  uid?: number;
  gid?: number;
  /** The directories' times (default: now). */
  mountTime?: Date;
  log?: (line: string) => void;
}

/** Split `/input/rest/of/path` into the input name and the path inside it ('' for the input root). */
function splitPath(p: string): [string, string] {
  const slash = p.indexOf('/', 1);
  return slash === -1 ? [p.slice(1), ''] : [p.slice(1, slash), p.slice(slash + 1)];
}

export function inputsOps(inputs: InputSet, reader: ReadPath, opts: InputsFsOptions = {}): Ops {
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  const gid = opts.gid ?? process.getgid?.() ?? 0;
  const log = opts.log ?? (() => {});
  const mountTime = opts.mountTime ?? new Date();
  let lastReadPath = '';
  let lastReadInput = '';
  let lastInput: ResolvedInput | undefined;
  let lastFile = 0;

  const dirStat = (subdirs: number, mtime = mountTime): Stat => ({
    mtime, atime: mtime, ctime: mtime, size: 4096, mode: S_IFDIR | 0o555, uid, gid, nlink: 2 + subdirs,
  });
  const fileStat = (input: ResolvedInput, f: number): Stat => {
    const a = input.index.arrays;
    const mtime = new Date(a.fileMtime[f] * 1000);
    const size = a.fileSize[f];
    return { mtime, atime: mtime, ctime: mtime, size, mode: S_IFREG | 0o444, uid, gid, nlink: 1, blocks: Math.ceil(size / 512), blksize: 65536 };
  };
  const nodeStat = (input: ResolvedInput, ref: NodeRef): Stat =>
    isFile(ref) ? fileStat(input, ref) : dirStat(input.index.subdirCount(dirIndex(ref)));

  /** Errno for a failed resolution or read, with the reason logged once per failure. */
  const failure = (what: string, err: unknown): number => {
    log(`error: ${what}: ${describeError(err)}`);
    return isVhfsError(err, 'TIMEOUT') ? Fuse.ETIMEDOUT : Fuse.EIO;
  };

  /** Run `fn` with the input ready: synchronously when it already is. */
  const withInput = (name: string, fail: (errno: number) => void, fn: (input: ResolvedInput) => void): void => {
    if (!inputs.has(name)) return fail(Fuse.ENOENT);
    const ready = inputs.get(name);
    if (ready) return fn(ready);
    inputs.ensure(name).then(fn, (err: unknown) => fail(failure(`input "${name}"`, err)));
  };


  return {
    getattr(path, cb) {
      if (path === '/') return cb(0, dirStat(inputs.names.length));
      const [name, rest] = splitPath(path);
      if (rest === '') return inputs.has(name) ? cb(0, dirStat(0)) : cb(Fuse.ENOENT);
      withInput(name, cb, (input) => {
        const ref = input.index.lookup(rest);
        if (ref === NOT_FOUND) return cb(Fuse.ENOENT);
        cb(0, nodeStat(input, ref));
      });
    },

    // Each entry goes with its type (libfuse 2 turns the stat into the dirent's d_type; it has no
    // readdirplus), so `find -type f`, `os.walk` and `ls -R` need no lookup per entry to tell files from
    // directories: one hop per directory instead of one per entry. Two shared stat objects do, as only the
    // mode is used.
    readdir(path, cb) {
      if (path === '/') return cb(0, inputs.names, inputs.names.map(() => DIR_ENTRY));
      const [name, rest] = splitPath(path);
      withInput(name, cb, (input) => {
        const ref = input.index.lookup(rest);
        if (ref === NOT_FOUND) return cb(Fuse.ENOENT);
        if (isFile(ref)) return cb(Fuse.ENOTDIR);
        const d = dirIndex(ref);
        const names = input.index.list(d);
        const dirs = input.index.subdirCount(d);
        cb(0, names, names.map((_, i) => (i < dirs ? DIR_ENTRY : FILE_ENTRY)));
      });
    },

    read(path, _fd, buf, len, pos, cb) {
      // No open/release handlers: libfuse then opens and releases without a hop to this thread, which
      // halves the round trips per small file. The file is found by path instead (memoised: a large file
      // is read in 128 KiB requests for the same path).
      if (path !== lastReadPath || inputs.get(lastReadInput) !== lastInput) {
        const [name, rest] = splitPath(path);
        const input = inputs.get(name);
        const ref = input ? input.index.lookup(rest) : NOT_FOUND;
        if (!input || !isFile(ref)) return cb(Fuse.ENOENT);
        lastReadPath = path;
        lastReadInput = name;
        lastInput = input;
        lastFile = ref;
      }
      const copied = reader.readSync(lastInput!, lastFile, pos, len, buf);
      if (copied >= 0) return cb(copied);
      reader.read(lastInput!, lastFile, pos, len, buf).then(cb, (err: unknown) => cb(failure('read', err)));
    },

    statfs(_path, cb) {
      cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 1, namemax: 255 });
    },
  };
}
