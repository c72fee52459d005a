import test from 'ava';
import { collectGarbage } from '../../src/util/gc.js';

test('collectGarbage collects what nothing references, without --expose-gc', async (t) => {
  t.is((globalThis as { gc?: unknown }).gc, undefined, 'this test runs without --expose-gc');
  const ref = (() => new WeakRef({ payload: Buffer.alloc(1 << 20) }))();
  // A WeakRef's target is kept alive until the end of the job that created or dereferenced it.
  await new Promise((resolve) => setImmediate(resolve));
  collectGarbage();
  t.is(ref.deref(), undefined);
  t.is((globalThis as { gc?: unknown }).gc, undefined, 'gc() is not added to the global object');
});

test('collectGarbage keeps what is referenced', async (t) => {
  const kept = { payload: Buffer.alloc(1 << 20, 7) };
  const ref = new WeakRef(kept);
  await new Promise((resolve) => setImmediate(resolve));
  collectGarbage();
  collectGarbage();
  t.is(ref.deref(), kept);
  t.is(kept.payload[12345], 7);
});
