/**
 * The host cache between real processes: `vhfs mount` daemons and `vhfs prefetch` sharing one `--cache-dir`,
 * the data in S3 (s3rver) behind the loopback proxy, whose counters say what crossed the wire.
 *  - four daemons reading every file of one packaged version at once fetch it from the store about once;
 *  - under a quota smaller than the data, reads stay right and the directory stays within the quota plus a
 *    block per process (sampled throughout); on a disk that fills up, reads stay right and the log says why;
 *  - a prefetch killed with SIGKILL while filling leaves a cache that verifies and that the next daemon uses.
 * Files are read in path order (the order `cp -r`, `tar` or a sequential loader reads them): a shuffled
 * walk of small files is served by extents, which do not go through the disk tier (see docs/DESIGN.md).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../servers/s3rver.js';
import { startS3ConditionalShim, type ConditionalShim } from '../servers/s3-conditional-shim.js';
import { startFaultProxy, type FaultProxy } from '../servers/fault-proxy.js';
import { BIN, makeTree, mount, pidAlive, python, run, tempDir, vhfs, waitFor, type TreeFile } from './helpers.js';

let s3: S3rverServer;
let shim: ConditionalShim;
let proxy: FaultProxy;
let work: string;
/** path → content, per version. */
const versions = new Map<string, Map<string, TreeFile>>();
const packageSize = new Map<string, number>();

const storeVia = (endpoint: string) => `s3://${s3.bucket}/team?endpoint=${encodeURIComponent(endpoint)}&path_style=true`;
const viaProxy = () => ['--store', storeVia(proxy.endpoint)];

test.before(async (t) => {
  t.timeout(180_000);
  // The daemons and CLI processes take their S3 credentials from the environment, as in production.
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' });
  work = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-hostcache-fuse-')));
  s3 = await startS3rver();
  shim = await startS3ConditionalShim(s3.endpoint);
  proxy = await startFaultProxy(s3.endpoint, { latencyMs: 10 });
  const home = path.join(work, 'maker');
  const shapes: Record<string, Array<{ path: string; size: number }>> = {
    // Many small files and two large ones: blocks, member checks and readahead all take part.
    'hc/v1': [
      ...Array.from({ length: 160 }, (_, i) => ({ path: `small/${String(i % 7)}/f-${String(i).padStart(3, '0')}.bin`, size: 2000 + ((i * 7919) % 30000) })),
      { path: 'big/a.bin', size: 2 * 1024 * 1024 + 12345 },
      { path: 'big/b.bin', size: 1024 * 1024 + 3 },
    ],
    'q/v1': Array.from({ length: 40 }, (_, i) => ({ path: `x/${String(i).padStart(2, '0')}.bin`, size: 60_000 + i * 997 })),
    'q/v2': Array.from({ length: 40 }, (_, i) => ({ path: `y/${String(i).padStart(2, '0')}.bin`, size: 61_000 + i * 991 })),
  };
  for (const [version, specs] of Object.entries(shapes)) {
    const src = path.join(work, 'src', version.replace('/', '-'));
    versions.set(version, await makeTree(src, specs));
    const made = await vhfs(home, ['--store', storeVia(shim.endpoint), '--quiet', 'dataset', 'create', version, src, '--package'], { timeoutMs: 120_000 });
    if (made.code !== 0) throw new Error(`dataset create ${version}: ${made.stderr}`);
    const inspected = await vhfs(home, ['--store', storeVia(shim.endpoint), '--json', 'package', 'inspect', `dataset://${version}`]);
    if (inspected.code !== 0) throw new Error(inspected.stderr);
    packageSize.set(version, (JSON.parse(inspected.stdout) as Array<{ size: number }>).reduce((n, p) => n + p.size, 0));
  }
});

test.after.always(async () => {
  await proxy?.stop();
  await shim?.stop();
  await s3?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** Every file under a directory, read in path order in 1 MiB reads: path → sha256 (python; the test never touches a mount). */
const PY_READ_IN_ORDER = String.raw`
import hashlib, json, os, sys
top = sys.argv[1]
paths = sorted(os.path.relpath(os.path.join(d, n), top) for d, _, names in os.walk(top) for n in names)
out = {}
for p in paths:
    h = hashlib.sha256()
    with open(os.path.join(top, p), "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    out[p] = h.hexdigest()
print(json.dumps(out))
`;

function expected(version: string, under = ''): Record<string, string> {
  return Object.fromEntries([...versions.get(version)!].map(([p, f]) => [`${under}${p}`, f.sha256]).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));

/** A daemon of its own (own home and root: another job), over the shared cache dir. */
async function job(t: ExecutionContext, name: string, cacheDir: string, inputs: string[], extra: string[] = []) {
  const home = path.join(work, `home-${name}-${Math.random().toString(36).slice(2, 8)}`);
  return mount(t, home, path.join(work, `root-${name}-${Math.random().toString(36).slice(2, 8)}`), [
    ...viaProxy(), '--cache-dir', cacheDir, ...inputs.flatMap((i) => ['--input', i]), '--wait', ...extra,
  ]);
}

/** Bytes the files under `dir` take on disk (allocated blocks). */
async function allocated(dir: string): Promise<number> {
  let bytes = 0;
  for (const name of await fs.readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const st = await fs.lstat(path.join(dir, name)).catch(() => undefined);
    if (st?.isFile()) bytes += st.blocks * 512;
  }
  return bytes;
}

/**
 * `vhfs cache stats` once it shows `settled`: each process adds its counters to the cache's record once a
 * second, so a read that just ended may not be counted yet. Gives up (returning the last answer) after 5 s.
 */
async function statsWhen<T>(cacheDir: string, settled: (stats: T) => boolean, args: string[] = []): Promise<T> {
  let last = await cacheJson<T>(cacheDir, [...args, 'cache', 'stats']);
  const until = Date.now() + 5_000;
  while (!settled(last) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    last = await cacheJson<T>(cacheDir, [...args, 'cache', 'stats']);
  }
  return last;
}

async function cacheJson<T>(cacheDir: string, args: string[]): Promise<T> {
  const r = await run(process.execPath, [BIN, '--home', path.join(work, 'inspector'), '--cache-dir', cacheDir, '--json', ...args]);
  if (r.code !== 0) throw new Error(`vhfs ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

test.serial('four daemons over one cache dir read every file of a version at once: all right, the store read about once', async (t) => {
  const cacheDir = path.join(work, 'cache-shared');
  const jobs = await Promise.all([1, 2, 3, 4].map((n) => job(t, `shared${n}`, cacheDir, ['d=dataset://hc/v1'])));
  const before = proxy.stats.bytesDown;
  const read = await Promise.all(jobs.map((j) => python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(j.mnt, 'd')])));
  const storeBytes = proxy.stats.bytesDown - before;
  for (const got of read) t.deepEqual(sorted(got), expected('hc/v1'));
  const size = packageSize.get('hc/v1')!;
  t.log(`package ${size} bytes; store bytes while 4 jobs read it: ${storeBytes} (${(storeBytes / size).toFixed(3)}×)`);
  t.true(storeBytes <= 1.05 * size, `${storeBytes} bytes from the store for a ${size}-byte package`);

  const stats = await statsWhen<{ storeBytes: number; diskBytes: number; waits: number; hitRatio: number }>(cacheDir, (st) => st.diskBytes >= 2 * size);
  t.log(`cache stats: ${JSON.stringify(stats)}`);
  t.true(stats.diskBytes >= 2 * size, 'the other jobs were served from the cache');
  const info = await cacheJson<{ datasets: Array<{ label: string; bytes: number }>; presentBytes: number }>(cacheDir, ['cache', 'info']);
  t.deepEqual(info.datasets.map((d) => d.label), ['dataset://hc/v1']);
  t.true(info.presentBytes >= size - 64 * 1024, 'the whole package is cached once');
});

test.serial('under a quota smaller than the data, reads stay right and the cache stays within the quota plus a block per process', async (t) => {
  // tmpfs: what a file takes on disk is exactly what it holds, so the sampled size is the cache's own.
  const cacheDir = await fs.mkdtemp(path.join('/dev/shm', 'vhfs-hostcache-quota-'));
  t.teardown(() => fs.rm(cacheDir, { recursive: true, force: true }));
  const quota = 3 * 1024 * 1024;
  const block = 64 * 1024;
  const total = packageSize.get('q/v1')! + packageSize.get('q/v2')!;
  t.true(total > quota * 1.5, `the data (${total}) is well over the quota`);
  const args = ['--cache-size', String(quota), '--block-size', '64K'];
  const jobs = await Promise.all([1, 2].map((n) => job(t, `quota${n}`, cacheDir, ['a=dataset://q/v1', 'b=dataset://q/v2'], args)));
  let largest = 0;
  let reading = true;
  const sampler = (async () => {
    while (reading) {
      largest = Math.max(largest, await allocated(cacheDir));
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  // Job 1 reads a then b, job 2 b then a, twice: objects go in and out of the cache under both.
  for (let pass = 0; pass < 2; pass++) {
    const [one, two] = await Promise.all([
      (async () => ({ ...await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(jobs[0].mnt, 'a')]), ...await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(jobs[0].mnt, 'b')]) }))(),
      (async () => ({ ...await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(jobs[1].mnt, 'b')]), ...await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(jobs[1].mnt, 'a')]) }))(),
    ]);
    const want = { ...expected('q/v1'), ...expected('q/v2') };
    t.deepEqual(sorted(one), sorted(want));
    t.deepEqual(sorted(two), sorted(want));
  }
  reading = false;
  await sampler;
  largest = Math.max(largest, await allocated(cacheDir));
  t.log(`quota ${quota}; the most the cache dir took: ${largest}`);
  t.true(largest <= quota + 2 * block, `${largest} bytes on disk, quota ${quota} + 2 blocks`);
  const stats = await statsWhen<{ evictions: number; notKept: number; diskBytes: number }>(cacheDir, (st) => st.evictions + st.notKept > 0, ['--cache-size', String(quota)]);
  t.true(stats.evictions + stats.notKept > 0, 'the quota made blocks go or not be kept');
  // What the cache kept serves the next job: a fresh daemon reads the dataset it holds most of.
  const info = await cacheJson<{ datasets: Array<{ label: string; bytes: number }> }>(cacheDir, ['--cache-size', String(quota), 'cache', 'info']);
  const held = info.datasets[0];
  t.true(held.bytes > 0);
  const next = await job(t, 'quota3', cacheDir, [`c=${held.label}`], args);
  t.deepEqual(sorted(await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(next.mnt, 'c')])), expected(held.label.replace('dataset://', '')));
  const after = await statsWhen<{ diskBytes: number }>(cacheDir, (st) => st.diskBytes > stats.diskBytes);
  t.true(after.diskBytes > stats.diskBytes, 'the new job read what the cache held from it');
  t.true(await allocated(cacheDir) <= quota + 3 * block);
});

test.serial('on a disk that fills up, every read still succeeds and the daemon log says why, once', async (t) => {
  const cacheDir = path.join(await tempDir(t, 'vhfs-hostcache-full-'), 'cache');
  await fs.mkdir(cacheDir);
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', cacheDir]);
  t.is(mounted.code, 0, mounted.stderr);
  t.teardown(() => run('umount', ['-l', cacheDir]).then(() => undefined));
  const j = await job(t, 'full', cacheDir, ['d=dataset://hc/v1'], ['--cache-size', '1G']);
  t.deepEqual(sorted(await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(j.mnt, 'd')])), expected('hc/v1'));
  const log = await fs.readFile(j.log, 'utf8');
  t.is(log.match(/no space left/g)?.length, 1, log);
});

test.serial('a prefetch killed while filling leaves a cache that verifies, and the next daemon uses it without error', async (t) => {
  const cacheDir = path.join(work, 'cache-killed');
  const home = path.join(work, 'home-prefetch');
  // A slow store and one ranged GET at a time: the prefetch is still filling when it is killed.
  proxy.set({ latencyMs: 1000 });
  t.teardown(() => proxy.set({ latencyMs: 10 }));
  const child = spawn(process.execPath, [BIN, '--home', home, ...viaProxy(), '--cache-dir', cacheDir, 'prefetch', 'dataset://hc/v1', '--parallel', '1', '--block-size', '64K'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  // Kill it once it has kept some blocks (one 2 MiB run of the three), with the next run under way.
  const blocksIn = (state: number) => {
    try {
      const db = new Database(path.join(cacheDir, 'host-cache.db'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM blocks WHERE state = ?').get(state) as { n: number }).n;
      } finally {
        db.close();
      }
    } catch {
      return 0; // not made yet
    }
  };
  await waitFor(() => blocksIn(2) >= 4 || child.exitCode !== null, 60_000, 'the prefetch to keep some blocks');
  t.is(child.exitCode, null, `the prefetch finished before it could be killed: ${stderr}`);
  child.kill('SIGKILL');
  t.is(await exited, 'SIGKILL');
  proxy.set({ latencyMs: 10 });
  t.log(`after SIGKILL: ${blocksIn(2)} blocks present, ${blocksIn(1)} leased by the dead process`);

  const verified = await cacheJson<{ bad: unknown[]; blocks: number }>(cacheDir, ['cache', 'verify']);
  t.deepEqual(verified.bad, []);
  t.true(verified.blocks >= 4);
  t.is((await cacheJson<{ leased: number }>(cacheDir, ['cache', 'info'])).leased, 0, 'verify reaped the dead process\'s leases');

  const j = await job(t, 'after-kill', cacheDir, ['d=dataset://hc/v1'], ['--block-size', '64K']);
  t.deepEqual(sorted(await python<Record<string, string>>(PY_READ_IN_ORDER, [path.join(j.mnt, 'd')])), expected('hc/v1'));
  const log = await fs.readFile(j.log, 'utf8');
  t.false(/host cache/.test(log), `the daemon had trouble with the cache:\n${log}`);
  const stats = await statsWhen<{ diskBytes: number }>(cacheDir, (st) => st.diskBytes > 0);
  t.true(stats.diskBytes > 0, 'what the killed prefetch kept was used');
  t.deepEqual((await cacheJson<{ bad: unknown[] }>(cacheDir, ['cache', 'verify'])).bad, []);
  t.false(pidAlive(child.pid!));
});
