/**
 * The ObjectStore contract as a reusable suite: every backend (local directory, S3, GCS, Azure) runs
 * `storeContract(test, 'name', makeStore)` and must pass unchanged. Each test gets a fresh, empty store;
 * `cleanup` removes whatever backs it. A fixture that can `reopen` its store (a second, independent
 * client of the same location: own connections, own caches) also runs the races between writers.
 *
 * `knownServerBugs` names defects of a local test server (not of the backend): those tests are run as
 * `test.failing`, so they document the defect and start failing the day the server is fixed.
 *   'shallow-common-prefixes': s3rver 3.7.1 reports a common prefix only if an object lies directly
 *   below it (`deep/x/y` listed with delimiter under '' gives no `deep/`), see toolchain.md.
 */
import type { TestFn } from 'ava';
import { Readable } from 'node:stream';
import { isVhfsError } from '../../src/util/errors.js';
import type { ObjectStore } from '../../src/store/types.js';

export interface StoreFixture {
  store: ObjectStore;
  cleanup: () => Promise<void>;
  /** Another client of the same store (for races between writers that share nothing but the store). */
  reopen?: () => ObjectStore;
}

export interface ContractOptions {
  knownServerBugs?: Array<'shallow-common-prefixes'>;
}

/** A stream's bytes, concatenated. */
export async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function storeContract(test: TestFn, label: string, makeStore: () => Promise<StoreFixture>, options: ContractOptions = {}): void {
  const run = (fn: (store: ObjectStore, fx: StoreFixture) => Promise<void>) => async (tt: { pass: () => void }) => {
    const fx = await makeStore();
    try {
      await fn(fx.store, fx);
      tt.pass();
    } finally {
      await fx.cleanup();
    }
  };
  const t = (title: string, fn: (store: ObjectStore, fx: StoreFixture) => Promise<void>) => test(`${label} contract: ${title}`, run(fn));
  const bug = (name: 'shallow-common-prefixes', title: string, fn: (store: ObjectStore) => Promise<void>) =>
    options.knownServerBugs?.includes(name)
      ? test.failing(`${label} contract: ${title} (known server bug: ${name})`, run(fn))
      : t(title, fn);
  // ava assertions need the execution context; these helpers keep the tests short and explicit
  const eq = (a: unknown, b: unknown, what: string) => {
    if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${what}: got ${JSON.stringify(a)}, want ${JSON.stringify(b)}`);
  };
  const rejects = async (p: Promise<unknown>, code: string, what: string, msg?: RegExp) => {
    try {
      await p;
    } catch (err) {
      if (!isVhfsError(err) || err.code !== code) throw new Error(`${what}: wanted ${code}, got ${String(err)}`);
      if (msg && !msg.test(err.message)) throw new Error(`${what}: message ${JSON.stringify(err.message)} !~ ${msg}`);
      return;
    }
    throw new Error(`${what}: did not throw ${code}`);
  };

  t('put then get, head, getRange, getStream', async (s) => {
    const body = Buffer.from('hello, object store');
    const info = await s.put('a/b/hello.txt', body);
    eq(info.key, 'a/b/hello.txt', 'put key');
    eq(info.size, body.length, 'put size');
    eq((await s.get('a/b/hello.txt')).toString(), body.toString(), 'get');
    const h = await s.head('a/b/hello.txt');
    eq(h?.size, body.length, 'head size');
    eq(h?.etag, info.etag, 'head etag = put etag');
    eq((await s.getRange('a/b/hello.txt', 7, 6)).toString(), 'object', 'range');
    eq((await s.getRange('a/b/hello.txt', body.length, 0)).length, 0, 'empty range at end');
    eq((await collect(await s.getStream('a/b/hello.txt'))).toString(), body.toString(), 'stream');
    eq((await collect(await s.getStream('a/b/hello.txt', { offset: 14, length: 5 }))).toString(), 'store', 'stream range');
  });

  t('streaming and async-iterable bodies', async (s) => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    await s.put('big', Readable.from([big.subarray(0, 1000), big.subarray(1000)]));
    eq((await s.head('big'))?.size, big.length, 'stream put size');
    async function* gen() {
      yield new Uint8Array([1, 2]);
      yield new Uint8Array([3]);
    }
    await s.put('gen', gen());
    eq([...(await s.get('gen'))], [1, 2, 3], 'async iterable put');
    eq((await s.getRange('big', big.length - 3, 3)).equals(big.subarray(-3)), true, 'tail range');
  });

  t('replace changes etag; empty object', async (s) => {
    const a = await s.put('k', Buffer.from('one'));
    const b = await s.put('k', Buffer.from('two'));
    if (a.etag === b.etag) throw new Error('etag did not change on replace');
    eq((await s.get('k')).toString(), 'two', 'replaced');
    await s.put('empty', Buffer.alloc(0));
    eq((await s.get('empty')).length, 0, 'empty object');
    eq((await s.head('empty'))?.size, 0, 'empty head');
  });

  t('missing keys', async (s) => {
    eq(await s.head('nope'), undefined, 'head missing');
    await rejects(s.get('nope'), 'NOT_FOUND', 'get missing', /nope/);
    await rejects(s.getRange('no/such/key', 0, 1), 'NOT_FOUND', 'range missing', /no\/such\/key/);
    await rejects(s.getStream('nope'), 'NOT_FOUND', 'stream missing');
    await s.put('dir/x', Buffer.from('x'));
    await rejects(s.get('dir'), 'NOT_FOUND', 'a prefix is not an object');
    eq(await s.head('dir'), undefined, 'head of a prefix');
    await s.delete('nope'); // absent: not an error
  });

  t('range errors', async (s) => {
    await s.put('r', Buffer.from('0123456789'));
    await rejects(s.getRange('r', 5, 6), 'BAD_ARGUMENT', 'past end');
    await rejects(s.getRange('r', 11, 0), 'BAD_ARGUMENT', 'offset past end');
    await rejects(s.getRange('r', -1, 2), 'BAD_ARGUMENT', 'negative offset');
    await rejects(s.getRange('r', 0, 1.5), 'BAD_ARGUMENT', 'fractional length');
    await rejects(s.getStream('r', { offset: 8, length: 3 }), 'BAD_ARGUMENT', 'stream past end');
    eq((await s.getRange('r', 9, 1)).toString(), '9', 'last byte');
  });

  t('bad keys', async (s) => {
    for (const k of ['', '/abs', 'a/../b', 'a//b', 'a/', 'nul\0x', './a', '..']) {
      await rejects(s.put(k, Buffer.from('x')), 'BAD_ARGUMENT', `put ${JSON.stringify(k)}`);
      await rejects(s.get(k), 'BAD_ARGUMENT', `get ${JSON.stringify(k)}`);
    }
  });

  t('list with and without delimiter, in key order', async (s) => {
    for (const k of ['b/2', 'a/1', 'a/sub/3', 'a-c', 'a/sub/deeper/4', 'c']) await s.put(k, Buffer.from(k));
    eq((await s.list('')).objects.map((o) => o.key), ['a-c', 'a/1', 'a/sub/3', 'a/sub/deeper/4', 'b/2', 'c'], 'list all');
    eq((await s.list('a/')).objects.map((o) => o.key), ['a/1', 'a/sub/3', 'a/sub/deeper/4'], 'list a/');
    const d = await s.list('a/', { delimiter: '/' });
    eq(d.objects.map((o) => o.key), ['a/1'], 'delimited objects');
    eq(d.prefixes, ['a/sub/'], 'delimited prefixes');
    const top = await s.list('', { delimiter: '/' });
    eq(top.objects.map((o) => o.key), ['a-c', 'c'], 'top objects');
    eq(top.prefixes, ['a/', 'b/'], 'top prefixes');
    eq((await s.list('a')).objects.map((o) => o.key), ['a-c', 'a/1', 'a/sub/3', 'a/sub/deeper/4'], 'partial-name prefix');
    eq((await s.list('a/s', { delimiter: '/' })).prefixes, ['a/sub/'], 'partial prefix rolled up');
    eq((await s.list('zzz/')).objects, [], 'nothing under');
    const o = (await s.list('c')).objects[0];
    eq([o.size, o.etag === (await s.head('c'))?.etag], [1, true], 'list info');
  });

  bug('shallow-common-prefixes', 'common prefixes of keys two or more levels down', async (s) => {
    for (const k of ['deep/x/y/1', 'deep/x/z/2', 'wide/a/b/c/3', 'top']) await s.put(k, Buffer.from(k));
    const top = await s.list('', { delimiter: '/' });
    eq(top.prefixes, ['deep/', 'wide/'], 'prefixes under the root');
    eq(top.objects.map((o) => o.key), ['top'], 'objects under the root');
    eq((await s.list('deep/', { delimiter: '/' })).prefixes, ['deep/x/'], 'one level down');
    eq((await s.list('de', { delimiter: '/' })).prefixes, ['deep/'], 'partial name');
  });

  t('list pages through many keys', async (s) => {
    const keys = Array.from({ length: 1234 }, (_, i) => `many/d${i % 3}/k${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 64) await Promise.all(keys.slice(i, i + 64).map((k) => s.put(k, Buffer.from('x'))));
    const all = await s.list('many/');
    eq(all.objects.length, keys.length, 'every key, across pages');
    eq(all.objects.map((o) => o.key), [...keys].sort(), 'in key order');
    eq((await s.list('many/d1/')).objects.length, 411, 'one sub-prefix');
  });

  t('delete removes, and emptied prefixes disappear', async (s) => {
    await s.put('p/q/r', Buffer.from('x'));
    await s.put('p/top', Buffer.from('y'));
    await s.delete('p/q/r');
    eq(await s.head('p/q/r'), undefined, 'deleted');
    eq((await s.list('p/', { delimiter: '/' })).prefixes, [], 'emptied prefix gone');
    eq((await s.list('')).objects.map((o) => o.key), ['p/top'], 'rest stays');
  });

  t('ifNoneMatch create-if-absent', async (s) => {
    await s.put('once', Buffer.from('first'), { ifNoneMatch: '*' });
    await rejects(s.put('once', Buffer.from('second'), { ifNoneMatch: '*' }), 'CONFLICT', 'second create', /once/);
    eq((await s.get('once')).toString(), 'first', 'first wins');
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => s.put('race', Buffer.from(`w${i}`), { ifNoneMatch: '*' })),
    );
    eq(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one concurrent create wins');
  });

  t('ifMatch compare-and-swap', async (s) => {
    await rejects(s.put('cas', Buffer.from('x'), { ifMatch: 'whatever' }), 'CONFLICT', 'CAS on absent');
    const v1 = await s.put('cas', Buffer.from('1'));
    const v2 = await s.put('cas', Buffer.from('2'), { ifMatch: v1.etag });
    await rejects(s.put('cas', Buffer.from('3'), { ifMatch: v1.etag }), 'CONFLICT', 'stale etag');
    eq((await s.get('cas')).toString(), '2', 'value after lost CAS');
    await s.put('cas', Buffer.from('4'), { ifMatch: v2.etag });
    eq((await s.get('cas')).toString(), '4', 'value after CAS');
  });

  t('two writers racing a compare-and-swap: exactly one wins, every round', async (s, fx) => {
    if (!fx.reopen) return;
    const other = fx.reopen();
    try {
      let current = await s.put('alias', Buffer.from('v0'));
      for (let round = 1; round <= 5; round++) {
        const seen = current.etag;
        const results = await Promise.allSettled([
          s.put('alias', Buffer.from(`r${round}-a`), { ifMatch: seen }),
          other.put('alias', Buffer.from(`r${round}-b`), { ifMatch: seen }),
        ]);
        const won = results.filter((r): r is PromiseFulfilledResult<Awaited<ReturnType<ObjectStore['put']>>> => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        eq([won.length, lost.length], [1, 1], `round ${round}: winners and losers`);
        if (!isVhfsError(lost[0].reason, 'CONFLICT')) throw new Error(`round ${round}: the loser got ${String(lost[0].reason)}, not CONFLICT`);
        const winner = results[0].status === 'fulfilled' ? 'a' : 'b';
        eq((await other.get('alias')).toString(), `r${round}-${winner}`, `round ${round}: the winner's value is stored`);
        current = won[0].value;
        eq((await s.head('alias'))?.etag, current.etag, `round ${round}: the winner's etag is current`);
      }
    } finally {
      await other.close?.();
    }
  });

  t('compare-and-swap loops from several clients lose no update', async (s, fx) => {
    if (!fx.reopen) return;
    const clients = [s, fx.reopen(), fx.reopen()];
    try {
      await s.put('counter', Buffer.from('0'));
      const each = 6;
      await Promise.all(clients.map(async (c) => {
        for (let i = 0; i < each; i++) {
          for (;;) {
            const info = await c.head('counter');
            const value = Number((await c.get('counter')).toString());
            try {
              await c.put('counter', Buffer.from(String(value + 1)), { ifMatch: info!.etag });
              break;
            } catch (err) {
              if (!isVhfsError(err, 'CONFLICT')) throw err;
            }
          }
        }
      }));
      eq(Number((await s.get('counter')).toString()), clients.length * each, 'final counter');
    } finally {
      for (const c of clients.slice(1)) await c.close?.();
    }
  });

  t('stats count every call and every byte', async (s) => {
    const before = { ...s.stats };
    await s.put('st', Buffer.alloc(1000, 1));
    await s.getRange('st', 10, 100);
    await s.get('st');
    await collect(await s.getStream('st', { offset: 0, length: 50 }));
    await s.head('st');
    await s.list('');
    const d = (k: keyof typeof before) => s.stats[k] - before[k];
    eq(
      [d('puts'), d('bytesWritten'), d('gets'), d('bytesRead'), d('heads'), d('lists')],
      [1, 1000, 3, 1150, 1, 1],
      'stats deltas',
    );
  });
}
