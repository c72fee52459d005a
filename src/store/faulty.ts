/**
 * `FaultyStore`: wraps any store to inject failures and latency in tests, so retry paths, error
 * messages and timeouts are exercised on purpose. Calls are counted per operation (1-based); a rule
 * `{ op: 'getRange', nth: 3 }` fails exactly the third getRange. Stats are the inner store's.
 *
 * The delay behaves like a slow network: a call that carries an `AbortSignal` (`getRange`, `get`) rejects
 * with the signal's reason as soon as it is aborted (at once if it already is), not after the delay; that
 * is what lets a caller's deadline (the block cache's fetch timeout) fire against a store that never
 * answers (`delayMs: Infinity`-like values). With `keys`, only calls on matching keys (or list prefixes)
 * are delayed, counted, failed or hooked; the others go straight to the inner store.
 */
import { VhfsError } from '../util/errors.js';
import type { ListOptions, ListPage, ObjectInfo, ObjectStore, PutBody, PutOptions, StoreStats } from './types.js';
import type { Readable } from 'node:stream';

export type StoreOp = 'head' | 'getRange' | 'get' | 'getStream' | 'put' | 'list' | 'delete';

export interface FaultPlan {
  /** Added before every call (ms); an abort of the call's signal cuts it short. */
  delayMs?: number;
  /** Fail the nth call of `op` (or every call from nth on, with `sticky`) with `error` (default STORE). */
  fail?: Array<{ op: StoreOp; nth: number; sticky?: boolean; error?: Error }>;
  /** Only calls whose key (list: prefix) matches are affected and counted; default all. */
  keys?: RegExp;
  /**
   * Runs after the delay, just before the call reaches the inner store (when no rule failed it). A test
   * uses it to act as another client at the worst moment, e.g. replace the object so that this call's
   * conditional put loses its compare-and-swap for real.
   */
  beforeCall?: (op: StoreOp, key: string) => Promise<void> | void;
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
    await this.before('getRange', key, signal);
    return this.inner.getRange(key, offset, length, signal);
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    await this.before('get', key, signal);
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

  async close(): Promise<void> {
    await this.inner.close?.();
  }

  private async before(op: StoreOp, key: string, signal?: AbortSignal): Promise<void> {
    const plan = this.plan;
    if (plan.keys && !plan.keys.test(key)) return;
    const n = ++this.calls[op];
    signal?.throwIfAborted();
    if (plan.delayMs) await delay(plan.delayMs, signal);
    const rule = plan.fail?.find((r) => r.op === op && (r.sticky ? n >= r.nth : n === r.nth));
    if (rule) throw rule.error ?? new VhfsError('STORE', `${this.url}: injected failure of ${op} #${n} (${key})`);
    await plan.beforeCall?.(op, key);
  }
}

/** Wait `ms`, or reject with the signal's reason the moment it aborts. */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // setTimeout clamps anything above 2^31-1 ms to 1 ms; a store that "never answers" must not answer at once.
    const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    function done() {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
