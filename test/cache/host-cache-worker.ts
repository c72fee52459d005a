/**
 * A separate process using a host cache, for test/cache/host-cache.test.ts (leases and liveness only mean
 * something between real processes). argv[2] is a JSON `WorkerJob`:
 *  - `read`: wait for a line on stdin (so every worker starts together), read the whole object through a
 *    BlockCache whose disk tier is the host cache (the store a local directory behind a delay), and print
 *    one JSON line: the sha256 of what was read, the store's bytes read, the disk hits.
 *  - `die`: claim blocks (leasing them), make one look half-written (space reserved, garbage in the file,
 *    not present), print `leased`, and SIGKILL itself: the state a crash in the middle of a fill leaves.
 */
import { createHash } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { BlockCache } from '../../src/cache/block-cache.js';
import { HostCache } from '../../src/cache/host-cache.js';
import { FaultyStore } from '../../src/store/faulty.js';
import { openStore } from '../../src/store/index.js';

export interface WorkerJob {
  mode: 'read' | 'die';
  dir: string;
  storeDir: string;
  key: string;
  size: number;
  blockSize: number;
  delayMs?: number;
  /** `die`: the blocks to lease. */
  blocks?: number[];
}

const job = JSON.parse(process.argv[2]) as WorkerJob;
const store = new FaultyStore(openStore(job.storeDir), { delayMs: job.delayMs ?? 0 });
const disk = new HostCache({ dir: job.dir, quota: { bytes: 1 << 30 }, leaseMs: 600_000 });
const source = { key: job.key, size: job.size };

if (job.mode === 'read') {
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  const cache = new BlockCache({ store, blockSize: job.blockSize, readaheadBytes: 0, disk, diskForLocal: true });
  const hash = createHash('sha256');
  const buf = Buffer.alloc(job.blockSize * 3);
  for (let at = 0; at < job.size;) {
    const n = await cache.read(source, at, buf.length, buf);
    hash.update(buf.subarray(0, n));
    at += n;
  }
  await disk.close();
  process.stdout.write(`${JSON.stringify({ sha256: hash.digest('hex'), bytesRead: store.stats.bytesRead, diskHits: cache.stats.diskHits })}\n`);
} else {
  const claim = await disk.claim({ id: `${store.url}/${job.key}`, source, blockSize: job.blockSize, blocks: job.blocks! });
  if (claim.fetch.length !== job.blocks!.length) throw new Error(`expected to lease every block, got ${JSON.stringify(claim)}`);
  // Half a fill: the room reserved and garbage written, the crash before the block is marked present.
  const db = new Database(path.join(job.dir, 'host-cache.db'));
  const object = (db.prepare('SELECT id FROM objects').get() as { id: number }).id;
  const first = job.blocks![0];
  db.prepare('UPDATE blocks SET alloc = ? WHERE object = ? AND block = ?').run(job.blockSize, object, first);
  db.prepare('UPDATE objects SET bytes = bytes + ? WHERE id = ?').run(job.blockSize, object);
  db.prepare("INSERT INTO counters (name, value) VALUES ('used', ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value").run(job.blockSize);
  db.close();
  const file = await fs.open(path.join(job.dir, 'objects', String(object)), constants.O_RDWR | constants.O_CREAT);
  await file.write(Buffer.alloc(job.blockSize / 2, 0xee), 0, job.blockSize / 2, first * job.blockSize);
  await file.close();
  process.stdout.write('leased\n', () => process.kill(process.pid, 'SIGKILL'));
}
