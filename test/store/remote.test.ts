/**
 * The pieces of `src/store/remote.ts` every network backend relies on, on their own: secret masking,
 * the retry policy's backoff, reading the head of an upload stream, content ranges, whole-call deadlines.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  backoffMs,
  bufferHead,
  environmentSecrets,
  parseContentRange,
  retryPolicy,
  scrubSecrets,
  withDeadline,
} from '../../src/store/remote.js';
import { isVhfsError } from '../../src/util/errors.js';
import { collect } from './contract.js';

test('scrubSecrets masks known values, URL passwords, signatures, tokens, keys and Authorization headers', (t) => {
  const cases: Array<[string, string]> = [
    ['https://alice:hunter2hunter2@host/x', 'https://***@host/x'],
    ['GET https://acct.blob.core.windows.net/c/b?sv=2023&sig=abc%2Bdef&se=x failed', 'GET https://acct.blob.core.windows.net/c/b?sv=2023&sig=***&se=x failed'],
    ['https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok', 'https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***'],
    ['DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net', 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=***;EndpointSuffix=core.windows.net'],
    ['BlobEndpoint=https://x;SharedAccessSignature=sv=1&sig=zz', 'BlobEndpoint=https://x;SharedAccessSignature=***'],
    ['{"authorization":"Bearer eyJhbGciOi"}', '{"authorization":"***"}'],
    ['line one\nline two\u0000', 'line one line two '],
    ['no secrets here: s3://bucket/key (NoSuchKey)', 'no secrets here: s3://bucket/key (NoSuchKey)'],
  ];
  for (const [input, want] of cases) t.is(scrubSecrets(input), want, input);
  t.is(scrubSecrets('the key wJalrXUtnFEMIK7MDENG appears twice: wJalrXUtnFEMIK7MDENG', ['wJalrXUtnFEMIK7MDENG']), 'the key *** appears twice: ***');
  t.is(scrubSecrets('short ab is kept', ['ab']), 'short ab is kept', 'values under 8 characters are not masked (too imprecise)');
});

test('environmentSecrets: the credential variables and the keys inside a connection string', (t) => {
  const env = {
    AWS_SECRET_ACCESS_KEY: 'aws-secret-value-123',
    AWS_REGION: 'eu-west-1',
    AZURE_STORAGE_CONNECTION_STRING: 'AccountName=a;AccountKey=azure-key-value-456;EndpointSuffix=x',
    AZURE_STORAGE_SAS_TOKEN: '?sv=1&sig=sas-signature-789',
  };
  const s = environmentSecrets(env);
  for (const v of ['aws-secret-value-123', 'azure-key-value-456', 'sv=1&sig=sas-signature-789', env.AZURE_STORAGE_CONNECTION_STRING]) t.true(s.includes(v), v);
  t.false(s.includes('eu-west-1'));
});

test('backoff is full jitter, capped; the policy refuses nonsense', (t) => {
  const p = retryPolicy({ baseDelayMs: 100, maxDelayMs: 1000 });
  for (let retry = 1; retry <= 10; retry++) {
    const cap = Math.min(1000, 100 * 2 ** (retry - 1));
    for (let i = 0; i < 50; i++) {
      const d = backoffMs(p, retry);
      t.true(d >= 0 && d <= cap, `retry ${retry}: ${d} within [0, ${cap}]`);
    }
  }
  t.true(isVhfsError(t.throws(() => retryPolicy({ attempts: 0 })), 'BAD_ARGUMENT'));
});

test('bufferHead: a stream that ends within the limit comes back whole; a longer one is replayed intact', async (t) => {
  const small = randomBytes(1000);
  const a = await bufferHead(Readable.from([small.subarray(0, 300), small.subarray(300)]), 4096);
  t.true('whole' in a && a.whole.equals(small));
  const big = randomBytes(100_000);
  const chunks = Array.from({ length: 25 }, (_, i) => big.subarray(i * 4000, (i + 1) * 4000));
  const b = await bufferHead(Readable.from(chunks), 10_000);
  t.true('rest' in b);
  t.true((await collect((b as { rest: Readable }).rest)).equals(big));
});

test('parseContentRange', (t) => {
  t.deepEqual(parseContentRange('bytes 0-9/10'), { start: 0, end: 9, size: 10 });
  t.deepEqual(parseContentRange('bytes 5-9/*'), { start: 5, end: 9 });
  t.is(parseContentRange('bytes */10'), undefined);
  t.is(parseContentRange(undefined), undefined);
});

test('withDeadline: times out with a TimeoutError, follows the caller\'s abort, and clears its timer', async (t) => {
  const slow = (signal: AbortSignal) => new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => resolve('late'), 5000);
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason); }, { once: true });
  });
  const started = Date.now();
  const err = await t.throwsAsync(withDeadline(100, undefined, slow));
  t.is((err as Error).name, 'TimeoutError');
  t.true(Date.now() - started < 2000);
  const caller = new AbortController();
  setTimeout(() => caller.abort(new Error('caller gave up')), 50);
  t.is((await t.throwsAsync(withDeadline(10_000, caller.signal, slow)))!.message, 'caller gave up');
  t.is(await withDeadline(10_000, undefined, async () => 'fast'), 'fast');
});
