/**
 * FaultyStore (src/store/faulty.ts), the fault injector the tests below the mount rely on: nth and sticky
 * failures, the key filter, the hook that plays another client, and a delay that an AbortSignal cuts short.
 */
import test from 'ava';
import { FaultyStore } from '../../src/store/faulty.js';
import { isVhfsError, VhfsError } from '../../src/util/errors.js';
import { MemoryStore } from '../helpers/memory-store.js';

async function seeded(): Promise<MemoryStore> {
  const mem = new MemoryStore();
  await mem.put('k', Buffer.from('abc'));
  await mem.put('other', Buffer.from('xyz'));
  return mem;
}

test('fails exactly the nth call, or every call from the nth with sticky; a failed call never reaches the store', async (t) => {
  const mem = await seeded();
  const s = new FaultyStore(mem, { fail: [{ op: 'getRange', nth: 2 }, { op: 'head', nth: 2, sticky: true, error: new VhfsError('TIMEOUT', 'slow head') }] });
  t.is((await s.getRange('k', 0, 1)).toString(), 'a');
  const err = await t.throwsAsync(s.getRange('k', 0, 1));
  t.true(isVhfsError(err, 'STORE'));
  t.is(err!.message, 'mem://test: injected failure of getRange #2 (k)');
  t.is((await s.getRange('k', 1, 2)).toString(), 'bc');
  t.is(mem.stats.gets, 2, 'the failed call never reached the inner store');
  t.is((await s.head('k'))?.size, 3);
  for (let i = 0; i < 3; i++) t.true(isVhfsError(await t.throwsAsync(s.head('k')), 'TIMEOUT'));
  t.deepEqual(s.calls, { head: 4, getRange: 3, get: 0, getStream: 0, put: 0, list: 0, delete: 0 });
});

test('the delay is added to every call', async (t) => {
  const s = new FaultyStore(await seeded(), { delayMs: 40 });
  const started = process.hrtime.bigint();
  t.is((await s.get('k')).toString(), 'abc');
  // A timer never fires early: this lower bound cannot flake (no upper bound is asserted).
  t.true(Number(process.hrtime.bigint() - started) / 1e6 >= 39);
});

test('an abort ends a delayed call at once with the abort reason; an already aborted call never starts', async (t) => {
  const mem = await seeded();
  const s = new FaultyStore(mem, { delayMs: 3_600_000 });
  const ac = new AbortController();
  const pending = s.getRange('k', 0, 1, ac.signal);
  const reason = new Error('caller gave up');
  ac.abort(reason);
  t.is(await t.throwsAsync(pending), reason);
  // AbortSignal.timeout's reason is a DOMException (not an Error, so not for t.throwsAsync).
  const timeout = await s.get('k', AbortSignal.timeout(20)).then(() => undefined, (err: unknown) => err as { name?: string });
  t.is(timeout?.name, 'TimeoutError');
  const dead = new AbortController();
  dead.abort(new Error('already'));
  t.is((await t.throwsAsync(s.getRange('k', 0, 1, dead.signal)))!.message, 'already');
  t.is(mem.stats.gets, 0, 'no aborted call reached the inner store');
});

test('keys: only calls on matching keys are delayed, counted, failed or hooked', async (t) => {
  const mem = await seeded();
  const hooked: string[] = [];
  const s = new FaultyStore(mem, {
    keys: /^k$/, fail: [{ op: 'get', nth: 1, sticky: true }], beforeCall: (op, key) => { hooked.push(`${op} ${key}`); },
  });
  t.is((await s.get('other')).toString(), 'xyz');
  t.true(isVhfsError(await t.throwsAsync(s.get('k')), 'STORE'));
  t.is((await s.getRange('k', 0, 1)).toString(), 'a');
  t.deepEqual(hooked, ['getRange k']);
  t.is(s.calls.get, 1);
});

test('beforeCall can act as a rival writer: a conditional put then loses its compare-and-swap for real', async (t) => {
  const mem = await seeded();
  const s = new FaultyStore(mem, {
    keys: /^k$/,
    beforeCall: async (op, key) => { if (op === 'put') await mem.put(key, await mem.get(key)); },
  });
  const etag = (await s.head('k'))!.etag;
  const err = await t.throwsAsync(s.put('k', Buffer.from('mine'), { ifMatch: etag }));
  t.true(isVhfsError(err, 'CONFLICT'), String(err));
  t.is((await mem.get('k')).toString(), 'abc', 'the rival\'s (unchanged) content stays');
});
