/**
 * HttpsStore (read-only, Node http/https) against a small local HTTP server that can misbehave like real
 * web servers (test/servers/static-http.ts), and behind the fault proxy.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { HttpsStore, openHttpObject, openStore } from '../../src/store/index.js';
import type { RetryPolicy } from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startStaticHttp, type StaticHttpServer } from '../servers/static-http.js';
import { startFaultProxy } from '../servers/fault-proxy.js';
import { collect } from './contract.js';

const FAST_RETRY: Partial<RetryPolicy> = { attempts: 8, baseDelayMs: 10, maxDelayMs: 100 };
const DATA = randomBytes(600_000);

async function serve(t: { teardown: (fn: () => Promise<void>) => void }, options: Parameters<typeof startStaticHttp>[0] = {}): Promise<StaticHttpServer> {
  const server = await startStaticHttp(options);
  t.teardown(() => server.stop());
  server.put('/data/a/b.bin', DATA);
  server.put('/data/empty', Buffer.alloc(0));
  server.put('/data/with space.txt', Buffer.from('spaced'));
  return server;
}

const store = (base: string, retry: Partial<RetryPolicy> = FAST_RETRY) => new HttpsStore({ base, retry });

test('reads: head, getRange, get, getStream (range), keys with spaces, and the stats', async (t) => {
  const server = await serve(t);
  const s = store(`${server.endpoint}/data/`);
  t.is(s.url, `${server.endpoint}/data`);
  const h = await s.head('a/b.bin');
  t.is(h?.size, DATA.length);
  t.regex(h!.etag, /^"[0-9a-f]{32}"$/);
  t.true((await s.getRange('a/b.bin', 1000, 70_000)).equals(DATA.subarray(1000, 71_000)));
  t.true((await s.get('a/b.bin')).equals(DATA));
  t.true((await collect(await s.getStream('a/b.bin', { offset: 5, length: 10 }))).equals(DATA.subarray(5, 15)));
  t.is((await s.get('with space.txt')).toString(), 'spaced');
  t.is((await s.getRange('empty', 0, 0)).length, 0);
  t.is((await s.get('empty')).length, 0);
  t.deepEqual({ ...s.stats }, { gets: 6, bytesRead: 70_000 + DATA.length + 10 + 6, puts: 0, bytesWritten: 0, heads: 1, lists: 0 });
});

test('missing keys are NOT_FOUND, ranges past the end BAD_ARGUMENT, bad keys BAD_ARGUMENT', async (t) => {
  const server = await serve(t);
  const s = store(`${server.endpoint}/data`);
  t.is(await s.head('nope'), undefined);
  const nf = await t.throwsAsync(s.getRange('no/such', 0, 1));
  t.true(isVhfsError(nf, 'NOT_FOUND'));
  t.is(nf!.message, `${server.endpoint}/data/no/such: no such object`);
  for (const [offset, length] of [[DATA.length - 5, 6], [DATA.length + 1, 0], [DATA.length, 1], [-1, 2]]) {
    t.true(isVhfsError(await t.throwsAsync(s.getRange('a/b.bin', offset, length)), 'BAD_ARGUMENT'), `${offset}+${length}`);
  }
  t.true(isVhfsError(await t.throwsAsync(s.get('a/../b')), 'BAD_ARGUMENT'));
});

test('writes, deletes and listings are UNSUPPORTED (read-only)', async (t) => {
  const server = await serve(t);
  const s = store(`${server.endpoint}/data`);
  for (const p of [s.put('k', Buffer.from('x')), s.delete('k'), s.list('')]) {
    const err = await t.throwsAsync(p);
    t.true(isVhfsError(err, 'UNSUPPORTED'), String(err));
    t.regex(err!.message, /read-only/);
  }
});

test('a server that ignores Range gives a clear UNSUPPORTED error; a whole-object range still works', async (t) => {
  const server = await serve(t, { ignoreRange: true });
  const s = store(`${server.endpoint}/data`);
  const err = await t.throwsAsync(s.getRange('a/b.bin', 10, 100));
  t.true(isVhfsError(err, 'UNSUPPORTED'), String(err));
  t.regex(err!.message, /ignored the Range header \(it answered 200 with all 600000 bytes instead of bytes 10-109\)/);
  t.true((await s.getRange('a/b.bin', 0, DATA.length)).equals(DATA), 'asking for everything is fine');
});

for (const variant of [
  { name: 'strong ETag, If-Match honoured', options: {} },
  { name: 'strong ETag, If-Match ignored', options: { ignoreIfMatch: true } },
  { name: 'weak ETag', options: { etag: 'weak' as const } },
  { name: 'Last-Modified only', options: { etag: 'none' as const } },
]) {
  test(`a replaced object is detected and never served mixed (${variant.name}); head re-pins`, async (t) => {
    const server = await serve(t, variant.options);
    const s = store(`${server.endpoint}/data`);
    t.true((await s.getRange('a/b.bin', 0, 100)).equals(DATA.subarray(0, 100)), 'first read pins the version');
    const next = randomBytes(DATA.length);
    server.put('/data/a/b.bin', next);
    const err = await t.throwsAsync(s.getRange('a/b.bin', 100, 100));
    t.true(isVhfsError(err, 'INTEGRITY'), String(err));
    t.regex(err!.message, /replaced while in use/);
    await s.head('a/b.bin'); // an explicit look at the current version
    t.true((await s.getRange('a/b.bin', 100, 100)).equals(next.subarray(100, 200)));
  });
}

test('a server that refuses HEAD: head falls back to a one-byte ranged GET', async (t) => {
  const server = await serve(t, { noHead: true });
  const s = store(`${server.endpoint}/data`);
  t.is((await s.head('a/b.bin'))?.size, DATA.length);
  t.is((await s.head('empty'))?.size, 0);
  t.is(await s.head('nope'), undefined);
  t.is(server.requests.HEAD, 3);
});

test('credentials in the URL (user:password, a token query) work, follow redirects, and appear in no url or message', async (t) => {
  const password = 'pa55-w0rd-SECRET-xyz';
  const token = 'tok-0123456789abcdef-SECRET';
  const server = await serve(t, { basicAuth: `alice:${password}`, token, redirectFrom: '/data/a/' });
  const url = `http://alice:${encodeURIComponent(password)}@127.0.0.1:${server.port}/data?token=${token}`;
  const s = openStore(url, { retry: FAST_RETRY });
  t.true((await s.getRange('a/b.bin', 7, 7)).equals(DATA.subarray(7, 14)), 'through a same-origin redirect');
  t.false(s.url.includes(password) || s.url.includes(token), s.url);
  t.is(s.url, `http://***@127.0.0.1:${server.port}/data?token=***`);
  const err = await t.throwsAsync(s.get('missing'));
  t.false(err!.message.includes(password) || err!.message.includes(token), err!.message);
  const wrong = openStore(`http://alice:wrong-password-123@127.0.0.1:${server.port}/data?token=${token}`, { retry: FAST_RETRY });
  const denied = await t.throwsAsync(wrong.get('a/b.bin'));
  t.true(isVhfsError(denied, 'STORE'), String(denied));
  t.regex(denied!.message, /access denied/);
  t.false(denied!.message.includes('wrong-password-123') || denied!.message.includes(token), denied!.message);
  const obj = openHttpObject(`http://alice:${encodeURIComponent(password)}@127.0.0.1:${server.port}/data/with%20space.txt?token=${token}`);
  t.is(obj.key, 'with space.txt');
  t.is((await obj.store.get(obj.key)).toString(), 'spaced');
});

test('under faults (500, 503, resets, bodies cut off) ranged reads stay byte-identical', async (t) => {
  const server = await serve(t);
  const proxy = await startFaultProxy(server.endpoint, { failRate: 0.3, faults: ['500', '503', 'reset', 'truncate'], maxFaults: 200, seed: 11 });
  t.teardown(() => proxy.stop());
  const s = store(`${proxy.endpoint}/data`);
  for (let i = 0; i < 40; i++) {
    const offset = (i * 14_983) % (DATA.length - 65_536);
    t.true((await s.getRange('a/b.bin', offset, 65_536)).equals(DATA.subarray(offset, offset + 65_536)), `read ${i}`);
  }
  t.true((await collect(await s.getStream('a/b.bin'))).equals(DATA));
  const f = proxy.stats.faults;
  t.true(f['500'] + f['503'] + f.reset >= 5 && f.truncate >= 1, JSON.stringify(f));
});

test('a server that stalls: TIMEOUT within the AbortSignal deadline; without one, after the idle limits', async (t) => {
  const server = await serve(t);
  const proxy = await startFaultProxy(server.endpoint, { failRate: 1, faults: ['stall'], maxFaults: 100, stallMs: 30_000 });
  t.teardown(() => proxy.stop());
  const s = store(`${proxy.endpoint}/data`);
  let started = Date.now();
  const err = await t.throwsAsync(s.getRange('a/b.bin', 0, 10, AbortSignal.timeout(300)));
  t.true(isVhfsError(err, 'TIMEOUT'), String(err));
  t.true(Date.now() - started < 3000, `${Date.now() - started} ms`);
  const patient = store(`${proxy.endpoint}/data`, { attempts: 2, idleTimeoutMs: 300, baseDelayMs: 1, maxDelayMs: 5 });
  started = Date.now();
  const err2 = await t.throwsAsync(patient.getRange('a/b.bin', 0, 10));
  t.true(isVhfsError(err2, 'TIMEOUT'), String(err2));
  t.true(Date.now() - started < 5000, `${Date.now() - started} ms`);
});
