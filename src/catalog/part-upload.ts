/**
 * A package part streamed to its final store key while the package writer produces it.
 *
 * The writer writes into a `Writable`; the store's put reads an async iterable. A PassThrough between
 * them cost a stream event and an iterator step per chunk (two chunks per small member); `PartChannel`
 * hands the writer's corked batches (`_writev`) to the put whole and acknowledges a batch only once the
 * put has asked for more, so the writer's own backpressure (highWaterMark) bounds what is in flight. The
 * bytes are hashed off the main thread on their way (read-pool.ts `hasher()`), for the part's datum
 * sha256 (its chunk table is the writer's last member).
 *
 * Failure either way stops both sides: a failed put destroys the channel, which fails the writer's next
 * write; a failed writer destroys the channel, which fails the put (nothing is published: the store's put
 * is atomic). `settled` resolves once the put has finished either way, so a rollback never races it.
 */
import { Writable } from 'node:stream';
import type { ObjectInfo, ObjectStore } from '../store/types.js';
import type { BodyDigest } from '../util/hash.js';
import type { OffThreadHasher } from './read-pool.js';

export interface PartUpload {
  /** What the package writer writes the part into. */
  writable: Writable;
  /** The stored object and the digest of exactly the bytes stored. */
  result: Promise<{ info: ObjectInfo; digest: BodyDigest }>;
  /** Resolves (never rejects) once the put has finished or failed. */
  settled: Promise<void>;
}

export function startPartUpload(store: ObjectStore, key: string, hasher: OffThreadHasher): PartUpload {
  const channel = new PartChannel();
  async function* body(): AsyncGenerator<Uint8Array> {
    for await (const batch of channel.batches()) {
      for (const chunk of batch) {
        hasher.update(chunk);
        yield chunk;
      }
      await hasher.drain();
    }
  }
  const put = store.put(key, body(), { ifNoneMatch: '*', contentType: 'application/zip' });
  put.catch((err: unknown) => channel.destroy(err instanceof Error ? err : new Error(String(err))));
  const result = put.then(async (info) => ({ info, digest: await hasher.finish() }));
  result.catch(() => {}); // the caller awaits it after the writer is done; a failure meanwhile is not unhandled
  return { writable: channel, result, settled: put.then(() => {}, () => {}) };
}

class PartChannel extends Writable {
  private batch: Uint8Array[] | undefined;
  private release: ((err?: Error | null) => void) | undefined;
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;

  constructor() {
    super({ highWaterMark: 4 << 20 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.offer([chunk], cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.offer(chunks.map((c) => c.chunk), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.ended = true;
    this.wakeUp();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.failure = err ?? new Error('package part stream closed before its end');
    this.release?.(this.failure);
    this.release = undefined;
    this.wakeUp();
    cb(err);
  }

  /** The writer's batches in order; ends when the writer ends the stream, throws if it is destroyed. */
  async *batches(): AsyncGenerator<Uint8Array[]> {
    for (;;) {
      if (this.failure) throw this.failure;
      const batch = this.batch;
      if (batch) {
        const release = this.release;
        this.batch = undefined;
        this.release = undefined;
        yield batch;
        release?.(); // the consumer asked for more: the writer may go on
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  private offer(chunks: Uint8Array[], cb: (err?: Error | null) => void): void {
    if (this.failure) return cb(this.failure);
    this.batch = chunks; // a Writable calls _write/_writev again only after cb: one batch at a time
    this.release = cb;
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }
}
