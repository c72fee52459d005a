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

/** A persistent tier of whole, verified blocks, keyed by (source name, block size, block number). */
export interface BlockDisk {
  get(source: string, blockSize: number, block: number): Promise<Buffer | undefined>;
  put(source: string, blockSize: number, block: number, data: Buffer): Promise<void>;
  /** Whether the block is there, without reading it (background filling skips what is). */
  has?(source: string, blockSize: number, block: number): Promise<boolean>;
  /** `length` bytes at `offset` inside a block that is there, or undefined (a small file's few KiB of a block). */
  getRange?(source: string, blockSize: number, block: number, offset: number, length: number): Promise<Buffer | undefined>;
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
      const data = (await this.extentFromDisk(source, st, file)) ?? (this.stats.extentFetches++, await this.fetch(source, file.start, file.size));
      await this.checkExtent(source, st, file, data);
      return data;
    });
    return this.track(key, file.size, job, (data) => this.memory.set(key, data));
  }

  /**
   * A member from the disk tier when all of it is there, else undefined. Only the member's own bytes are
   * read from each block (a 10 KiB file does not cost a 256 KiB read); the caller checks them as an extent.
   */
  private async extentFromDisk(source: ObjectRef, st: SourceState, file: FileExtent): Promise<Buffer | undefined> {
    const disk = this.diskFor(source);
    if (!disk) return undefined;
    const bs = this.blockSize;
    const first = Math.floor(file.start / bs);
    const last = Math.floor((file.start + file.size - 1) / bs);
    const parts = await Promise.all(Array.from({ length: last - first + 1 }, (_, k) => {
      const b = first + k;
      const from = Math.max(file.start, b * bs) - b * bs;
      const to = Math.min(file.start + file.size, (b + 1) * bs) - b * bs;
      const read = disk.getRange
        ? disk.getRange(st.id, bs, b, from, to - from)
        : disk.get(st.id, bs, b).then((block) => block?.subarray(from, to));
      return read.catch(() => undefined);
    }));
    if (!parts.every((p) => p !== undefined && p.length > 0)) return undefined;
    this.stats.diskHits += parts.length;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts as Buffer[]);
    return data.length === file.size ? data : undefined;
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
    if (disk) {
      const fromDisk = await Promise.all(
        Array.from({ length: last - first + 1 }, (_, k) => disk.get(st.id, bs, first + k).catch(() => undefined)),
      );
      if (fromDisk.every((b) => b !== undefined)) {
        // The disk tier is trusted no more than the store: blocks are checked again as they come back.
        await this.checkBlocks(source, st, first, fromDisk as Buffer[]);
        this.stats.diskHits += fromDisk.length;
        return fromDisk as Buffer[];
      }
    }
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
    if (disk) {
      blocks.forEach((buf, k) => {
        disk.put(st.id, bs, first + k, buf).catch((err: unknown) => this.warn(`block cache: could not write block ${first + k} of ${source.key} to disk: ${String(err)}`));
      });
    }
    return blocks;
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
      const buf = await getRangeWithin(store, where.key, where.offset, where.length, this.fetchTimeoutMs);
      const table = ChunkTable.parseRecorded(buf, where, `${store.url}/${where.key}`);
      if (table.covered > source.size) throw new VhfsError('BAD_PACKAGE', `${store.url}/${where.key}: its chunk table covers ${table.covered} bytes of a ${source.size}-byte object`);
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
    st.fill = this.fill(source, st, disk).catch((err: unknown) =>
      this.warn(`background filling of ${source.key} stopped: ${err instanceof Error ? err.message : String(err)}`));
  }

  private async fill(source: ObjectRef, st: SourceState, disk: BlockDisk): Promise<void> {
    const bs = this.blockSize;
    const lastBlock = Math.ceil(source.size / bs) - 1;
    const runs: Array<[number, number]> = [];
    for (let b = 0; b <= lastBlock; b += this.runBlocks) runs.push([b, Math.min(b + this.runBlocks - 1, lastBlock)]);
    this.warn(`filling ${this.storeOf(source).url}/${source.key} (${source.size} bytes) in the background: its readers walk it at random`);
    await mapLimit(runs, FILL_PARALLEL, async ([first, last]) => {
      if (this.closed) return;
      const wanted: number[] = [];
      for (let b = first; b <= last; b++) {
        const key = blockKey(st, b);
        if (this.memory.has(key) || this.inflight.has(key)) continue;
        if (disk.has ? await disk.has(st.id, bs, b).catch(() => false) : false) continue;
        wanted.push(b);
      }
      if (wanted.length === 0) return;
      this.stats.fillBlocks += wanted.length;
      await Promise.all(this.fetchBlocks(source, st, wanted, Priority.Background, false));
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
