/**
 * Outputs benchmark: the same writes to local disk, through bindfs (a C passthrough over the same libfuse
 * 2.9, for scale) and through the vhfs outputs mount; then the time `finalize` takes to upload what was
 * written (datums in a local directory store, fsynced as the CLI's store is), with and without
 * `--eager-upload`. One Markdown table, ratios to local disk. The machine is shared and noisy: compare
 * within one run.
 *
 *   node dist/scripts/bench/outputs.js [--big-mib 1024] [--files 10000] [--file-kib 16] [--runs 3]
 *        [--work DIR] [--variants default,no-big-writes,cache-1s,timeouts-0] [--skip-bindfs]
 *
 * Workloads, each run by an external process (this process serves the mount and must not touch it):
 *  - big: `dd if=<1 GiB random file in page cache> of=<target>/big.bin bs=1M`;
 *  - small: Python writes N files of 16 KiB (one write each) in 100 directories.
 * Variants of the vhfs mount (kernel options): `default` (big_writes, max_write=128 KiB, entry timeout 0,
 * attribute timeout 1 s), `no-big-writes` (libfuse 2.9's 4 KiB writes), `cache-1s` (entry timeout 1 s too),
 * `timeouts-0` (attribute timeout 0 too).
 * Finalize is timed on a fresh mount per workload; "eager" writes with --eager-upload (quiet 200 ms), waits
 * until every file's blob is uploaded, then times finalize.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.js';
import { mountOutputs, type OutputsMountOptions } from '../../src/fuse/mount-outputs.js';
import { clearStaleMount, listMounts } from '../../src/fuse/mountpoint.js';
import { Journal } from '../../src/outputs/journal.js';
import { openStore } from '../../src/store/index.js';

interface Config {
  work: string;
  bigMiB: number;
  files: number;
  fileKiB: number;
  runs: number;
  variants: string[];
  bindfs: boolean;
}

const VARIANTS: Record<string, OutputsMountOptions['kernel']> = {
  default: {},
  'no-big-writes': { bigWrites: false },
  'cache-1s': { entryTimeout: 1, attrTimeout: 1 },
  'timeouts-0': { attrTimeout: 0 },
};

function parseConfig(argv: string[]): Config {
  const opt = (name: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : def;
  };
  const cfg: Config = {
    work: path.resolve(opt('--work', mkdtempSync(path.join(os.tmpdir(), 'vhfs-bench-outputs-')))),
    bigMiB: Number(opt('--big-mib', '1024')),
    files: Number(opt('--files', '10000')),
    fileKiB: Number(opt('--file-kib', '16')),
    runs: Number(opt('--runs', '3')),
    variants: opt('--variants', 'default').split(','),
    bindfs: !argv.includes('--skip-bindfs'),
  };
  for (const v of cfg.variants) if (!VARIANTS[v]) throw new Error(`unknown variant ${v} (${Object.keys(VARIANTS).join(', ')})`);
  return cfg;
}

const PY_SMALL = String.raw`
import os, sys, time
top, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
t = time.monotonic()
for d in range(100):
    os.mkdir(os.path.join(top, "d%03d" % d))
for i in range(n):
    with open(os.path.join(top, "d%03d" % (i % 100), "f%06d" % i), "wb") as f:
        f.write(data[i % 7:] + data[:i % 7])
w = time.monotonic() - t
t = time.monotonic()
for i in range(n):
    os.stat(os.path.join(top, "d%03d" % (i % 100), "f%06d" % i))
print(w, time.monotonic() - t)
`;

function run(cmd: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += String(d); });
    child.stderr.on('data', (d) => { err += String(d); });
    child.on('close', (code) => resolve({ code: code ?? 1, out, err }));
  });
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.err.trim()}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function writeBig(cfg: Config, dir: string, source: string): Promise<number> {
  return timed('dd', [`if=${source}`, `of=${path.join(dir, 'big.bin')}`, 'bs=1M', 'status=none']);
}

/** Seconds to write the small files, as Python measured it; the seconds it then took to stat them all go to `stats`. */
async function writeSmall(cfg: Config, dir: string, stats: number[]): Promise<number> {
  const r = await run('python3', ['-c', PY_SMALL, dir, String(cfg.files), String(cfg.fileKiB * 1024)]);
  if (r.code !== 0) throw new Error(`small-file writer failed: ${r.err.trim()}`);
  const [write, stat] = r.out.trim().split(' ').map(Number);
  stats.push(stat);
  return write;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Env {
  home: string;
  catalog: Catalog;
  root: string;
}

async function freshEnv(cfg: Config, name: string): Promise<Env> {
  const home = path.join(cfg.work, name, 'home');
  const root = path.join(cfg.work, name, 'root');
  rmSync(path.join(cfg.work, name), { recursive: true, force: true });
  mkdirSync(home, { recursive: true });
  mkdirSync(root, { recursive: true });
  const catalog = await Catalog.open({ store: openStore(path.join(home, 'store')), dbPath: path.join(home, 'catalog.sqlite') });
  return { home, catalog, root };
}

/** Write with `workload` through a fresh outputs mount; returns the write time and the finalize time. */
async function throughMount(
  cfg: Config, name: string, kernel: OutputsMountOptions['kernel'], workload: (dir: string) => Promise<number>,
  opts: { eager?: boolean; finalize?: boolean; expectFiles?: number } = {},
): Promise<{ write: number; finalize?: number }> {
  const env = await freshEnv(cfg, name);
  const mount = await mountOutputs({
    mountpoint: path.join(env.root, 'outputs'), home: env.home, catalog: env.catalog, kernel, quiet: true,
    ...(opts.eager ? { eagerQuietMs: 200 } : {}), env: {},
  });
  try {
    const write = await workload(mount.mountpoint);
    if (!opts.finalize) return { write };
    if (opts.eager) await waitForEager(mount.journalFile, mount.session.runId, opts.expectFiles ?? 1);
    const t = process.hrtime.bigint();
    const result = await mount.finalize();
    const finalize = Number(process.hrtime.bigint() - t) / 1e9;
    if (!result.complete || result.uploaded.length !== (opts.expectFiles ?? result.uploaded.length)) {
      throw new Error(`finalize incomplete: ${result.uploaded.length} uploaded, ${result.failed.length} failed`);
    }
    return { write, finalize };
  } finally {
    await mount.unmount({ finalize: false });
    env.catalog.close();
  }
}

/** Until every file of the run has an eager blob recorded (the journal is shared with the mount's session). */
async function waitForEager(journalFile: string, runId: string, files: number): Promise<void> {
  const journal = Journal.open(journalFile);
  try {
    const deadline = Date.now() + 600_000;
    for (;;) {
      const n = journal.eagerCount(runId);
      if (n >= files) return;
      if (Date.now() > deadline) throw new Error(`eager uploads stalled at ${n}/${files}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    journal.close();
  }
}

async function throughBindfs(cfg: Config, workload: (dir: string) => Promise<number>): Promise<number> {
  const base = path.join(cfg.work, 'bindfs');
  rmSync(base, { recursive: true, force: true });
  const src = path.join(base, 'src');
  const mnt = path.join(base, 'mnt');
  mkdirSync(src, { recursive: true });
  mkdirSync(mnt, { recursive: true });
  const r = spawnSync('bindfs', ['-o', 'big_writes', src, mnt]);
  if (r.status !== 0) throw new Error(`bindfs failed: ${String(r.stderr)}`);
  try {
    return await workload(mnt);
  } finally {
    await clearStaleMount(mnt, { force: true });
  }
}

function local(cfg: Config, name: string): string {
  const dir = path.join(cfg.work, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

function cell(x: number | undefined, base: number | undefined, digits = 2): string {
  if (x === undefined) return '–';
  const ratio = base ? ` (${(x / base).toFixed(2)}×)` : '';
  return `${x.toFixed(digits)}${ratio}`;
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  mkdirSync(cfg.work, { recursive: true });
  const cleanup = async () => {
    for (const m of (await listMounts()).filter((x) => x.mountPoint.startsWith(`${cfg.work}/`)).reverse()) {
      await clearStaleMount(m.mountPoint, { force: true }).catch(() => undefined);
    }
  };
  process.on('SIGINT', () => { void cleanup().then(() => process.exit(130)); });
  const source = path.join(cfg.work, 'source.bin');
  if (!existsSync(source)) {
    process.stderr.write(`generating ${cfg.bigMiB} MiB of random data…\n`);
    spawnSync('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${cfg.bigMiB}`, 'status=none']);
  }
  spawnSync('cat', [source], { stdio: ['ignore', 'ignore', 'ignore'] }); // into the page cache
  const big = (dir: string) => writeBig(cfg, dir, source);
  type Row = { target: string; big: number[]; small: number[]; stat: number[] };
  const rows: Row[] = [{ target: 'local disk', big: [], small: [], stat: [] }];
  if (cfg.bindfs) rows.push({ target: 'bindfs (C passthrough)', big: [], small: [], stat: [] });
  for (const v of cfg.variants) rows.push({ target: `vhfs outputs (${v})`, big: [], small: [], stat: [] });
  const small = (row: Row) => (dir: string) => writeSmall(cfg, dir, row.stat);
  const fin = { big: [] as number[], small: [] as number[], eagerSmall: [] as number[], eagerBig: [] as number[] };

  try {
    for (let i = 0; i < cfg.runs; i++) {
      process.stderr.write(`run ${i + 1}/${cfg.runs}\n`);
      rows[0].big.push(await big(local(cfg, 'local-big')));
      rows[0].small.push(await small(rows[0])(local(cfg, 'local-small')));
      let r = 1;
      if (cfg.bindfs) {
        rows[r].big.push(await throughBindfs(cfg, big));
        rows[r].small.push(await throughBindfs(cfg, small(rows[r])));
        r++;
      }
      for (const v of cfg.variants) {
        const withFinalize = v === 'default';
        const b = await throughMount(cfg, 'vhfs-big', VARIANTS[v], big, { finalize: withFinalize, expectFiles: 1 });
        const s = await throughMount(cfg, 'vhfs-small', VARIANTS[v], small(rows[r]), { finalize: withFinalize, expectFiles: cfg.files });
        rows[r].big.push(b.write);
        rows[r].small.push(s.write);
        if (withFinalize) {
          fin.big.push(b.finalize!);
          fin.small.push(s.finalize!);
          fin.eagerBig.push((await throughMount(cfg, 'vhfs-eager-big', VARIANTS[v], big, { eager: true, finalize: true, expectFiles: 1 })).finalize!);
          fin.eagerSmall.push((await throughMount(cfg, 'vhfs-eager-small', VARIANTS[v], small({ ...rows[r], stat: [] }), { eager: true, finalize: true, expectFiles: cfg.files })).finalize!);
        }
        r++;
      }
    }
  } finally {
    await cleanup();
  }

  const localBig = median(rows[0].big);
  const localSmall = median(rows[0].small);
  const mib = cfg.bigMiB;
  const lines: string[] = [];
  lines.push(`Outputs: one ${mib} MiB file (\`dd bs=1M\`) and ${cfg.files.toLocaleString('en')} files of ${cfg.fileKiB} KiB (Python, one write each), median of ${cfg.runs}; ratios to local disk.`);
  lines.push('');
  const localStat = median(rows[0].stat);
  lines.push(`| target | ${mib} MiB file: write (s) | MB/s | ${cfg.files} × ${cfg.fileKiB} KiB: write (s) | files/s | then stat each (µs/file) |`);
  lines.push('|---|---|---|---|---|---|');
  for (const row of rows) {
    const b = median(row.big);
    const s = median(row.small);
    const st = (median(row.stat) / cfg.files) * 1e6;
    const base = row === rows[0];
    lines.push(`| ${row.target} | ${cell(b, base ? undefined : localBig)} | ${((mib * 1.048576) / b).toFixed(0)} | ` +
      `${cell(s, base ? undefined : localSmall)} | ${(cfg.files / s).toFixed(0)} | ${cell(st, base ? undefined : (localStat / cfg.files) * 1e6, 0)} |`);
  }
  if (fin.big.length) {
    lines.push('');
    lines.push('| finalize (upload into a local directory store) | time (s) | ÷ local write time |');
    lines.push('|---|---|---|');
    lines.push(`| ${mib} MiB file | ${median(fin.big).toFixed(2)} | ${(median(fin.big) / localBig).toFixed(1)}× |`);
    lines.push(`| ${mib} MiB file, written with --eager-upload | ${median(fin.eagerBig).toFixed(2)} | ${(median(fin.eagerBig) / localBig).toFixed(1)}× |`);
    lines.push(`| ${cfg.files} × ${cfg.fileKiB} KiB | ${median(fin.small).toFixed(2)} (${(cfg.files / median(fin.small)).toFixed(0)} files/s) | ${(median(fin.small) / localSmall).toFixed(1)}× |`);
    lines.push(`| ${cfg.files} × ${cfg.fileKiB} KiB, written with --eager-upload | ${median(fin.eagerSmall).toFixed(2)} | ${(median(fin.eagerSmall) / localSmall).toFixed(1)}× |`);
  }
  const table = lines.join('\n');
  process.stdout.write(`${table}\n`);
  writeFileSync(path.join(cfg.work, 'outputs-bench.md'), `${table}\n`);
  for (const d of readdirSync(cfg.work)) if (d !== 'source.bin' && d !== 'outputs-bench.md') rmSync(path.join(cfg.work, d), { recursive: true, force: true });
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`outputs bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
