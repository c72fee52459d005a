/**
 * GcsStore (`@google-cloud/storage` 7) on the local GCS JSON-API server (test/servers/gcs-server.ts), and
 * behind the fault proxy for the failure tests. Each test gets its own prefix of one bucket.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { GcsStore, openStore } from '../../src/store/index.js';
import type { RetryPolicy } from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startGcsServer, crc32c, type GcsServer } from '../servers/gcs-server.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { storeContract } from './contract.js';
import { faultTests, stallTests } from './remote-faults.js';

const FAST_RETRY: Partial<RetryPolicy> = { attempts: 8, baseDelayMs: 10, maxDelayMs: 100 };
const BUCKET = 'vhfs-gcs-test';

let server: GcsServer;
let n = 0;

test.before(async () => {
  server = await startGcsServer({ buckets: [BUCKET] });
});

test.after.always(async () => {
  await server?.stop();
});

function gcs(endpoint: string, prefix = `t${++n}/`, retry: Partial<RetryPolicy> = FAST_RETRY): GcsStore {
  return new GcsStore({ bucket: BUCKET, prefix, endpoint, retry });
}

storeContract(test, 'GcsStore (local JSON-API server)', async () => {
  const prefix = `t${++n}/`;
  return { store: gcs(server.endpoint, prefix), reopen: () => gcs(server.endpoint, prefix), cleanup: async () => undefined };
});

test('crc32c of the test server matches the published check value', (t) => {
  t.is(crc32c(Buffer.from('123456789')), 0xe3069283);
});

test('url is the redacted prefix-level form; openStore takes the endpoint from the URL', async (t) => {
  const store = openStore(`gs://${BUCKET}/p/q?endpoint=${encodeURIComponent(server.endpoint)}`);
  t.is(store.url, `gs://${BUCKET}/p/q`);
  await store.put('a/b', Buffer.from('via openStore'));
  t.is((await gcs(server.endpoint, '').get('p/q/a/b')).toString(), 'via openStore');
  t.is(server.buckets.get(BUCKET)!.get('p/q/a/b')!.data.toString(), 'via openStore');
});

test('a stream past the chunk size goes up as a resumable upload (308 until the last chunk), byte-identical', async (t) => {
  const counter = await startFaultProxy(server.endpoint);
  t.teardown(() => counter.stop());
  const store = gcs(counter.endpoint);
  const big = randomBytes(19 * 1024 * 1024 + 77);
  const info = await store.put('big', Readable.from(Array.from({ length: 77 }, (_, i) => big.subarray(i * 262144, (i + 1) * 262144))));
  t.is(info.size, big.length);
  t.is(counter.stats.byMethod.POST, 1, 'one session');
  t.is(counter.stats.byMethod.PUT, 3, 'three 8 MiB chunks');
  t.true((await store.get('big')).equals(big));
  t.is((await store.head('big'))?.etag, info.etag);
  const again = await t.throwsAsync(store.put('big', Readable.from([big]), { ifNoneMatch: '*' }));
  t.true(isVhfsError(again, 'CONFLICT'), String(again));
});

test('a compare-and-swap tag that is not a generation is a CONFLICT, not a request', async (t) => {
  const store = gcs(server.endpoint);
  await store.put('k', Buffer.from('1'));
  const err = await t.throwsAsync(store.put('k', Buffer.from('2'), { ifMatch: '"md5-looking"' }));
  t.true(isVhfsError(err, 'CONFLICT'), String(err));
  t.is((await store.get('k')).toString(), '1');
});

test('a missing bucket is a STORE error naming it, not NOT_FOUND of the key', async (t) => {
  const store = new GcsStore({ bucket: 'no-such-bucket', endpoint: server.endpoint, retry: FAST_RETRY });
  const err = await t.throwsAsync(store.get('k'));
  t.true(isVhfsError(err, 'STORE'), String(err));
  t.regex(err!.message, /^gs:\/\/no-such-bucket: the bucket or container does not exist/);
  t.is(await gcs(server.endpoint).head('nope'), undefined);
});

faultTests(test, 'GCS', {
  upstream: () => server.endpoint,
  open: (proxy: FaultProxy, prefix: string) => gcs(proxy.endpoint, prefix),
});

stallTests(test, 'GCS', {
  upstream: () => server.endpoint,
  open: (proxy: FaultProxy, prefix: string, retry?: Partial<RetryPolicy>) => gcs(proxy.endpoint, prefix, retry),
});
