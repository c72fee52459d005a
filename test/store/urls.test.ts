/**
 * Store URLs (`openStore`), bucket stores for object inputs (`openBucketStore`, `openHttpObject`) and the
 * settings sources (env, `<home>/stores.json`). Nothing here touches a network: stores load their SDK
 * and connect on first use, and these tests only open them (except where a local server is started).
 */
import test from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  loadStoreSettings,
  openBucketStore,
  openHttpObject,
  openStore,
  storeSettingsFromEnv,
  type StoreSettings,
} from '../../src/store/index.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../servers/s3rver.js';
import { startGcsServer } from '../servers/gcs-server.js';

const NONE: StoreSettings = {};

test('cloud URLs open their backend; url is the prefix-level form without query or trailing slash', (t) => {
  const cases: Array<[string, string]> = [
    ['s3://my-bucket', 's3://my-bucket'],
    ['s3://my-bucket/', 's3://my-bucket'],
    ['s3://my-bucket/a/b/', 's3://my-bucket/a/b'],
    ['s3://my-bucket/a?region=eu-north-1&endpoint=http://127.0.0.1:9000&path_style=true', 's3://my-bucket/a'],
    ['gs://bucket.with.dots/p', 'gs://bucket.with.dots/p'],
    ['az://account1/container-1/p/q', 'az://account1/container-1/p/q'],
    ['azure://account1/container-1', 'az://account1/container-1'],
    ['https://example.org/files/', 'https://example.org/files'],
  ];
  for (const [url, shown] of cases) t.is(openStore(url, { settings: NONE }).url, shown, url);
});

test('credentials in an s3/gs/az URL are refused with BAD_URI, and the message repeats neither key nor secret', (t) => {
  for (const url of [
    's3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/prefix',
    'gs://user:hunter2-hunter2@bucket',
    'az://account1:c2VjcmV0LWtleS1iYXNlNjQ=@account1/container',
    's3://AKIAIOSFODNN7EXAMPLE@bucket',
  ]) {
    const err = t.throws(() => openStore(url, { settings: NONE }));
    t.true(isVhfsError(err, 'BAD_URI'), url);
    t.regex(err!.message, /credentials must not be part of the URL.*environment/);
    for (const secret of ['AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI', 'hunter2', 'c2VjcmV0LWtleS1iYXNlNjQ']) t.false(err!.message.includes(secret), err!.message);
  }
});

test('malformed cloud URLs: unknown parameters, bad names, bad prefixes, bad endpoints', (t) => {
  const bad: Array<[string, RegExp]> = [
    ['s3://bucket?sig=abc', /unknown parameter "sig"/],
    ['gs://bucket?region=x', /unknown parameter "region" \(gs:\/\/ takes endpoint/],
    ['s3://b', /is not a bucket name/],
    ['s3://bucket/a//b', /bad prefix "a\/\/b": has an empty segment/],
    ['s3://bucket/../x', /bad prefix/],
    ['az://Account/container', /is not a storage account name/],
    ['az://account1', /is not a container name/],
    ['az://account1/UPPER', /is not a container name/],
    ['s3://bucket?endpoint=ftp://x', /endpoint must be http/],
    ['s3://bucket?endpoint=http://u:p@host', /endpoint must not carry credentials/],
    ['s3://bucket?path_style=maybe', /expected true or false/],
    ['s3://bucket#frag', /fragment/],
    ['ftp://host/x', /unknown scheme ftp/],
  ];
  for (const [url, message] of bad) {
    const err = t.throws(() => openStore(url, { settings: NONE }));
    t.true(isVhfsError(err, 'BAD_URI'), url);
    t.regex(err!.message, message, url);
  }
});

test('settings: env per scheme; stores.json per bucket (and per Azure account); the URL wins over both', async (t) => {
  const env = { VHFS_S3_ENDPOINT: 'http://127.0.0.1:1', VHFS_S3_REGION: 'eu-west-1', VHFS_S3_PATH_STYLE: 'true', VHFS_GCS_ENDPOINT: 'http://127.0.0.1:2', VHFS_AZURE_ENDPOINT: 'http://127.0.0.1:3' };
  t.deepEqual(storeSettingsFromEnv(env), {
    s3: { endpoint: 'http://127.0.0.1:1', region: 'eu-west-1', pathStyle: true },
    gcs: { endpoint: 'http://127.0.0.1:2' },
    azure: { endpoint: 'http://127.0.0.1:3' },
  });
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-settings-'));
  t.teardown(() => fs.rm(home, { recursive: true, force: true }));
  await fs.writeFile(path.join(home, 'stores.json'), JSON.stringify({
    's3://special': { endpoint: 'http://127.0.0.1:4', pathStyle: false },
    'az://acct1': { endpoint: 'http://127.0.0.1:5' },
    'azure://acct1/box': { endpoint: 'http://127.0.0.1:6' },
  }));
  const settings = loadStoreSettings({ home, env });
  t.deepEqual(settings.buckets, {
    's3://special': { endpoint: 'http://127.0.0.1:4', pathStyle: false },
    'az://acct1': { endpoint: 'http://127.0.0.1:5' },
    'az://acct1/box': { endpoint: 'http://127.0.0.1:6' },
  });
  // Which endpoint each store uses is visible in what it connects to; checked end to end below.
  await fs.writeFile(path.join(home, 'stores.json'), '{"s3://x": {"endpoint": "http://h", "secret": 1}}');
  t.regex(t.throws(() => loadStoreSettings({ home, env }))!.message, /unknown setting "secret"/);
  await fs.writeFile(path.join(home, 'stores.json'), '{not json');
  t.regex(t.throws(() => loadStoreSettings({ home, env }))!.message, /stores\.json: not valid JSON/);
  t.true(isVhfsError(t.throws(() => loadStoreSettings({ env: { VHFS_STORES_FILE: path.join(home, 'nope.json') } })), 'BAD_ARGUMENT'));
});

test('openBucketStore and openStore use the settings end to end (S3 endpoint from env, GCS per bucket)', async (t) => {
  const s3 = await startS3rver();
  const gcs = await startGcsServer({ buckets: ['bucket-b'] });
  t.teardown(async () => {
    await s3.stop();
    await gcs.stop();
  });
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const settings: StoreSettings = {
    ...storeSettingsFromEnv({ VHFS_S3_ENDPOINT: s3.endpoint, VHFS_S3_PATH_STYLE: 'true' }),
    buckets: { 'gs://bucket-b': { endpoint: gcs.endpoint } },
  };
  const bucketStore = openBucketStore('s3', s3.bucket, settings);
  t.is(bucketStore.url, `s3://${s3.bucket}`);
  await bucketStore.put('in/put.csv', Buffer.from('a,b\n'));
  t.is((await openStore(`s3://${s3.bucket}/in`, { settings }).get('put.csv')).toString(), 'a,b\n');
  // precedence: per-bucket settings over scheme-wide ones, the URL's query over both
  const closed = 'http://127.0.0.1:1'; // nothing listens on port 1
  const wrongFamily: StoreSettings = { s3: { endpoint: closed, pathStyle: true }, buckets: { [`s3://${s3.bucket}`]: { endpoint: s3.endpoint } } };
  t.is((await openBucketStore('s3', s3.bucket, wrongFamily, { retry: { attempts: 1 } }).get('in/put.csv')).toString(), 'a,b\n');
  const wrongBucket: StoreSettings = { buckets: { [`s3://${s3.bucket}`]: { endpoint: closed } } };
  const viaUrl = openStore(`s3://${s3.bucket}/in?endpoint=${encodeURIComponent(s3.endpoint)}&path_style=true`, { settings: wrongBucket, retry: { attempts: 1 } });
  t.is((await viaUrl.get('put.csv')).toString(), 'a,b\n');
  const unreachable = await t.throwsAsync(openStore(`s3://${s3.bucket}/in`, { settings: wrongBucket, retry: { attempts: 1 } }).get('put.csv'));
  t.true(isVhfsError(unreachable, 'STORE'), String(unreachable));
  const g = openBucketStore('gs', 'bucket-b', settings);
  await g.put('k', Buffer.from('gcs'));
  t.is(gcs.buckets.get('bucket-b')!.get('k')!.data.toString(), 'gcs');
  t.true(isVhfsError(t.throws(() => openBucketStore('az', 'no-container-here', settings)), 'BAD_URI'));
});

test('openHttpObject: the directory becomes the store (query kept, redacted), the file name the key', (t) => {
  const { store, key } = openHttpObject('https://example.org/a/b/data%20set.csv?sig=abcdef0123456789abcdef&x=1');
  t.is(key, 'data set.csv');
  t.is(store.url, 'https://example.org/a/b?sig=***&x=1');
});
