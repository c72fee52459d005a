/**
 * LocalDirStore hot path: ranged reads on a cached file handle (what every cold FUSE read of a package
 * costs below the block cache). Moved here from test/store/local.test.ts: speed is measured, not asserted.
 *
 *   node dist/scripts/bench/local-store.js [--reads N] [--size BYTES] [--object MiB] [--dir DIR]
 *
 * Defaults: 20,000 reads of 16 KiB at pseudo-random aligned offsets of a 64 MiB object, in a fresh temp
 * directory (removed after). Prints µs per read and MB/s; fails if any read returned the wrong bytes.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalDirStore } from '../../src/store/local.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : def);
const reads = opt('--reads', 20_000);
const len = opt('--size', 16 * 1024);
const objectBytes = opt('--object', 64) * 1024 * 1024;
const base = argv.includes('--dir') ? argv[argv.indexOf('--dir') + 1] : os.tmpdir();

const dir = await fs.mkdtemp(path.join(base, 'vhfs-bench-store-'));
try {
  const store = new LocalDirStore(dir, { fsync: false });
  // Every 4-byte word holds its own offset, so any read can be checked without a second copy.
  const data = Buffer.alloc(objectBytes);
  for (let i = 0; i + 4 <= objectBytes; i += 4) data.writeUInt32LE(i, i);
  await store.put('pkg', data);
  const slots = Math.floor(objectBytes / len) - 1;
  await store.getRange('pkg', 0, len); // open and cache the handle
  const t0 = process.hrtime.bigint();
  let wrong = 0;
  for (let i = 0; i < reads; i++) {
    const offset = ((i * 7919) % slots) * len;
    const buf = await store.getRange('pkg', offset, len);
    if (buf.readUInt32LE(0) !== offset || buf.readUInt32LE(len - 4) !== offset + len - 4) wrong++;
  }
  const us = Number(process.hrtime.bigint() - t0) / 1000 / reads;
  await store.close();
  console.log(`getRange ${len} B on a cached handle: ${us.toFixed(1)} µs/read, ${(len / us).toFixed(0)} MB/s (${reads} reads)`);
  if (wrong > 0) {
    console.error(`${wrong} reads returned the wrong bytes`);
    process.exitCode = 1;
  }
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
