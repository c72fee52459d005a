/**
 * The native read path: resolved inputs handed to native/vhfs-fuse.c, which then answers `getattr`,
 * `readdir` and `read` on libfuse's own threads (in parallel, with no hop to this thread) wherever it can do
 * so exactly as the JavaScript handlers of inputs-fs.ts would: a lookup in the input's TreeIndex arrays
 * (shared, not copied), and for a read a `pread` of a source that lies in a local file, checked as the block
 * cache checks it (member CRC-32 or chunk table). Everything else — unresolved inputs, sources in buckets,
 * a check that fails, an object only a whole-object SHA-256 can check — goes to the JavaScript handlers as
 * before, so they remain the definition of the mount and this is only a faster way to give their answers.
 *
 * The native part is fuse-native's own binding rebuilt with vhfs-fuse.c (`scripts/build-native.sh`, run by
 * set-up). Where it was not built (no compiler), fuse-native's prebuilt binary runs and `nativeBinding()` is
 * undefined: the mount works the same, only slower. `VHFS_NATIVE_READS=0` turns it off (to compare, or to
 * rule it out).
 */
import { statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type Fuse from 'fuse-native';
import type { ResolvedInput } from '../inputs/resolve.js';
import type { BlockCache } from '../cache/block-cache.js';
import type { ChunkTable } from '../util/chunk-hashes.js';
import { describeError } from '../util/errors.js';

interface NativeBinding {
  vhfs_native_attach(thread: Buffer, uid: number, gid: number, mountTimeMs: number): void;
  vhfs_native_add_input(thread: Buffer, name: string, arrays: ArrayBufferView[], sourcePaths: Array<string | null>, kinds: Uint32Array, sizes: Float64Array): void;
  vhfs_native_set_chunks(thread: Buffer, name: string, source: number, table: NativeChunkTable): void;
  vhfs_native_detach(thread: Buffer): void;
  vhfs_native_stats(): number[];
}

/** A chunk table as vhfs-fuse.c takes it: check values (u32 LE per chunk), chunk size, bytes covered. */
type NativeChunkTable = [Buffer, number, number];

/** What the native path answered in this process (every mount together). */
export interface NativeReadStats {
  getattrs: number;
  readdirs: number;
  reads: number;
  readBytes: number;
  /** Bytes checked (member CRC-32s, chunks) before they were served. */
  checkedBytes: number;
  /** Reads handed to JavaScript (not resolved, not local, not checkable natively, or a failed check). */
  handedOver: number;
  /** Checks that failed (JavaScript then reads the same bytes, reports the damage and answers EIO). */
  checkFailures: number;
  /**
   * Opens answered ENOSYS so that the kernel stops sending open and release (`no_open`): one per mount; none
   * where the kernel is older than `no_open` (FUSE 7.28, Linux 4.20), which then gets libfuse's own answer.
   */
  opensDeclined: number;
}

// Kinds as vhfs-fuse.c numbers them.
const SOURCE_UNCHECKED = 0;
const SOURCE_MEMBER_CRC = 1;
const SOURCE_OTHER_CHECK = 2;
/** Above this many sources (a version of per-file blobs), tables are left to be read by JavaScript when needed. */
const EAGER_TABLES_MAX = 256;
/** vhfs-fuse.c checks members up to this size whole by their CRC-32; bigger ones need the source's chunk table. */
const MEMBER_WHOLE_MAX = 16 * 1024 * 1024;

/**
 * Filesystems whose reads end on their own (a disk, memory). A `pread` cannot be given a deadline, so a
 * store on NFS, SMB, 9p or FUSE — which can hang a read for ever — stays with the JavaScript path, whose
 * fetch deadline answers ETIMEDOUT instead of a reader stuck for good.
 */
const LOCAL_FILESYSTEMS = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0x794c7630, // overlayfs (containers)
]);

let loaded: NativeBinding | null | undefined;

/** fuse-native's binding when it is the one built with vhfs-fuse.c; undefined otherwise or when turned off. */
export function nativeBinding(): NativeBinding | undefined {
  if (loaded === undefined) {
    loaded = null;
    if (process.env.VHFS_NATIVE_READS !== '0') {
      try {
        const require = createRequire(import.meta.url);
        const dir = path.dirname(require.resolve('fuse-native/package.json'));
        const binding = (require('node-gyp-build') as (dir: string) => Partial<NativeBinding>)(dir);
        if (typeof binding.vhfs_native_add_input === 'function') loaded = binding as NativeBinding;
      } catch {
        // fuse-native itself reports a binding that does not load when it mounts.
      }
    }
  }
  return loaded ?? undefined;
}

export function nativeReadStats(): NativeReadStats | undefined {
  const b = nativeBinding();
  if (!b) return undefined;
  const [getattrs, readdirs, reads, readBytes, checkedBytes, handedOver, checkFailures, opensDeclined] = b.vhfs_native_stats();
  return { getattrs, readdirs, reads, readBytes, checkedBytes, handedOver, checkFailures, opensDeclined };
}

export interface NativeOwner {
  uid: number;
  gid: number;
  /** The directories' times (what inputs-fs.ts answers). */
  mountTime: Date;
}

/** One mount's native side: inputs are added as they resolve; `detach` before the handlers' data goes away. */
export class NativeReads {
  private detached = false;
  private readonly localDirs = new Map<string, boolean>();

  private constructor(
    private readonly binding: NativeBinding,
    private readonly thread: Buffer,
    private readonly cache: BlockCache,
    private readonly log: (line: string) => void,
  ) {}

  /** Attach to a mounted fuse-native instance; undefined when the native path is not available. */
  static attach(fuse: Fuse, owner: NativeOwner, cache: BlockCache, log: (line: string) => void): NativeReads | undefined {
    const binding = nativeBinding();
    const thread = (fuse as unknown as { _thread?: unknown })._thread;
    if (!binding || !Buffer.isBuffer(thread)) return undefined;
    binding.vhfs_native_attach(thread, owner.uid, owner.gid, owner.mountTime.getTime());
    return new NativeReads(binding, thread, cache, log);
  }

  /**
   * Serve `input` natively from now on. Chunk tables it needs follow as they are read (until then, reads that
   * need them go to JavaScript). It must not wait for them: right after a mount the JavaScript thread is busy
   * writing inputs.json, and waiting would leave every listing of the input to that busy thread.
   */
  addInput(input: ResolvedInput): void {
    if (this.detached) return;
    const a = input.index.arrays;
    const sources = input.index.sources;
    const name = input.spec.name;
    const paths = sources.map((s) => this.onLocalDisk(this.cache.localPath(s)));
    const kinds = Uint32Array.from(sources, (s) =>
      s.integrity === undefined ? SOURCE_UNCHECKED : s.integrity.memberCrc32 ? SOURCE_MEMBER_CRC : SOURCE_OTHER_CHECK);
    const sizes = Float64Array.from(sources, (s) => s.size);
    try {
      this.binding.vhfs_native_add_input(this.thread, name, [
        a.fileNames, a.fileNameStart, a.fileSize, a.fileOffset, a.fileSource, a.fileMtime, a.fileCrc,
        a.dirNames, a.dirNameStart, a.dirChildStart, a.dirChildCount, a.dirFileStart, a.dirFileCount,
      ], paths, kinds, sizes);
    } catch (err) {
      this.log(`warning: input "${name}" is read through JavaScript only: ${describeError(err)}`);
      return;
    }
    this.tablesFor(input, paths, kinds).forEach((pending, i) => {
      pending?.then((table) => {
        if (table && !this.detached) this.binding.vhfs_native_set_chunks(this.thread, name, i, [table.checkValues, table.chunkSize, table.covered]);
      }, () => {
        // A table that cannot be read leaves those reads to JavaScript, which reads it again and says what is wrong.
      });
    });
  }

  /**
   * Member CRCs check small files; a chunk table lets big ones (and sources without member CRCs) be read
   * natively. It is read (one small ranged read) only for a source that has such a file, so that listing a
   * version of small files reads nothing but its index; and not at all for a version of many sources (per-file
   * blobs), which JavaScript reads on demand. Per source: the table being read, or null.
   */
  private tablesFor(input: ResolvedInput, paths: Array<string | null>, kinds: Uint32Array): Array<Promise<ChunkTable | undefined> | null> {
    const sources = input.index.sources;
    if (sources.length > EAGER_TABLES_MAX) return sources.map(() => null);
    const a = input.index.arrays;
    const needed = Array.from(kinds, (k) => k !== SOURCE_MEMBER_CRC);
    for (let f = 0; f < a.fileSize.length; f++) if (a.fileSize[f] > MEMBER_WHOLE_MAX) needed[a.fileSource[f]] = true;
    return sources.map((source, i) => {
      return paths[i] === null || !source.integrity?.chunkTable || !needed[i] ? null : this.cache.chunkTable(source);
    });
  }

  /** `file` if it lies on a filesystem in LOCAL_FILESYSTEMS (asked once per directory), else null. */
  private onLocalDisk(file: string | undefined): string | null {
    if (file === undefined) return null;
    const dir = path.dirname(file);
    let local = this.localDirs.get(dir);
    if (local === undefined) {
      try {
        local = LOCAL_FILESYSTEMS.has(statfsSync(dir).type);
      } catch {
        local = false;
      }
      this.localDirs.set(dir, local);
    }
    return local ? file : null;
  }

  /** Stop answering natively; returns once no libfuse thread is inside a native handler of this mount. */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.binding.vhfs_native_detach(this.thread);
  }
}
