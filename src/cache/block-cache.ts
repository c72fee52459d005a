/**
 * The block cache between readers (FUSE `read`, `vhfs cat`) and the object stores.
 *
 * Two shapes of cached data, chosen per read by how the source is being walked:
 *  - **extents**: a small file read at random is fetched as exactly its own bytes (one ranged GET of the
 *    member, not of the block around it), so a shuffled walk over a package of 16 KiB members reads each
 *    member once and nothing else;
 *  - **blocks**: fixed, aligned blocks of `blockSize` bytes (the last one shorter). Large files, and small
 *    files read in order (each one starting where the previous read of the same source ended), go through
 *    blocks, and a sequential reader gets readahead: a window that doubles per batch up to `readaheadBytes`,
 *    fetched as ranged GETs of up to `runBytes` each, several in flight, so the store stays busy ahead of
 *    the reader.
 *
 * Where a read is served from, in order: memory (`MemoryTier`; a hit is copied into the caller's buffer
 * with no await, which keeps a FUSE read of a hot file cheap), an in-flight fetch of the same block or
 * extent (single flight), the disk tier (`BlockDisk`, whole verified blocks), then the store through a
 * bounded `FetchQueue` per store in which readers' misses go before readahead. Every read answers within
 * `fetchTimeoutMs`, or fails with TIMEOUT (fuse-native gives up after 15 s; an answer must come first).
 *
 * Every byte is checked before any reader sees it, with what the source offers (`ObjectRef.integrity`):
 *  - a chunk table (vhfs packages, large blobs): each fetched block is checked chunk by chunk (CRC-32 per
 *    64 KiB); the table itself is read once per source, lazily;
 *  - a member CRC-32 (zip packages): an extent is checked against its member's CRC; with no chunk table,
 *    a member read from blocks is checked whole (up to 64 MiB) before any part of it is delivered;
 *  - a whole-object SHA-256 (a content-addressed blob): checked when the blob is fetched whole.
 * A mismatch is INTEGRITY, naming the object and range; the data is never cached. What cannot be checked
 * (a local file, the middle of a large member of a package written by another tool) is served as read:
 * see docs/vhpkgzip.md and docs/SEMANTICS.md.
 *
 * Memory: the kernel keeps what it was given in its page cache (`kernel_cache`), so `MemoryTier` counts
 * delivered bytes and keeps spent data only while there is room. Readahead stops when fetched-but-unread
 * data and fetches in flight would pass half the budget.
 */
import { crc32 } from 'node:zlib';
import { createHash } from 'node:crypto';
import type { ObjectRef, ObjectStore } from '../store/types.js';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { ChunkTable } from '../util/chunk-hashes.js';
import { DEFAULTS } from '../config/options.js';
import { MemoryTier } from './memory.js';
import { getRangeWithin } from '../store/deadline.js';
import { mapLimit } from '../util/concurrency.js';
import { FetchQueue, Priority } from './fetch-queue.js';

/**
 * A persistent tier of whole, checked blocks that several processes share (src/cache/host-cache.ts). A run
 * of blocks is claimed at once: blocks on disk come back (read and checked against the CRC-32 recorded when
 * they were written), blocks nobody is fetching are leased to the caller, who fetches them and `fill`s them,
 * and blocks another fetch (in this process or another) is filling can be awaited with `settled`, then
 * claimed again. A disk tier never fails a read: when it cannot help, every block comes back to fetch.
 */
export interface BlockDisk {
  claim(request: BlockClaimRequest): Promise<BlockClaim>;
  /**
   * `length` bytes at `offset` inside a block on disk, else undefined: a small file's few KiB read without
   * the rest of its block. `callerChecks`: the caller checks these bytes itself (a member's CRC-32); if not,
   * the whole block is read and checked against its CRC-32 first.
   */
  getRange(object: DiskObject, block: number, offset: number, length: number, callerChecks: boolean): Promise<Buffer | undefined>;
  /** Blocks whose bytes from disk failed the caller's own check (a chunk table): no longer on disk. */
  drop(object: DiskObject, blocks: readonly number[]): void;
}

/** An object as the disk tier knows it. */
export interface DiskObject {
  /** The source's cache identity (its store URL and key). */
  id: string;
  /** The object itself (its size; what it is cached for). */
  source: ObjectRef;
  blockSize: number;
}

export interface BlockClaimRequest extends DiskObject {
  /** Block numbers, ascending. */
  blocks: readonly number[];
  /** false: do not read blocks on disk back (a prefetch only needs to know they are there). Default true. */
  read?: boolean;
  /** false: lease nothing and wait for nobody; whatever is not on disk comes back in `fetch`. Default true. */
  lease?: boolean;
  /** Make room only by evicting objects last used before this time (ms): a prefetch never evicts what it filled. */
  evictBefore?: number;
}

/** What became of a filled block: kept, or why not (it is served all the same). */
export type FillResult = 'kept' | 'full' | 'no-space' | 'lost' | 'error' | 'not-leased';

export interface BlockClaim {
  /** Blocks read from disk, checked against their CRC-32 (none when `read` was false). */
  readonly data: ReadonlyMap<number, Buffer>;
  /** Blocks on disk (with `read`, those that read back whole). */
  readonly present: readonly number[];
  /** Blocks to fetch from the store: leased to this caller unless `lease` was false. */
  readonly fetch: readonly number[];
  /** Blocks another fetch is filling. */
  readonly others: readonly number[];
  /** Keep a fetched, checked block of `fetch`; never rejects. */
  fill(block: number, data: Buffer): Promise<FillResult>;
  /** Give back the leases of blocks not filled (the fetch failed), so nobody waits for them. */
  abandon(): void;
  /** Resolves once every block of `others` is on disk or no longer being fetched by a live process (or after a bound). */
  settled(): Promise<void>;
}

/** What `BlockCache.warm` did. */
export interface WarmResult {
  /** Blocks fetched from the store (kept or not). */
  fetchedBlocks: number;
  /** Bytes fetched from the store and kept. */
  fetchedBytes: number;
  /** Bytes already on disk, or being fetched by someone else. */
  presentBytes: number;
  /** Why nothing more should be warmed: the cache has no room (or its disk is full), or this source has no disk tier. */
  stopped?: 'full' | 'no-disk-tier';
}

/** The file (zip member or blob) a read belongs to: its extent in the source, and its CRC-32 if known. */
export interface FileExtent {
  start: number;
  size: number;
  crc32?: number;
}

export interface BlockCacheOptions {
  /** The store of sources that name none. */
  store: ObjectStore;
  /** The store of sources that name one (`ObjectRef.store`). */
  storeFor?: (url: string) => ObjectStore;
  blockSize?: number;
  memoryBytes?: number;
  disk?: BlockDisk;
  /**
   * Use the disk tier for sources in local directory stores too (default false: reading a local store
   * again costs what reading the disk tier would).
   */
  diskForLocal?: boolean;
  fetchTimeoutMs?: number;
  /** Largest readahead window in bytes (0: none). Independent of the block size. */
  readaheadBytes?: number;
  /** Largest single ranged GET for block runs (readahead is split into runs this big, fetched in parallel). */
  runBytes?: number;
  /** Requests in flight per store (default: 8 for a local directory store, 32 for others). */
  concurrency?: number;
  /** Files up to this size read at random are fetched as extents (default: the block size). */
  extentMaxBytes?: number;
  /**
   * Readahead never goes past this offset of a source (default: its end). A reader that knows what it
   * will read (`vhfs cat` of some files) stops the cache fetching what nobody asked for.
   */
  readaheadLimit?: (source: ObjectRef) => number | undefined;
  /** Called with one line when a background fetch or a disk write fails (never throws into readers). */
  warn?: (message: string) => void;
}

export interface BlockCacheStats {
  memoryHits: number;
  diskHits: number;
  storeFetches: number;
  storeBlocks: number;
  extentFetches: number;
  readaheadBlocks: number;
  waits: number;
  verifiedBytes: number;
  uncheckedBytes: number;
  integrityFailures: number;
  /** Blocks fetched by background filling. */
  fillBlocks: number;
}

/**
 * Members up to this size, in packages without a chunk table, are checked whole against their CRC-32 before
 * any part is served; larger ones are served unchecked (fetching gigabytes before the first byte is no way
 * to serve a file), which docs/SEMANTICS.md says.
 */
const MEMBER_CHECK_MAX = 64 * 1024 * 1024;

/** Random reads of a remote source after which it is filled in the background; runs fetched at once then. */
const FILL_AFTER_RANDOM_READS = 16;
const FILL_PARALLEL = 4;

/** Per source (one ObjectRef object of an index): its cache key prefix, access pattern and chunk table. */
interface SourceState {
  id: string;
  /** Where the last read of this source ended, and the block it ended in. */
  lastEnd: number;
  lastBlock: number;
  /** Readahead window in blocks; the last block already requested ahead of the reader. */
  window: number;
  aheadUntil: number;
  table?: Promise<ChunkTable | undefined>;
  /** Starts of members checked whole against their CRC-32 (sources without a chunk table). */
  checkedMembers: Set<number>;
  /** Reads that were not sequential; past a threshold a remote source is filled in the background. */
  randomReads: number;
  fill?: Promise<void>;
}

export class BlockCache {
  readonly blockSize: number;
  readonly stats: BlockCacheStats = {
    memoryHits: 0, diskHits: 0, storeFetches: 0, storeBlocks: 0, extentFetches: 0, readaheadBlocks: 0, waits: 0,
    verifiedBytes: 0, uncheckedBytes: 0, integrityFailures: 0, fillBlocks: 0,
  };
  private readonly store: ObjectStore;
  private readonly storeFor: (url: string) => ObjectStore;
  private readonly memory: MemoryTier;
  private readonly inflight = new Map<string, { promise: Promise<Buffer>; promote: () => void }>();
  private inflightBytes = 0;
  private readonly states = new WeakMap<ObjectRef, SourceState>();
  private readonly queues = new Map<string, FetchQueue>();
  private readonly disk?: BlockDisk;
  private readonly diskForLocal: boolean;
  private readonly fetchTimeoutMs: number;
  private readonly maxReadahead: number;
  private readonly runBlocks: number;
  private readonly concurrency?: number;
  private readonly extentMax: number;
  private readonly warn: (message: string) => void;
  private readonly readaheadLimit?: (source: ObjectRef) => number | undefined;
  private closed = false;

  constructor(opts: BlockCacheOptions) {
    this.store = opts.store;
    this.storeFor = opts.storeFor ?? (() => opts.store);
    this.blockSize = opts.blockSize ?? DEFAULTS.blockSize;
    if (!Number.isInteger(this.blockSize) || this.blockSize < 4096 || (this.blockSize & (this.blockSize - 1)) !== 0) {
      throw new VhfsError('BAD_ARGUMENT', `block size ${this.blockSize}: must be a power of two of at least 4096`);
    }
    this.memory = new MemoryTier(Math.max(opts.memoryBytes ?? DEFAULTS.memoryBytes, this.blockSize * 4));
    this.disk = opts.disk;
    this.diskForLocal = opts.diskForLocal ?? false;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs;
    this.maxReadahead = Math.floor((opts.readaheadBytes ?? DEFAULTS.readaheadBytes) / this.blockSize);
    this.runBlocks = Math.max(1, Math.floor((opts.runBytes ?? 2 * 1024 * 1024) / this.blockSize));
    this.concurrency = opts.concurrency;
    this.extentMax = opts.extentMaxBytes ?? this.blockSize;
    this.warn = opts.warn ?? (() => {});
    this.readaheadLimit = opts.readaheadLimit;
  }

  /**
   * Copy `length` bytes at `offset` of `source` into `dst` if they are all in memory; returns the number of
   * bytes copied, or -1 when something is missing (then call `read`).
   */
  tryReadSync(source: ObjectRef, offset: number, length: number, dst: Buffer, file?: FileExtent): number {
    const end = Math.min(offset + length, source.size);
    if (end <= offset) return 0;
    const st = this.state(source);
    if (file) {
      const extent = this.memory.get(extentKey(st, file.start));
      if (extent && offset >= file.start && end <= file.start + extent.length) {
        const n = extent.copy(dst, 0, offset - file.start, end - file.start);
        this.memory.deliver(extentKey(st, file.start), n);
        this.stats.memoryHits++;
        this.noteAccess(source, st, offset, end);
        return n;
      }
    }
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    for (let b = first; b <= last; b++) if (!this.memory.has(blockKey(st, b))) return -1;
    if (file && this.memberUnchecked(source, st, file)) {
      const mFirst = Math.floor(file.start / bs);
      const mLast = Math.floor((file.start + file.size - 1) / bs);
      for (let b = mFirst; b <= mLast; b++) if (!this.memory.has(blockKey(st, b))) return -1;
      const memberBlocks: Buffer[] = [];
      for (let b = mFirst; b <= mLast; b++) memberBlocks.push(this.memory.get(blockKey(st, b))!);
      if (!this.checkMember(st, file, mFirst, memberBlocks)) return -1; // read() fetches again, and reports
    }
    const blocks: Buffer[] = [];
    for (let b = first; b <= last; b++) blocks.push(this.memory.get(blockKey(st, b))!);
    const n = this.copyOut(st, blocks, first, offset, end, dst);
    this.stats.memoryHits++;
    this.noteAccess(source, st, offset, end);
    return n;
  }

  /** Read `length` bytes at `offset` (clipped to the object's end) into `dst`; resolves with the byte count. */
  async read(source: ObjectRef, offset: number, length: number, dst: Buffer, file?: FileExtent): Promise<number> {
    const sync = this.tryReadSync(source, offset, length, dst, file);
    if (sync >= 0) return sync;
    const end = Math.min(offset + length, source.size);
    const st = this.state(source);
    return this.withDeadline(source, offset, end, async () => {
      if (!this.isSequential(st, offset)) this.noteRandomRead(source, st);
      if (file && file.size > 0 && file.size <= this.extentMax && !this.isSequential(st, file.start)) {
        const data = await this.extent(source, st, file);
        const n = data.copy(dst, 0, offset - file.start, end - file.start);
        this.memory.deliver(extentKey(st, file.start), n);
        this.noteAccess(source, st, offset, end);
        return n;
      }
      const bs = this.blockSize;
      let first = Math.floor(offset / bs);
      let last = Math.floor((end - 1) / bs);
      // A member that only its CRC-32 can vouch for is checked whole before any part of it is served.
      const whole = file !== undefined && this.memberUnchecked(source, st, file);
      if (whole) {
        first = Math.min(first, Math.floor(file.start / bs));
        last = Math.max(last, Math.floor((file.start + file.size - 1) / bs));
      }
      const blocks = await this.getBlocks(source, st, first, last, Priority.Reader);
      if (whole && this.memberUnchecked(source, st, file)) {
        const mFirst = Math.floor(file.start / bs);
        const mLast = Math.floor((file.start + file.size - 1) / bs);
        if (!this.checkMember(st, file, mFirst, blocks.slice(mFirst - first, mLast - first + 1))) {
          throw this.mismatch(source, file.start, file.start + file.size, 'its CRC-32');
        }
      }
      const from = Math.floor(offset / bs);
      const n = this.copyOut(st, blocks.slice(from - first, Math.floor((end - 1) / bs) - first + 1), from, offset, end, dst);
      this.noteAccess(source, st, offset, end);
      return n;
    });
  }

  /** Stop background work (filling); reads still work. */
  close(): void {
    this.closed = true;
  }

  /** Drop every cached block of memory (tests, and `vhfs cache drop`). Disk blocks stay. */
  clearMemory(): void {
    this.memory.clear();
  }

  get memoryBytes(): number {
    return this.memory.bytes;
  }

  get memoryStats(): ReturnType<MemoryTier['stats']> {
    return this.memory.stats();
  }

  // ---------------------------------------------------------------------------------------- serving

  /** Copy [offset, end) out of `blocks` (starting at block `first`) into `dst` and account the delivery. */
  private copyOut(st: SourceState, blocks: Buffer[], first: number, offset: number, end: number, dst: Buffer): number {
    const bs = this.blockSize;
    const last = first + blocks.length - 1;
    let copied = 0;
    for (let b = first; b <= last; b++) {
      const from = b === first ? offset - b * bs : 0;
      const to = b === last ? end - b * bs : blocks[b - first].length;
      copied += blocks[b - first].copy(dst, copied, from, to);
      this.memory.deliver(blockKey(st, b), to - from);
    }
    return copied;
  }

  /**
   * Whether `file` is a member that must be checked whole against its CRC-32 before it is served from
   * blocks: its source has member CRCs but no chunk table (so its blocks were not checked when fetched),
   * it is small enough to check whole, and it has not been checked yet.
   */
  private memberUnchecked(source: ObjectRef, st: SourceState, file: FileExtent): boolean {
    return file.crc32 !== undefined && file.size > 0 && file.size <= MEMBER_CHECK_MAX && source.integrity?.memberCrc32 === true
      && source.integrity.chunkTable === undefined && !st.checkedMembers.has(file.start);
  }

  /** Check a whole member held in `blocks` (from block `first`); a mismatch drops the blocks so a retry refetches them. */
  private checkMember(st: SourceState, file: FileExtent, first: number, blocks: Buffer[]): boolean {
    const bs = this.blockSize;
    let crc = 0;
    blocks.forEach((block, k) => {
      const at = (first + k) * bs;
      crc = crc32(block.subarray(Math.max(0, file.start - at), Math.min(block.length, file.start + file.size - at)), crc);
    });
    if (crc !== file.crc32) {
      for (let k = 0; k < blocks.length; k++) this.memory.delete(blockKey(st, first + k));
      this.stats.integrityFailures++;
      return false;
    }
    // Forgetting which members were checked only costs checking them again.
    if (st.checkedMembers.size >= 100_000) st.checkedMembers.clear();
    st.checkedMembers.add(file.start);
    this.stats.verifiedBytes += file.size;
    return true;
  }

  private isSequential(st: SourceState, start: number): boolean {
    return st.lastEnd >= 0 && start >= st.lastEnd - this.blockSize && start <= st.lastEnd + this.blockSize;
  }

  private withDeadline(source: ObjectRef, offset: number, end: number, fn: () => Promise<number>): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VhfsError('TIMEOUT',
        `${this.storeOf(source).url}/${source.key}: no answer for bytes ${offset}-${end - 1} within ${this.fetchTimeoutMs} ms`)), this.fetchTimeoutMs);
    });
    return Promise.race([fn(), timeout]).finally(() => clearTimeout(timer));
  }

  // ---------------------------------------------------------------------------------------- extents

  private extent(source: ObjectRef, st: SourceState, file: FileExtent): Promise<Buffer> {
    const key = extentKey(st, file.start);
    const hit = this.memory.get(key);
    if (hit) return Promise.resolve(hit);
    const pending = this.inflight.get(key);
    if (pending) {
      this.stats.waits++;
      pending.promote();
      return pending.promise;
    }
    const job = this.queue(source).run(Priority.Reader, async () => {
      const fromDisk = await this.extentFromDisk(source, st, file);
      // The disk tier is trusted no more than the store: bytes that fail their check are dropped there and fetched.
      if (fromDisk && await this.checkExtent(source, st, file, fromDisk.data).then(() => true, onlyIntegrity)) return fromDisk.data;
      fromDisk?.drop();
      this.stats.extentFetches++;
      const data = await this.fetch(source, file.start, file.size);
      await this.checkExtent(source, st, file, data);
      return data;
    });
    return this.track(key, file.size, job, (data) => this.memory.set(key, data));
  }

  /**
   * A member from the disk tier when all of it is there, else undefined. Only the member's own bytes are
   * read from each block (a 10 KiB file does not cost a 256 KiB read) when the caller can check them as an
   * extent (a member CRC-32, a whole blob's SHA-256); otherwise the disk tier checks the blocks they lie in.
   */
  private async extentFromDisk(source: ObjectRef, st: SourceState, file: FileExtent): Promise<{ data: Buffer; drop: () => void } | undefined> {
    const disk = this.diskFor(source);
    if (!disk) return undefined;
    const bs = this.blockSize;
    const object = { id: st.id, source, blockSize: bs };
    const integrity = source.integrity;
    const checked = (integrity?.memberCrc32 === true && file.crc32 !== undefined) || (integrity?.sha256 !== undefined && file.start === 0 && file.size === source.size);
    const first = Math.floor(file.start / bs);
    const last = Math.floor((file.start + file.size - 1) / bs);
    const blocks = Array.from({ length: last - first + 1 }, (_, k) => first + k);
    const parts = await Promise.all(blocks.map((b) => {
      const from = Math.max(file.start, b * bs) - b * bs;
      const to = Math.min(file.start + file.size, (b + 1) * bs) - b * bs;
      return disk.getRange(object, b, from, to - from, checked).catch(() => undefined);
    }));
    if (!parts.every((p) => p !== undefined && p.length > 0)) return undefined;
    this.stats.diskHits += parts.length;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts as Buffer[]);
    return data.length === file.size ? { data, drop: () => disk.drop(object, blocks) } : undefined;
  }

  private async checkExtent(source: ObjectRef, st: SourceState, file: FileExtent, data: Buffer): Promise<void> {
    const integrity = source.integrity;
    let ok: boolean | undefined;
    if (integrity?.memberCrc32 && file.crc32 !== undefined) ok = crc32(data) === file.crc32;
    else if (integrity?.sha256 && file.start === 0 && file.size === source.size) {
      ok = createHash('sha256').update(data).digest('hex') === integrity.sha256;
    } else {
      const table = await this.table(source, st);
      if (table?.covers(file.start, data.length)) ok = table.verify(file.start, data) === undefined;
    }
    if (ok === undefined) this.stats.uncheckedBytes += data.length;
    else if (ok) this.stats.verifiedBytes += data.length;
    else {
      this.stats.integrityFailures++;
      throw this.mismatch(source, file.start, file.start + file.size, integrity?.memberCrc32 ? 'its CRC-32' : 'its checksum');
    }
  }

  // ----------------------------------------------------------------------------------------- blocks

  private getBlocks(source: ObjectRef, st: SourceState, first: number, last: number, priority: Priority): Promise<Buffer[]> {
    const result: Array<Buffer | Promise<Buffer> | undefined> = [];
    const missing: number[] = [];
    for (let b = first; b <= last; b++) {
      const key = blockKey(st, b);
      const hit = this.memory.get(key);
      if (hit) {
        result.push(hit);
        continue;
      }
      const pending = this.inflight.get(key);
      if (pending) {
        this.stats.waits++;
        if (priority === Priority.Reader) pending.promote();
        result.push(pending.promise);
        continue;
      }
      result.push(undefined);
      missing.push(b);
    }
    if (missing.length > 0) {
      const fetched = this.fetchBlocks(source, st, missing, priority);
      missing.forEach((b, k) => { result[b - first] = fetched[k]; });
    }
    return Promise.all(result as Array<Buffer | Promise<Buffer>>);
  }

  /** Start fetching `blocks` (sorted, none cached or in flight): runs of consecutive blocks, one ranged GET per run. */
  private fetchBlocks(source: ObjectRef, st: SourceState, blocks: number[], priority: Priority, toMemory = true): Array<Promise<Buffer>> {
    const promises: Array<Promise<Buffer>> = [];
    let runStart = 0;
    for (let k = 1; k <= blocks.length; k++) {
      if (k < blocks.length && blocks[k] === blocks[k - 1] + 1 && k - runStart < this.runBlocks) continue;
      promises.push(...this.fetchRun(source, st, blocks[runStart], blocks[k - 1], priority, toMemory));
      runStart = k;
    }
    return promises;
  }

  private fetchRun(source: ObjectRef, st: SourceState, first: number, last: number, priority: Priority, toMemory: boolean): Array<Promise<Buffer>> {
    const bs = this.blockSize;
    const bytes = Math.min((last + 1) * bs, source.size) - first * bs;
    const job = this.queue(source).run(priority, () => this.loadRun(source, st, first, last));
    const promises: Array<Promise<Buffer>> = [];
    for (let b = first; b <= last; b++) {
      const key = blockKey(st, b);
      const share = { promise: job.promise.then((blocks) => blocks[b - first]), promote: job.promote };
      promises.push(this.track(key, b === first ? bytes : 0, share, toMemory ? (buf) => this.memory.set(key, buf) : () => undefined));
    }
    return promises;
  }

  /** Register an in-flight fetch under `key` (single flight), store its result with `keep`, count its bytes. */
  private track(key: string, bytes: number, job: { promise: Promise<Buffer>; promote: () => void }, keep: (data: Buffer) => void): Promise<Buffer> {
    this.inflight.set(key, job);
    this.inflightBytes += bytes;
    job.promise.then(
      (buf) => { this.inflight.delete(key); this.inflightBytes -= bytes; keep(buf); },
      () => { this.inflight.delete(key); this.inflightBytes -= bytes; },
    );
    return job.promise;
  }

  private async loadRun(source: ObjectRef, st: SourceState, first: number, last: number): Promise<Buffer[]> {
    const bs = this.blockSize;
    const disk = this.diskFor(source);
    if (!disk) return this.fetchChecked(source, st, first, last);
    const out = new Array<Buffer>(last - first + 1);
    let pending = Array.from({ length: last - first + 1 }, (_, k) => first + k);
    // Blocks another process was fetching are claimed again once it is done or gone; the last round waits
    // for nobody, so a stuck peer cannot hold a read for long.
    for (let round = 1; pending.length > 0; round++) {
      const claim = await disk.claim({ id: st.id, source, blockSize: bs, blocks: pending, lease: round < DISK_ROUNDS });
      const again: number[] = [];
      try {
        for (const [b, buf] of claim.data) {
          // The disk tier is trusted no more than the store: blocks are checked again as they come back.
          if (await this.checkBlocks(source, st, b, [buf]).then(() => true, onlyIntegrity)) {
            out[b - first] = buf;
            this.stats.diskHits++;
          } else {
            disk.drop({ id: st.id, source, blockSize: bs }, [b]);
            again.push(b);
          }
        }
        await Promise.all([
          ...blockRuns(claim.fetch, this.runBlocks).map(async ([a, z]) => {
            const blocks = await this.fetchChecked(source, st, a, z);
            blocks.forEach((buf, k) => {
              out[a + k - first] = buf;
              // Readers do not wait for the disk write; the lease stays until it is done, so peers wait for it.
              void claim.fill(a + k, buf);
            });
          }),
          claim.settled(),
        ]);
      } catch (err) {
        claim.abandon();
        throw err;
      }
      pending = [...claim.others, ...again].sort((a, b) => a - b);
    }
    return out;
  }

  /** Exactly blocks first..last of the source from its store, split into blocks and checked. */
  private async fetchChecked(source: ObjectRef, st: SourceState, first: number, last: number): Promise<Buffer[]> {
    const bs = this.blockSize;
    const start = first * bs;
    const end = Math.min((last + 1) * bs, source.size);
    this.stats.storeFetches++;
    this.stats.storeBlocks += last - first + 1;
    const data = await this.fetch(source, start, end - start);
    // Views, not copies: the run's blocks are delivered and spent together, so sharing one buffer costs
    // no memory that a copy would save, and a copy of every byte would cost a pass over it.
    const blocks: Buffer[] = [];
    for (let b = first; b <= last; b++) blocks.push(data.subarray((b - first) * bs, Math.min((b - first + 1) * bs, data.length)));
    await this.checkBlocks(source, st, first, blocks);
    return blocks;
  }

  /**
   * Prefetch: bring blocks first..last of a source into the disk tier, at `priority` in the store's queue
   * (Background: below readers and readahead), without touching memory. Blocks already there, or being
   * fetched by another process, are left alone. `evictBefore`: see `BlockClaimRequest`.
   */
  warm(source: ObjectRef, first: number, last: number, opts: { priority?: Priority; evictBefore?: number } = {}): Promise<WarmResult> {
    const disk = this.diskFor(source);
    const bs = this.blockSize;
    const bytesOf = (blocks: readonly number[]) => blocks.reduce((n, b) => n + Math.min(bs, source.size - b * bs), 0);
    return this.queue(source).run(opts.priority ?? Priority.Background, async (): Promise<WarmResult> => {
      const result: WarmResult = { fetchedBlocks: 0, fetchedBytes: 0, presentBytes: 0 };
      if (!disk) return { ...result, stopped: 'no-disk-tier' };
      const st = this.state(source);
      const blocks = Array.from({ length: last - first + 1 }, (_, k) => first + k);
      const claim = await disk.claim({ id: st.id, source, blockSize: bs, blocks, read: false, ...(opts.evictBefore === undefined ? {} : { evictBefore: opts.evictBefore }) });
      result.presentBytes = bytesOf(claim.present) + bytesOf(claim.others);
      try {
        for (const [a, z] of blockRuns(claim.fetch, this.runBlocks)) {
          const fetched = await this.fetchChecked(source, st, a, z);
          result.fetchedBlocks += fetched.length;
          for (const [k, buf] of fetched.entries()) {
            const kept = await claim.fill(a + k, buf);
            if (kept === 'kept') result.fetchedBytes += buf.length;
            else if (kept === 'full' || kept === 'no-space' || kept === 'not-leased') result.stopped = 'full';
          }
          if (result.stopped) break;
        }
      } finally {
        claim.abandon();
      }
      return result;
    }).promise;
  }

  /** Check blocks against the source's chunk table, if it has one. */
  private async checkBlocks(source: ObjectRef, st: SourceState, first: number, blocks: Buffer[]): Promise<void> {
    const table = await this.table(source, st);
    const bs = this.blockSize;
    for (let k = 0; k < blocks.length; k++) {
      const at = (first + k) * bs;
      const checkable = table ? Math.max(0, Math.min(blocks[k].length, table.covered - at)) : 0;
      if (checkable === 0) {
        this.stats.uncheckedBytes += blocks[k].length;
        continue;
      }
      if (bs % table!.chunkSize !== 0) {
        throw new VhfsError('BAD_ARGUMENT', `${source.key}: block size ${bs} is not a multiple of its ${table!.chunkSize}-byte checksum chunks; use --block-size ${table!.chunkSize} or more`);
      }
      const bad = table!.verify(at, blocks[k].subarray(0, checkable));
      if (bad) {
        this.stats.integrityFailures++;
        throw this.mismatch(source, bad.start, bad.end, 'its chunk table');
      }
      this.stats.verifiedBytes += checkable;
      this.stats.uncheckedBytes += blocks[k].length - checkable;
    }
  }

  // ----------------------------------------------------------------------------------------- sources

  private state(source: ObjectRef): SourceState {
    let st = this.states.get(source);
    if (!st) {
      st = { id: `${source.store ?? this.store.url}/${source.key}`, lastEnd: -1, lastBlock: -1, window: 0, aheadUntil: -1, checkedMembers: new Set(), randomReads: 0 };
      this.states.set(source, st);
    }
    return st;
  }

  /** The source's chunk table (read once, shared with the reads that check blocks); undefined when it has none. */
  chunkTable(source: ObjectRef): Promise<ChunkTable | undefined> {
    return this.table(source, this.state(source));
  }

  /**
   * The local file holding the source, when its store keeps objects as files and its reads are not meant
   * to go through the disk tier (`--disk-cache` asks for that even for local stores, e.g. a network mount).
   */
  localPath(source: ObjectRef): string | undefined {
    return this.diskFor(source) ? undefined : this.storeOf(source).localPath?.(source.key);
  }

  private storeOf(source: ObjectRef): ObjectStore {
    return source.store === undefined ? this.store : this.storeFor(source.store);
  }

  private queue(source: ObjectRef): FetchQueue {
    const store = this.storeOf(source);
    let q = this.queues.get(store.url);
    if (!q) {
      q = new FetchQueue(this.concurrency ?? (store.url.startsWith('file:') ? 8 : 32));
      this.queues.set(store.url, q);
    }
    return q;
  }

  /** The source's chunk table, read once (single flight); undefined when it has none. */
  private table(source: ObjectRef, st: SourceState): Promise<ChunkTable | undefined> {
    const where = source.integrity?.chunkTable;
    if (!where) return Promise.resolve(undefined);
    st.table ??= (async () => {
      const store = this.storeOf(source);
      let buf: Buffer;
      try {
        buf = await getRangeWithin(store, where.key, where.offset, where.length, this.fetchTimeoutMs);
      } catch (err) {
        // A blob written before blobs had tables has none: checked as a whole blob only. (A package's own
        // table, which its central directory records, must be there.)
        if (where.crc32 === undefined && isVhfsError(err, 'NOT_FOUND')) {
          this.warn(`${store.url}/${source.key}: no chunk table (${where.key}); its blocks are checked only when the whole blob is read`);
          return undefined;
        }
        throw err;
      }
      const label = `${store.url}/${where.key}`;
      const table = where.crc32 !== undefined ? ChunkTable.parseRecorded(buf, { ...where, crc32: where.crc32 }, label) : ChunkTable.parse(buf, label);
      if (table.covered !== where.covered || table.covered > source.size) {
        throw new VhfsError('BAD_PACKAGE', `${label}: its chunk table covers ${table.covered} bytes, expected ${where.covered} of a ${source.size}-byte object`);
      }
      return table;
    })();
    // A failed read of the table is not remembered: the next read tries again.
    st.table.catch(() => { st.table = undefined; });
    return st.table;
  }

  /** Exactly [offset, offset+length) of the source, from its store, under the deadline. */
  private async fetch(source: ObjectRef, offset: number, length: number): Promise<Buffer> {
    const store = this.storeOf(source);
    try {
      return await getRangeWithin(store, source.key, offset, length, this.fetchTimeoutMs);
    } catch (err) {
      if (isVhfsError(err, 'BAD_ARGUMENT')) {
        throw new VhfsError('INTEGRITY', `${store.url}/${source.key} is shorter than the ${source.size} bytes its index records (truncated?): ${err.message}`);
      }
      throw err;
    }
  }

  private mismatch(source: ObjectRef, start: number, end: number, against: string): VhfsError {
    return new VhfsError('INTEGRITY', `${this.storeOf(source).url}/${source.key}: bytes ${start}-${end - 1} do not match ${against} (corrupt or changed in the store); not served`);
  }

  private diskFor(source: ObjectRef): BlockDisk | undefined {
    return this.disk && (this.diskForLocal || !this.storeOf(source).url.startsWith('file:')) ? this.disk : undefined;
  }

  // ------------------------------------------------------------------------------ background filling

  /**
   * A reader walking a remote source at random (a shuffled epoch over a package) pays a round trip per
   * file. Past `FILL_AFTER_RANDOM_READS` such reads, the whole source is fetched into the disk tier in the
   * background, in runs of `runBytes`, `FILL_PARALLEL` at a time, at the lowest priority of the fetch queue
   * (a reader's miss always goes first); readers then find their files on disk. So a shuffled pass over a
   * cold package costs about one download of it, not one round trip per file.
   */
  private noteRandomRead(source: ObjectRef, st: SourceState): void {
    if (st.fill || this.closed || ++st.randomReads < FILL_AFTER_RANDOM_READS) return;
    const disk = this.diskFor(source);
    if (!disk || this.storeOf(source).url.startsWith('file:')) return;
    st.fill = this.fill(source).catch((err: unknown) =>
      this.warn(`background filling of ${source.key} stopped: ${err instanceof Error ? err.message : String(err)}`));
  }

  /** Runs go through `warm`: what is on disk or being fetched by anyone is skipped, and filling stops at the quota. */
  private async fill(source: ObjectRef): Promise<void> {
    const bs = this.blockSize;
    const lastBlock = Math.ceil(source.size / bs) - 1;
    const runs: Array<[number, number]> = [];
    for (let b = 0; b <= lastBlock; b += this.runBlocks) runs.push([b, Math.min(b + this.runBlocks - 1, lastBlock)]);
    this.warn(`filling ${this.storeOf(source).url}/${source.key} (${source.size} bytes) in the background: its readers walk it at random`);
    let stopped = false;
    await mapLimit(runs, FILL_PARALLEL, async ([first, last]) => {
      if (this.closed || stopped) return;
      const r = await this.warm(source, first, last);
      this.stats.fillBlocks += r.fetchedBlocks;
      if (r.stopped) stopped = true;
    });
  }

  // --------------------------------------------------------------------------------------- readahead

  /**
   * Track sequential access and read ahead in batches: when fewer than half a window of blocks remain
   * ahead of the reader, the window doubles and the next batch is fetched, in runs of `runBytes`.
   */
  private noteAccess(source: ObjectRef, st: SourceState, offset: number, end: number): void {
    const last = Math.floor((end - 1) / this.blockSize);
    const sequential = this.isSequential(st, offset);
    st.lastEnd = end;
    if (this.maxReadahead <= 0) return;
    if (!sequential) {
      st.window = 0;
      st.lastBlock = last;
      st.aheadUntil = last;
      return;
    }
    if (last === st.lastBlock && st.window > 0) return; // still inside the same block: nothing new to predict
    // The reader has moved on: the blocks behind it are spent, whatever in them no file took.
    for (let b = Math.max(0, st.lastBlock - 1); b < Math.floor(offset / this.blockSize); b++) this.memory.spend(blockKey(st, b));
    st.lastBlock = last;
    if (st.aheadUntil - last > st.window / 2) return;
    // Fetched-but-unread data and fetches in flight stay within half the memory budget.
    if (this.memory.pendingBytes + this.inflightBytes > this.memory.budget / 2) return;
    st.window = Math.min(Math.max(2, st.window * 2), this.maxReadahead);
    const limit = Math.min(source.size, this.readaheadLimit?.(source) ?? source.size);
    const lastBlock = Math.ceil(limit / this.blockSize) - 1;
    const from = Math.max(st.aheadUntil, last) + 1;
    const to = Math.min(last + st.window, lastBlock);
    st.aheadUntil = Math.max(st.aheadUntil, to);
    const wanted: number[] = [];
    for (let b = from; b <= to; b++) {
      const key = blockKey(st, b);
      if (!this.memory.has(key) && !this.inflight.has(key)) wanted.push(b);
    }
    if (wanted.length === 0) return;
    this.stats.readaheadBlocks += wanted.length;
    for (const p of this.fetchBlocks(source, st, wanted, Priority.Readahead)) {
      p.catch((err: unknown) => this.warn(`readahead of ${source.key} failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  }
}

function blockKey(st: SourceState, block: number): string {
  return `b${block}:${st.id}`;
}

function extentKey(st: SourceState, start: number): string {
  return `x${start}:${st.id}`;
}

/** A check's rejection as `false` when it is a mismatch (the bytes are bad); any other failure stands. */
function onlyIntegrity(err: unknown): false {
  if (isVhfsError(err, 'INTEGRITY')) return false;
  throw err;
}

/** Rounds of claiming a run from the disk tier (waiting for other processes' fetches in all but the last). */
const DISK_ROUNDS = 3;

/** Sorted block numbers as runs [first, last] of consecutive blocks, at most `max` blocks each. */
function blockRuns(blocks: readonly number[], max: number): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  for (const b of blocks) {
    const run = runs[runs.length - 1];
    if (run && b === run[1] + 1 && b - run[0] < max) run[1] = b;
    else runs.push([b, b]);
  }
  return runs;
}
