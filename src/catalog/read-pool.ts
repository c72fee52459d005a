/**
 * Source files read and hashed in worker threads: what lets `dataset create` keep up with the disk.
 *
 * Measured on 20,000 × 16 KiB files (page cache warm): reading each file through `fs.promises`
 * (open, read, fstat, close on a FileHandle) cost 6.2 s of the main thread's time, more than anything
 * else in the creation; callbacks cost a third of that, and blocking calls in a worker cost only their
 * system calls (1.2 s of CPU for all 20,000 reads plus their SHA-256s, spread over the workers, none of
 * it on the main thread). So each worker runs `readFileOnceSync` (one read, changes detected, see
 * source-files.ts) and hashes the bytes it read, then hands the buffer over without copying
 * (transferred). Several workers keep several reads in flight, which is what a cold disk needs.
 *
 * Requests made in the same tick go out together, a few dozen per message, to the least busy workers;
 * `mapAhead` issues them in bursts for that reason. Callers keep their own order and memory bounds.
 *
 * `hasher()` is the same idea for a stream the main thread produces (a package part on its way to the
 * store): its SHA-256 (with the chunk table we then also computed, 11% of the main thread's time) goes
 * to one more worker, from copies of the bytes sent 1 MiB at a time (a memcpy is far
 * cheaper than two SHA-256 passes), at most HASH_AHEAD_BYTES ahead of what it has hashed. The 1 MiB
 * buffers go back and forth (transferred both ways) rather than being allocated anew: fresh memory cost
 * a page fault per 4 KiB, as much as the copy itself.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { VhfsError, type VhfsErrorCode } from '../util/errors.js';
import type { BodyDigest } from '../util/hash.js';
import type { FileIdentity } from './source-files.js';

export interface ReadRequest {
  file: string;
  size: number;
  identity?: FileIdentity;
  /** Names the file in errors. */
  label: string;
  /** Also compute the chunk hash table (for a standalone blob larger than one chunk). */
  chunks?: boolean;
}

export interface ReadResult {
  bytes: Buffer;
  digest: BodyDigest;
}

/** What a worker sends back for one request. */
export type WorkerReply =
  | { ok: true; buffer: ArrayBuffer; size: number; sha256: string; chunkTable?: Uint8Array }
  | { ok: false; code: VhfsErrorCode; message: string };

const PER_MESSAGE = 32;
const HASH_BATCH_BYTES = 1 << 20;
const HASH_AHEAD_BYTES = 16 << 20;
const WORKER_URL = new URL('./read-worker.js', import.meta.url);

/** Messages to a worker: read requests, or a piece of a stream to hash. */
export type WorkerMessage =
  | { job: number; requests: ReadRequest[] }
  | { stream: number; data: ArrayBuffer; length: number }
  | { stream: number; finish: true };

/** Messages from a worker. */
export type WorkerAnswer =
  | { job: number; replies: WorkerReply[] }
  | { stream: number; hashed: ArrayBuffer; length: number }
  | { stream: number; digest: { sha256: string; size: number } };

interface Pending {
  req: ReadRequest;
  resolve: (r: ReadResult) => void;
  reject: (err: unknown) => void;
}

interface PoolWorker {
  worker: Worker;
  outstanding: number;
  jobs: Map<number, Pending[]>;
}

export class ReadPool {
  private readonly workers: PoolWorker[];
  private queued: Pending[] = [];
  private nextJob = 0;
  private closed = false;
  private hashWorker: Worker | undefined;
  private readonly hashers = new Map<number, OffThreadHasher>();
  private nextStream = 0;

  constructor(size = Math.min(4, Math.max(2, availableParallelism()))) {
    this.workers = Array.from({ length: size }, () => {
      const pw: PoolWorker = { worker: new Worker(WORKER_URL), outstanding: 0, jobs: new Map() };
      pw.worker.on('message', (m: WorkerAnswer) => {
        if ('job' in m) this.settle(pw, m.job, m.replies);
      });
      pw.worker.on('error', (err) => this.failWorker(pw, err));
      pw.worker.on('exit', (code) => {
        if (!this.closed) this.failWorker(pw, new VhfsError('STORE', `file reader thread exited with code ${code}`));
      });
      return pw;
    });
  }

  /** SHA-256 of a stream the caller feeds in order, computed in a worker thread. */
  hasher(): OffThreadHasher {
    if (this.closed) throw new VhfsError('BAD_ARGUMENT', 'read pool used after close');
    if (!this.hashWorker) {
      const w = new Worker(WORKER_URL);
      w.on('message', (m: WorkerAnswer) => {
        if ('stream' in m) this.hashers.get(m.stream)?.answer(m);
      });
      const fail = (err: unknown) => {
        for (const h of this.hashers.values()) h.fail(err);
        this.hashers.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (!this.closed) fail(new VhfsError('STORE', `hashing thread exited with code ${code}`));
      });
      this.hashWorker = w;
    }
    const id = this.nextStream++;
    const h = new OffThreadHasher(this.hashWorker, id, () => this.hashers.delete(id));
    this.hashers.set(id, h);
    return h;
  }

  /** One file, read once and hashed in a worker. */
  read(req: ReadRequest): Promise<ReadResult> {
    if (this.closed) return Promise.reject(new VhfsError('BAD_ARGUMENT', 'read pool used after close'));
    return new Promise((resolve, reject) => {
      if (this.queued.length === 0) queueMicrotask(() => this.dispatch());
      this.queued.push({ req, resolve, reject });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.workers.map((w) => w.worker.terminate()), this.hashWorker?.terminate()]);
  }

  private dispatch(): void {
    const queued = this.queued;
    this.queued = [];
    for (let i = 0; i < queued.length; i += PER_MESSAGE) {
      const batch = queued.slice(i, i + PER_MESSAGE);
      const pw = this.workers.reduce((a, b) => (b.outstanding < a.outstanding ? b : a));
      const job = this.nextJob++;
      pw.jobs.set(job, batch);
      pw.outstanding += batch.length;
      pw.worker.postMessage({ job, requests: batch.map((p) => p.req) });
    }
  }

  private settle(pw: PoolWorker, job: number, replies: WorkerReply[]): void {
    const batch = pw.jobs.get(job);
    if (!batch) return;
    pw.jobs.delete(job);
    pw.outstanding -= batch.length;
    batch.forEach((p, i) => {
      const r = replies[i];
      if (r.ok) {
        p.resolve({
          bytes: Buffer.from(r.buffer, 0, r.size),
          digest: { sha256: r.sha256, size: r.size, ...(r.chunkTable ? { chunkTable: Buffer.from(r.chunkTable) } : {}) },
        });
      } else p.reject(new VhfsError(r.code, r.message));
    });
  }

  private failWorker(pw: PoolWorker, err: unknown): void {
    for (const batch of pw.jobs.values()) for (const p of batch) p.reject(err);
    pw.jobs.clear();
    pw.outstanding = Infinity; // never chosen again
  }
}

/**
 * A stream's SHA-256, computed in the pool's hashing worker from copies of the bytes.
 * `update` never blocks; a producer that can wait calls `drain()` now and then, so no more than
 * HASH_AHEAD_BYTES are ever queued for the worker.
 */
export class OffThreadHasher {
  private current = Buffer.allocUnsafeSlow(HASH_BATCH_BYTES);
  private used = 0;
  private readonly free: ArrayBuffer[] = [];
  private sent = 0;
  private hashed = 0;
  private failure: unknown;
  private waiters: Array<() => void> = [];
  private result: ((d: BodyDigest) => void) | undefined;
  private resultFailed: ((err: unknown) => void) | undefined;

  constructor(
    private readonly worker: Worker,
    private readonly id: number,
    private readonly done: () => void,
  ) {}

  update(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, this.current.length - this.used);
      this.current.set(take === chunk.length ? chunk : chunk.subarray(at, at + take), this.used);
      this.used += take;
      at += take;
      if (this.used === this.current.length) this.send();
    }
  }

  /** Resolves once the worker is at most HASH_AHEAD_BYTES behind. */
  async drain(): Promise<void> {
    while (this.failure === undefined && this.sent - this.hashed > HASH_AHEAD_BYTES) {
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.failure !== undefined) throw this.failure;
  }

  /** The digest of everything fed. */
  finish(): Promise<BodyDigest> {
    this.send();
    return new Promise<BodyDigest>((resolve, reject) => {
      if (this.failure !== undefined) return reject(this.failure);
      this.result = resolve;
      this.resultFailed = reject;
      this.worker.postMessage({ stream: this.id, finish: true } satisfies WorkerMessage);
    });
  }

  /** @internal the pool routes the worker's answers here. */
  answer(m: Extract<WorkerAnswer, { stream: number }>): void {
    if ('hashed' in m) {
      this.hashed += m.length;
      this.free.push(m.hashed);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
      return;
    }
    this.done();
    this.result?.({ sha256: m.digest.sha256, size: m.digest.size });
  }

  /** @internal */
  fail(err: unknown): void {
    this.failure ??= err;
    for (const w of this.waiters) w();
    this.waiters = [];
    this.resultFailed?.(err);
  }

  private send(): void {
    if (this.used === 0) return;
    const data = this.current.buffer as ArrayBuffer;
    const length = this.used;
    this.sent += length;
    const next = this.free.pop();
    this.current = next ? Buffer.from(next) : Buffer.allocUnsafeSlow(HASH_BATCH_BYTES);
    this.used = 0;
    this.worker.postMessage({ stream: this.id, data, length } satisfies WorkerMessage, [data]);
  }
}
