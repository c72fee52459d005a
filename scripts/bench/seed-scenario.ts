/**
 * The seed's scenario (issue 13): a dataset of many small files in a cloud bucket at cloud latency, and a
 * job that needs every file. A local server stands in for the cloud (`--backend`): s3rver for S3, azurite
 * for Azure Blob, the test GCS JSON-API server (`test/servers/gcs-server.ts`) for GCS, each in its own
 * process behind the loopback fault proxy adding a round trip per request (20 ms by default, like a nearby
 * region), also in its own process; every figure of store traffic comes from the proxy's counters
 * (requests and response bytes on the wire).
 *
 *   node dist/scripts/bench/seed-scenario.js [--backend s3|azure|gcs] [--files N] [--file-size B] [--dirs N]
 *        [--latency-ms MS] [--budget S] [--phases a,b,c,d,e] [--parallel N] [--work DIR] [--skip-drop-caches]
 *   env: BENCH_BACKEND, BENCH_FILES, BENCH_FILE_SIZE, BENCH_DIRS, BENCH_LATENCY_MS, BENCH_BUDGET, BENCH_PHASES,
 *        BENCH_PARALLEL, BENCH_WORK override the defaults.
 *
 * Defaults: S3, 20,000 files × 10 KiB in 100 dirs, 20 ms round trip, 32 in parallel, 180 s budget per
 * phase, work dir /tmp/vhfs-seed-<backend>.
 *
 * The backends differ only in a `Backend` record (how to start and stop the server, the store URL for an
 * endpoint, the environment that gives vhfs its credentials: the AWS keys s3rver accepts, azurite's
 * well-known development account key, none for the loopback GCS server); the phases are one code path.
 * vhfs finds the server through the store URL's `?endpoint=` (docs/STORES.md), pointing at the proxy.
 *
 * Setup (not measured, reused while its parameters and the backend match: a stamp in WORK): the files
 * under WORK/tree, and `vhfs dataset create seed/v1 … --package` with no added latency into bucket (Azure:
 * container) `seed-bench`, prefix `seed`, with its catalog in WORK/home; S3 writes go through the
 * conditional-write shim, azurite and the GCS server do conditional writes themselves. s3rver keeps its
 * data in WORK/s3rver; azurite and the GCS server keep theirs in memory, so after the create every object
 * is saved under WORK/objects and put back (no added latency, not measured) each time the server starts.
 * Each file is also put as an object of its own, `seed/files/<path>` (a packaged version stores its files
 * only inside the package), so phases (a) and (b) read exactly what a per-file copy of a bucket of plain
 * files and a package download would.
 *
 * Phases (all through the proxy):
 *   a   download every file as its own object (`seed/files/<path>`), 1 at a time, then N at a time: one
 *       whole-object GET per file with vhfs's store for the backend, i.e. what a per-file copy with that
 *       cloud's client does (S3: the AWS SDK's GetObject; Azure: @azure/storage-blob's download; GCS: a
 *       plain HTTP GET of `…/o/NAME?alt=media`, the JSON API's media download, which is how GcsStore
 *       reads). The proxy's GET count shows it is one request per file.
 *   b   download the package (one streamed GET, the same store), `unzip` it, read every extracted file
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
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Catalog } from '../../src/catalog/catalog.js';
import { clearStaleMount, listMounts } from '../../src/fuse/mountpoint.js';
import { openStore, type ObjectStore } from '../../src/store/index.js';
import { mapLimit } from '../../src/util/concurrency.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../../test/servers/s3rver.js';
import { startS3ConditionalShim } from '../../test/servers/s3-conditional-shim.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from '../../test/servers/azurite.js';
import { rng } from '../../test/helpers/rng.js';
import { startFaultProxyProcess, type FaultProxyProcess } from '../../test/servers/fault-proxy.js';
import { startGcsServerProcess } from './gcs-server-process.js';

// ------------------------------------------------------------------------------------------------ config

const BACKEND_NAMES = ['s3', 'azure', 'gcs'] as const;
type BackendName = (typeof BACKEND_NAMES)[number];

interface Config {
  backend: BackendName; work: string; files: number; fileSize: number; dirs: number; latencyMs: number; budgetSeconds: number;
  phases: Set<string>; parallel: number; dropCaches: boolean;
}

function parseConfig(argv: string[]): Config {
  const env = process.env;
  const opt = (name: string, envName: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : env[envName] ?? def;
  };
  const backend = opt('--backend', 'BENCH_BACKEND', 's3') as BackendName;
  if (!BACKEND_NAMES.includes(backend)) throw new Error(`unknown backend ${backend} (${BACKEND_NAMES.join(', ')})`);
  const cfg: Config = {
    backend,
    work: resolve(opt('--work', 'BENCH_WORK', `/tmp/vhfs-seed-${backend}`)),
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
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const dirName = (d: number) => `d${String(d).padStart(3, '0')}`;
const relFiles = () => Array.from({ length: cfg.files }, (_, f) => `${dirName(f % cfg.dirs)}/f${String(f).padStart(7, '0')}.bin`).sort();

// ------------------------------------------------------------------------------------------------ backends

/** A started server: `writeEndpoint` takes the setup's conditional writes, the proxy forwards to `endpoint`. */
interface Started { endpoint: string; writeEndpoint: string; stop(): Promise<void> }

interface Backend {
  /** For the results header: what stands in for the cloud. */
  server: string;
  /** Its data outlives the server (s3rver: WORK/s3rver); otherwise the objects are saved and put back. */
  keepsData: boolean;
  /** Credentials as a user would give them: the environment of vhfs and of this process's store clients. */
  env: Record<string, string>;
  start(): Promise<Started>;
  /** The store URL vhfs and the phases use, reaching the server at `endpoint`. */
  storeUrl(endpoint: string): string;
}

const BACKENDS: Record<BackendName, Backend> = {
  s3: {
    server: 's3rver',
    keepsData: true,
    env: { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' },
    async start() {
      mkdirSync(join(cfg.work, 's3rver'), { recursive: true });
      const s3 = await startS3rver({ bucket: BUCKET, dir: join(cfg.work, 's3rver') });
      // s3rver ignores If-None-Match/If-Match on PUT; the shim adds them (the catalog's writes need them).
      const shim = await startS3ConditionalShim(s3.endpoint).catch(async (err: unknown) => { await s3.stop(); throw err; });
      return { endpoint: s3.endpoint, writeEndpoint: shim.endpoint, stop: async () => { await shim.stop(); await s3.stop(); } };
    },
    storeUrl: (endpoint) => `s3://${BUCKET}/${PREFIX}?endpoint=${encodeURIComponent(endpoint)}&path_style=true`,
  },
  azure: {
    server: 'azurite',
    keepsData: false,
    env: { AZURE_STORAGE_KEY: AZURITE_KEY },
    async start() {
      const azure = await startAzurite();
      try {
        const { BlobServiceClient } = await import('@azure/storage-blob');
        await BlobServiceClient.fromConnectionString(azure.connectionString).getContainerClient(BUCKET).create();
      } catch (err) {
        await azure.stop();
        throw err;
      }
      return { endpoint: azure.endpoint, writeEndpoint: azure.endpoint, stop: () => azure.stop() };
    },
    // A loopback endpoint without a path is taken as an emulator: the account goes in the path.
    storeUrl: (endpoint) => `az://${AZURITE_ACCOUNT}/${BUCKET}/${PREFIX}?endpoint=${encodeURIComponent(endpoint)}`,
  },
  gcs: {
    server: 'the test GCS JSON-API server',
    keepsData: false,
    env: {},
    async start() {
      const gcs = await startGcsServerProcess([BUCKET]);
      return { endpoint: gcs.endpoint, writeEndpoint: gcs.endpoint, stop: () => gcs.stop() };
    },
    storeUrl: (endpoint) => `gs://${BUCKET}/${PREFIX}?endpoint=${encodeURIComponent(endpoint)}`,
  },
};

const backend = BACKENDS[cfg.backend];
// The store clients of this process (openStore) and the vhfs children read their credentials from here.
Object.assign(process.env, backend.env);

// ------------------------------------------------------------------------------------------------ setup

let server: Started | undefined;
let proxy: FaultProxyProcess | undefined;

const SAVED = join(cfg.work, 'objects');
/** Where phase (a) finds a file as an object of its own: under the store's prefix, beside vhfs's layout. */
const fileObjectKey = (rel: string) => `files/${rel}`;

/**
 * Every file of the tree as its own object, as a bucket of plain files is laid out. vhfs does not make
 * them: a packaged version stores its files only inside the package (no standalone blob per file).
 */
async function putFileObjects(store: ObjectStore): Promise<void> {
  log(`setup: putting ${cfg.files} files as objects under ${fileObjectKey('')}`);
  await mapLimit(relFiles(), 16, async (rel) => { await store.put(fileObjectKey(rel), readFileSync(join(TREE, rel))); });
}

/** Every object under the store's prefix into WORK/objects (the in-memory servers forget them on exit). */
async function saveObjects(store: ObjectStore): Promise<void> {
  const { objects } = await store.list('');
  log(`setup: saving ${objects.length} objects in ${SAVED}`);
  await mapLimit(objects, 16, async (o) => {
    mkdirSync(dirname(join(SAVED, o.key)), { recursive: true });
    await pipeline(await store.getStream(o.key), createWriteStream(join(SAVED, o.key)));
  });
}

/** The saved objects back into a fresh in-memory server, under the same keys. */
async function restoreObjects(store: ObjectStore): Promise<void> {
  const files = readdirSync(SAVED, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name));
  log(`setup: putting back ${files.length} saved objects`);
  await mapLimit(files, 16, async (file) => { await store.put(relative(SAVED, file), readFileSync(file)); });
}

async function setup(): Promise<void> {
  const stampFile = join(cfg.work, 'stamp.json');
  const stamp = JSON.stringify({ backend: cfg.backend, files: cfg.files, fileSize: cfg.fileSize, dirs: cfg.dirs, v: 2 });
  const fresh = !(existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp);
  if (fresh) {
    log(`setup: generating ${cfg.files} files × ${cfg.fileSize} B in ${TREE}`);
    rmSync(stampFile, { force: true });
    for (const d of ['tree', 's3rver', 'objects', 'home']) rmSync(join(cfg.work, d), { recursive: true, force: true });
    for (let d = 0; d < cfg.dirs; d++) mkdirSync(join(TREE, dirName(d)), { recursive: true });
    for (const rel of relFiles()) writeFileSync(join(TREE, rel), randomBytes(cfg.fileSize));
  }
  log(`setup: starting ${backend.server}`);
  server = await backend.start();
  const direct = openStore(backend.storeUrl(server.writeEndpoint));
  if (fresh) {
    log('setup: vhfs dataset create seed/v1 --package (no added latency; a few minutes for 20,000 files)');
    const t0 = performance.now();
    const r = await vhfs(['--store', backend.storeUrl(server.writeEndpoint), '--quiet', 'dataset', 'create', 'seed/v1', TREE, '--package'], { timeoutMs: 3_600_000 });
    if (r.code !== 0) throw new Error(`dataset create failed (${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
    log(`setup: dataset created in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    await putFileObjects(direct);
    if (!backend.keepsData) await saveObjects(direct);
    writeFileSync(stampFile, stamp);
  } else if (!backend.keepsData) {
    await restoreObjects(direct);
  }
  // In its own process, so the clients measured here (phase a, b) do not compete with it for this one's CPU.
  proxy = await startFaultProxyProcess(server.endpoint, { latencyMs: cfg.latencyMs });
}

interface DatasetInfo { objectKeys: string[]; packageKey: string; packageSize: number; paths: string[] }

async function datasetInfo(): Promise<DatasetInfo> {
  const store = openStore(backend.storeUrl(server!.writeEndpoint));
  const catalog = await Catalog.open({ store, dbPath: join(HOME, 'catalog.sqlite') });
  try {
    const summary = await catalog.getVersionSummary('dataset', 'seed', 'v1');
    if (summary.packages.length !== 1) throw new Error(`seed/v1 has ${summary.packages.length} packages, expected 1`);
    const pkg = await catalog.getDatum(summary.packages[0].datumId);
    const files = [...(await catalog.versionFiles('dataset', 'seed', 'v1'))];
    return { objectKeys: files.map((f) => fileObjectKey(f.path)).sort(), packageKey: pkg.blobKey, packageSize: pkg.size, paths: files.map((f) => f.path).sort() };
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

const vhfs = (args: string[], opts: { timeoutMs?: number } = {}) => run(process.execPath, [VHFS, '--home', HOME, ...args], opts);

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
  const r = await vhfs(['--store', backend.storeUrl(proxy!.endpoint), 'mount', '--root', MNT, '--input', 'seed=dataset://seed/v1', '--stats-file', join(cfg.work, 'mount-stats.json'), ...extra], { timeoutMs: budgetMs() + 60_000 });
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
    const store = openStore(backend.storeUrl(proxy!.endpoint), { maxSockets: Math.max(64, parallel) });
    log(`a: every file as its own object, ${parallel} at a time`);
    const deadline = performance.now() + budgetMs();
    let done = 0;
    let next = 0;
    const t0 = performance.now();
    const m = await metered(() => mapLimit(Array.from({ length: parallel }), parallel, async () => {
      while (next < info.objectKeys.length && performance.now() < deadline) {
        const data = await store.get(info.objectKeys[next++]);
        if (data.length !== cfg.fileSize) throw new Error(`object of ${data.length} bytes, expected ${cfg.fileSize}`);
        done++;
      }
    }));
    const seconds = (performance.now() - t0) / 1000;
    rows.push({ phase: 'a', what: `every file as its own object, ${parallel} at a time`, seconds, files: done, gets: m.gets, bytes: m.bytes, truncated: done < info.objectKeys.length });
  }
}

async function phaseB(info: DatasetInfo): Promise<{ downloadSeconds: number }> {
  const dir = join(cfg.work, 'b');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = openStore(backend.storeUrl(proxy!.endpoint));
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
    `## Seed scenario, ${cfg.backend} (${backend.server}), ${started}`,
    '',
    `${total} files × ${cfg.fileSize} B (${cfg.dirs} dirs), one package of ${info ? fmtBytes(info.packageSize) : '?'}; ${cfg.backend} = ${backend.server} behind the ` +
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
  await server?.stop();
  proxy = server = undefined;
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
