import test from 'ava';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { ChunkHasher, ChunkTable, CHUNK_SIZE, chunkTableBytes } from '../../src/util/chunk-hashes.js';
import { VhfsError } from '../../src/util/errors.js';

const tableOf = (data: Buffer, pieces: number[] = [data.length]): ChunkTable => {
  const h = new ChunkHasher();
  let at = 0;
  for (const n of pieces) { h.update(data.subarray(at, at + n)); at += n; }
  h.update(data.subarray(at));
  return ChunkTable.parse(h.finish(), 'test');
};

test('a table built in odd-sized pieces equals one built at once, and holds the CRC-32 of each chunk', (t) => {
  const data = randomBytes(3 * CHUNK_SIZE + 1234);
  const whole = new ChunkHasher();
  whole.update(data);
  const buf = whole.finish();
  const pieces = new ChunkHasher();
  for (let at = 0; at < data.length; at += 7777) pieces.update(data.subarray(at, at + 7777));
  t.deepEqual(pieces.finish(), buf);
  t.is(buf.length, chunkTableBytes(data.length));
  const lastChunk = data.subarray(3 * CHUNK_SIZE);
  t.is(buf.readUInt32LE(buf.length - 4), crc32(lastChunk));
  const table = ChunkTable.parse(buf, 'x');
  t.is(table.covered, data.length);
  t.is(table.chunkSize, CHUNK_SIZE);
});

test('verify accepts every aligned range of the right bytes and names the first bad chunk of a flipped byte', (t) => {
  const data = randomBytes(4 * CHUNK_SIZE + 100);
  const table = tableOf(data, [1, CHUNK_SIZE, 3]);
  t.is(table.verify(0, data), undefined);
  t.is(table.verify(CHUNK_SIZE, data.subarray(CHUNK_SIZE, 3 * CHUNK_SIZE)), undefined);
  t.is(table.verify(4 * CHUNK_SIZE, data.subarray(4 * CHUNK_SIZE)), undefined);
  const bad = Buffer.from(data);
  bad[2 * CHUNK_SIZE + 17] ^= 1;
  t.deepEqual(table.verify(0, bad), { chunk: 2, start: 2 * CHUNK_SIZE, end: 3 * CHUNK_SIZE });
  t.deepEqual(table.verify(2 * CHUNK_SIZE, bad.subarray(2 * CHUNK_SIZE, 3 * CHUNK_SIZE)), { chunk: 2, start: 2 * CHUNK_SIZE, end: 3 * CHUNK_SIZE });
  t.deepEqual(table.verify(4 * CHUNK_SIZE, Buffer.alloc(100)), { chunk: 4, start: 4 * CHUNK_SIZE, end: 4 * CHUNK_SIZE + 100 });
});

test('covers() refuses unaligned ranges and ranges past the covered bytes; verify throws on them', (t) => {
  const table = tableOf(randomBytes(2 * CHUNK_SIZE + 10));
  t.true(table.covers(0, CHUNK_SIZE));
  t.true(table.covers(2 * CHUNK_SIZE, 10));
  t.false(table.covers(1, CHUNK_SIZE));
  t.false(table.covers(0, CHUNK_SIZE + 1));
  t.false(table.covers(2 * CHUNK_SIZE, 11));
  const err = t.throws(() => table.verify(1, Buffer.alloc(10)));
  t.true(err instanceof VhfsError && err.code === 'BAD_ARGUMENT');
});

test('parse rejects a foreign buffer, a bad hash width and a length that disagrees with the header', (t) => {
  const good = new ChunkHasher();
  good.update(randomBytes(CHUNK_SIZE * 2));
  const buf = good.finish();
  t.throws(() => ChunkTable.parse(Buffer.from('not a table at all, no'), 'p'), { message: /p: chunk hash table has no VHSUMS01 header/ });
  const width = Buffer.from(buf);
  width.writeUInt32LE(8, 12);
  t.throws(() => ChunkTable.parse(width, 'p'), { message: /8-byte check values/ });
  t.throws(() => ChunkTable.parse(buf.subarray(0, buf.length - 1), 'p'), { message: /expected/ });
  const size = Buffer.from(buf);
  size.writeUInt32LE(1000, 8);
  t.throws(() => ChunkTable.parse(size, 'p'), { message: /chunk size 1000/ });
});
