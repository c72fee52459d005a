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
 * Reads: `getRange` is the FUSE hot path, so open handles are kept in a small LRU (refcounted: an evicted
 * handle is closed only after its in-flight reads finish). A cached handle is revalidated with one
 * `stat` at most every `revalidateMs`, and dropped at once on this process's own put/delete of the key;
 * only alias pointers are ever replaced, and those are read with `get`, which never uses the cache.
 *
 * Limitation of directories: a key cannot be both an object and a prefix of another (`a` and `a/b`);
 * such a put fails with STORE. The catalog's layout never does this.
 */
import { constants as fsc, createReadStream, type Stats, type BigIntStats } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { VhfsError } from '../util/errors.js';
import { relativePathProblem } from '../util/path-rules.js';
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

const TMP_DIR = '.tmp';
const STAT_BATCH = 64;

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
    this.checkKey(key);
    this.stats.heads++;
    const st = await this.statObject(key);
    return st && infoOf(key, st);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    checkRangeArgs(this.url, key, offset, length);
    signal?.throwIfAborted();
    this.stats.gets++;
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
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    signal?.throwIfAborted();
    this.stats.gets++;
    // Never cached: whole-object reads are for small, possibly replaced objects (alias pointers).
    const fh = await this.openObject(key);
    try {
      const st = await fh.stat();
      const buf = await readExactly(fh, 0, st.size, `${this.url}/${key}`);
      this.stats.bytesRead += buf.length;
      return buf;
    } finally {
      await fh.close();
    }
  }

  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    this.checkKey(key);
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
    this.checkPrefix(prefix);
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
    this.checkKey(key);
    if (opts.ifMatch !== undefined && opts.ifNoneMatch !== undefined) {
      throw new VhfsError('BAD_ARGUMENT', `${this.url}: put ${key} with both ifMatch and ifNoneMatch`);
    }
    this.stats.puts++;
    const { tmp, st } = await this.writeTemp(key, body);
    this.stats.bytesWritten += Number(st.size);
    const target = this.pathOf(key);
    try {
      if (opts.ifNoneMatch === '*') {
        await this.publishIfAbsent(key, tmp, target);
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
    } finally {
      await fs.rm(tmp, { force: true });
    }
    this.dropHandle(key);
    if (this.opts.fsync) await fsyncDir(path.dirname(target));
    return infoOf(key, st);
  }

  async delete(key: string): Promise<void> {
    this.checkKey(key);
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

  // ---- key checks and paths ----

  private checkKey(key: string): void {
    const bad = keyProblem(key);
    if (bad) throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad object key ${JSON.stringify(key)}: ${bad}`);
  }

  private checkPrefix(prefix: string): void {
    // Only the complete segments name directories; the part after the last '/' just filters names.
    const slash = prefix.lastIndexOf('/');
    const bad = prefix.includes('\0') ? 'contains NUL' : slash >= 0 ? keyProblem(prefix.slice(0, slash)) : undefined;
    if (bad) throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad list prefix ${JSON.stringify(prefix)}: ${bad}`);
  }

  private pathOf(key: string): string {
    return path.join(this.root, key);
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

  private async openObject(key: string): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await fs.open(this.pathOf(key), fsc.O_RDONLY);
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
          pending = this.openEntry(key).finally(() => this.opening.delete(key));
          this.opening.set(key, pending);
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
    const fh = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      // Plain writes, not fh.createWriteStream: a stream on a FileHandle keeps it referenced, so the
      // fsync/close after it would wait forever.
      if (body instanceof Uint8Array) {
        await writeAll(fh, body);
      } else {
        for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
          await writeAll(fh, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        }
      }
      if (this.opts.fsync) await fh.sync();
      const st = await fh.stat({ bigint: true });
      await fh.close();
      return { tmp, st };
    } catch (err) {
      await fh.close().catch(() => {});
      await fs.rm(tmp, { force: true });
      if (err instanceof VhfsError) throw err;
      throw this.storeError('put', key, err);
    }
  }

  private async publishIfAbsent(key: string, tmp: string, target: string): Promise<void> {
    await this.retryMissingDir(key, target, async () => {
      try {
        await fs.link(tmp, target);
      } catch (err) {
        if (errno(err) === 'EEXIST') throw new VhfsError('CONFLICT', `${this.url}: ${key} already exists`);
        throw err;
      }
    });
  }

  private async publishReplace(key: string, tmp: string, target: string): Promise<void> {
    await this.retryMissingDir(key, target, () => fs.rename(tmp, target));
  }

  /** mkdir -p the parent and run `op`; a concurrent delete may prune the parent between the two, so retry. */
  private async retryMissingDir(key: string, target: string, op: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await op();
        return;
      } catch (err) {
        if (err instanceof VhfsError) throw err;
        const code = errno(err);
        if (code === 'ENOENT' && attempt < 5) continue;
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
export function keyProblem(key: string): string | undefined {
  const bad = relativePathProblem(key);
  if (bad) return bad;
  if (key === TMP_DIR || key.startsWith(`${TMP_DIR}/`)) return `${TMP_DIR}/ is reserved for uploads in progress`;
  return undefined;
}

function checkRangeArgs(url: string, key: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new VhfsError('BAD_ARGUMENT', `${url}: bad range ${offset}+${length} for ${key}`);
  }
}

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

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done);
    done += bytesWritten;
  }
}

function etagOf(st: BigIntStats): string {
  return `${st.ino.toString(36)}-${st.size.toString(36)}-${st.mtimeNs.toString(36)}`;
}

function infoOf(key: string, st: BigIntStats): ObjectInfo {
  return { key, size: Number(st.size), etag: etagOf(st), mtimeMs: Number(st.mtimeMs) };
}

/** Object stores order keys by UTF-8 bytes; for BMP text that equals UTF-16 code-unit order. */
function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
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
