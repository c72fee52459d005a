/**
 * An in-memory ObjectStore for tests below the mount (cache, resolver, FUSE ops). It passes the same
 * contract suite as every real backend (test/store/memory-store.test.ts runs test/store/contract.ts), so
 * code tested against it behaves the same on a real store. Latency and failures are injected by wrapping
 * it in `FaultyStore` (src/store/faulty.ts); `ranges` records every ranged read for exact assertions.
 */
import { Readable } from 'node:stream';
import { keyProblem } from '../../src/store/index.js';
import type { ListOptions, ListPage, ObjectInfo, ObjectStore, PutBody, PutOptions } from '../../src/store/types.js';
import { newStoreStats } from '../../src/store/types.js';
import { VhfsError } from '../../src/util/errors.js';

export class MemoryStore implements ObjectStore {
  readonly url = 'mem://test';
  readonly stats = newStoreStats();
  readonly objects = new Map<string, { data: Buffer; etag: number }>();
  private version = 0;
  /** Every getRange as [key, offset, length], in call order. */
  ranges: Array<[string, number, number]> = [];

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.checkKey(key);
    this.stats.heads++;
    return this.info(key);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    signal?.throwIfAborted();
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad range ${offset}+${length} for ${key}`);
    }
    this.stats.gets++;
    this.ranges.push([key, offset, length]);
    const o = this.object(key);
    if (offset + length > o.data.length) throw new VhfsError('BAD_ARGUMENT', `${this.url}: range ${offset}+${length} of ${key} extends past its end (${o.data.length} bytes)`);
    this.stats.bytesRead += length;
    return Buffer.from(o.data.subarray(offset, offset + length));
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    this.checkKey(key);
    return this.getRange(key, 0, this.object(key).data.length, signal);
  }

  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    this.checkKey(key);
    const o = this.object(key);
    return Readable.from([range ? await this.getRange(key, range.offset, range.length) : await this.getRange(key, 0, o.data.length)]);
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<ObjectInfo> {
    this.checkKey(key);
    const chunks: Buffer[] = [];
    if (body instanceof Uint8Array) chunks.push(Buffer.from(body));
    else for await (const c of body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c));
    // No await from here on: the condition check and the write are one atomic step, as in a real store.
    const existing = this.objects.get(key);
    if (opts.ifNoneMatch === '*' && existing) throw new VhfsError('CONFLICT', `${this.url}: ${key} already exists`);
    if (opts.ifMatch !== undefined && (!existing || String(existing.etag) !== opts.ifMatch)) {
      throw new VhfsError('CONFLICT', `${this.url}: ${key} changed (expected etag ${opts.ifMatch})`);
    }
    const data = Buffer.concat(chunks);
    this.objects.set(key, { data, etag: ++this.version });
    this.stats.puts++;
    this.stats.bytesWritten += data.length;
    return this.info(key)!;
  }

  async list(prefix: string, opts: ListOptions = {}): Promise<ListPage> {
    this.stats.lists++;
    const objects: ObjectInfo[] = [];
    const prefixes = new Set<string>();
    for (const key of [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()) {
      const slash = opts.delimiter === '/' ? key.indexOf('/', prefix.length) : -1;
      if (slash >= 0) prefixes.add(key.slice(0, slash + 1));
      else objects.push(this.info(key)!);
    }
    return { objects, prefixes: [...prefixes].sort() };
  }

  async delete(key: string): Promise<void> {
    this.checkKey(key);
    this.objects.delete(key);
  }

  private object(key: string): { data: Buffer; etag: number } {
    const o = this.objects.get(key);
    if (!o) throw new VhfsError('NOT_FOUND', `${this.url}/${key}: no such object`);
    return o;
  }

  private info(key: string): ObjectInfo | undefined {
    const o = this.objects.get(key);
    return o && { key, size: o.data.length, etag: String(o.etag), mtimeMs: 0 };
  }

  private checkKey(key: string): void {
    const bad = keyProblem(key);
    if (bad) throw new VhfsError('BAD_ARGUMENT', `${this.url}: bad object key ${JSON.stringify(key)}: ${bad}`);
  }
}
