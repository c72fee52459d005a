/**
 * The seed's scenario (issue 13): a dataset of many small files in an S3 bucket at cloud latency, and a
 * job that needs every file. s3rver stands in for S3, behind the loopback fault proxy adding a round trip
 * per request (20 ms by default, like a nearby region), run in its own process; every figure of store
 * traffic comes from the proxy's counters (requests and response bytes on the wire).
 *
 *   node dist/scripts/bench/seed-scenario.js [--files N] [--file-size B] [--dirs N] [--latency-ms MS]
 *        [--budget S] [--phases a,b,c,d,e] [--parallel N] [--work DIR] [--skip-drop-caches]
 *   env: BENCH_FILES, BENCH_FILE_SIZE, BENCH_LATENCY_MS, BENCH_BUDGET, BENCH_WORK override the defaults.
 *
 * Defaults: 20,000 files × 10 KiB in 100 dirs, 20 ms round trip, 32 in parallel, 180 s budget per phase,
 * work dir /tmp/vhfs-seed.
 *
 * Setup (not measured, reused while its parameters match: a stamp in WORK): the files under WORK/tree,
 * s3rver's data under WORK/s3rver (bucket `seed-bench`), and `vhfs dataset create seed/v1 … --package`
 * through the S3 conditional-write shim with no added latency, into `s3://seed-bench/seed` with its
 * catalog in WORK/home. Every file is then both its own object (its content-addressed blob) and a member
 * of the package, so phases (a) and (b) read exactly what a per-file copy and a package download would.
 *
 * Phases (all through the proxy):
 *   a   download every file as its own object (S3 GetObject of its blob), 1 at a time, then N at a time
 *   b   download the package (one streamed GET), `unzip` it, read every extracted file
 *   c   `vhfs mount` (cold: no cached index or block) → first byte of one file
 *   d   `vhfs mount` cold → read every file in path order; again cold → in a fixed shuffled order
 *   e   the same warm: a second mount each, with the disk block tier and index left from (d)
 * Reads through the mount use `reader.js` (1 MiB read() calls, a separate process, started before the
 * clock). Each phase stops at the budget and reports what it did, with the time for all files projected
 * from its rate (marked `*`). The page cache is dropped before every cold phase (as root).
 *
 * Output: a Markdown table (time, GETs, store bytes, ratios to the package download (b's download) and to
 * the package size) on stdout, and WORK/results/seed-<time>.md|.json. On exit, error or Ctrl-C, every mount
 * under WORK is detached, the daemons stopped, and the servers stopped.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { isAbsolute, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Catalog } from '../../src/catalog/catalog.js';
import { keys } from '../../src/catalog/store-records.js';
import { clearStaleMount, listMounts } from '../../src/fuse/mountpoint.js';
import { S3Store } from '../../src/store/s3.js';
import { mapLimit } from '../../src/util/concurrency.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../../test/servers/s3rver.js';
import { startS3ConditionalShim, type ConditionalShim } from '../../test/servers/s3-conditional-shim.js';
import { rng } from '../../test/helpers/rng.js';
import { startFaultProxyProcess, type FaultProxyProcess } from '../../test/servers/fault-proxy.js';

// ------------------------------------------------------------------------------------------------ config

interface Config {
  work: string; files: number; fileSize: number; dirs: number; latencyMs: number; budgetSeconds: number;
  phases: Set<string>; parallel: number; dropCaches: boolean;
}

function parseConfig(argv: string[]): Config {
  const env = process.env;
  const opt = (name: string, envName: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : env[envName] ?? def;
  };
  const cfg: Config = {
    work: resolve(opt('--work', 'BENCH_WORK', '/tmp/vhfs-seed')),
    files: Number(opt('--files', 'BENCH_FILES', '20000')),
    fileSize: Number(opt('--file-size', 'BENCH_FILE_SIZE', '10240')),
    dirs: Number(opt('--dirs', 'BENCH_DIRS', '100')),
    latencyMs: Number(opt('--latency-ms', 'BENCH_LATENCY_MS', '20')),
    budgetSeconds: Number(opt('--budget', 'BENCH_BUDGET', '180')),
    phases: new Set(opt('--phases', 'BENCH_PHASES', 'a,b,c,d,e').split(',')),
    parallel: Number(opt('--parallel', 'BENCH_PARALLEL', '32')),
    dropCaches: !argv.includes('--skip-drop-caches'),
  };
  if (!isAbsolute(cfg.work) || cfg.work.split('/').filter(Boolean).length < 2) {
    throw new Error(`work dir ${cfg.work} must be an absolute path at least two levels deep (it is wiped in parts)`);
  }
  for (const p of cfg.phases) if (!'abcde'.includes(p) || p.length !== 1) throw new Error(`unknown phase ${p} (a, b, c, d, e)`);
  for (const k of ['files', 'fileSize', 'dirs', 'latencyMs', 'budgetSeconds', 'parallel'] as const) {
    if (!(cfg[k] >= 0) || (k !== 'latencyMs' && cfg[k] === 0)) throw new Error(`bad --${k}: ${cfg[k]}`);
  }
  return cfg;
}

const cfg = parseConfig(process.argv.slice(2));
const TREE = join(cfg.work, 'tree');
const HOME = join(cfg.work, 'home');
const MNT = join(cfg.work, 'mnt');
const BUCKET = 'seed-bench';
const PREFIX = 'seed';
const VHFS = fileURLToPath(new URL('../../../bin/vhfs.js', import.meta.url));
const READER = fileURLToPath(new URL('./reader.js', import.meta.url));
const S3_ENV = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const dirName = (d: number) => `d${String(d).padStart(3, '0')}`;
const relFiles = () => Array.from({ length: cfg.files }, (_, f) => `${dirName(f % cfg.dirs)}/f${String(f).padStart(7, '0')}.bin`).sort();

// ------------------------------------------------------------------------------------------------ setup

let s3: S3rverServer | undefined;
let shim: ConditionalShim | undefined;
let proxy: FaultProxyProcess | undefined;

const storeUrl = (endpoint: string) => `s3://${BUCKET}/${PREFIX}?endpoint=${encodeURIComponent(endpoint)}&path_style=true`;

async function setup(): Promise<void> {
  const stampFile = join(cfg.work, 'stamp.json');
  const stamp = JSON.stringify({ files: cfg.files, fileSize: cfg.fileSize, dirs: cfg.dirs, v: 1 });
  const fresh = !(existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp);
  if (fresh) {
    log(`setup: generating ${cfg.files} files × ${cfg.fileSize} B in ${TREE}`);
    for (const d of ['tree', 's3rver', 'home']) rmSync(join(cfg.work, d), { recursive: true, force: true });
    for (let d = 0; d < cfg.dirs; d++) mkdirSync(join(TREE, dirName(d)), { recursive: true });
    for (const rel of relFiles()) writeFileSync(join(TREE, rel), randomBytes(cfg.fileSize));
  }
  mkdirSync(join(cfg.work, 's3rver'), { recursive: true });
  s3 = await startS3rver({ bucket: BUCKET, dir: join(cfg.work, 's3rver') });
  shim = await startS3ConditionalShim(s3.endpoint);
  if (fresh) {
    log('setup: vhfs dataset create seed/v1 --package (no added latency; a few minutes for 20,000 files)');
    const t0 = performance.now();
    const r = await vhfs(['--store', storeUrl(shim.endpoint), '--quiet', 'dataset', 'create', 'seed/v1', TREE, '--package'], { timeoutMs: 3_600_000 });
    if (r.code !== 0) throw new Error(`dataset create failed (${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    log(`setup: dataset created in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    writeFileSync(stampFile, stamp);
  }
  // In its own process, so the clients measured here (phase a, b) do not compete with it for this one's CPU.
  proxy = await startFaultProxyProcess(s3.endpoint, { latencyMs: cfg.latencyMs });
}

interface DatasetInfo { blobKeys: string[]; packageKey: string; packageSize: number; paths: string[] }

async function datasetInfo(): Promise<DatasetInfo> {
  const store = new S3Store({ bucket: BUCKET, prefix: `${PREFIX}/`, endpoint: shim!.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
  const catalog = await Catalog.open({ store, dbPath: join(HOME, 'catalog.sqlite') });
  try {
    const summary = await catalog.getVersionSummary('dataset', 'seed', 'v1');
    if (summary.packages.length !== 1) throw new Error(`seed/v1 has ${summary.packages.length} packages, expected 1`);
    const pkg = await catalog.getDatum(summary.packages[0].datumId);
    const files = [...(await catalog.versionFiles('dataset', 'seed', 'v1'))];
    return { blobKeys: files.map((f) => keys.blob(f.sha256)), packageKey: pkg.blobKey, packageSize: pkg.size, paths: files.map((f) => f.path).sort() };
  } finally {
    catalog.close();
  }
}

// ------------------------------------------------------------------------------------------------ helpers

interface RunResult { code: number; stdout: string; stderr: string }

function run(file: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(file, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? -1, stdout, stderr });
    });
  });
}

const vhfs = (args: string[], opts: { timeoutMs?: number } = {}) => run(process.execPath, [VHFS, '--home', HOME, ...args], { env: S3_ENV, ...opts });

function dropCaches(): void {
  if (cfg.dropCaches) spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
}

/** Run `reader.js` over `paths` within the budget; resolves with its report. */
function readFiles(paths: string[], budgetMs: number): Promise<{ start: number; end: number; files: number; bytes: number; truncated: boolean }> {
  const list = join(cfg.work, 'list.txt');
  writeFileSync(list, paths.join('\n') + '\n');
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [READER, list, String(budgetMs)], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('waiting') && !out.includes('{')) child.stdin!.end('go\n');
    });
    child.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) return reject(new Error('reader printed nothing'));
      const r = JSON.parse(line) as { start: number; end: number; files: number; bytes: number; truncated: boolean; error?: string };
      return r.error ? reject(new Error(`reader: ${r.error}`)) : resolvePromise(r);
    });
  });
}

/** A fixed random order (Fisher-Yates with the tests' seeded PRNG), the same in every run. */
function shuffled<T>(items: T[], seed: number): T[] {
  const a = [...items];
  const random = rng(seed);
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Proxy traffic during `fn`. */
async function metered<T>(fn: () => Promise<T>): Promise<{ value: T; gets: number; requests: number; bytes: number }> {
  const before = await proxy!.stats();
  const value = await fn();
  const after = await proxy!.stats();
  return { value, gets: (after.byMethod.GET ?? 0) - (before.byMethod.GET ?? 0), requests: after.requests - before.requests, bytes: after.bytesDown - before.bytesDown };
}

interface Row {
  phase: string; what: string; seconds: number; files: number; gets: number; bytes: number;
  truncated?: boolean; note?: string;
}

const rows: Row[] = [];
const budgetMs = () => cfg.budgetSeconds * 1000;

async function mount(extra: string[] = []): Promise<void> {
  const r = await vhfs(['--store', storeUrl(proxy!.endpoint), 'mount', '--root', MNT, '--input', 'seed=dataset://seed/v1', '--stats-file', join(cfg.work, 'mount-stats.json'), ...extra], { timeoutMs: budgetMs() + 60_000 });
  if (r.code !== 0) throw new Error(`vhfs mount failed (${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
}

async function unmount(): Promise<void> {
  const r = await vhfs(['unmount', '--root', MNT], { timeoutMs: 60_000 });
  if (r.code !== 0) log(`unmount: ${r.stderr.trim()}`);
}

function clearCache(): void {
  rmSync(join(HOME, 'cache'), { recursive: true, force: true });
}

// ------------------------------------------------------------------------------------------------ phases

async function phaseA(info: DatasetInfo): Promise<void> {
  for (const parallel of [1, cfg.parallel]) {
    const store = new S3Store({ bucket: BUCKET, prefix: `${PREFIX}/`, endpoint: proxy!.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS }, maxSockets: Math.max(64, parallel) });
    log(`a: every file as its own object, ${parallel} at a time`);
    const deadline = performance.now() + budgetMs();
    let done = 0;
    let next = 0;
    const t0 = performance.now();
    const m = await metered(() => mapLimit(Array.from({ length: parallel }), parallel, async () => {
      while (next < info.blobKeys.length && performance.now() < deadline) {
        const data = await store.get(info.blobKeys[next++]);
        if (data.length !== cfg.fileSize) throw new Error(`object of ${data.length} bytes, expected ${cfg.fileSize}`);
        done++;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    rows.push({ phase: 'a', what: `every file as its own object, ${parallel} at a time`, seconds, files: done, gets: m.gets, bytes: m.bytes, truncated: done < info.blobKeys.length });
  }
}

async function phaseB(info: DatasetInfo): Promise<{ downloadSeconds: number }> {
  const dir = join(cfg.work, 'b');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = new S3Store({ bucket: BUCKET, prefix: `${PREFIX}/`, endpoint: proxy!.endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
  dropCaches();
  log('b: download the package, unzip it, read every file');
  const zip = join(dir, 'package.zip');
  const t0 = performance.now();
  const m = await metered(async () => {
    const body = await store.getStream(info.packageKey);
    const timer = setTimeout(() => body.destroy(new Error(`package download exceeded the ${cfg.budgetSeconds} s budget`)), budgetMs());
    try {
      await pipeline(body, createWriteStream(zip));
    } finally {
      clearTimeout(timer);
    }
  });
  const downloadSeconds = (performance.now() - t0) / 1000;
  rows.push({ phase: 'b', what: 'download the package (1 streamed GET)', seconds: downloadSeconds, files: 0, gets: m.gets, bytes: m.bytes });
  const t1 = performance.now();
  const unzip = await run('unzip', ['-q', zip, '-d', join(dir, 'x')], { timeoutMs: budgetMs() });
  if (unzip.code !== 0) throw new Error(`unzip failed: ${unzip.stderr.trim()}`);
  const unzipSeconds = (performance.now() - t1) / 1000;
  rows.push({ phase: 'b', what: '`unzip` it', seconds: unzipSeconds, files: 0, gets: 0, bytes: 0 });
  const r = await readFiles(info.paths.map((p) => join(dir, 'x', p)), budgetMs());
  const readSeconds = (r.end - r.start) / 1000;
  rows.push({ phase: 'b', what: 'read every extracted file', seconds: readSeconds, files: r.files, gets: 0, bytes: 0, truncated: r.truncated });
  rows.push({ phase: 'b', what: '**package total** (download + unzip + read)', seconds: downloadSeconds + unzipSeconds + readSeconds, files: r.files, gets: m.gets, bytes: m.bytes, truncated: r.truncated });
  rmSync(dir, { recursive: true, force: true });
  return { downloadSeconds };
}

async function phaseC(info: DatasetInfo): Promise<void> {
  clearCache();
  dropCaches();
  log('c: mount (cold) → first byte of one file');
  const target = join(MNT, 'inputs', 'seed', info.paths[Math.floor(info.paths.length / 2)]);
  const t0 = performance.now();
  const m = await metered(async () => {
    await mount();
    const r = await run('head', ['-c', '1', target], { timeoutMs: budgetMs() });
    if (r.code !== 0) throw new Error(`head -c 1 ${target}: ${r.stderr.trim()}`);
  });
  rows.push({ phase: 'c', what: '`vhfs mount` → first byte of one file (cold)', seconds: (performance.now() - t0) / 1000, files: 1, gets: m.gets, bytes: m.bytes });
  await unmount();
}

async function mountAndRead(phase: string, what: string, paths: string[], cold: boolean): Promise<void> {
  if (cold) {
    clearCache();
    dropCaches();
  }
  log(`${phase}: ${what}`);
  const t0 = performance.now();
  let readerReport: Awaited<ReturnType<typeof readFiles>> | undefined;
  const m = await metered(async () => {
    await mount();
    readerReport = await readFiles(paths.map((p) => join(MNT, 'inputs', 'seed', p)), Math.max(1, budgetMs() - (performance.now() - t0)));
  });
  const seconds = (performance.now() - t0) / 1000;
  await unmount();
  const stats = existsSync(join(cfg.work, 'mount-stats.json')) ? readFileSync(join(cfg.work, 'mount-stats.json'), 'utf8') : '';
  rows.push({ phase, what, seconds, files: readerReport!.files, gets: m.gets, bytes: m.bytes, truncated: readerReport!.truncated, note: stats && `stats: ${stats}` });
}

// ------------------------------------------------------------------------------------------------ report

const fmtBytes = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

function report(info: DatasetInfo | undefined, downloadSeconds: number | undefined, started: string): string {
  const total = info?.paths.length ?? cfg.files;
  const lines = [
    `## Seed scenario ${started}`,
    '',
    `${total} files × ${cfg.fileSize} B (${cfg.dirs} dirs), one package of ${info ? fmtBytes(info.packageSize) : '?'}; S3 = s3rver behind the ` +
      `loopback delay proxy at ${cfg.latencyMs} ms per request round trip; ${cfg.parallel} in parallel where parallel; budget ${cfg.budgetSeconds} s per phase; ` +
      `GETs and store bytes counted by the proxy. ${readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length} CPUs, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')} at the end.`,
    '',
    `Command: \`node dist/scripts/bench/seed-scenario.js ${process.argv.slice(2).join(' ')}\``,
    '',
    '| phase | what | time (s) | files read | time for all files (s) | GETs | store bytes | ÷ package download time | ÷ package size |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const projected = r.files > 0 && r.truncated ? (r.seconds * total) / r.files : r.seconds;
    const vsDownload = downloadSeconds ? `${(projected / downloadSeconds).toFixed(2)}×` : '–';
    const vsSize = info && r.bytes ? `${(r.bytes / info.packageSize).toFixed(2)}×` : '–';
    lines.push(`| ${r.phase} | ${r.what} | ${r.seconds.toFixed(2)} | ${r.files || '–'} | ${projected.toFixed(1)}${r.truncated ? '*' : ''} | ${r.gets} | ${fmtBytes(r.bytes)} | ${vsDownload} | ${vsSize} |`);
  }
  const c = rows.find((r) => r.phase === 'c');
  const bTotal = rows.find((r) => r.phase === 'b' && r.what.includes('total'));
  if (c && bTotal && c.seconds > 0) lines.push('', `(c) first byte after ${c.seconds.toFixed(2)} s; the package route (b) is ready to read after ${bTotal.seconds.toFixed(2)} s: ratio ${(bTotal.seconds / c.seconds).toFixed(2)}.`);
  if (rows.some((r) => r.truncated)) lines.push('', `\\* the phase stopped at its ${cfg.budgetSeconds} s budget; the time for all files is projected from its rate.`);
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------------------------------------ main

async function cleanup(): Promise<void> {
  const mine = (await listMounts().catch(() => [])).filter((m) => m.mountPoint.startsWith(cfg.work + '/')).reverse();
  if (mine.length) await vhfs(['unmount', '--root', MNT], { timeoutMs: 30_000 }).catch(() => undefined);
  for (const m of (await listMounts().catch(() => [])).filter((x) => x.mountPoint.startsWith(cfg.work + '/')).reverse()) {
    await clearStaleMount(m.mountPoint, { force: true }).catch((e: unknown) => log(`cleanup: ${(e as Error).message}`));
  }
  await proxy?.stop();
  await shim?.stop();
  await s3?.stop();
  proxy = shim = s3 = undefined;
}

async function main(): Promise<void> {
  mkdirSync(cfg.work, { recursive: true });
  const started = new Date().toISOString();
  await cleanup();
  await setup();
  const info = await datasetInfo();
  let downloadSeconds: number | undefined;
  const phases: Array<[string, () => Promise<void>]> = [
    ['a', () => phaseA(info)],
    ['b', async () => { downloadSeconds = (await phaseB(info)).downloadSeconds; }],
    ['c', () => phaseC(info)],
    ['d', async () => {
      await mountAndRead('d', '`vhfs mount` → every file, in path order (cold)', info.paths, true);
      await mountAndRead('d', '`vhfs mount` → every file, shuffled (cold)', shuffled(info.paths, 42), true);
    }],
    ['e', async () => {
      await mountAndRead('e', 'second mount → every file, in path order (warm)', info.paths, false);
      await mountAndRead('e', 'second mount → every file, shuffled (warm)', shuffled(info.paths, 42), false);
    }],
  ];
  for (const [name, fn] of phases) {
    if (!cfg.phases.has(name)) continue;
    try {
      await fn();
    } catch (err) {
      log(`phase ${name}: ${(err as Error).message}`);
      rows.push({ phase: name, what: `failed: ${(err as Error).message.split('\n')[0]}`, seconds: 0, files: 0, gets: 0, bytes: 0 });
      await unmount().catch(() => undefined);
    }
  }
  const md = report(info, downloadSeconds, started);
  const dir = join(cfg.work, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `seed-${started.replace(/[:.]/g, '-')}.md`);
  writeFileSync(file, md);
  writeFileSync(file.replace(/\.md$/, '.json'), JSON.stringify({ config: { ...cfg, phases: [...cfg.phases] }, packageSize: info.packageSize, rows }, null, 2));
  process.stdout.write(md);
  log(`results: ${file}`);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { log(`${sig}: cleaning up`); cleanup().finally(() => process.exit(130)); });
}
main().then(() => cleanup(), async (err) => {
  log(`seed-scenario: ${(err as Error).message}`);
  await cleanup();
  process.exitCode = 1;
});
