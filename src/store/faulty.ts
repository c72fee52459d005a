/**
 * `FaultyStore`: wraps any store to inject failures and latency in tests, so retry paths, error
 * messages and timeouts are exercised on purpose. Calls are counted per operation (1-based); a rule
 * `{ op: 'getRange', nth: 3 }` fails exactly the third getRange. Stats are the inner store's.
 */
import { VhfsError } from '../util/errors.js';
import type { ListOptions, ListPage, ObjectInfo, ObjectStore, PutBody, PutOptions, StoreStats } from './types.js';
import type { Readable } from 'node:stream';

export type StoreOp = 'head' | 'getRange' | 'get' | 'getStream' | 'put' | 'list' | 'delete';

export interface FaultPlan {
  /** Added before every call (ms). */
  delayMs?: number;
  /** Fail the nth call of `op` (or every call from nth on, with `sticky`) with `error` (default STORE). */
  fail?: Array<{ op: StoreOp; nth: number; sticky?: boolean; error?: Error }>;
}

export class FaultyStore implements ObjectStore {
  readonly calls: Record<StoreOp, number> = { head: 0, getRange: 0, get: 0, getStream: 0, put: 0, list: 0, delete: 0 };

  constructor(readonly inner: ObjectStore, public plan: FaultPlan = {}) {}

  get url(): string {
    return this.inner.url;
  }

  get stats(): StoreStats {
    return this.inner.stats;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    await this.before('head', key);
    return this.inner.head(key);
  }

  async getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    await this.before('getRange', key);
    return this.inner.getRange(key, offset, length, signal);
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    await this.before('get', key);
    return this.inner.get(key, signal);
  }

  async getStream(key: string, range?: { offset: number; length: number }): Promise<Readable> {
    await this.before('getStream', key);
    return this.inner.getStream(key, range);
  }

  async put(key: string, body: PutBody, opts?: PutOptions): Promise<ObjectInfo> {
    await this.before('put', key);
    return this.inner.put(key, body, opts);
  }

  async list(prefix: string, opts?: ListOptions): Promise<ListPage> {
    await this.before('list', prefix);
    return this.inner.list(prefix, opts);
  }

  async delete(key: string): Promise<void> {
    await this.before('delete', key);
    return this.inner.delete(key);
  }

  private async before(op: StoreOp, key: string): Promise<void> {
    const n = ++this.calls[op];
    if (this.plan.delayMs) await new Promise((r) => setTimeout(r, this.plan.delayMs));
    const rule = this.plan.fail?.find((r) => r.op === op && (r.sticky ? n >= r.nth : n === r.nth));
    if (rule) throw rule.error ?? new VhfsError('STORE', `${this.url}: injected failure of ${op} #${n} (${key})`);
  }
}
