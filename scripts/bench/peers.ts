/**
 * Peer benchmark harness: the same dataset served by the local disk, by extracting the zip, and by several
 * FUSE filesystems (bindfs, fuse-zip, archivemount, squashfuse, rclone, and vhfs once it is plugged in),
 * measured side by side in one run and reported as ratios to `local`. The machine is shared and noisy, so
 * only figures from the same run are comparable; each figure is the median of --runs runs.
 *
 *   node dist/scripts/bench/peers.js [--small] [--runs N] [--targets local,bindfs,...] [--work DIR]
 *        [--files N] [--dirs N] [--file-size BYTES] [--big-size BYTES] [--budget SECONDS] [--skip-drop-caches]
 *   env: BENCH_FILES, BENCH_DIRS, BENCH_FILE_SIZE, BENCH_BIG_SIZE, BENCH_RUNS, BENCH_WORK override the defaults.
 *
 * Defaults: 20,000 files × 16 KiB in 100 dirs + one 1 GiB file, 3 runs, work dir /tmp/vhfs-bench.
 * --small: 2,000 files × 16 KiB in 20 dirs + one 128 MiB file, 1 run (about a minute for all targets).
 * --budget: each read measurement stops after this many seconds (default 30, --small 4) and the rate is
 * computed from what was read: archivemount reads a zip at a few dozen files/s and would otherwise take
 * most of the run. A truncated measurement is marked with `*` in the table.
 *
 * vhfs target contract (env VHFS_BENCH_MOUNT_CMD, run with `sh -c`): the command must mount the package
 * $VHFS_BENCH_ZIP (a stored zip of the dataset; later a .vhpkgzip) at the existing empty directory
 * $VHFS_BENCH_MNT, stay in the foreground, print a line starting with `ready` once the files can be read,
 * and unmount and exit on SIGTERM. The ready line may carry `root=<relative path>` (where the dataset's
 * files appear under the mount, default the mount itself) and `pid=<daemon pid>` (default: the command's
 * process tree, whose VmRSS is summed). Example:
 *   VHFS_BENCH_MOUNT_CMD='node bin/vhfs.js mount --foreground --input data=$VHFS_BENCH_ZIP --root $VHFS_BENCH_MNT'
 *
 * Everything the harness creates lives under the work dir (data/, mnt/<target>/, unzip/, results/); on exit,
 * failure or Ctrl-C it unmounts every mount under the work dir and kills the daemons it started.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearStaleMount, isMounted, listMounts } from '../../src/fuse/mountpoint.js';

// ------------------------------------------------------------------------------------------------ config

interface Config {
  work: string; files: number; dirs: number; fileSize: number; bigSize: number; runs: number;
  targets: string[]; dropCaches: boolean; budgetSeconds: number;
}

const ALL_TARGETS = ['local', 'unzip-then-read', 'bindfs', 'fuse-zip', 'archivemount', 'squashfuse', 'rclone', 'vhfs'];

function parseConfig(argv: string[]): Config {
  const env = process.env;
  const small = argv.includes('--small');
  const opt = (name: string, envName: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : env[envName] ?? def;
  };
  const cfg: Config = {
    work: resolve(opt('--work', 'BENCH_WORK', '/tmp/vhfs-bench')),
    files: Number(opt('--files', 'BENCH_FILES', small ? '2000' : '20000')),
    dirs: Number(opt('--dirs', 'BENCH_DIRS', small ? '20' : '100')),
    fileSize: Number(opt('--file-size', 'BENCH_FILE_SIZE', '16384')),
    bigSize: Number(opt('--big-size', 'BENCH_BIG_SIZE', String(small ? 128 << 20 : 1 << 30))),
    runs: Number(opt('--runs', 'BENCH_RUNS', small ? '1' : '3')),
    targets: opt('--targets', 'BENCH_TARGETS', ALL_TARGETS.join(',')).split(','),
    dropCaches: !argv.includes('--skip-drop-caches'),
    budgetSeconds: Number(opt('--budget', 'BENCH_BUDGET', small ? '4' : '30')),
  };
  if (!isAbsolute(cfg.work) || cfg.work.split('/').filter(Boolean).length < 2) {
    throw new Error(`work dir ${cfg.work} must be an absolute path at least two levels deep (it is wiped in parts)`);
  }
  for (const t of cfg.targets) if (!ALL_TARGETS.includes(t)) throw new Error(`unknown target ${t} (known: ${ALL_TARGETS.join(', ')})`);
  for (const [k, v] of Object.entries(cfg)) if (typeof v === 'number' && !(v >= 0)) throw new Error(`bad --${k}: ${v}`);
  return cfg;
}

const cfg = parseConfig(process.argv.slice(2));
const DATA = join(cfg.work, 'data');
const TREE = join(DATA, 'tree');
const ZIP = join(DATA, 'dataset.zip');
const SQFS = join(DATA, 'dataset.sqfs');
const READER = fileURLToPath(new URL('./reader.js', import.meta.url));
const log = (s: string) => process.stderr.write(s + '\n');

// ------------------------------------------------------------------------------------------------ dataset

const dirName = (d: number) => `d${String(d).padStart(3, '0')}`;
const fileName = (f: number) => `f${String(f).padStart(6, '0')}.bin`;
const relFiles = () => Array.from({ length: cfg.files }, (_, f) => `${dirName(f % cfg.dirs)}/${fileName(f)}`).sort();
const BIG = 'big.bin';

/** Generate tree + zip + squashfs once; a stamp file records the parameters they were made with. */
function ensureDataset(): void {
  const stamp = JSON.stringify({ files: cfg.files, dirs: cfg.dirs, fileSize: cfg.fileSize, bigSize: cfg.bigSize, v: 1 });
  const stampFile = join(DATA, 'stamp.json');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return;
  log(`generating dataset in ${DATA}: ${cfg.files} × ${cfg.fileSize} B in ${cfg.dirs} dirs + ${cfg.bigSize} B file`);
  rmSync(DATA, { recursive: true, force: true });
  for (let d = 0; d < cfg.dirs; d++) mkdirSync(join(TREE, dirName(d)), { recursive: true });
  const pool = randomBytes(Math.max(cfg.fileSize * 64, 1 << 20));
  relFiles().forEach((rel, i) => {
    const off = (i * 4099) % (pool.length - cfg.fileSize + 1);
    writeFileSync(join(TREE, rel), pool.subarray(off, off + cfg.fileSize));
  });
  if (cfg.bigSize > 0) writeBig(join(TREE, BIG), cfg.bigSize);
  sh(`cd ${q(TREE)} && zip -0 -r -q ${q(ZIP)} .`, 'zip -0 -r');
  // Uncompressed squashfs (-noI -noD -noF -noX), like the stored zip: measures the filesystem, not gzip.
  sh(`mksquashfs ${q(TREE)} ${q(SQFS)} -noappend -noI -noD -noF -noX -quiet -no-progress`, 'mksquashfs');
  writeFileSync(stampFile, stamp);
}

function writeBig(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < size;) {
      const chunk = randomBytes(Math.min(1 << 20, size - done));
      writeSync(fd, chunk);
      done += chunk.length;
    }
  } finally {
    closeSync(fd);
  }
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
function sh(cmd: string, what: string): void {
  const r = spawnSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} failed: ${r.stderr.trim().split('\n')[0]}`);
}

// ------------------------------------------------------------------------------------------------ targets

interface Mounted { root: string; daemon?: ChildProcess; daemonPid?: number; mountSeconds: number; cleanup: () => Promise<void> }

const mnt = (target: string) => join(cfg.work, 'mnt', target);
const daemons = new Set<ChildProcess>();

/** A FUSE peer run in the foreground (-f) as our child: we know its pid and can kill it. */
async function fuseTarget(target: string, bin: string, args: string[], opts: { readyLine?: boolean } = {}): Promise<Mounted> {
  const dir = mnt(target);
  await prepareDir(dir);
  const t0 = performance.now();
  const child = spawn('sh', ['-c', bin, 'sh', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VHFS_BENCH_MNT: dir, VHFS_BENCH_ZIP: ZIP, VHFS_BENCH_WORK: cfg.work } });
  daemons.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const ready = await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${target} exited ${child.exitCode}: ${err.trim().split('\n').slice(-2).join(' / ')}`);
    if (opts.readyLine && !/^ready\b/m.test(out)) return undefined;
    if (!(await isMounted(dir))) return undefined;
    const line = /^ready\b(.*)$/m.exec(out)?.[1] ?? '';
    const root = join(dir, /root=(\S+)/.exec(line)?.[1] ?? '');
    return readdirSync(root).length > 0 ? { root, pid: Number(/pid=(\d+)/.exec(line)?.[1]) || undefined } : undefined;
  }, 120_000, `${target} did not mount`);
  const mountSeconds = (performance.now() - t0) / 1000;
  return { root: ready.root, daemon: child, daemonPid: ready.pid, mountSeconds, cleanup: () => stopDaemon(child, dir) };
}

async function startTarget(target: string): Promise<Mounted> {
  switch (target) {
    case 'local':
      return { root: TREE, mountSeconds: 0, cleanup: async () => undefined };
    case 'unzip-then-read': {
      const dir = join(cfg.work, 'unzip');
      rmSync(dir, { recursive: true, force: true });
      const t0 = performance.now();
      sh(`unzip -q ${q(ZIP)} -d ${q(dir)}`, 'unzip');
      readdirSync(dir);
      return { root: dir, mountSeconds: (performance.now() - t0) / 1000, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    }
    case 'bindfs': return fuseTarget(target, 'exec bindfs -f -r "$1" "$2"', [TREE, mnt(target)]);
    case 'fuse-zip': return fuseTarget(target, 'exec fuse-zip -f -r "$1" "$2"', [ZIP, mnt(target)]);
    case 'archivemount': return fuseTarget(target, 'exec archivemount -f -o readonly "$1" "$2"', [ZIP, mnt(target)]);
    case 'squashfuse': return fuseTarget(target, 'exec squashfuse -f "$1" "$2"', [SQFS, mnt(target)]);
    case 'rclone':
      return fuseTarget(target, 'exec rclone mount --config /dev/null --read-only "$1" "$2"', [TREE, mnt(target)]);
    case 'vhfs': {
      const cmd = process.env.VHFS_BENCH_MOUNT_CMD;
      if (!cmd) throw new Error('skipped: set VHFS_BENCH_MOUNT_CMD (see the contract at the top of scripts/bench/peers.ts)');
      return fuseTarget(target, cmd, [], { readyLine: true });
    }
    default: throw new Error(`unknown target ${target}`);
  }
}

async function prepareDir(dir: string): Promise<void> {
  if (await isMounted(dir)) await clearStaleMount(dir, { force: true });
  mkdirSync(dir, { recursive: true });
}

async function stopDaemon(child: ChildProcess, dir: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([gone, sleep(5000)]);
  }
  if (await isMounted(dir)) await clearStaleMount(dir, { force: true }).catch(() => undefined);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  daemons.delete(child);
}

async function waitFor<T>(probe: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === undefined) throw err; // our own error, not a transient ENOENT/ENOTCONN
    }
    if (Date.now() > deadline) throw new Error(`${what} within ${ms / 1000} s`);
    await sleep(5);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------ metrics

function dropCaches(): void {
  if (cfg.dropCaches) spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
}

/** Run `parallel` reader processes over `lists`; returns {files/s, MB/s} over the wall time of all. */
async function readWith(lists: string[][]): Promise<{ filesPerSec: number; mbPerSec: number; truncated: boolean; p50Ms: number; p99Ms: number }> {
  const readers = lists.map((list, i) => {
    const file = join(cfg.work, `list-${i}.txt`);
    writeFileSync(file, list.join('\n') + '\n');
    const child = spawn(process.execPath, [READER, file, String(cfg.budgetSeconds * 1000)], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    const waiting = new Promise<void>((r) => child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('waiting')) r(); }));
    const done = new Promise<{ start: number; end: number; files: number; bytes: number; truncated: boolean; p50Ms: number; p99Ms: number; error?: string }>((r, rej) => {
      child.on('exit', () => {
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (!line) return rej(new Error('reader printed nothing'));
        const res = JSON.parse(line);
        return res.error ? rej(new Error(`reader: ${res.error}`)) : r(res);
      });
    });
    return { child, waiting, done };
  });
  await Promise.all(readers.map((r) => r.waiting));
  for (const r of readers) r.child.stdin!.end('go\n');
  const results = await Promise.all(readers.map((r) => r.done));
  const secs = (Math.max(...results.map((r) => r.end)) - Math.min(...results.map((r) => r.start))) / 1000;
  const files = results.reduce((a, r) => a + r.files, 0);
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  return {
    filesPerSec: files / secs, mbPerSec: bytes / secs / 1e6, truncated: results.some((r) => r.truncated),
    p50Ms: median(results.map((r) => r.p50Ms)), p99Ms: Math.max(...results.map((r) => r.p99Ms)),
  };
}

/** Seconds for `find ROOT -type f` to list every file (cold: after dropping caches). */
function timeFind(root: string): { seconds: number; files: number } {
  const t0 = performance.now();
  const r = spawnSync('find', [root, '-type', 'f'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`find ${root}: ${r.stderr.trim().split('\n')[0]}`);
  return { seconds, files: r.stdout.split('\n').filter(Boolean).length };
}

/** Deterministic shuffle (mulberry32), so every target reads the same random order. */
function shuffled<T>(items: T[], seed: number): T[] {
  const a = [...items];
  let s = seed >>> 0;
  const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

function split<T>(items: T[], n: number): T[][] {
  return Array.from({ length: n }, (_, i) => items.filter((_, j) => j % n === i));
}

/** VmRSS (KiB) summed over `pid` and its descendants. */
function treeRssKiB(pid: number): number {
  const children = new Map<number, number[]>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch { /* gone */ }
  }
  let total = 0;
  for (const stack = [pid]; stack.length;) {
    const p = stack.pop()!;
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]);
    } catch { /* gone */ }
    stack.push(...(children.get(p) ?? []));
  }
  return total;
}

type Metrics = Record<string, number>;
const METRICS: [string, string][] = [
  ['mount', 'mount → first ls (s)'], ['find1', '`find -type f` cold (s)'], ['find2', '`find -type f` warm (s)'],
  ['seq1', 'in order, pass 1 (files/s)'], ['seq2', 'in order, pass 2 (files/s)'],
  ['rand1', 'random, 1 reader (files/s)'], ['p50', 'random, 1 reader, p50 (ms)'], ['p99', 'random, 1 reader, p99 (ms)'],
  ['rand2', 'random, 2 readers (files/s)'], ['rand4', 'random, 4 readers (files/s)'], ['big1', '1 big file pass 1 (MB/s)'],
  ['big2', '1 big file pass 2 (MB/s)'], ['rssSeq', 'daemon RSS after pass 1 (MiB)'], ['rss', 'daemon RSS at the end (MiB)'],
];
/** Metrics where less is better (times), shown as ratios the other way up. */
const LOWER_IS_BETTER = new Set(['mount', 'find1', 'find2', 'p50', 'p99']);

/** Metrics whose measurement hit the time budget (per target, any run). */
const truncated = new Map<string, Set<string>>();

async function measureOnce(target: string): Promise<Metrics> {
  const mark = <T extends { truncated: boolean }>(key: string, r: T): T => {
    if (r.truncated) truncated.set(target, (truncated.get(target) ?? new Set()).add(key));
    return r;
  };
  dropCaches();
  const m = await startTarget(target);
  try {
    const files = relFiles().map((r) => join(m.root, r));
    const random = shuffled(files, 42);
    const out: Metrics = { mount: m.mountSeconds };
    const pid = m.daemonPid ?? m.daemon?.pid;
    dropCaches();
    const found = timeFind(m.root);
    if (found.files !== cfg.files + (cfg.bigSize > 0 ? 1 : 0)) throw new Error(`find listed ${found.files} files, expected ${cfg.files + (cfg.bigSize > 0 ? 1 : 0)}`);
    out.find1 = found.seconds;
    out.find2 = timeFind(m.root).seconds;
    dropCaches();
    out.seq1 = mark('seq1', await readWith([files])).filesPerSec;
    if (pid) out.rssSeq = treeRssKiB(pid) / 1024;
    out.seq2 = mark('seq2', await readWith([files])).filesPerSec;
    dropCaches();
    const r1 = mark('rand1', await readWith([random]));
    out.rand1 = r1.filesPerSec;
    out.p50 = r1.p50Ms;
    out.p99 = r1.p99Ms;
    dropCaches();
    out.rand2 = mark('rand2', await readWith(split(random, 2))).filesPerSec;
    dropCaches();
    out.rand4 = mark('rand4', await readWith(split(random, 4))).filesPerSec;
    if (cfg.bigSize > 0) {
      dropCaches();
      out.big1 = mark('big1', await readWith([[join(m.root, BIG)]])).mbPerSec;
      out.big2 = mark('big2', await readWith([[join(m.root, BIG)]])).mbPerSec;
    }
    if (pid) out.rss = treeRssKiB(pid) / 1024;
    return out;
  } finally {
    await m.cleanup();
  }
}

// ------------------------------------------------------------------------------------------------ report

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };

function fmtValue(key: string, v: number | undefined): string {
  if (v === undefined || Number.isNaN(v)) return '–';
  if (LOWER_IS_BETTER.has(key)) return v < 10 ? v.toFixed(v < 1 ? 3 : 2) : v.toFixed(1);
  if (key.startsWith('rss')) return v.toFixed(0);
  return v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
}

function table(results: Map<string, Metrics | string>): string {
  const local = results.get('local');
  const rows = [`| target | ${METRICS.map(([, h]) => h).join(' | ')} |`, `|---|${METRICS.map(() => '---').join('|')}|`];
  for (const [target, r] of results) {
    if (typeof r === 'string') { rows.push(`| ${target} | ${r} ${'| '.repeat(METRICS.length - 1)}|`); continue; }
    const cells = METRICS.map(([k]) => {
      const v = r[k];
      const base = typeof local === 'object' ? local[k] : undefined;
      // Ratios say how many times better than local disk (or its fraction): higher is always better.
      const ratio = !k.startsWith('rss') && k !== 'mount' && base && v && target !== 'local'
        ? ` (${(LOWER_IS_BETTER.has(k) ? base / v : v / base).toFixed(2)}×)` : '';
      return fmtValue(k, v) + (truncated.get(target)?.has(k) ? '*' : '') + ratio;
    });
    rows.push(`| ${target} | ${cells.join(' | ')} |`);
  }
  return rows.join('\n');
}

/** vhfs against each FUSE peer, metric by metric: > 1 means vhfs is better (faster, or less time). */
function versusPeers(results: Map<string, Metrics | string>): string {
  const v = results.get('vhfs');
  if (typeof v !== 'object') return '';
  const peers = [...results].filter(([t, r]) => t !== 'vhfs' && typeof r === 'object') as Array<[string, Metrics]>;
  const keys = METRICS.filter(([k]) => k !== 'mount' && !k.startsWith('rss'));
  const rows = ['', '### vhfs ÷ each target (higher is better for vhfs)', '', `| target | ${keys.map(([, h]) => h).join(' | ')} |`, `|---|${keys.map(() => '---').join('|')}|`];
  for (const [target, r] of peers) {
    rows.push(`| ${target} | ${keys.map(([k]) => (v[k] && r[k] ? `${(LOWER_IS_BETTER.has(k) ? r[k] / v[k] : v[k] / r[k]).toFixed(2)}×` : '–')).join(' | ')} |`);
  }
  return rows.join('\n') + '\n';
}

// ------------------------------------------------------------------------------------------------ main

async function cleanupAll(): Promise<void> {
  for (const d of daemons) if (d.exitCode === null) d.kill('SIGTERM');
  const mine = (await listMounts()).filter((m) => m.mountPoint.startsWith(cfg.work + '/')).reverse();
  for (const m of mine) await clearStaleMount(m.mountPoint, { force: true }).catch((e) => log(`cleanup: ${(e as Error).message}`));
  for (const d of daemons) if (d.exitCode === null) d.kill('SIGKILL');
  rmSync(join(cfg.work, 'unzip'), { recursive: true, force: true });
}

async function main(): Promise<void> {
  mkdirSync(cfg.work, { recursive: true });
  await cleanupAll();
  ensureDataset();
  const results = new Map<string, Metrics | string>();
  const started = new Date().toISOString();
  for (const target of cfg.targets) {
    const runs: Metrics[] = [];
    try {
      for (let i = 0; i < cfg.runs; i++) {
        log(`${target}: run ${i + 1}/${cfg.runs}`);
        runs.push(await measureOnce(target));
      }
      const keys = new Set(runs.flatMap((r) => Object.keys(r)));
      results.set(target, Object.fromEntries([...keys].map((k) => [k, median(runs.map((r) => r[k]).filter((v) => v !== undefined))])));
    } catch (err) {
      log(`${target}: ${(err as Error).message}`);
      results.set(target, `${(err as Error).message.split('\n')[0]}`);
    }
  }
  const header = `## Peer benchmark ${started}\n\n${cfg.files} files × ${cfg.fileSize} B in ${cfg.dirs} dirs + one ${(cfg.bigSize / 2 ** 20).toFixed(0)} MiB file; ` +
    `median of ${cfg.runs} run(s); page cache dropped before pass 1 and random reads${cfg.dropCaches ? '' : ' (disabled)'}; ` +
    `ratios are to \`local\` (above 1: better than local; times are inverted so that holds); ${readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length} CPUs, kernel ` +
    `${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}.\n\nCommand: \`node dist/scripts/bench/peers.js ${process.argv.slice(2).join(' ')}\`\n\n`;
  const note = truncated.size ? `\n\n\\* stopped at the ${cfg.budgetSeconds} s budget; rate from the part that was read.` : '';
  const md = header + table(results) + note + '\n' + versusPeers(results);
  const dir = join(cfg.work, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `peers-${started.replace(/[:.]/g, '-')}.md`);
  writeFileSync(file, md);
  writeFileSync(join(dir, 'latest.md'), md);
  writeFileSync(file.replace(/\.md$/, '.json'), JSON.stringify({ config: cfg, results: Object.fromEntries(results) }, null, 2));
  process.stdout.write(md);
  log(`results: ${file}`);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { log(`${sig}: cleaning up`); cleanupAll().finally(() => process.exit(130)); });
}
main().then(() => cleanupAll(), async (err) => {
  log(`peers: ${(err as Error).message}`);
  await cleanupAll();
  process.exitCode = 1;
});

