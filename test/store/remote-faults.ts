/**
 * Failure tests every network backend runs against its real local server behind the fault proxy
 * (test/servers/fault-proxy.ts). Each test asserts that faults were really injected, so none can pass
 * on a quiet network.
 *  - `faultTests`: with 25% of requests failing (500, 503, connection resets), puts (small, and a stream
 *    big enough for a multipart/resumable/block upload) and ranged reads come back byte-identical; bodies
 *    cut off mid-way are fetched again (ranged reads) or resumed (streams); a conditional put whose reply
 *    is lost after the server acted still counts as done once, while a real conflict stays CONFLICT.
 *  - `stallTests`: a server that accepts and never answers gives TIMEOUT within the caller's AbortSignal
 *    deadline, and without a signal the store gives up after its retry policy's idle timeouts — never hangs.
 */
import type { TestFn } from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ObjectStore } from '../../src/store/types.js';
import type { RetryPolicy } from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { rng } from '../helpers/rng.js';
import { collect } from './contract.js';

export interface RemoteFixture {
  /** Where the proxy forwards to (the server, or a shim in front of it). */
  upstream: () => string;
  /** A store reaching the server through `proxy`, rooted at `prefix`. */
  open: (proxy: FaultProxy, prefix: string, retry?: Partial<RetryPolicy>) => ObjectStore;
}

let prefixes = 0;
const freshPrefix = (label: string) => `faults-${label.toLowerCase()}-${process.pid}-${++prefixes}/`;

const totalFaults = (p: FaultProxy) => Object.values(p.stats.faults).reduce((a, b) => a + b, 0);

export function faultTests(test: TestFn, label: string, fx: RemoteFixture): void {
  test(`${label} under faults: 25% of requests fail (500, 503, reset); puts and ranged reads stay byte-identical`, async (t) => {
    const proxy = await startFaultProxy(fx.upstream(), { failRate: 0.25, faults: ['500', '503', 'reset'], maxFaults: 400, seed: 7 });
    try {
      const store = fx.open(proxy, freshPrefix(label));
      const random = rng(42);
      const objects = new Map<string, Buffer>();
      for (let i = 0; i < 16; i++) {
        const body = randomBytes(Math.floor(random() * 300_000));
        objects.set(`o/${i}`, body);
        await store.put(`o/${i}`, body);
      }
      const big = randomBytes(10 * 1024 * 1024 + 123);
      await store.put('o/big', Readable.from(Array.from({ length: 41 }, (_, i) => big.subarray(i * 262144, (i + 1) * 262144))));
      objects.set('o/big', big);
      for (const [key, body] of objects) {
        t.is((await store.head(key))?.size, body.length, `${key} size`);
        for (let r = 0; r < 4 && body.length > 0; r++) {
          const offset = Math.floor(random() * body.length);
          const length = Math.min(body.length - offset, 1 + Math.floor(random() * 262144));
          const got = await store.getRange(key, offset, length);
          t.true(got.equals(body.subarray(offset, offset + length)), `${key} bytes ${offset}+${length}`);
        }
      }
      t.true((await store.get('o/big')).equals(big), 'whole big object');
      t.deepEqual((await store.list('o/')).objects.map((o) => o.key).sort(), [...objects.keys()].sort());
      t.true(totalFaults(proxy) >= 10, `faults injected: ${JSON.stringify(proxy.stats.faults)}`);
      t.log(`${label}: ${proxy.stats.requests} requests, faults ${JSON.stringify(proxy.stats.faults)}`);
    } finally {
      await proxy.stop();
    }
  });

  test(`${label} under faults: bodies cut off mid-way are fetched again (ranges) or resumed (streams)`, async (t) => {
    const proxy = await startFaultProxy(fx.upstream());
    try {
      const store = fx.open(proxy, freshPrefix(label));
      const body = randomBytes(3 * 1024 * 1024);
      await store.put('cut', body);
      proxy.set({ failRate: 0.3, faults: ['truncate'], methods: ['GET'], maxFaults: 30, seed: 3 });
      for (let i = 0; i < 12; i++) {
        const offset = i * 200_000;
        t.true((await store.getRange('cut', offset, 262144)).equals(body.subarray(offset, offset + 262144)), `range ${i}`);
      }
      for (let i = 0; i < 3; i++) t.true((await collect(await store.getStream('cut'))).equals(body), `stream ${i}`);
      t.true(proxy.stats.faults.truncate >= 3, `truncated replies: ${proxy.stats.faults.truncate}`);
    } finally {
      await proxy.stop();
    }
  });

  test(`${label} under faults: a conditional put whose reply is lost counts once; a real conflict stays CONFLICT`, async (t) => {
    const proxy = await startFaultProxy(fx.upstream());
    try {
      const store = fx.open(proxy, freshPrefix(label));
      proxy.set({ failRate: 1, faults: ['lost-reply'], methods: ['PUT', 'POST'], maxFaults: 1 });
      const created = await store.put('alias', Buffer.from('v1'), { ifNoneMatch: '*' });
      t.is(proxy.stats.faults['lost-reply'], 1, 'the first reply was lost');
      t.is((await store.get('alias')).toString(), 'v1');
      t.is((await store.head('alias'))?.etag, created.etag);
      const conflict = await t.throwsAsync(store.put('alias', Buffer.from('v1'), { ifNoneMatch: '*' }));
      t.true(isVhfsError(conflict, 'CONFLICT'), `identical bytes from a second writer are still a conflict: ${String(conflict)}`);
      proxy.set({ failRate: 1, faults: ['lost-reply'], methods: ['PUT', 'POST'], maxFaults: 2 });
      const swapped = await store.put('alias', Buffer.from('v2'), { ifMatch: created.etag });
      t.is(proxy.stats.faults['lost-reply'], 2);
      t.is((await store.get('alias')).toString(), 'v2');
      const stale = await t.throwsAsync(store.put('alias', Buffer.from('v3'), { ifMatch: created.etag }));
      t.true(isVhfsError(stale, 'CONFLICT'), String(stale));
      t.is((await store.head('alias'))?.etag, swapped.etag);
    } finally {
      await proxy.stop();
    }
  });
}

export function stallTests(test: TestFn, label: string, fx: RemoteFixture): void {
  test(`${label}: a store that stalls gives TIMEOUT within the AbortSignal's deadline`, async (t) => {
    const proxy = await startFaultProxy(fx.upstream());
    try {
      const store = fx.open(proxy, freshPrefix(label));
      await store.put('k', randomBytes(100_000));
      proxy.set({ failRate: 1, faults: ['stall'], maxFaults: 100, stallMs: 30_000 });
      for (const call of [
        (s: AbortSignal) => store.getRange('k', 10, 1000, s),
        (s: AbortSignal) => store.get('k', s),
      ]) {
        const started = Date.now();
        const err = await t.throwsAsync(call(AbortSignal.timeout(400)));
        const took = Date.now() - started;
        t.true(isVhfsError(err, 'TIMEOUT'), String(err));
        t.regex(err!.message, /no answer within the deadline/);
        t.true(took >= 390 && took < 3000, `gave up after ${took} ms`);
      }
      t.true(proxy.stats.faults.stall >= 2);
    } finally {
      await proxy.stop();
    }
  });

  test(`${label}: without a signal, a stalled read gives up after the retry policy's idle timeouts`, async (t) => {
    const proxy = await startFaultProxy(fx.upstream());
    try {
      const prefix = freshPrefix(label);
      await fx.open(proxy, prefix).put('k', randomBytes(1000));
      const store = fx.open(proxy, prefix, { attempts: 2, idleTimeoutMs: 400, baseDelayMs: 1, maxDelayMs: 10 });
      proxy.set({ failRate: 1, faults: ['stall'], maxFaults: 100, stallMs: 30_000 });
      const started = Date.now();
      const err = await t.throwsAsync(store.getRange('k', 0, 10));
      const took = Date.now() - started;
      t.true(isVhfsError(err, 'TIMEOUT') || isVhfsError(err, 'STORE'), String(err));
      t.true(took < 8000, `gave up after ${took} ms`);
      t.true(proxy.stats.faults.stall >= 1);
    } finally {
      await proxy.stop();
    }
  });
}
