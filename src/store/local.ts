/**
 * `LocalDirStore`: an `ObjectStore` on a local directory, behaving like a bucket (see `types.ts`).
 *
 * Layout: object `a/b/c` is the file `<root>/a/b/c`. `<root>/.tmp/` holds in-flight uploads and lock
 * files; it is never listed and keys may not start with `.tmp/`, so a temp file left by a killed process
 * is never visible as an object (`cleanupTemp()` removes old ones).
 *
 * Atomicity (all on one filesystem, so `rename`/`link` are atomic):
 *  - every put writes the whole body to a fresh temp file, fsyncs it, then publishes it:
 *    plain put → `rename` over the key (readers see the old or the new file, never a mix);
 *    `ifNoneMatch: '*'` → `link(temp, key)`, which fails with EEXIST if the key exists (create-if-absent);
 *    `ifMatch: etag` → under the key's lock, compare the current etag, then `rename`.
 *  - the per-key lock is a file created with `O_EXCL` in `.tmp/locks/`; it is held for one compare+rename
 *    (microseconds), so waiters retry with jittered exponential backoff. A lock older than `staleLockMs`
 *    belongs to a process that died holding it and is broken (renamed away, then checked to be the same
 *    inode we judged stale). Plain puts and deletes take the lock too, so a CAS can never be interleaved
 *    with another writer between its compare and its rename.
 *  - etag = `<inode>-<size>-<mtime ns>`: every put publishes a new inode, so any replacement changes it.
 *
 * Durability is batched, never skipped: a put's temp file is fsynced before it is published (so every
 * visible object is durable) and the put resolves only after its directory entry is fsynced too; puts
 * publishing into one directory at the same time share one directory fsync (the next one to start after
 * their link), which is what makes thousands of concurrent blob puts cheap. Streamed bodies are written
 * with `writev` in ~1 MiB batches, and the hot path uses plain fd calls (FileHandle objects cost ~3× more
 * CPU per call, measured).
 *
 * Reads: `getRange` is the FUSE hot path, so open handles are kept in a small LRU (refcounted: an evicted
 * handle is closed only after its in-flight reads finish). A cached handle is revalidated with one
 * `stat` at most every `revalidateMs`, and dropped at once on this process's own put/delete of the key;
 * only alias pointers are ever replaced, and those are read with `get`, which never uses the cache.
 * Objects are opened with O_NONBLOCK, so a FIFO in place of an object is refused at once (a regular
 * file ignores the flag).
 *
 * Deadlines: `getRange` and `get` give up when their AbortSignal fires, whatever the filesystem call they
 * wait on is doing (a hung NFS or FUSE mount, a blocked open), rejecting with TIMEOUT. The call itself
 * cannot be cancelled and keeps a libuv threadpool thread (4 in all) until it returns, so such calls are
 * counted until they return, and bounded: at most `maxBlockedPerKey` (default 2: the first call and one
 * retry) per key, and `maxBlocked` (default 3) in the whole store, so at least one of libuv's threads is
 * always left for everything else. A call that would exceed a bound fails at once with TIMEOUT instead
 * of starting. The single-flight open a timed-out reader waited on stops being shared, so the next read
 * of that key starts a fresh open (a retry) instead of joining one that may never return.
 *
 * Limitation of directories: a key cannot be both an object and a prefix of another (`a` and `a/b`);
 * such a put fails with STORE. The catalog's layout never does this.
 */
import * as fsCallbacks from 'node:fs';
import { constants as fsc, createReadStream, type Stats, type BigIntStats } from 'node:fs';
import { promisify } from 'node:util';
import * as fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { VhfsError } from '../util/errors.js';
import { checkKey, checkPrefix, checkRangeArgs, compareKeys, TMP_DIR } from './keys.js';
import {
  newStoreStats,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type StoreStats,
} from './types.js';

export interface LocalDirStoreOptions {
  /** fsync temp files and parent directories before publishing (default true). */
  fsync?: boolean;
  /** Open file handles kept for ranged reads (default 64). */
  maxOpenFiles?: number;
  /** How long a cached handle is trusted before a `stat` re-checks it is still the key's file (default 1000). */
  revalidateMs?: number;
  /** A lock file older than this was left by a dead process and is broken (default 10 000). */
  staleLockMs?: number;
  /** Give up waiting for a key's lock after this long, with TIMEOUT (default 30 000). */
  lockTimeoutMs?: number;
  /** Timed-out reads of one key still blocked in the filesystem, at most (default 2). */
  maxBlockedPerKey?: number;
  /** Timed-out reads still blocked in the filesystem in the whole store, at most (default 3). */
  maxBlocked?: number;
}

interface OpenEntry {
  fh: FileHandle;
  ino: bigint;
  size: number;
  checkedAt: number;
  refs: number;
  evicted: boolean;
  closed: boolean;
}

const STAT_BATCH = 64;
const WRITE_BATCH_BYTES = 1 << 20;
const WRITE_BATCH_CHUNKS = 256; // well under IOV_MAX (1024)

interface DirSync {
  running: Promise<void> | undefined;
  queued: Promise<void> | undefined;
}

/** fd-based calls: plain descriptors cost less per call than FileHandle objects on the write path. */
const fdc = {
  open: promisify(fsCallbacks.open),
  fsync: promisify(fsCallbacks.fsync),
  fstat: promisify(fsCallbacks.fstat) as (fd: number, opts: { bigint: true }) => Promise<BigIntStats>,
  close: promisify(fsCallbacks.close),
  writev: promisify(fsCallbacks.writev),
  link: promisify(fsCallbacks.link),
  rename: promisify(fsCallbacks.rename),
  unlink: promisify(fsCallbacks.unlink),
};

export class LocalDirStore implements ObjectStore {
  readonly url: string;
  readonly stats: StoreStats = newStoreStats();
  readonly root: string;
  private readonly tmpDir: string;
  private readonly lockDir: string;
  private readonly opts: Required<LocalDirStoreOptions>;
  private readonly handles: LRUCache<string, OpenEntry>;
  private readonly opening = new Map<string, Promise<OpenEntry>>();
  private readonly closing = new Set<Promise<void>>();
  private dirsReady: Promise<void> | undefined;
  /** Reads whose caller gave up but whose filesystem call has not returned, per key. */
  private readonly blocked = new Map<string, number>();
  private blockedTotal = 0;
  private readonly dirSyncs = new Map<string, DirSync>();

  constructor(root: string, options: LocalDirStoreOptions = {}) {
    this.root = path.resolve(root);
    this.url = `file://${this.root}`;
    this.tmpDir = path.join(this.root, TMP_DIR);
    this.lockDir = path.join(this.tmpDir, 'locks');
    this.opts = {
      fsync: options.fsync ?? true,
      maxOpenFiles: options.maxOpenFiles ?? 64,
      revalidateMs: options.revalidateMs ?? 1000,
      staleLockMs: options.staleLockMs ?? 10_000,
      lockTimeoutMs: options.lockTimeoutMs ?? 30_000,
      maxBlockedPerKey: options.maxBlockedPerKey ?? 2,
      maxBlocked: options.maxBlocked ?? 3,
    };
    this.handles = new LRUCache<string, OpenEntry>({
      max: this.opts.maxOpenFiles,
      dispose: (entry) => {
        entry.evicted = true;
        if (entry.refs === 0) this.closeEntry(entry);
      },
    });
  }

  // ---- reads ----

  async head(key: string): Promise<ObjectInfo | undefined> {
    checkKey(this.url, key);
    this.stats.heads++;
    const st = await this.statObject(key);
    return st && infoOf(key, st);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    checkKey(this.url, key);
    checkRangeArgs(this.url, key, offset, length);
    signal?.throwIfAborted();
    this.checkNotBlocked(key);
    this.stats.gets++;
    return this.withDeadline(key, 'read', signal, async () => {
      const entry = await this.acquire(key);
      try {
        if (offset + length > entry.size) {
          throw new VhfsError(
            'BAD_ARGUMENT',
            `${this.url}: range ${offset}+${length} of ${key} extends past its end (${entry.size} bytes)`,
          );
        }
        const buf = await readExactly(entry.fh, offset, length, `${this.url}/${key}`);
        this.stats.bytesRead += length;
        return buf;
      } finally {
        this.release(entry);
      }
    });
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    checkKey(this.url, key);
    signal?.throwIfAborted();
    this.checkNotBlocked(key);
    this.stats.gets++;
    // Never cached: whole-object reads are for small, possibly replaced objects (alias pointers).
    return this.withDeadline(key, 'get', signal, async () => {
      const fh = await this.openObject(key);
      try {
        const st = await fh.stat();
        const buf = await readExactly(fh, 0, st.size, `${this.url}/${key}`);
        this.stats.bytesRead += buf.length;
        return buf;
      } finally {
        await fh.close();
      }
    });
  }

  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    checkKey(this.url, key);
    this.stats.gets++;
    const fh = await this.openObject(key);
    let start = 0;
    let length: number;
    try {
      const size = (await fh.stat()).size;
      length = size;
      if (range) {
        checkRangeArgs(this.url, key, range.offset, range.length);
        if (range.offset + range.length > size) {
          throw new VhfsError(
            'BAD_ARGUMENT',
            `${this.url}: range ${range.offset}+${range.length} of ${key} extends past its end (${size} bytes)`,
          );
        }
        start = range.offset;
        length = range.length;
      }
    } catch (err) {
      await fh.close();
      throw err;
    }
    if (length === 0) {
      await fh.close();
      return Readable.from([]);
    }
    const source = createReadStream('', { fd: fh, start, end: start + length - 1, autoClose: true });
    const stats = this.stats;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        stats.bytesRead += chunk.length;
        cb(null, chunk);
      },
    });
    source.on('error', (err) => counter.destroy(err));
    return source.pipe(counter);
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    checkPrefix(this.url, prefix);
    this.stats.lists++;
    const slash = prefix.lastIndexOf('/');
    const dirPart = prefix.slice(0, slash + 1); // '' or 'a/b/'
    const namePart = prefix.slice(slash + 1);
    const files: string[] = [];
    const prefixes: string[] = [];
    const dirents = await this.readDir(dirPart);
    for (const d of dirents) {
      if (!d.name.startsWith(namePart)) continue;
      if (dirPart === '' && d.name === TMP_DIR) continue;
      const key = dirPart + d.name;
      if (d.isDirectory()) {
        if (opts.delimiter === '/') {
          if (await this.hasObjects(key + '/')) prefixes.push(key + '/');
        } else {
          await this.walk(key + '/', files);
        }
      } else if (d.isFile()) {
        files.push(key);
      }
    }
    const objects = await this.statAll(files);
    objects.sort((a, b) => compareKeys(a.key, b.key));
    prefixes.sort(compareKeys);
    return { objects, prefixes };
  }

  // ---- writes ----

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<ObjectInfo> {
    checkKey(this.url, key);
    if (opts.ifMatch !== undefined && opts.ifNoneMatch !== undefined) {
      throw new VhfsError('BAD_ARGUMENT', `${this.url}: put ${key} with both ifMatch and ifNoneMatch`);
    }
    this.stats.puts++;
    const target = this.pathOf(key);
    // Create-if-absent on a key that exists is refused before the body is written and fsynced: a dedup
    // hit costs one stat, not a write and an fsync (the link below still decides races).
    if (opts.ifNoneMatch === '*' && (await this.statObject(key))) {
      throw new VhfsError('CONFLICT', `${this.url}: ${key} already exists`);
    }
    const { tmp, st } = await this.writeTemp(key, body);
    this.stats.bytesWritten += Number(st.size);
    let linked = false;
    try {
      if (opts.ifNoneMatch === '*') {
        await this.publishIfAbsent(key, tmp, target);
        linked = true;
      } else {
        await this.withLock(key, async () => {
          if (opts.ifMatch !== undefined) {
            const cur = await this.statObject(key);
            const etag = cur && etagOf(cur);
            if (etag !== opts.ifMatch) {
              throw new VhfsError(
                'CONFLICT',
                `${this.url}: ${key} changed (etag ${etag ?? 'absent'}, expected ${opts.ifMatch})`,
              );
            }
          }
          await this.publishReplace(key, tmp, target);
        });
      }
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    if (linked) await fdc.unlink(tmp).catch(() => {});
    this.dropHandle(key);
    if (this.opts.fsync) await this.syncDir(path.dirname(target));
    return infoOf(key, st);
  }

  async delete(key: string): Promise<void> {
    checkKey(this.url, key);
    await this.withLock(key, async () => {
      try {
        await fs.unlink(this.pathOf(key));
      } catch (err) {
        if (!isMissing(err) && errno(err) !== 'EISDIR') throw this.storeError('delete', key, err);
      }
    });
    this.dropHandle(key);
    await this.pruneEmptyDirs(path.dirname(this.pathOf(key)));
  }

  /** Remove temp files and lock files older than `maxAgeMs` (left by killed processes). */
  async cleanupTemp(maxAgeMs = 3_600_000): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - maxAgeMs;
    for (const dir of [this.tmpDir, this.lockDir]) {
      let names: string[];
      try {
        names = await fs.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const p = path.join(dir, name);
        const st = await fs.lstat(p).catch(() => undefined);
        if (st?.isFile() && st.mtimeMs < cutoff) {
          await fs.rm(p, { force: true });
          removed++;
        }
      }
    }
    return removed;
  }

  /** Close every cached file handle (the store stays usable; handles reopen on demand). */
  async close(): Promise<void> {
    this.handles.clear();
    await Promise.all(this.closing);
  }

  // ---- deadlines ----

  /** TIMEOUT at once if too many earlier reads of `key` (or of the store) are still blocked. */
  private checkNotBlocked(key: string): void {
    const mine = this.blocked.get(key) ?? 0;
    if (mine >= this.opts.maxBlockedPerKey || this.blockedTotal >= this.opts.maxBlocked) {
      throw new VhfsError(
        'TIMEOUT',
        `${this.url}: ${key}: not read: ${mine} earlier read(s) of it and ${this.blockedTotal} in this store are still ` +
          'blocked in the filesystem; retried once one of them returns',
      );
    }
  }

  /**
   * Run `work` (which may block in the filesystem) and reject with TIMEOUT as soon as `signal` aborts.
   * The abandoned work is counted as blocked until it settles, and the open it may be waiting on is no
   * longer shared, so the next read of the key starts its own.
   */
  private withDeadline<T>(key: string, what: string, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
    const running = work();
    if (signal === undefined) return running;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.markBlocked(key, running);
        const opening = this.opening.get(key);
        if (opening) this.opening.delete(key);
        const why = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
        reject(new VhfsError('TIMEOUT', `${this.url}: ${what} of ${key} gave up (${why}); the filesystem call is still blocked`));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      running.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  private markBlocked(key: string, running: Promise<unknown>): void {
    this.blocked.set(key, (this.blocked.get(key) ?? 0) + 1);
    this.blockedTotal++;
    void running.then(
      () => this.unmarkBlocked(key),
      () => this.unmarkBlocked(key),
    );
  }

  private unmarkBlocked(key: string): void {
    const n = (this.blocked.get(key) ?? 1) - 1;
    if (n === 0) this.blocked.delete(key);
    else this.blocked.set(key, n);
    this.blockedTotal--;
  }

  // ---- key checks and paths ----



  private pathOf(key: string): string {
    return path.join(this.root, key);
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  private storeError(op: string, key: string, err: unknown): VhfsError {
    const msg = err instanceof Error ? err.message : String(err);
    return new VhfsError('STORE', `${this.url}: ${op} ${key} failed: ${msg}`, { cause: err });
  }

  private notFound(key: string): VhfsError {
    return new VhfsError('NOT_FOUND', `${this.url}: no object ${key}`);
  }

  // ---- read helpers ----

  private async statObject(key: string): Promise<BigIntStats | undefined> {
    try {
      const st = await fs.stat(this.pathOf(key), { bigint: true });
      return st.isFile() ? st : undefined;
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw this.storeError('stat', key, err);
    }
  }

  /** Open an object's file for reading (a seam: tests replace it to open a FIFO blocking). */
  protected openFile(file: string): Promise<FileHandle> {
    return fs.open(file, fsc.O_RDONLY | fsc.O_NONBLOCK);
  }

  private async openObject(key: string): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await this.openFile(this.pathOf(key));
    } catch (err) {
      if (isMissing(err)) throw this.notFound(key);
      throw this.storeError('open', key, err);
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw this.notFound(key);
    }
    return fh;
  }

  /**
   * A refcounted cached handle for `key`, opened once even when many reads ask at the same time. An
   * entry can be evicted (and closed, if idle) between its opening and our turn to use it; then try
   * again, and under such cache pressure fall back to a private handle closed after this read.
   */
  private async acquire(key: string): Promise<OpenEntry> {
    for (let attempt = 0; attempt < 3; attempt++) {
      let entry = this.handles.get(key);
      if (entry && Date.now() - entry.checkedAt > this.opts.revalidateMs) {
        const st = await this.statObject(key);
        if (st && st.ino === entry.ino) entry.checkedAt = Date.now();
        else {
          this.dropHandle(key, entry);
          entry = undefined;
        }
      }
      if (!entry) {
        let pending = this.opening.get(key);
        if (!pending) {
          const opening: Promise<OpenEntry> = this.openEntry(key).finally(() => {
            if (this.opening.get(key) === opening) this.opening.delete(key);
          });
          this.opening.set(key, opening);
          pending = opening;
        }
        entry = await pending;
      }
      if (!entry.closed) {
        entry.refs++;
        return entry;
      }
    }
    const own = await this.openEntry(key, false);
    own.refs++;
    return own;
  }

  private async openEntry(key: string, cache = true): Promise<OpenEntry> {
    const fh = await this.openObject(key);
    const st = await fh.stat({ bigint: true });
    const entry: OpenEntry = {
      fh,
      ino: st.ino,
      size: Number(st.size),
      checkedAt: Date.now(),
      refs: 0,
      evicted: !cache,
      closed: false,
    };
    if (cache) this.handles.set(key, entry);
    return entry;
  }

  private release(entry: OpenEntry): void {
    entry.refs--;
    if (entry.evicted && entry.refs === 0) this.closeEntry(entry);
  }

  private closeEntry(entry: OpenEntry): void {
    entry.closed = true;
    const p = entry.fh.close().catch(() => {});
    this.closing.add(p);
    void p.finally(() => this.closing.delete(p));
  }

  private dropHandle(key: string, entry?: OpenEntry): void {
    const cur = this.handles.peek(key);
    if (cur && (!entry || cur === entry)) this.handles.delete(key);
  }

  private async readDir(dirKey: string): Promise<import('node:fs').Dirent[]> {
    try {
      return await fs.readdir(path.join(this.root, dirKey), { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return [];
      throw this.storeError('list', dirKey || '/', err);
    }
  }

  private async walk(dirKey: string, out: string[]): Promise<void> {
    for (const d of await this.readDir(dirKey)) {
      const key = dirKey + d.name;
      if (d.isDirectory()) await this.walk(key + '/', out);
      else if (d.isFile()) out.push(key);
    }
  }

  /** Whether any object lives under `dirKey` (empty directories left by deletes do not count). */
  private async hasObjects(dirKey: string): Promise<boolean> {
    const dirents = await this.readDir(dirKey);
    if (dirents.some((d) => d.isFile())) return true;
    for (const d of dirents) {
      if (d.isDirectory() && (await this.hasObjects(dirKey + d.name + '/'))) return true;
    }
    return false;
  }

  private async statAll(keys: string[]): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    for (let i = 0; i < keys.length; i += STAT_BATCH) {
      const batch = keys.slice(i, i + STAT_BATCH);
      const stats = await Promise.all(batch.map((k) => this.statObject(k)));
      stats.forEach((st, j) => {
        if (st) out.push(infoOf(batch[j], st)); // deleted meanwhile: skip
      });
    }
    return out;
  }

  // ---- write helpers ----

  private ensureDirs(): Promise<void> {
    this.dirsReady ??= fs.mkdir(this.lockDir, { recursive: true }).then(
      () => undefined,
      (err) => {
        this.dirsReady = undefined;
        throw this.storeError('mkdir', TMP_DIR, err);
      },
    );
    return this.dirsReady;
  }

  /** Write the body to a fresh temp file and fsync it; returns its path and final stat. */
  private async writeTemp(key: string, body: PutBody): Promise<{ tmp: string; st: BigIntStats }> {
    await this.ensureDirs();
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    let fd: number;
    try {
      fd = await fdc.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    } catch (err) {
      throw this.storeError('put', key, err);
    }
    try {
      if (body instanceof Uint8Array) {
        await writevAll(fd, [body]);
      } else {
        // Coalesce a stream's chunks (often 16-64 KiB) into ~1 MiB writev calls.
        let batch: Uint8Array[] = [];
        let batchBytes = 0;
        for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
          const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          batch.push(bytes);
          batchBytes += bytes.length;
          if (batchBytes >= WRITE_BATCH_BYTES || batch.length >= WRITE_BATCH_CHUNKS) {
            await writevAll(fd, batch);
            batch = [];
            batchBytes = 0;
          }
        }
        if (batch.length > 0) await writevAll(fd, batch);
      }
      if (this.opts.fsync) await fdc.fsync(fd);
      const st = (await fdc.fstat(fd, { bigint: true })) as BigIntStats;
      await fdc.close(fd);
      return { tmp, st };
    } catch (err) {
      await fdc.close(fd).catch(() => {});
      await fs.rm(tmp, { force: true });
      if (err instanceof VhfsError) throw err;
      throw this.storeError('put', key, err);
    }
  }

  private async publishIfAbsent(key: string, tmp: string, target: string): Promise<void> {
    await this.retryMissingDir(key, target, async () => {
      try {
        await fdc.link(tmp, target);
      } catch (err) {
        if (errno(err) === 'EEXIST') throw new VhfsError('CONFLICT', `${this.url}: ${key} already exists`);
        throw err;
      }
    });
  }

  private async publishReplace(key: string, tmp: string, target: string): Promise<void> {
    await this.retryMissingDir(key, target, () => fdc.rename(tmp, target));
  }

  /**
   * Run `op`; if the parent directory is missing, mkdir -p it and retry (a concurrent delete may prune
   * it again in between, so a few times). Most puts go to directories that exist: no mkdir for them.
   */
  private async retryMissingDir(key: string, target: string, op: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt > 0) await fs.mkdir(path.dirname(target), { recursive: true });
        await op();
        return;
      } catch (err) {
        if (err instanceof VhfsError) throw err;
        const code = errno(err);
        if (code === 'ENOENT' && attempt < 6) continue;
        if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EISDIR') {
          throw new VhfsError(
            'STORE',
            `${this.url}: cannot put ${key}: a local directory store cannot hold both an object and keys below it`,
          );
        }
        throw this.storeError('put', key, err);
      }
    }
  }

  /**
   * fsync `dir` with a sync that starts after this call: callers that arrive while one is running share
   * the next one, so N concurrent puts into one directory cost about two directory fsyncs, not N.
   */
  private syncDir(dir: string): Promise<void> {
    let state = this.dirSyncs.get(dir);
    if (!state) {
      state = { running: undefined, queued: undefined };
      this.dirSyncs.set(dir, state);
    }
    const s = state;
    if (s.queued) return s.queued;
    const queued = (s.running ?? Promise.resolve()).then(() => {
      s.queued = undefined;
      const run = fsyncDir(dir);
      s.running = run;
      return run.finally(() => {
        if (s.running === run) s.running = undefined;
        if (s.running === undefined && s.queued === undefined) this.dirSyncs.delete(dir);
      });
    });
    s.queued = queued;
    return queued;
  }

  private async pruneEmptyDirs(dir: string): Promise<void> {
    while (dir.startsWith(this.root + path.sep)) {
      try {
        await fs.rmdir(dir);
      } catch {
        return; // not empty (or already gone / recreated): stop
      }
      dir = path.dirname(dir);
    }
  }

  // ---- per-key lock ----

  private async withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await this.ensureDirs();
    const lockPath = path.join(this.lockDir, createHash('sha256').update(key).digest('hex').slice(0, 40) + '.lock');
    const deadline = Date.now() + this.opts.lockTimeoutMs;
    let delay = 1;
    for (;;) {
      try {
        const fh = await fs.open(lockPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
        await fh.close();
        break;
      } catch (err) {
        if (errno(err) !== 'EEXIST') throw this.storeError('lock', key, err);
      }
      if (await this.breakIfStale(lockPath)) continue;
      if (Date.now() > deadline) {
        throw new VhfsError('TIMEOUT', `${this.url}: timed out waiting for the lock on ${key} (${lockPath})`);
      }
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(delay * 2, 50);
    }
    try {
      return await fn();
    } finally {
      await fs.rm(lockPath, { force: true });
    }
  }

  /**
   * Break a lock whose holder died. Rename (not unlink) so that of several breakers only one wins, then
   * check the renamed file is the inode judged stale: if a live process re-took the lock in between,
   * put its lock back (link fails only if yet another process holds it now, which is then the owner).
   */
  private async breakIfStale(lockPath: string): Promise<boolean> {
    let st: Stats;
    try {
      st = await fs.stat(lockPath);
    } catch {
      return true; // released meanwhile: retry at once
    }
    if (Date.now() - st.mtimeMs < this.opts.staleLockMs) return false;
    const grave = `${lockPath}.stale-${randomBytes(6).toString('hex')}`;
    try {
      await fs.rename(lockPath, grave);
    } catch {
      return true;
    }
    const moved = await fs.stat(grave).catch(() => undefined);
    if (moved && moved.ino !== st.ino) await fs.link(grave, lockPath).catch(() => {});
    await fs.rm(grave, { force: true });
    return true;
  }
}

// ---- pure helpers ----

/** Why `key` is not a valid object key (the relative-path rules of src/util/path-rules.ts, and not under .tmp/), or undefined. */


async function readExactly(fh: FileHandle, offset: number, length: number, where: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) {
      throw new VhfsError('STORE', `${where}: file ended at ${offset + done}, expected ${offset + length} bytes`);
    }
    done += bytesRead;
  }
  return buf;
}

/** Write every byte of `chunks` at the fd's position (writev may write less than asked). */
async function writevAll(fd: number, chunks: Uint8Array[]): Promise<void> {
  let rest = chunks.filter((c) => c.length > 0);
  while (rest.length > 0) {
    let written = (await fdc.writev(fd, rest as NodeJS.ArrayBufferView[])).bytesWritten;
    const left: Uint8Array[] = [];
    for (const c of rest) {
      if (written >= c.length) written -= c.length;
      else {
        left.push(written > 0 ? c.subarray(written) : c);
        written = 0;
      }
    }
    rest = left;
  }
}

function etagOf(st: BigIntStats): string {
  return `${st.ino.toString(36)}-${st.size.toString(36)}-${st.mtimeNs.toString(36)}`;
}

function infoOf(key: string, st: BigIntStats): ObjectInfo {
  return { key, size: Number(st.size), etag: etagOf(st), mtimeMs: Number(st.mtimeMs) };
}


function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function isMissing(err: unknown): boolean {
  const code = errno(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await fs.open(dir, fsc.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // best effort: some filesystems refuse fsync on directories
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
