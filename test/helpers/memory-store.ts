/** An in-memory ObjectStore for cache tests: optional per-call latency and failure injection. */
import { Readable } from 'node:stream';
import type { ObjectInfo, ObjectStore, PutBody, PutOptions, ListPage } from '../../src/store/types.js';
import { newStoreStats } from '../../src/store/types.js';
import { VhfsError } from '../../src/util/errors.js';

export class MemoryStore implements ObjectStore {
  readonly url = 'mem://test';
  readonly stats = newStoreStats();
  readonly objects = new Map<string, { data: Buffer; etag: number }>();
  private version = 0;
  delayMs = 0;
  failNext = 0;
  ranges: Array<[string, number, number]> = [];

  async head(key: string): Promise<ObjectInfo | undefined> {
    this.stats.heads++;
    const o = this.objects.get(key);
    return o && { key, size: o.data.length, etag: String(o.etag), mtimeMs: 0 };
  }
  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.stats.gets++;
    this.ranges.push([key, offset, length]);
    if (this.delayMs) await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, this.delayMs);
      signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
    if (this.failNext > 0) { this.failNext--; throw new VhfsError('STORE', `${this.url}/${key}: injected failure`); }
    const o = this.objects.get(key);
    if (!o) throw new VhfsError('NOT_FOUND', `${this.url}/${key}: no such object`);
    if (offset + length > o.data.length) throw new VhfsError('BAD_ARGUMENT', `${key}: range past end`);
    this.stats.bytesRead += length;
    return Buffer.from(o.data.subarray(offset, offset + length));
  }
  async get(key: string): Promise<Buffer> {
    const o = this.objects.get(key);
    if (!o) throw new VhfsError('NOT_FOUND', `${this.url}/${key}: no such object`);
    return this.getRange(key, 0, o.data.length);
  }
  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    const o = this.objects.get(key);
    if (!o) throw new VhfsError('NOT_FOUND', `${this.url}/${key}: no such object`);
    return Readable.from([range ? await this.getRange(key, range.offset, range.length) : await this.get(key)]);
  }
  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<ObjectInfo> {
    const chunks: Buffer[] = [];
    if (body instanceof Uint8Array) chunks.push(Buffer.from(body));
    else for await (const c of body as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(c));
    const existing = this.objects.get(key);
    if (opts.ifNoneMatch === '*' && existing) throw new VhfsError('CONFLICT', `${key} exists`);
    if (opts.ifMatch !== undefined && (!existing || String(existing.etag) !== opts.ifMatch)) throw new VhfsError('CONFLICT', `${key} changed`);
    const data = Buffer.concat(chunks);
    this.objects.set(key, { data, etag: ++this.version });
    this.stats.puts++;
    this.stats.bytesWritten += data.length;
    return { key, size: data.length, etag: String(this.version), mtimeMs: 0 };
  }
  async list(prefix: string): Promise<ListPage> {
    this.stats.lists++;
    const objects = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()
      .map((key) => ({ key, size: this.objects.get(key)!.data.length, etag: '', mtimeMs: 0 }));
    return { objects, prefixes: [] };
  }
  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }
}
