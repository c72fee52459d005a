/**
 * The host cache: the disk tier of the block cache (`BlockDisk`), one directory shared by every vhfs process
 * on a host (mount daemons, `vhfs cat`, `vhfs prefetch`), bounded by a quota, safe against crashes, and
 * fetching each block of a source from the store once per host however many processes want it at once.
 *
 * Layout of `<cacheDir>` (docs/DESIGN.md, "Host cache"):
 *   host-cache.db (+ -wal, -shm)  the record (src/cache/host-cache-db.ts): objects, blocks, leases, holds,
 *                                 counters; SQLite in WAL mode, one short immediate transaction per change
 *   objects/<id>                  one sparse file per cached source object (and block size): block `b` lies
 *                                 at byte `b × block_size`, i.e. every byte at its own offset in the object,
 *                                 so the file reads like the object with holes where blocks are missing
 *   indexes/<identity>.idx        persisted input indexes (src/index/persist.ts: content-keyed, temp + rename)
 * Objects are keyed by (source, size, block size), the source being its store URL and key: catalog objects
 * are content-addressed blobs; an object input replaced by one of another size gets a new entry.
 *
 * A block is **present** only once it has been fetched, checked by the block cache (chunk table, CRC), written
 * at its offset, and its row updated with its length and CRC-32 — in that order, so a crash at any point
 * leaves at worst a block that is not present (its bytes are fetched again). Every read of a present block
 * checks it against that CRC-32 again (a damaged disk or a torn write is dropped and fetched again, never
 * served), and the block cache also re-checks it against the source's chunk table when there is one.
 *
 * Single flight across processes: `claim` takes, in one transaction, a **lease** on every missing block of a
 * run (`blocks.state = 1`, owner = pid namespace + pid + start time, expiry = now + `leaseMs`). A process
 * that finds a block leased by a live owner waits for it (`settled`: woken when the record's WAL file
 * changes, polling 5 → 40 ms where it cannot be watched, or an in-process promise) and claims it again; a lease whose owner is dead (SIGKILL: its pid is gone, a zombie,
 * or reused by a process with another start time) or expired is taken over at once. A waiter waits at most
 * `waitMs`, then fetches the block itself, so a stuck peer never stalls a read past its deadline.
 *
 * Quota and eviction: space is **reserved** (`objects.bytes`, the `used` counter, in 4 KiB units) before a
 * block is written, and only while `used` + the record's and the indexes' own files stay within the quota;
 * otherwise least recently used objects are evicted first. Eviction takes **whole objects**: a victim is
 * marked (`evictor`), its file is unlinked, then its rows go and its bytes are released. Why whole objects
 * rather than holes punched per block:
 *  - a hole is never punched under a reader — the JavaScript read path or a future native one: a file is
 *    only ever unlinked, and an open descriptor keeps reading the old inode (POSIX), so even a reader that
 *    raced the eviction reads whole, checked blocks;
 *  - Node has no fallocate(PUNCH_HOLE), and freeing space by rewriting files would cost what it saves;
 *  - a sequential pass over an object larger than the quota does not evict its own beginning to cache its
 *    end (block LRU would, and keep nothing useful): its blocks are kept until the quota is full, the rest
 *    is served from the store.
 * Objects being read through `claim` (**holds**: a row per object and reading process while it reads the
 * file) or filled (live leases) are never victims; a small read (`getRange`) takes no hold, as unlinking
 * cannot harm it; holds and leases of dead processes are reaped.
 * The accounting is exact, so the directory stays within the quota: at most one block per process beyond it
 * while the record's own files grow between two measurements. No block is written into the last 1% of the
 * filesystem (1 MiB to 256 MiB): the record must stay writable, and jobs' outputs may share the disk. A full
 * disk (that floor, ENOSPC, SQLITE_FULL) is logged once a minute and the read is served from the store, never
 * failed; so is any other trouble with the cache: the disk tier can only save fetches, never cost a read.
 *
 * A native read path (C on libfuse's threads) can serve hits without JavaScript: look the object up by
 * (source, size, block_size) with `evictor IS NULL`, its block row with `state = 2`, insert a hold row
 * (object, owner, now + 60 s) — or rely on unlink semantics and skip it —, `pread(objects/<id>, length,
 * block × block_size)` and compare the CRC-32; anything else (no row, a short read, a mismatch) is a miss
 * for the JavaScript path.
 */
import { constants as fsConstants, promises as fs, existsSync, mkdirSync, readdirSync, rmSync, statSync, statfsSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type Database from 'better-sqlite3';
import type { ObjectRef } from '../store/types.js';
import type { BlockClaim, BlockClaimRequest, BlockDisk, DiskObject, FillResult } from './block-cache.js';
import { DEFAULTS, type CacheQuota } from '../config/options.js';
import { VhfsError } from '../util/errors.js';
import { formatBytes } from '../util/progress.js';
import { ownerLiveness, ownerToken } from './host-cache-owner.js';
import {
  BLOCK_LEASED, BLOCK_PRESENT, COUNTER_NAMES, DB_FILE, openRecord, statements,
  type BlockRow, type CounterName, type ObjectRow, type Statements,
} from './host-cache-db.js';

export interface HostCacheOptions {
  /** The cache directory (created if missing). */
  dir: string;
  /** Default: `DEFAULTS.cacheSize` (a share of the directory's filesystem). */
  quota?: CacheQuota;
  /** How long a lease is trusted without its owner finishing (default 30 s; a dead owner's lease ends at once). */
  leaseMs?: number;
  /** The longest a read waits for another process's fetch before fetching itself (default 5 s). */
  waitMs?: number;
  /** What an object is cached for (an input's URI), recorded when it is first cached; per-dataset usage. */
  labelOf?: (source: ObjectRef) => string | undefined;
  /** One line per problem (rate-limited here: once a minute per kind). */
  warn?: (line: string) => void;
}

export type HostCacheCounters = Record<CounterName, number>;

export interface HostCacheUsage {
  dir: string;
  quotaBytes: number;
  /** Space reserved for blocks (what eviction frees). */
  blockBytes: number;
  /** The record's files and the persisted indexes (counted toward the quota too). */
  overheadBytes: number;
  objects: number;
  presentBlocks: number;
  presentBytes: number;
  /** Blocks being fetched and objects being read right now (by any process). */
  leased: number;
  holds: number;
  /** Per input URI the objects were first cached for (`null`: unknown, e.g. cached by an older vhfs). */
  datasets: Array<{ label: string | null; objects: number; bytes: number; lastUse: string }>;
  filesystem: { bytes: number; freeBytes: number };
}

export interface VerifyReport {
  objects: number;
  blocks: number;
  bytes: number;
  /** Blocks whose bytes no longer match their CRC-32 (or whose file is gone): dropped. */
  bad: Array<{ source: string; block: number; why: string }>;
  /** Files under objects/ that no record names: removed. */
  orphans: number;
}

/** Space is reserved in filesystem blocks (what a sparse file really allocates). */
const ALLOC_UNIT = 4096;
/** A hold row's life: far longer than a read of a local file, and the end of a dead holder in another pid namespace. */
const HOLD_MS = 60_000;
const TICK_MS = 1000;
const REAP_EVERY_MS = 5000;
const WARN_EVERY_MS = 60_000;
/** After ENOSPC, no new block is written for this long (each attempt would fail the same way). */
const NO_SPACE_BACKOFF_MS = 5000;
const REOPEN_AFTER_MS = 30_000;
const INDEX_SCAN_MS = 2000;
const EVICT_ATTEMPTS = 4;
/**
 * Free space a block is never written into: 1% of the filesystem, at least 1 MiB, at most 256 MiB. The
 * record needs room to say what happened (its WAL grows before each checkpoint), and so do the jobs whose
 * outputs share the disk: a cache that filled it to the last byte would fail them both.
 */
const freeFloor = (fsBytes: number) => Math.min(256 * 1024 * 1024, Math.max(1024 * 1024, Math.floor(fsBytes / 100)));

interface OpenRecord {
  db: Database.Database;
  q: Statements;
}

const zeroCounters = (): HostCacheCounters => Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as HostCacheCounters;
const roundUp = (n: number) => Math.ceil(n / ALLOC_UNIT) * ALLOC_UNIT;
const allocatedBytes = (file: string): number => {
  const st = statSync(file, { throwIfNoEntry: false });
  return st ? st.blocks * 512 : 0;
};
const errorCode = (err: unknown): string | undefined => (err as { code?: unknown } | null)?.code as string | undefined;
const isNoSpace = (err: unknown) => errorCode(err) === 'ENOSPC' || errorCode(err) === 'SQLITE_FULL' || errorCode(err) === 'EDQUOT';

export class HostCache implements BlockDisk {
  readonly dir: string;
  /** What this process did through the cache (the record's counters add up every process's). */
  readonly stats: HostCacheCounters = zeroCounters();
  private readonly pending: HostCacheCounters = zeroCounters();
  private readonly owner = ownerToken();
  private readonly leaseMs: number;
  private readonly waitMs: number;
  private readonly quotaSpec: CacheQuota;
  private readonly labelOf?: (source: ObjectRef) => string | undefined;
  private readonly warnLine: (line: string) => void;
  private record?: OpenRecord;
  private openFailedAt = -Infinity;
  private openError?: string;
  private closed = false;
  private timer?: NodeJS.Timeout;
  private quota = 0;
  private floor = 0;
  /** Bytes reserved by this process and not written yet. */
  private unwritten = 0;
  private indexes = { bytes: 0, at: -Infinity };
  private lastReap = -Infinity;
  private noSpaceUntil = 0;
  private readonly warned = new Map<string, number>();
  /** Objects this process is reading from disk right now, and how many reads of each. */
  private readonly holds = new Map<number, number>();
  /** Blocks this process leased: settled when filled or given back (in-process waiters need no polling). */
  private readonly local = new Map<string, { promise: Promise<void>; settle: () => void }>();
  /** Waiters for another process's fetch, woken when the record changes. */
  private readonly wakeups = new Set<() => void>();
  private walWatch?: FSWatcher;
  /** When this process last noted each object's use (small reads note it at most once a second). */
  private readonly touched = new Map<number, number>();
  /** Fills under way (awaited by `idle` and `close`). */
  private readonly filling = new Set<Promise<FillResult>>();

  constructor(opts: HostCacheOptions) {
    this.dir = path.resolve(opts.dir);
    this.quotaSpec = opts.quota ?? DEFAULTS.cacheSize;
    this.leaseMs = opts.leaseMs ?? 30_000;
    this.waitMs = opts.waitMs ?? 5000;
    this.labelOf = opts.labelOf;
    this.warnLine = opts.warn ?? (() => {});
  }

  /** The quota in bytes (a share of the filesystem is worked out when the cache is first used). */
  get quotaBytes(): number {
    this.opened();
    return this.quota;
  }

  // ------------------------------------------------------------------------------------------ claims

  async claim(req: BlockClaimRequest): Promise<BlockClaim> {
    const rec = this.opened();
    if (!rec || req.blocks.length === 0) return this.uncached(req.blocks);
    const leasing = req.lease !== false && Date.now() >= this.noSpaceUntil;
    let c: Classified;
    try {
      c = rec.db.transaction(() => this.classify(rec.q, req, leasing)).immediate();
    } catch (err) {
      this.problem('claiming blocks', err);
      return this.uncached(req.blocks);
    }
    if (!c.object) return this.uncached(req.blocks);
    const object = c.object;
    for (const b of c.leased) this.leaseLocally(object, b);
    let data = new Map<number, Buffer>();
    if (c.present.length > 0 && req.read !== false) {
      const read = await this.readPresent(object, req.blockSize, c.present);
      this.unhold(object);
      data = read.good;
      for (const buf of data.values()) {
        this.count('diskBlocks');
        this.count('diskBytes', buf.length);
      }
      if (read.bad.length > 0) this.dropBad(rec, object, req, read.bad.map((b) => b.row), leasing, c);
    }
    const leased = c.leased;
    return {
      data,
      present: c.present.map((r) => r.block).filter((b) => req.read === false || data.has(b)),
      fetch: c.fetch,
      others: c.others,
      fill: (block, buf) => {
        if (!leased.delete(block)) {
          this.countStore(buf.length);
          return Promise.resolve('not-leased');
        }
        const filled = this.fill(object, req, block, buf);
        this.filling.add(filled);
        void filled.then(() => this.filling.delete(filled));
        return filled;
      },
      abandon: () => {
        for (const b of leased) this.release(object, b);
        leased.clear();
      },
      settled: () => this.settle(object, c.others),
    };
  }

  /** A claim the cache cannot help with: every block is to be fetched, nothing is kept. */
  private uncached(blocks: readonly number[]): BlockClaim {
    return {
      data: new Map(), present: [], fetch: [...blocks], others: [],
      fill: (_b, buf) => { this.countStore(buf.length); return Promise.resolve('not-leased' as FillResult); },
      abandon: () => {}, settled: () => Promise.resolve(),
    };
  }

  /** In one transaction: which blocks are present, which this process now leases, which others are fetching. */
  private classify(q: Statements, req: BlockClaimRequest, leasing: boolean): Classified {
    const now = Date.now();
    const out: Classified = { present: [], fetch: [], others: [], leased: new Set() };
    let row = q.object.get(req.id, req.source.size, req.blockSize);
    if (row?.evictor) {
      out.fetch.push(...req.blocks);
      return out;
    }
    if (!row) {
      if (!leasing) {
        out.fetch.push(...req.blocks);
        return out;
      }
      const id = q.insertObject.get(req.id, req.source.size, req.blockSize, now, this.labelOf?.(req.source) ?? null)!.id;
      row = { id, source: req.id, size: req.source.size, block_size: req.blockSize, bytes: 0, last_use: now, label: null, evictor: null };
    } else q.touchObject.run(now, row.id);
    out.object = row.id;
    const rows = new Map(q.blocks.all(row.id, req.blocks[0], req.blocks[req.blocks.length - 1]).map((r) => [r.block, r]));
    const wait = req.lease !== false;
    for (const b of req.blocks) {
      const r = rows.get(b);
      if (r?.state === BLOCK_PRESENT) {
        out.present.push(r);
        continue;
      }
      if (r?.state === BLOCK_LEASED && r.owner !== null && this.leaseLive(row.id, b, r, now)) {
        (wait ? out.others : out.fetch).push(b);
        continue;
      }
      if (!leasing) {
        out.fetch.push(b);
        continue;
      }
      if (r?.state === BLOCK_LEASED) this.count('leasesTakenOver');
      if (r) q.lease.run(this.owner, now + this.leaseMs, row.id, b);
      else q.newLease.run(row.id, b, this.owner, now + this.leaseMs);
      out.leased.add(b);
      out.fetch.push(b);
    }
    if (out.others.length > 0) this.count('waits', out.others.length);
    if (out.present.length > 0 && req.read !== false) this.hold(q, row.id, now);
    return out;
  }

  /** Whether a lease still stands: unexpired, and its owner alive (or in another pid namespace). */
  private leaseLive(object: number, block: number, r: BlockRow, now: number): boolean {
    if ((r.expires ?? 0) <= now) return false;
    // Our own lease without a fetch in flight is left from a failure: nobody will fill it.
    if (r.owner === this.owner) return this.local.has(`${object}:${block}`);
    return ownerLiveness(r.owner!) !== 'dead';
  }

  /**
   * Read present blocks of an object back (one pread per run of consecutive blocks) and check each against
   * its CRC-32: the good ones, and the bad ones with why (a missing file, a short read, a mismatch).
   */
  private async readPresent(object: number, blockSize: number, present: readonly BlockRow[]): Promise<{ good: Map<number, Buffer>; bad: Array<{ row: BlockRow; why: string }> }> {
    const good = new Map<number, Buffer>();
    const bad: Array<{ row: BlockRow; why: string }> = [];
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(this.objectFile(object), 'r');
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') this.problem('reading a cached object', err);
      return { good, bad: present.map((row) => ({ row, why: errorCode(err) === 'ENOENT' ? 'its file is missing' : String(err) })) };
    }
    try {
      for (let i = 0; i < present.length;) {
        let j = i + 1;
        while (j < present.length && present[j].block === present[j - 1].block + 1 && present[j - 1].length === blockSize) j++;
        const run = present.slice(i, j);
        const bytes = run.reduce((n, r) => n + (r.length ?? 0), 0);
        const buf = Buffer.allocUnsafe(bytes);
        let got = 0;
        while (got < bytes) {
          const { bytesRead } = await handle.read(buf, got, bytes - got, run[0].block * blockSize + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        let at = 0;
        for (const row of run) {
          const block = buf.subarray(at, at + row.length!);
          at += row.length!;
          if (at > got) bad.push({ row, why: 'its file is shorter than the block' });
          else if (crc32(block) !== row.crc) bad.push({ row, why: 'its bytes do not match the CRC-32 recorded when it was written' });
          else good.set(row.block, block);
        }
        i = j;
      }
    } catch (err) {
      this.problem('reading a cached object', err);
      for (const row of present) if (!good.has(row.block) && !bad.some((b) => b.row === row)) bad.push({ row, why: String(err) });
    } finally {
      await handle.close().catch(() => {});
    }
    return { good, bad };
  }

  /** Blocks that failed their CRC-32 on the way back: no longer present, and (when leasing) leased to be fetched again. */
  private dropBad(rec: OpenRecord, object: number, req: BlockClaimRequest, bad: BlockRow[], leasing: boolean, c: Classified): void {
    this.count('corruptBlocks', bad.length);
    this.warn('corrupt', `host cache ${this.dir}: block ${bad[0].block} of ${req.id} (and ${bad.length - 1} more) did not match the CRC-32 recorded when it was written; dropped, fetched again`);
    try {
      rec.db.transaction(() => {
        const now = Date.now();
        for (const r of bad) {
          rec.q.unpresent.run(object, r.block);
          if (leasing && rec.q.block.get(object, r.block)?.state !== BLOCK_LEASED) {
            rec.q.lease.run(this.owner, now + this.leaseMs, object, r.block);
            c.leased.add(r.block);
          }
        }
      }).immediate();
    } catch (err) {
      this.problem('dropping a damaged block', err);
    }
    for (const r of bad) if (c.leased.has(r.block)) this.leaseLocally(object, r.block);
    c.fetch.push(...bad.map((r) => r.block));
    c.fetch.sort((a, b) => a - b);
  }

  /** Blocks whose bytes from disk failed the caller's own check (a chunk table, a member CRC-32): no longer present. */
  drop(object: DiskObject, blocks: readonly number[]): void {
    const rec = this.record;
    if (!rec || blocks.length === 0) return;
    this.count('corruptBlocks', blocks.length);
    this.warn('rejected', `host cache ${this.dir}: block ${blocks[0]} of ${object.id} came back from disk with bytes its source's own checksums reject; dropped, fetched again`);
    try {
      rec.db.transaction(() => {
        const row = rec.q.object.get(object.id, object.source.size, object.blockSize);
        if (row) for (const b of blocks) rec.q.unpresent.run(row.id, b);
      }).immediate();
    } catch (err) {
      this.problem('dropping a damaged block', err);
    }
  }

  /**
   * `length` bytes at `offset` of a present block: a small file read without the rest of its block. Unless the
   * caller checks the bytes itself, the whole block is read and checked against its CRC-32 first. No hold is
   * taken (a write per small read would cost more than the read): eviction only ever unlinks files, so a read
   * racing it either gets the old file's bytes or no file, which is a miss.
   */
  async getRange(object: DiskObject, block: number, offset: number, length: number, callerChecks: boolean): Promise<Buffer | undefined> {
    const rec = this.opened();
    if (!rec) return undefined;
    let found: { id: number; row: BlockRow } | undefined;
    try {
      const o = rec.q.object.get(object.id, object.source.size, object.blockSize);
      const row = o && o.evictor === null ? rec.q.block.get(o.id, block) : undefined;
      if (!o || row?.state !== BLOCK_PRESENT || offset + length > (row.length ?? 0)) return undefined;
      found = { id: o.id, row };
      this.touch(rec, o.id);
    } catch (err) {
      this.problem('looking a block up', err);
      return undefined;
    }
    let data: Buffer | undefined;
    if (callerChecks) {
      data = await fs.open(this.objectFile(found.id), 'r').then(async (handle) => {
        try {
          const buf = Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buf, 0, length, block * object.blockSize + offset);
          return bytesRead === length ? buf : undefined;
        } finally {
          await handle.close();
        }
      }, () => undefined);
    } else {
      const { good, bad } = await this.readPresent(found.id, object.blockSize, [found.row]);
      if (bad.length > 0) this.drop(object, [block]);
      data = good.get(block)?.subarray(offset, offset + length);
    }
    if (data) {
      this.count('diskBlocks');
      this.count('diskBytes', data.length);
    }
    return data;
  }

  /** Note that an object was used (for LRU), at most once a second per object: small reads come in thousands. */
  private touch(rec: OpenRecord, object: number): void {
    const now = Date.now();
    if (now - (this.touched.get(object) ?? 0) < 1000) return;
    if (this.touched.size > 10_000) this.touched.clear();
    this.touched.set(object, now);
    rec.db.transaction(() => rec.q.touchObject.run(now, object)).immediate();
  }

  /** Resolves once none of `blocks` is leased by a live process any more (or after `waitMs`). */
  private async settle(object: number, blocks: readonly number[]): Promise<void> {
    if (blocks.length === 0) return;
    const deadline = Date.now() + this.waitMs;
    const localWaits: Array<Promise<void>> = [];
    let foreign: number[] = [];
    for (const b of blocks) {
      const mine = this.local.get(`${object}:${b}`);
      if (mine) localWaits.push(mine.promise);
      else foreign.push(b);
    }
    let delay = 5;
    while (foreign.length > 0 && Date.now() < deadline) {
      await this.recordChange(Math.min(delay, Math.max(1, deadline - Date.now())));
      delay = Math.min(delay * 2, 40);
      const rec = this.record;
      if (!rec) break;
      let rows: Map<number, BlockRow>;
      try {
        rows = new Map(rec.q.blocks.all(object, foreign[0], foreign[foreign.length - 1]).map((r) => [r.block, r]));
      } catch {
        break;
      }
      const now = Date.now();
      foreign = foreign.filter((b) => {
        const r = rows.get(b);
        if (!r || r.state !== BLOCK_LEASED || !this.leaseLive(object, b, r, now)) return false;
        const mine = r.owner === this.owner ? this.local.get(`${object}:${b}`) : undefined;
        if (mine) localWaits.push(mine.promise);
        return !mine;
      });
    }
    if (localWaits.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(localWaits), new Promise<void>((r) => { timer = setTimeout(r, Math.max(0, deadline - Date.now())); })]);
      clearTimeout(timer);
    }
  }

  // ------------------------------------------------------------------------------------------- fills

  /** Keep a fetched, checked block: reserve room (evicting if needed), write it, then mark it present. */
  private async fill(object: number, req: BlockClaimRequest, block: number, data: Buffer): Promise<FillResult> {
    this.countStore(data.length);
    let result: FillResult = 'error';
    try {
      const rec = this.record;
      if (!rec) return result;
      const room = await this.reserve(rec, object, block, data.length, req.evictBefore ?? Infinity);
      if (room !== 'ok') {
        if (room === 'full') this.count('notKept');
        return (result = room);
      }
      try {
        await this.writeBlock(object, req.blockSize * block, data);
      } catch (err) {
        if (isNoSpace(err)) {
          this.noSpaceUntil = Date.now() + NO_SPACE_BACKOFF_MS;
          result = 'no-space';
        }
        this.problem('writing a block', err);
        return result;
      } finally {
        this.unwritten -= roundUp(data.length);
      }
      const crc = crc32(data);
      const { changed, gone } = rec.db.transaction(() => ({
        changed: rec.q.present.run(data.length, crc, object, block, this.owner).changes,
        gone: rec.q.objectById.get(object) === undefined,
      })).immediate();
      // The lease ran out during a slow write and the object was evicted meanwhile: the write made a file
      // nobody names; remove it (its id is never used again).
      if (gone) await fs.rm(this.objectFile(object), { force: true });
      return (result = changed === 1 ? 'kept' : 'lost');
    } catch (err) {
      if (isNoSpace(err)) this.noSpaceUntil = Date.now() + NO_SPACE_BACKOFF_MS;
      this.problem('keeping a block', err);
      return result;
    } finally {
      if (result !== 'kept') this.release(object, block);
      else this.settleLocally(object, block);
    }
  }

  /**
   * Reserve room for a block under the quota, evicting least recently used objects (not read nor filled by
   * anyone, last used before `evictBefore`) when there is none: 'ok', 'full' (nothing may be evicted), or
   * 'lost' (the lease was taken over meanwhile).
   */
  private async reserve(rec: OpenRecord, object: number, block: number, length: number, evictBefore: number): Promise<'ok' | 'full' | 'lost' | 'no-space'> {
    const alloc = roundUp(length);
    const st = statfsSync(this.dir);
    // Blocks reserved here but not written yet will take their room too.
    if (st.bavail * st.bsize - this.unwritten - alloc < this.floor) {
      this.noSpaceUntil = Date.now() + NO_SPACE_BACKOFF_MS;
      this.count('noSpace');
      this.warn('no-space', `host cache ${this.dir}: no space left to keep blocks on its disk (ENOSPC: less than ${formatBytes(this.floor)} free); reads are served from the store without keeping their blocks (said at most once a minute)`);
      return 'no-space';
    }
    for (let attempt = 0; attempt < EVICT_ATTEMPTS; attempt++) {
      const step = rec.db.transaction((): { kind: 'ok' | 'full' | 'lost' } | { kind: 'evict'; victims: ObjectRow[] } => {
        const row = rec.q.block.get(object, block);
        if (!row || row.state !== BLOCK_LEASED || row.owner !== this.owner) return { kind: 'lost' };
        if (row.alloc >= alloc) return { kind: 'ok' };
        const over = this.usedBytes(rec.q) + this.overheadBytes() + alloc - row.alloc - this.quota;
        if (over <= 0) {
          rec.q.reserveBlock.run(alloc, object, block);
          rec.q.addBytes.run(alloc - row.alloc, object);
          rec.q.addCounter.run('used', alloc - row.alloc);
          return { kind: 'ok' };
        }
        const victims = this.chooseVictims(rec.q, over, evictBefore);
        return victims.length > 0 ? { kind: 'evict', victims } : { kind: 'full' };
      }).immediate();
      if (step.kind === 'ok') this.unwritten += alloc; // until written (fill)
      if (step.kind !== 'evict') return step.kind;
      await this.removeObjects(rec, step.victims);
    }
    return 'full';
  }

  /**
   * Inside a transaction: mark least recently used objects worth `over` bytes for eviction by this process,
   * only if there are enough (or `partial`). Evictions left by dead processes are always taken over.
   */
  private chooseVictims(q: Statements, over: number, before: number, partial = false): ObjectRow[] {
    const now = Date.now();
    // Holds and leases of dead processes may be what keeps objects from going: reap them first (not too often).
    const victims = now - this.lastReap > REAP_EVERY_MS / 5 ? this.reapIn(q) : [];
    const candidates: ObjectRow[] = [];
    let freed = victims.reduce((n, o) => n + o.bytes, 0);
    for (const o of q.victims.iterate(Math.min(before, Number.MAX_SAFE_INTEGER), now, now, 1000)) {
      if (freed >= over) break;
      candidates.push(o);
      freed += o.bytes;
    }
    if (freed < over && !partial) return victims;
    for (const o of candidates) q.markEvicting.run(this.owner, o.id);
    return [...victims, ...candidates];
  }

  /** Unlink the files of objects marked for eviction by this process, then drop their rows and release their bytes. */
  private async removeObjects(rec: OpenRecord, victims: readonly ObjectRow[]): Promise<void> {
    for (const o of victims) await fs.rm(this.objectFile(o.id), { force: true });
    rec.db.transaction(() => {
      for (const o of victims) {
        const row = rec.q.objectById.get(o.id);
        if (!row || row.evictor !== this.owner) continue;
        rec.q.deleteBlocks.run(o.id);
        rec.q.deleteHolds.run(o.id);
        rec.q.deleteObject.run(o.id);
        rec.q.addCounter.run('used', -row.bytes);
        this.count('evictions');
        this.count('evictedBytes', row.bytes);
      }
    }).immediate();
  }

  private async writeBlock(object: number, offset: number, data: Buffer): Promise<void> {
    const file = this.objectFile(object);
    const flags = fsConstants.O_RDWR | fsConstants.O_CREAT;
    const handle = await fs.open(file, flags, 0o600).catch(async (err: unknown) => {
      if (errorCode(err) !== 'ENOENT') throw err;
      await fs.mkdir(path.dirname(file), { recursive: true });
      return fs.open(file, flags, 0o600);
    });
    try {
      let done = 0;
      while (done < data.length) done += (await handle.write(data, done, data.length - done, offset + done)).bytesWritten;
    } finally {
      await handle.close();
    }
  }

  /** Give a lease back (the fetch failed, or the block could not be kept): others stop waiting for it. */
  private release(object: number, block: number): void {
    const rec = this.record;
    try {
      rec?.db.transaction(() => {
        if (rec.q.dropLease.run(object, block, this.owner).changes === 0) rec.q.endLease.run(object, block, this.owner);
      }).immediate();
    } catch (err) {
      this.problem('giving a lease back', err);
    }
    this.settleLocally(object, block);
  }

  /**
   * Resolves at the next change of the record by any process (its WAL file is written: inotify), or after
   * `ms` at the latest (where files cannot be watched, waiters poll).
   */
  private recordChange(ms: number): Promise<void> {
    if (!this.walWatch && this.record) {
      try {
        this.walWatch = watch(path.join(this.dir, `${DB_FILE}-wal`), { persistent: false }, () => {
          const woken = [...this.wakeups];
          this.wakeups.clear();
          for (const wake of woken) wake();
        });
        this.walWatch.on('error', () => { this.walWatch?.close(); this.walWatch = undefined; });
      } catch {
        // Polling only.
      }
    }
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.wakeups.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.wakeups.add(wake);
    });
  }

  private leaseLocally(object: number, block: number): void {
    const key = `${object}:${block}`;
    if (this.local.has(key)) return;
    let settle = () => {};
    const promise = new Promise<void>((r) => { settle = r; });
    this.local.set(key, { promise, settle });
  }

  private settleLocally(object: number, block: number): void {
    const key = `${object}:${block}`;
    this.local.get(key)?.settle();
    this.local.delete(key);
  }

  // ------------------------------------------------------------------------------------------- holds

  /** Inside a transaction: this process reads the object's file; the row exists while any such read is under way. */
  private hold(q: Statements, object: number, now: number): void {
    const reads = this.holds.get(object) ?? 0;
    if (reads === 0) q.hold.run(object, this.owner, now + HOLD_MS);
    this.holds.set(object, reads + 1);
  }

  private unhold(object: number): void {
    const reads = (this.holds.get(object) ?? 1) - 1;
    if (reads > 0) {
      this.holds.set(object, reads);
      return;
    }
    this.holds.delete(object);
    try {
      this.record?.db.transaction(() => this.record!.q.unhold.run(object, this.owner)).immediate();
    } catch (err) {
      // The row expires on its own.
      this.problem('releasing a hold', err);
    }
  }

  // ----------------------------------------------------------------------------------- housekeeping

  private opened(): OpenRecord | undefined {
    if (this.record) return this.record;
    if (this.closed || Date.now() - this.openFailedAt < REOPEN_AFTER_MS) return undefined;
    try {
      mkdirSync(path.join(this.dir, 'objects'), { recursive: true });
      const db = openRecord(path.join(this.dir, DB_FILE));
      this.record = { db, q: statements(db) };
      this.quota = resolveQuota(this.quotaSpec, this.dir);
      const st = statfsSync(this.dir);
      this.floor = freeFloor(st.blocks * st.bsize);
      this.timer = setInterval(() => this.tick(), TICK_MS);
      this.timer.unref();
      this.reap();
      this.removeLegacyBlocks();
      return this.record;
    } catch (err) {
      this.openFailedAt = Date.now();
      this.openError = err instanceof Error ? err.message : String(err);
      this.problem(`opening ${path.join(this.dir, DB_FILE)}`, err);
      return undefined;
    }
  }

  /** Once a second: counters into the record; dead owners reaped now and then. */
  private tick(): void {
    const rec = this.record;
    if (!rec) return;
    try {
      rec.db.transaction(() => this.flushCounters(rec.q)).immediate();
      if (Date.now() - this.lastReap > REAP_EVERY_MS) this.reap();
    } catch (err) {
      this.problem('updating the record', err);
    }
  }

  private flushCounters(q: Statements): void {
    for (const name of COUNTER_NAMES) {
      if (this.pending[name] === 0) continue;
      q.addCounter.run(name, this.pending[name]);
      this.pending[name] = 0;
    }
  }

  /** Drop the holds and leases of processes that are gone, and finish evictions they started. */
  private reap(): void {
    const rec = this.record;
    if (!rec) return;
    const orphaned = rec.db.transaction(() => this.reapIn(rec.q)).immediate();
    if (orphaned.length > 0) void this.removeObjects(rec, orphaned).catch((err: unknown) => this.problem('finishing an eviction', err));
  }

  /** Inside a transaction: release what dead owners held; returns their unfinished evictions, now this process's. */
  private reapIn(q: Statements): ObjectRow[] {
    const now = Date.now();
    this.lastReap = now;
    const taken: ObjectRow[] = [];
    for (const { owner } of q.owners.all()) {
      if (owner === this.owner || ownerLiveness(owner) !== 'dead') continue;
      q.dropHoldsOf.run(owner);
      q.dropLeasesOf.run(owner);
      q.endLeasesOf.run(owner);
      for (const o of q.evicting.all(owner)) {
        q.takeEviction.run(this.owner, o.id, owner);
        taken.push(o);
      }
    }
    q.dropExpiredLeases.run(now);
    q.expiredLeases.run(now);
    q.dropExpiredHolds.run(now);
    return taken;
  }

  /** The one-file-per-block tier of earlier versions (`<dir>/blocks`) is of no use to anyone now: remove it. */
  private removeLegacyBlocks(): void {
    const legacy = path.join(this.dir, 'blocks');
    if (!existsSync(legacy)) return;
    this.warnLine(`host cache ${this.dir}: removing ${legacy}, the block files of an earlier vhfs (this cache does not use them)`);
    void fs.rm(legacy, { recursive: true, force: true }).catch((err: unknown) => this.problem(`removing ${legacy}`, err));
  }

  /** Bytes reserved for blocks, from the record. */
  private usedBytes(q: Statements): number {
    return q.counter.get('used')?.value ?? 0;
  }

  /** The record's files and the persisted indexes: they count toward the quota too. */
  private overheadBytes(): number {
    let bytes = 0;
    for (const suffix of ['', '-wal', '-shm']) bytes += allocatedBytes(path.join(this.dir, `${DB_FILE}${suffix}`));
    const now = Date.now();
    if (now - this.indexes.at > INDEX_SCAN_MS) this.indexes = { bytes: directoryBytes(path.join(this.dir, 'indexes')), at: now };
    return bytes + this.indexes.bytes;
  }

  private objectFile(object: number): string {
    return path.join(this.dir, 'objects', String(object));
  }

  private count(name: CounterName, n = 1): void {
    this.stats[name] += n;
    this.pending[name] += n;
  }

  private countStore(bytes: number): void {
    this.count('storeBlocks');
    this.count('storeBytes', bytes);
  }

  /** A problem with the cache itself: logged (at most once a minute per kind); the read goes on without it. */
  private problem(doing: string, err: unknown): void {
    if (isNoSpace(err)) {
      this.count('noSpace');
      this.warn('no-space', `host cache ${this.dir}: no space left on its disk (ENOSPC) while ${doing}; reads are served from the store without keeping their blocks (said at most once a minute)`);
      return;
    }
    this.warn(doing, `host cache ${this.dir}: ${doing} failed: ${err instanceof Error ? err.message : String(err)}; the read is served from the store (said at most once a minute)`);
  }

  private warn(kind: string, line: string): void {
    const now = Date.now();
    if (now - (this.warned.get(kind) ?? -Infinity) < WARN_EVERY_MS) return;
    this.warned.set(kind, now);
    this.warnLine(line);
  }

  // ------------------------------------------------------------------------------------------- tools

  /** The record, or a STORE error saying why it cannot be opened (for the `vhfs cache` commands). */
  private required(): OpenRecord {
    const rec = this.opened();
    if (!rec) throw new VhfsError('STORE', `host cache ${this.dir}: its record cannot be opened: ${this.openError ?? 'closed'}`);
    return rec;
  }

  /** What the cache holds, per dataset too (`vhfs cache info`). */
  usage(): HostCacheUsage {
    const rec = this.required();
    const u = rec.q.usage.get()!;
    const st = statfsSync(this.dir);
    return {
      dir: this.dir, quotaBytes: this.quota, blockBytes: this.usedBytes(rec.q), overheadBytes: this.overheadBytes(),
      objects: u.objects, presentBlocks: u.presentBlocks, presentBytes: u.presentBytes, leased: u.leased, holds: u.holds,
      datasets: rec.q.byLabel.all().map((d) => ({ label: d.label, objects: d.objects, bytes: d.bytes, lastUse: new Date(d.lastUse).toISOString() })),
      filesystem: { bytes: st.blocks * st.bsize, freeBytes: st.bavail * st.bsize },
    };
  }

  /** The host-wide counters (every process's, this one's included) and the bytes reserved for blocks. */
  counters(): HostCacheCounters & { used: number } {
    const rec = this.required();
    rec.db.transaction(() => this.flushCounters(rec.q)).immediate();
    const out = { ...zeroCounters(), used: 0 };
    for (const { name, value } of rec.q.counters.all()) if (name in out) out[name as CounterName | 'used'] = value;
    return out;
  }

  /** Evict least recently used objects nobody is reading or filling until the cache takes at most `bytes`. */
  async prune(bytes: number): Promise<{ evicted: number; evictedBytes: number; bytes: number }> {
    const rec = this.required();
    const before = { evictions: this.stats.evictions, bytes: this.stats.evictedBytes };
    for (;;) {
      const victims = rec.db.transaction(() => {
        this.lastReap = -Infinity;
        const over = this.usedBytes(rec.q) + this.overheadBytes() - bytes;
        return over > 0 ? this.chooseVictims(rec.q, over, Infinity, true) : [];
      }).immediate();
      if (victims.length === 0) break;
      await this.removeObjects(rec, victims);
    }
    return { evicted: this.stats.evictions - before.evictions, evictedBytes: this.stats.evictedBytes - before.bytes, bytes: this.usedBytes(rec.q) + this.overheadBytes() };
  }

  /**
   * Read every present block back and check it against its CRC-32; drop the bad ones (they are fetched again
   * when next read), remove files no record names, and recount the bytes each object reserves.
   */
  async verify(onObject?: (done: number, total: number, bytes: number) => void): Promise<VerifyReport> {
    const rec = this.required();
    rec.db.transaction(() => this.reapIn(rec.q)).immediate();
    // Files first, then rows: a row is made before its file, so a file listed without a row is an orphan.
    const files = (() => { try { return readdirSync(path.join(this.dir, 'objects')); } catch { return [] as string[]; } })();
    const objects = rec.q.allObjects.all();
    const ids = new Set(objects.map((o) => String(o.id)));
    const report: VerifyReport = { objects: 0, blocks: 0, bytes: 0, bad: [], orphans: 0 };
    for (const name of files) {
      if (ids.has(name)) continue;
      rmSync(path.join(this.dir, 'objects', name), { force: true, recursive: true });
      report.orphans++;
    }
    for (const [k, o] of objects.entries()) {
      // Held while read, so no other process evicts it under the check.
      const rows = rec.db.transaction(() => {
        const now = Date.now();
        if (rec.q.objectById.get(o.id)?.evictor !== null) return undefined;
        this.hold(rec.q, o.id, now);
        return rec.q.presentBlocks.all(o.id);
      }).immediate();
      if (!rows) continue;
      try {
        const { good, bad } = await this.readPresent(o.id, o.block_size, rows);
        report.objects++;
        report.blocks += good.size;
        for (const buf of good.values()) report.bytes += buf.length;
        if (bad.length > 0) {
          rec.db.transaction(() => { for (const b of bad) rec.q.unpresent.run(o.id, b.row.block); }).immediate();
          this.count('corruptBlocks', bad.length);
          for (const b of bad) report.bad.push({ source: o.source, block: b.row.block, why: b.why });
        }
      } finally {
        this.unhold(o.id);
      }
      onObject?.(k + 1, objects.length, report.bytes);
    }
    // Recount what each object reserves, one short transaction each (daemons keep reading meanwhile).
    for (const o of rec.q.allObjects.all()) {
      rec.db.transaction(() => {
        const row = rec.q.objectById.get(o.id);
        if (!row) return;
        const alloc = rec.q.allocOf.get(o.id)!.alloc;
        rec.q.setBytes.run(alloc, o.id);
        rec.q.addCounter.run('used', alloc - row.bytes);
      }).immediate();
    }
    rec.db.transaction(() => this.flushCounters(rec.q)).immediate();
    return report;
  }

  /** Resolves once every block this process is writing to the cache is written (or given up). */
  async idle(): Promise<void> {
    while (this.filling.size > 0) await Promise.all([...this.filling]);
  }

  /** Finish the writes under way, write the counters out, give back holds and leases, close the record. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.idle();
    this.closed = true;
    clearInterval(this.timer);
    this.walWatch?.close();
    const rec = this.record;
    if (!rec) return;
    try {
      rec.db.transaction(() => {
        this.flushCounters(rec.q);
        for (const object of this.holds.keys()) rec.q.unhold.run(object, this.owner);
        rec.q.dropLeasesOf.run(this.owner);
        rec.q.endLeasesOf.run(this.owner);
      }).immediate();
    } catch (err) {
      this.problem('closing the record', err);
    }
    for (const l of this.local.values()) l.settle();
    this.local.clear();
    this.holds.clear();
    rec.db.close();
    this.record = undefined;
  }
}

interface Classified {
  object?: number;
  present: BlockRow[];
  fetch: number[];
  others: number[];
  leased: Set<number>;
}

/** The quota in bytes: as given, or a share of the size of the filesystem holding `dir`. */
export function resolveQuota(quota: CacheQuota, dir: string): number {
  if ('bytes' in quota) return quota.bytes;
  const st = statfsSync(dir);
  return Math.floor(st.blocks * st.bsize * quota.percent / 100);
}

/** Bytes allocated to the files directly in `dir` (0 if it does not exist). */
function directoryBytes(dir: string): number {
  let bytes = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) bytes += allocatedBytes(path.join(dir, name));
  return bytes;
}
