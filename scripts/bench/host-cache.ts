/**
 * Issue 15's benchmark: N jobs on one host reading the same packaged version at the same time, each a
 * `vhfs mount` daemon of its own with a reader process (`reader.js`: every file in path order, 1 MiB reads),
 * with one shared host cache (`--cache-dir` the same for all) against each job fetching on its own (a
 * `--cache-dir` per job). The store is s3rver behind the loopback proxy at a cloud-like round trip (20 ms by
 * default), in its own process; store bytes are the proxy's response bytes while the jobs read.
 *
 *   node dist/scripts/bench/host-cache.js [--jobs 1,2,4,8] [--files N] [--file-size B] [--big-files N]
 *        [--big-size B] [--latency-ms MS] [--work DIR]
 *   env: BENCH_JOBS, BENCH_FILES, BENCH_FILE_SIZE, BENCH_BIG_FILES, BENCH_BIG_SIZE, BENCH_LATENCY_MS, BENCH_WORK
 *
 * Defaults: 2,000 files × 16 KiB and 2 × 16 MiB (about 64 MiB in one package), 20 ms, jobs 1, 2, 4, 8,
 * work dir /tmp/vhfs-hostcache-bench. Setup (the files, s3rver's data, `vhfs dataset create hc/v1 --package`
 * through the S3 conditional-write shim) is kept in the work dir and reused while its parameters match.
 * Every run starts with empty caches. Output: a Markdown table on stdout and WORK/results/host-cache-<time>.md.
 * On exit, error or Ctrl-C every mount under WORK is detached and the servers are stopped.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearStaleMount, listMounts } from '../../src/fuse/mountpoint.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../../test/servers/s3rver.js';
import { startS3ConditionalShim, type ConditionalShim } from '../../test/servers/s3-conditional-shim.js';
import { startFaultProxyProcess, type FaultProxyProcess } from '../../test/servers/fault-proxy.js';

interface Config { work: string; jobs: number[]; files: number; fileSize: number; bigFiles: number; bigSize: number; latencyMs: number }

function parseConfig(argv: string[]): Config {
  const opt = (name: string, envName: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : process.env[envName] ?? def;
  };
  const cfg: Config = {
    work: resolve(opt('--work', 'BENCH_WORK', '/tmp/vhfs-hostcache-bench')),
    jobs: opt('--jobs', 'BENCH_JOBS', '1,2,4,8').split(',').map(Number),
    files: Number(opt('--files', 'BENCH_FILES', '2000')),
    fileSize: Number(opt('--file-size', 'BENCH_FILE_SIZE', '16384')),
    bigFiles: Number(opt('--big-files', 'BENCH_BIG_FILES', '2')),
    bigSize: Number(opt('--big-size', 'BENCH_BIG_SIZE', String(16 * 1024 * 1024))),
    latencyMs: Number(opt('--latency-ms', 'BENCH_LATENCY_MS', '20')),
  };
  if (!isAbsolute(cfg.work) || cfg.work.split('/').filter(Boolean).length < 2) throw new Error(`work dir ${cfg.work}: an absolute path at least two levels deep (parts of it are wiped)`);
  if (cfg.jobs.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--jobs: whole numbers of 1 or more, comma-separated`);
  for (const k of ['files', 'fileSize', 'bigFiles', 'bigSize', 'latencyMs'] as const) if (!(cfg[k] >= 0)) throw new Error(`bad --${k}: ${cfg[k]}`);
  return cfg;
}

const cfg = parseConfig(process.argv.slice(2));
const BUCKET = 'hc-bench';
const VHFS = fileURLToPath(new URL('../../../bin/vhfs.js', import.meta.url));
const READER = fileURLToPath(new URL('./reader.js', import.meta.url));
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

let s3: S3rverServer | undefined;
let shim: ConditionalShim | undefined;
let proxy: FaultProxyProcess | undefined;

const storeUrl = (endpoint: string) => `s3://${BUCKET}/bench?endpoint=${encodeURIComponent(endpoint)}&path_style=true`;

function run(args: string[], timeoutMs = 600_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [VHFS, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); done({ code: code ?? -1, stdout, stderr }); });
  });
}

function relPaths(): string[] {
  const small = Array.from({ length: cfg.files }, (_, f) => `small/d${String(f % 50).padStart(2, '0')}/f${String(f).padStart(6, '0')}.bin`);
  const big = Array.from({ length: cfg.bigFiles }, (_, b) => `big/b${b}.bin`);
  return [...small, ...big].sort();
}

async function setup(): Promise<number> {
  const tree = join(cfg.work, 'tree');
  const stampFile = join(cfg.work, 'stamp.json');
  const stamp = JSON.stringify({ files: cfg.files, fileSize: cfg.fileSize, bigFiles: cfg.bigFiles, bigSize: cfg.bigSize, v: 1 });
  const fresh = !(existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp);
  if (fresh) {
    log(`setup: ${cfg.files} × ${cfg.fileSize} B and ${cfg.bigFiles} × ${cfg.bigSize} B in ${tree}`);
    for (const d of ['tree', 's3rver', 'home-maker']) rmSync(join(cfg.work, d), { recursive: true, force: true });
    for (const rel of relPaths()) {
      const file = join(tree, rel);
      mkdirSync(resolve(file, '..'), { recursive: true });
      writeFileSync(file, randomBytes(rel.startsWith('big/') ? cfg.bigSize : cfg.fileSize));
    }
  }
  mkdirSync(join(cfg.work, 's3rver'), { recursive: true });
  s3 = await startS3rver({ bucket: BUCKET, dir: join(cfg.work, 's3rver') });
  shim = await startS3ConditionalShim(s3.endpoint);
  const maker = ['--home', join(cfg.work, 'home-maker'), '--store', storeUrl(shim.endpoint)];
  if (fresh) {
    log('setup: vhfs dataset create hc/v1 --package');
    const made = await run([...maker, '--quiet', 'dataset', 'create', 'hc/v1', tree, '--package'], 3_600_000);
    if (made.code !== 0) throw new Error(`dataset create: ${made.stderr.trim()}`);
    writeFileSync(stampFile, stamp);
  }
  const inspected = await run([...maker, '--json', 'package', 'inspect', 'dataset://hc/v1']);
  if (inspected.code !== 0) throw new Error(`package inspect: ${inspected.stderr.trim()}`);
  proxy = await startFaultProxyProcess(s3.endpoint, { latencyMs: cfg.latencyMs });
  return (JSON.parse(inspected.stdout) as Array<{ size: number }>).reduce((n, p) => n + p.size, 0);
}

interface Row { jobs: number; cache: 'shared' | 'per job'; storeBytes: number; gets: number; wallSeconds: number; perJob: number[] }

/** N daemons (own home and root each), their readers released together; store traffic while they read. */
async function measure(jobs: number, shared: boolean): Promise<Row> {
  const runDir = join(cfg.work, 'run');
  rmSync(runDir, { recursive: true, force: true });
  const paths = relPaths();
  const roots = Array.from({ length: jobs }, (_, i) => join(runDir, `job${i}`));
  await Promise.all(roots.map(async (root, i) => {
    const cacheDir = shared ? join(runDir, 'cache') : join(root, 'cache');
    const r = await run(['--home', join(cfg.work, `home-job${i}`), '--store', storeUrl(proxy!.endpoint), '--cache-dir', cacheDir, '--quiet',
      'mount', '--root', root, '--input', 'd=dataset://hc/v1', '--wait'], 300_000);
    if (r.code !== 0) throw new Error(`mount of job ${i}: ${r.stderr.trim()}`);
  }));
  const readers = roots.map((root) => {
    const list = join(root, 'list.txt');
    writeFileSync(list, paths.map((p) => join(root, 'inputs', 'd', p)).join('\n') + '\n');
    const child = spawn(process.execPath, [READER, list, '0'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    const ready = new Promise<void>((r) => child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('waiting')) r(); }));
    const done = new Promise<{ start: number; end: number; bytes: number; error?: string }>((r) => child.on('close', () => r(JSON.parse(out.split('\n').find((l) => l.startsWith('{')) ?? '{"error":"no report"}'))));
    return { child, ready, done };
  });
  await Promise.all(readers.map((r) => r.ready));
  const before = await proxy!.stats();
  for (const r of readers) r.child.stdin!.end('go\n');
  const reports = await Promise.all(readers.map((r) => r.done));
  const after = await proxy!.stats();
  for (const rep of reports) if (rep.error) throw new Error(`reader: ${rep.error}`);
  for (const root of roots) await run(['unmount', '--root', root], 60_000);
  const start = Math.min(...reports.map((r) => r.start));
  return {
    jobs, cache: shared ? 'shared' : 'per job', storeBytes: after.bytesDown - before.bytesDown, gets: (after.byMethod.GET ?? 0) - (before.byMethod.GET ?? 0),
    wallSeconds: (Math.max(...reports.map((r) => r.end)) - start) / 1000, perJob: reports.map((r) => (r.end - r.start) / 1000),
  };
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function table(rows: Row[], packageSize: number): string {
  const lines = [
    `N jobs on one host read every file of one packaged version (${cfg.files} × ${cfg.fileSize} B + ${cfg.bigFiles} × ${mib(cfg.bigSize)}, package ${mib(packageSize)}) in path order at once; store: s3rver behind the proxy at ${cfg.latencyMs} ms round trip.`,
    '',
    '| jobs | cache dir | store bytes | × package | GETs | wall, all jobs (s) | per job: mean / max (s) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const mean = r.perJob.reduce((n, x) => n + x, 0) / r.perJob.length;
    lines.push(`| ${r.jobs} | ${r.cache} | ${mib(r.storeBytes)} | ${(r.storeBytes / packageSize).toFixed(2)} | ${r.gets} | ${r.wallSeconds.toFixed(2)} | ${mean.toFixed(2)} / ${Math.max(...r.perJob).toFixed(2)} |`);
  }
  return lines.join('\n') + '\n';
}

/** Detach every mount under the work dir (daemons exit with them), then stop the servers, proxy first. */
async function cleanup(): Promise<void> {
  const mounts = (await listMounts().catch(() => [])).map((m) => m.mountPoint).filter((p) => p.startsWith(`${cfg.work}/`));
  for (const mountPoint of mounts.reverse()) await clearStaleMount(mountPoint, { force: true }).catch((e: unknown) => log(`cleanup: ${(e as Error).message}`));
  const servers = [proxy, shim, s3];
  proxy = shim = s3 = undefined;
  for (const server of servers) await server?.stop();
}

async function main(): Promise<void> {
  mkdirSync(cfg.work, { recursive: true });
  await cleanup();
  const packageSize = await setup();
  const rows: Row[] = [];
  for (const jobs of cfg.jobs) {
    for (const shared of [false, true]) {
      log(`${jobs} job(s), ${shared ? 'one shared cache dir' : 'a cache dir per job'}`);
      const row = await measure(jobs, shared);
      log(`  ${mib(row.storeBytes)} from the store, ${row.wallSeconds.toFixed(2)} s`);
      rows.push(row);
    }
  }
  const md = table(rows, packageSize);
  const dir = join(cfg.work, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `host-cache-${new Date().toISOString().replace(/[:.]/g, '-')}.md`);
  writeFileSync(file, md);
  process.stdout.write(md);
  log(`results: ${file}`);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { log(`${sig}: cleaning up`); void cleanup().finally(() => process.exit(130)); });
}
main().then(() => cleanup(), async (err: unknown) => {
  log(`host-cache bench: ${(err as Error).message}`);
  await cleanup();
  process.exitCode = 1;
});
