import test from 'ava';
import { mapAhead, mapLimit } from '../../src/util/concurrency.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

test('mapLimit: results in input order, at most `limit` calls at once', async (t) => {
  let running = 0;
  let most = 0;
  const out = await mapLimit([5, 1, 4, 2, 3, 0, 6], 3, async (x) => {
    most = Math.max(most, ++running);
    for (let i = 0; i < x; i++) await tick();
    running--;
    return x * 10;
  });
  t.deepEqual(out, [50, 10, 40, 20, 30, 0, 60]);
  t.is(most, 3);
});

test('mapLimit: after a failure nothing new starts, and it rejects only once the running calls have settled', async (t) => {
  const started: number[] = [];
  let settled = 0;
  const err = await t.throwsAsync(mapLimit([0, 1, 2, 3, 4, 5, 6, 7], 3, async (x) => {
    started.push(x);
    for (let i = 0; i < (x === 1 ? 1 : 5); i++) await tick();
    settled++;
    if (x === 1) throw new Error('boom');
    return x;
  }));
  t.is(err!.message, 'boom');
  t.deepEqual(started, [0, 1, 2], 'no call started after the failure');
  t.is(settled, 3, 'the calls running at the failure finished before the rejection');
});

test('mapAhead: yields in order while later calls run; bounded by count and weight; refills in bursts', async (t) => {
  let running = 0;
  let most = 0;
  const bursts: number[] = [];
  let burst = 0;
  const items = Array.from({ length: 40 }, (_, i) => i);
  const got: number[] = [];
  const weigh = (x: number) => (x % 3 === 0 ? 100 : 1); // unbounded, 8 at once would hold ~300
  let ahead = 0; // weight started and not yet consumed, including the item the consumer holds
  let heaviest = 0;
  for await (const v of mapAhead(items, { limit: 8, weigh, maxWeight: 110 }, async (x) => {
    burst++;
    queueMicrotask(() => {
      if (burst > 0) bursts.push(burst);
      burst = 0;
    });
    ahead += weigh(x);
    heaviest = Math.max(heaviest, ahead);
    most = Math.max(most, ++running);
    for (let i = 0; i < (x * 7) % 5; i++) await tick();
    running--;
    return x;
  })) {
    ahead -= weigh(v);
    got.push(v);
    await tick();
  }
  t.deepEqual(got, items);
  t.true(most <= 8, `at most 8 at once (saw ${most})`);
  t.true(heaviest <= 110 + 100, `at most 110 of weight ahead plus the consumer's item (saw ${heaviest})`);
  t.true(heaviest > 100, 'the heavy items did run ahead');
  t.true(bursts.some((b) => b > 1), `calls start in bursts: ${bursts.join(',')}`);
});

test('mapAhead: a failed call throws at its turn; a consumer that stops leaves no call running', async (t) => {
  const settled = new Set<number>();
  const started = new Set<number>();
  const gen = mapAhead([0, 1, 2, 3, 4, 5], { limit: 4 }, async (x) => {
    started.add(x);
    for (let i = 0; i < 3; i++) await tick();
    settled.add(x);
    if (x === 2) throw new Error('two');
    return x;
  });
  const got: number[] = [];
  const err = await t.throwsAsync((async () => {
    for await (const v of gen) got.push(v);
  })());
  t.is(err!.message, 'two');
  t.deepEqual(got, [0, 1]);
  t.deepEqual([...started].sort(), [...settled].sort(), 'every started call had settled when the error came out');

  const early = new Set<number>();
  const done = new Set<number>();
  for await (const v of mapAhead([0, 1, 2, 3, 4, 5, 6, 7], { limit: 4 }, async (x) => {
    early.add(x);
    for (let i = 0; i < 4; i++) await tick();
    done.add(x);
    return x;
  })) {
    if (v === 1) break;
  }
  t.deepEqual([...early].sort(), [...done].sort(), 'break waited for the calls in flight');
  t.true(early.size < 8, 'and started no more');
});
