/**
 * AzureBlobStore (`@azure/storage-blob` 12.32) on azurite-blob (child process, in memory), and behind the
 * fault proxy for the failure tests. One container per file; every test gets its own prefix.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { AzureBlobStore, azureCredentialFromEnv, openStore, type AzureCredentialSource } from '../../src/store/index.js';
import type { RetryPolicy } from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { startAzurite, type AzuriteServer } from '../servers/azurite.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { storeContract } from './contract.js';
import { faultTests, stallTests } from './remote-faults.js';

const FAST_RETRY: Partial<RetryPolicy> = { attempts: 8, baseDelayMs: 10, maxDelayMs: 100 };
const CONTAINER = 'vhfs-test';

let server: AzuriteServer;
let n = 0;

test.before(async () => {
  server = await startAzurite();
  const { BlobServiceClient } = await import('@azure/storage-blob');
  await BlobServiceClient.fromConnectionString(server.connectionString).getContainerClient(CONTAINER).create();
});

test.after.always(async () => {
  await server?.stop();
});

function az(endpoint: string, prefix = `t${++n}/`, retry: Partial<RetryPolicy> = FAST_RETRY, credential?: AzureCredentialSource): AzureBlobStore {
  return new AzureBlobStore({
    account: server.account, container: CONTAINER, prefix, endpoint, retry,
    credential: credential ?? { kind: 'key', accountKey: server.accountKey },
  });
}

storeContract(test, 'AzureBlobStore (azurite)', async () => {
  const prefix = `t${++n}/`;
  return { store: az(server.endpoint, prefix), reopen: () => az(server.endpoint, prefix), cleanup: async () => undefined };
});

test('url is the redacted prefix-level form; openStore takes the endpoint from the URL and a connection string from the environment', async (t) => {
  process.env.AZURE_STORAGE_CONNECTION_STRING = server.connectionString;
  try {
    const store = openStore(`azure://${server.account}/${CONTAINER}/p/q?endpoint=${encodeURIComponent(server.endpoint)}`);
    t.is(store.url, `az://${server.account}/${CONTAINER}/p/q`);
    await store.put('a/b', Buffer.from('via openStore'));
    t.is((await az(server.endpoint, '').get('p/q/a/b')).toString(), 'via openStore');
    // the connection string's own BlobEndpoint is used when the URL gives none
    t.is((await openStore(`az://${server.account}/${CONTAINER}/p`).get('q/a/b')).toString(), 'via openStore');
  } finally {
    delete process.env.AZURE_STORAGE_CONNECTION_STRING;
  }
  const other = { AZURE_STORAGE_CONNECTION_STRING: server.connectionString };
  const err = t.throws(() => azureCredentialFromEnv('someoneelse', other));
  t.true(isVhfsError(err, 'BAD_URI'));
  t.false(err!.message.includes(server.accountKey), 'the key is not in the message');
});

test('a SAS token works, and a wrong one is STORE "access denied" with no part of the token in the message', async (t) => {
  const blob = await import('@azure/storage-blob');
  const cred = new blob.StorageSharedKeyCredential(server.account, server.accountKey);
  const sas = blob.generateAccountSASQueryParameters({
    expiresOn: new Date(Date.now() + 3600_000), permissions: blob.AccountSASPermissions.parse('rwdlc'),
    resourceTypes: blob.AccountSASResourceTypes.parse('sco').toString(), services: blob.AccountSASServices.parse('b').toString(),
  }, cred).toString();
  const good = az(server.endpoint, `t${++n}/`, FAST_RETRY, { kind: 'sas', token: sas });
  await good.put('k', Buffer.from('sas works'));
  t.is((await good.get('k')).toString(), 'sas works');
  const forged = sas.replace(/sig=[^&]+/, 'sig=' + encodeURIComponent(randomBytes(32).toString('base64')));
  const bad = az(server.endpoint, `t${n}/`, FAST_RETRY, { kind: 'sas', token: forged });
  const err = await t.throwsAsync(bad.get('k'));
  t.true(isVhfsError(err, 'STORE'), String(err));
  t.regex(err!.message, /access denied.*AZURE_STORAGE_SAS_TOKEN/);
  for (const part of forged.split('&')) {
    const value = decodeURIComponent(part.slice(part.indexOf('=') + 1));
    if (value.length >= 16) t.false(err!.message.includes(value) || err!.message.includes(encodeURIComponent(value)), `no ${part.split('=')[0]} in the message`);
  }
});

test('a stream past the block size is staged in blocks and committed with its condition', async (t) => {
  const counter = await startFaultProxy(server.endpoint);
  t.teardown(() => counter.stop());
  const store = az(counter.endpoint);
  const big = randomBytes(17 * 1024 * 1024 + 9);
  const info = await store.put('big', Readable.from(Array.from({ length: 69 }, (_, i) => big.subarray(i * 262144, (i + 1) * 262144))), { ifNoneMatch: '*' });
  t.is(info.size, big.length);
  t.is(counter.stats.byMethod.PUT, 4, 'three blocks and the block list');
  t.true((await store.get('big')).equals(big));
  t.is((await store.head('big'))?.etag, info.etag);
  const again = await t.throwsAsync(store.put('big', Readable.from([big]), { ifNoneMatch: '*' }));
  t.true(isVhfsError(again, 'CONFLICT'), String(again));
});

test('a missing container is a STORE error, not NOT_FOUND of the key', async (t) => {
  const store = new AzureBlobStore({ account: server.account, container: 'nosuchcontainer', endpoint: server.endpoint, credential: { kind: 'key', accountKey: server.accountKey }, retry: FAST_RETRY });
  const err = await t.throwsAsync(store.get('k'));
  t.true(isVhfsError(err, 'STORE'), String(err));
  t.regex(err!.message, /bucket or container does not exist.*ContainerNotFound/);
});

faultTests(test, 'Azure', {
  upstream: () => server.endpoint,
  open: (proxy: FaultProxy, prefix: string) => az(proxy.endpoint, prefix),
});

stallTests(test, 'Azure', {
  upstream: () => server.endpoint,
  open: (proxy: FaultProxy, prefix: string, retry?: Partial<RetryPolicy>) => az(proxy.endpoint, prefix, retry),
});
