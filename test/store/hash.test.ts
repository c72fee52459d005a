import test from 'ava';
import { Readable, Writable } from 'node:stream';
import { hashBuffer, hashStream, HashingTransform } from '../../src/util/hash.js';

const ABC = { sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', md5: '900150983cd24fb0d6963f7d28e17f72', size: 3 };

test('hashBuffer / hashStream agree with known digests; the sink gets every byte', async (t) => {
  t.deepEqual(hashBuffer(Buffer.from('abc')), ABC);
  t.deepEqual(await hashStream(Readable.from([Buffer.from('a'), Buffer.from('bc')])), ABC);
  const got: Buffer[] = [];
  const sink = new Writable({ write(c, _e, cb) { got.push(c); cb(); } });
  t.deepEqual(await hashStream(Readable.from([Buffer.from('ab'), Buffer.from('c')]), sink), ABC);
  t.is(Buffer.concat(got).toString(), 'abc');
});

test('HashingTransform.digest() before the end throws', (t) => {
  t.throws(() => new HashingTransform().digest());
});
