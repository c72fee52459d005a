/**
 * S3Store on s3rver (child process), behind the conditional-write shim (s3rver ignores If-None-Match /
 * If-Match), and behind the fault proxy for the failure tests. One server per file; every test gets its
 * own prefix, so tests never see each other's objects.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { openStore, S3Store } from '../../src/store/index.js';
import type { RetryPolicy } from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../servers/s3rver.js';
import { startS3ConditionalShim, type ConditionalShim } from '../servers/s3-conditional-shim.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { storeContract } from './contract.js';
import { faultTests, stallTests } from './remote-faults.js';

const FAST_RETRY: Partial<RetryPolicy> = { attempts: 8, baseDelayMs: 10, maxDelayMs: 100 };

let server: S3rverServer;
let shim: ConditionalShim;
let n = 0;

test.before(async () => {
  server = await startS3rver();
  shim = await startS3ConditionalShim(server.endpoint);
});

test.after.always(async () => {
  await shim?.stop();
  await server?.stop();
});

function s3(endpoint: string, prefix = `t${++n}/`, retry: Partial<RetryPolicy> = FAST_RETRY): S3Store {
  return new S3Store({ bucket: server.bucket, prefix, endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS }, retry });
}

storeContract(test, 'S3Store (s3rver + conditional shim)', async () => {
  const prefix = `t${++n}/`;
  return { store: s3(shim.endpoint, prefix), reopen: () => s3(shim.endpoint, prefix), cleanup: async () => undefined };
}, { knownServerBugs: ['shallow-common-prefixes'] });

test('url is the redacted prefix-level form; openStore takes region, endpoint and path_style from the URL', async (t) => {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const store = openStore(`s3://${server.bucket}/some/prefix/?region=eu-west-1&endpoint=${encodeURIComponent(server.endpoint)}&path_style=true`);
  t.is(store.url, `s3://${server.bucket}/some/prefix`);
  await store.put('x/y.txt', Buffer.from('through openStore'));
  t.is((await store.get('x/y.txt')).toString(), 'through openStore');
  const direct = s3(server.endpoint, '');
  t.is((await direct.get('some/prefix/x/y.txt')).toString(), 'through openStore', 'the prefix is a real key prefix');
  t.is(openStore(`s3://${server.bucket}`).url, `s3://${server.bucket}`);
});

test('a stream larger than a part goes up as a multipart upload, byte-identical, with a usable etag', async (t) => {
  const counter = await startFaultProxy(shim.endpoint); // no faults: counts the requests
  t.teardown(() => counter.stop());
  const store = s3(counter.endpoint);
  const big = randomBytes(13 * 1024 * 1024 + 5);
  const chunks = Array.from({ length: Math.ceil(big.length / 65536) }, (_, i) => big.subarray(i * 65536, (i + 1) * 65536));
  const info = await store.put('blob', Readable.from(chunks), { sizeHint: big.length });
  t.is(info.size, big.length);
  t.deepEqual([counter.stats.byMethod.POST, counter.stats.byMethod.PUT], [2, 2], 'create + complete, two 8 MiB parts');
  t.is((await store.head('blob'))?.etag, info.etag);
  t.true((await store.get('blob')).equals(big));
  t.true((await store.getRange('blob', 9 * 1024 * 1024 - 3, 100_000)).equals(big.subarray(9 * 1024 * 1024 - 3, 9 * 1024 * 1024 - 3 + 100_000)));
  t.is(store.stats.bytesWritten, big.length);
  // create-if-absent holds for multipart uploads too (the condition rides on CompleteMultipartUpload)
  const again = await t.throwsAsync(store.put('blob', Readable.from(chunks), { ifNoneMatch: '*', sizeHint: big.length }));
  t.true(isVhfsError(again, 'CONFLICT'), String(again));
  t.true(shim.refused.ifNoneMatch > 0);
});

test('NOT_FOUND, BAD_ARGUMENT and a missing bucket name the store and key', async (t) => {
  const store = s3(shim.endpoint, 'nf/');
  const err = await t.throwsAsync(store.getRange('datums/x.json', 0, 10));
  t.true(isVhfsError(err, 'NOT_FOUND'));
  t.true(err!.message.startsWith(`s3://${server.bucket}/nf/datums/x.json`), err!.message);
  const noBucket = new S3Store({ bucket: 'no-such-bucket-here', endpoint: server.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS }, retry: FAST_RETRY });
  const e2 = await t.throwsAsync(noBucket.get('k'));
  t.true(isVhfsError(e2, 'STORE'), String(e2));
  t.regex(e2!.message, /bucket or container does not exist.*NoSuchBucket/);
});

test('wrong credentials: STORE with a hint, and neither key nor secret in the message', async (t) => {
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETzz';
  const store = new S3Store({ bucket: server.bucket, endpoint: server.endpoint, pathStyle: true, credentials: { accessKeyId: 'AKIAPLANTEDKEY123456', secretAccessKey: secret }, retry: FAST_RETRY });
  const err = await t.throwsAsync(store.get('anything'));
  t.true(isVhfsError(err, 'STORE'), String(err));
  t.regex(err!.message, /access denied.*AWS_ACCESS_KEY_ID/);
  t.false(err!.message.includes(secret));
  t.false(err!.message.includes('AKIAPLANTEDKEY123456'));
});

faultTests(test, 'S3', {
  upstream: () => shim.endpoint,
  open: (proxy: FaultProxy, prefix: string) => s3(proxy.endpoint, prefix),
});

stallTests(test, 'S3', {
  upstream: () => server.endpoint,
  open: (proxy: FaultProxy, prefix: string, retry?: Partial<RetryPolicy>) => s3(proxy.endpoint, prefix, retry),
});

test('an S3 store that ignores conditions entirely is caught by the contract (s3rver without the shim)', async (t) => {
  // Guards the shim's purpose: without it, create-if-absent silently overwrites on s3rver.
  const bare = s3(server.endpoint);
  await bare.put('once', Buffer.from('first'), { ifNoneMatch: '*' });
  await bare.put('once', Buffer.from('second'), { ifNoneMatch: '*' });
  t.is((await bare.get('once')).toString(), 'second');
});

test('the fault proxy really injects: a plan with faults on every request fails after the retry budget', async (t) => {
  const proxy = await startFaultProxy(shim.endpoint, { failRate: 1, faults: ['503'], maxFaults: 100 });
  try {
    const store = s3(proxy.endpoint, `t${++n}/`, { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 });
    const err = await t.throwsAsync(store.put('k', Buffer.from('x')));
    t.true(isVhfsError(err, 'STORE'), String(err));
    t.is(proxy.stats.faults['503'], 3, 'one fault per attempt');
  } finally {
    await proxy.stop();
  }
});
