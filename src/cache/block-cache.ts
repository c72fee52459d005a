/**
 * Block cache between FUSE reads and the object store.
 *
 * Every source object (a package or a blob) is cut into fixed, aligned blocks of `blockSize` bytes (the last
 * one shorter). A read of [offset, offset+length) maps to the blocks covering it and is served from, in order:
 *  1. memory: an LRU of block buffers bounded in bytes. When every block is there, `tryReadSync` copies
 *     straight into the caller's buffer with no await, which is what keeps a FUSE read of a hot file cheap;
 *  2. an in-flight fetch of the same block: concurrent readers wait on one promise (single flight);
 *  3. the disk tier (`BlockDisk`), if configured: blocks survive the process, and later a shared host cache;
 *  4. the store: missing blocks that are contiguous are fetched with one ranged GET, under a deadline
 *     (fuse-native fails an op after 15 s, so a cold read must answer, or fail with EIO, before that).
 *
 * Readahead: per source, a read of the block right after the previously read one counts as sequential and
 * doubles a window (up to `readaheadBytes`, whatever the block size); the window's missing blocks are fetched in the background in
 * one ranged GET. A random read resets the window. Sources are immutable (content-addressed keys), so a
 * cached block never needs invalidation.
 */
import { LRUCache } from 'lru-cache';
import type { ObjectStore } from '../store/types.js';
import type { ObjectRef } from '../store/types.js';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { DEFAULTS } from '../config/options.js';

/** A persistent tier for blocks, keyed by (store url, object key, block size, block number). */
export interface BlockDisk {
  get(source: string, blockSize: number, block: number): Promise<Buffer | undefined>;
  put(source: string, blockSize: number, block: number, data: Buffer): Promise<void>;
}

export interface BlockCacheOptions {
  /** The store of sources that name none. */
  store: ObjectStore;
  /** The store of sources that name one (`ObjectRef.store`). */
  storeFor?: (url: string) => ObjectStore;
  blockSize?: number;
  memoryBytes?: number;
  disk?: BlockDisk;
  fetchTimeoutMs?: number;
  /** Largest readahead window in bytes (0: none). Independent of the block size. */
  readaheadBytes?: number;
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
  readaheadBlocks: number;
  waits: number;
}


interface SequenceState {
  lastBlock: number;
  window: number;
  /** Last block already requested ahead of the reader. */
  aheadUntil: number;
}

export class BlockCache {
  readonly blockSize: number;
  readonly stats: BlockCacheStats = { memoryHits: 0, diskHits: 0, storeFetches: 0, storeBlocks: 0, readaheadBlocks: 0, waits: 0 };
  private readonly store: ObjectStore;
  private readonly storeFor: (url: string) => ObjectStore;
  private readonly memory: LRUCache<string, Buffer>;
  private readonly inflight = new Map<string, Promise<Buffer>>();
  private readonly sequences = new Map<string, SequenceState>();
  private readonly disk?: BlockDisk;
  private readonly fetchTimeoutMs: number;
  private readonly maxReadahead: number;
  private readonly warn: (message: string) => void;
  private readonly readaheadLimit?: (source: ObjectRef) => number | undefined;

  constructor(opts: BlockCacheOptions) {
    this.store = opts.store;
    this.storeFor = opts.storeFor ?? (() => opts.store);
    this.blockSize = opts.blockSize ?? DEFAULTS.blockSize;
    if (!Number.isInteger(this.blockSize) || this.blockSize < 4096 || (this.blockSize & (this.blockSize - 1)) !== 0) {
      throw new VhfsError('BAD_ARGUMENT', `block size ${this.blockSize}: must be a power of two of at least 4096`);
    }
    this.memory = new LRUCache<string, Buffer>({
      maxSize: Math.max(opts.memoryBytes ?? DEFAULTS.memoryBytes, this.blockSize * 4),
      sizeCalculation: (b) => Math.max(b.length, 1),
    });
    this.disk = opts.disk;
    this.fetchTimeoutMs = opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs;
    this.maxReadahead = Math.floor((opts.readaheadBytes ?? DEFAULTS.readaheadBytes) / this.blockSize);
    this.warn = opts.warn ?? (() => {});
    this.readaheadLimit = opts.readaheadLimit;
  }

  /**
   * Copy `length` bytes at `offset` of `source` into `dst` if every block is in memory; returns the number
   * of bytes copied, or -1 when a block is missing (then call `read`).
   */
  tryReadSync(source: ObjectRef, offset: number, length: number, dst: Buffer): number {
    const end = Math.min(offset + length, source.size);
    if (end <= offset) return 0;
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    for (let b = first; b <= last; b++) if (!this.memory.has(blockKey(source.key, b))) return -1;
    let copied = 0;
    for (let b = first; b <= last; b++) {
      const block = this.memory.get(blockKey(source.key, b))!;
      const from = b === first ? offset - b * bs : 0;
      const to = b === last ? end - b * bs : block.length;
      copied += block.copy(dst, copied, from, to);
    }
    this.stats.memoryHits++;
    this.noteAccess(source, first, last);
    return copied;
  }

  /** Read `length` bytes at `offset` (clipped to the object's end) into `dst`; resolves with the byte count. */
  async read(source: ObjectRef, offset: number, length: number, dst: Buffer): Promise<number> {
    const sync = this.tryReadSync(source, offset, length, dst);
    if (sync >= 0) return sync;
    const end = Math.min(offset + length, source.size);
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    const blocks = await this.getBlocks(source, first, last);
    let copied = 0;
    for (let b = first; b <= last; b++) {
      const block = blocks[b - first];
      const from = b === first ? offset - b * bs : 0;
      const to = b === last ? end - b * bs : block.length;
      copied += block.copy(dst, copied, from, to);
    }
    this.noteAccess(source, first, last);
    return copied;
  }

  /** Drop every cached block of memory (tests, and `vhfs cache drop`). Disk blocks stay. */
  clearMemory(): void {
    this.memory.clear();
    this.sequences.clear();
  }

  get memoryBytes(): number {
    return this.memory.calculatedSize;
  }

  private async getBlocks(source: ObjectRef, first: number, last: number): Promise<Buffer[]> {
    const result: Array<Buffer | Promise<Buffer> | undefined> = [];
    const missing: number[] = [];
    for (let b = first; b <= last; b++) {
      const key = blockKey(source.key, b);
      const hit = this.memory.get(key) ?? this.inflight.get(key);
      if (hit instanceof Promise) this.stats.waits++;
      result.push(hit);
      if (hit === undefined) missing.push(b);
    }
    if (missing.length > 0) {
      const fetched = this.fetchBlocks(source, missing);
      missing.forEach((b, k) => { result[b - first] = fetched[k]; });
    }
    return Promise.all(result as Array<Buffer | Promise<Buffer>>);
  }

  /** Start fetching `blocks` (sorted, none cached or in flight); one promise per block, registered in flight. */
  private fetchBlocks(source: ObjectRef, blocks: number[]): Array<Promise<Buffer>> {
    const promises: Array<Promise<Buffer>> = [];
    // Group into runs of consecutive blocks: one ranged GET per run.
    let runStart = 0;
    for (let k = 1; k <= blocks.length; k++) {
      if (k < blocks.length && blocks[k] === blocks[k - 1] + 1) continue;
      promises.push(...this.fetchRun(source, blocks[runStart], blocks[k - 1]));
      runStart = k;
    }
    return promises;
  }

  private fetchRun(source: ObjectRef, first: number, last: number): Array<Promise<Buffer>> {
    const run = this.loadRun(source, first, last);
    const promises: Array<Promise<Buffer>> = [];
    for (let b = first; b <= last; b++) {
      const key = blockKey(source.key, b);
      const p = run.then((blocks) => blocks[b - first]);
      this.inflight.set(key, p);
      p.then(
        (buf) => { this.memory.set(key, buf); this.inflight.delete(key); },
        () => { this.inflight.delete(key); },
      );
      promises.push(p);
    }
    return promises;
  }

  private async loadRun(source: ObjectRef, first: number, last: number): Promise<Buffer[]> {
    const bs = this.blockSize;
    if (this.disk) {
      const fromDisk = await Promise.all(
        Array.from({ length: last - first + 1 }, (_, k) => this.disk!.get(this.diskName(source), bs, first + k).catch(() => undefined)),
      );
      if (fromDisk.every((b) => b !== undefined)) {
        this.stats.diskHits += fromDisk.length;
        return fromDisk as Buffer[];
      }
    }
    const start = first * bs;
    const end = Math.min((last + 1) * bs, source.size);
    this.stats.storeFetches++;
    this.stats.storeBlocks += last - first + 1;
    const store = source.store === undefined ? this.store : this.storeFor(source.store);
    let data: Buffer;
    try {
      data = await store.getRange(source.key, start, end - start, AbortSignal.timeout(this.fetchTimeoutMs));
    } catch (err) {
      if (isVhfsError(err, 'BAD_ARGUMENT')) {
        throw new VhfsError('INTEGRITY', `${store.url}/${source.key} is shorter than the ${source.size} bytes its index records (truncated?): ${err.message}`);
      }
      if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
        throw new VhfsError('TIMEOUT', `${store.url}/${source.key}: no answer for bytes ${start}-${end - 1} within ${this.fetchTimeoutMs} ms`);
      }
      throw err;
    }
    const blocks: Buffer[] = [];
    for (let b = first; b <= last; b++) {
      // Copy out of the run buffer so that evicting one block frees its memory.
      blocks.push(Buffer.from(data.subarray((b - first) * bs, Math.min((b - first + 1) * bs, data.length))));
    }
    if (this.disk) {
      const disk = this.disk;
      const name = this.diskName(source);
      blocks.forEach((buf, k) => {
        disk.put(name, bs, first + k, buf).catch((err: unknown) => this.warn(`block cache: could not write block ${first + k} of ${source.key}: ${String(err)}`));
      });
    }
    return blocks;
  }

  private diskName(source: ObjectRef): string {
    return `${source.store ?? this.store.url}/${source.key}`;
  }

  /**
   * Track sequential access and read ahead in batches: when fewer than half a window of blocks remain
   * ahead of the reader, the window doubles and the next batch is fetched as one ranged GET.
   */
  private noteAccess(source: ObjectRef, first: number, last: number): void {
    if (this.maxReadahead <= 0) return;
    const seq = this.sequences.get(source.key);
    const sequential = seq !== undefined && (first === seq.lastBlock || first === seq.lastBlock + 1);
    if (!sequential) {
      this.sequences.set(source.key, { lastBlock: last, window: 0, aheadUntil: last });
      if (this.sequences.size > 4096) this.sequences.delete(this.sequences.keys().next().value!);
      return;
    }
    if (last === seq.lastBlock) return; // still inside the same block: nothing new to predict
    seq.lastBlock = last;
    if (seq.aheadUntil - last > seq.window / 2) return;
    seq.window = Math.min(Math.max(2, seq.window * 2), this.maxReadahead);
    const end = Math.min(source.size, this.readaheadLimit?.(source) ?? source.size);
    const lastBlock = Math.ceil(end / this.blockSize) - 1;
    const from = Math.max(seq.aheadUntil, last) + 1;
    const to = Math.min(last + seq.window, lastBlock);
    seq.aheadUntil = Math.max(seq.aheadUntil, to);
    const wanted: number[] = [];
    for (let b = from; b <= to; b++) {
      const key = blockKey(source.key, b);
      if (!this.memory.has(key) && !this.inflight.has(key)) wanted.push(b);
    }
    if (wanted.length === 0) return;
    this.stats.readaheadBlocks += wanted.length;
    for (const p of this.fetchBlocks(source, wanted)) {
      p.catch((err: unknown) => this.warn(`readahead of ${source.key} failed: ${err instanceof Error ? err.message : String(err)}`));
    }
  }
}

function blockKey(sourceKey: string, block: number): string {
  return `${block}:${sourceKey}`;
}
