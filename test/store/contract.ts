/**
 * The ObjectStore contract as a reusable suite: every backend (local directory now; S3, GCS, Azure
 * later) runs `storeContract(test, 'name', makeStore)` and must pass unchanged. Each test gets a fresh,
 * empty store; `cleanup` removes whatever backs it.
 */
import type { TestFn } from 'ava';
import { Readable } from 'node:stream';
import { isVhfsError } from '../../src/util/errors.js';
import type { ObjectStore } from '../../src/store/types.js';

export interface StoreFixture {
  store: ObjectStore;
  cleanup: () => Promise<void>;
}

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function storeContract(test: TestFn, label: string, makeStore: () => Promise<StoreFixture>): void {
  const t = (title: string, fn: (store: ObjectStore) => Promise<void>) =>
    test(`${label} contract: ${title}`, async (tt) => {
      const fx = await makeStore();
      try {
        await fn(fx.store);
        tt.pass();
      } finally {
        await fx.cleanup();
      }
    });
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
