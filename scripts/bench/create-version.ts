/**
 * Creating a version, side by side with archivers that write the same bytes: `zip -0 -r`, `vhfs dataset
 * create --package`, `vhfs dataset create` (no packaging: one blob per file) and, if installed,
 * `mksquashfs` (uncompressed). The machine is shared and noisy, so only figures from one run compare;
 * each is the median of --runs runs, with the page cache dropped before every measurement (the source
 * tree is read cold, as a fresh job output or a freshly synced dataset would be).
 *
 *   node dist/scripts/bench/create-version.js [--files N] [--dirs N] [--file-size BYTES] [--runs N]
 *        [--variants zip,package,plain,squashfs] [--work DIR] [--skip-drop-caches]
 *
 * Defaults: 20,000 files × 16 KiB in 100 dirs, 1 run, work dir /tmp/vhfs-bench-create. The tree is
 * generated once per parameter set (unique content per file, so nothing deduplicates) and reused. Every
 * vhfs run gets a fresh home (store + catalog) inside the work dir, on the same filesystem as the tree
 * and the zip. Store requests come from `vhfs --stats` (what crossed the store interface, i.e. what a
 * cloud store would be sent). Results: a Markdown table on stdout and in WORK/results/.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface Config {
  work: string;
  files: number;
  dirs: number;
  fileSize: number;
  runs: number;
  variants: string[];
  dropCaches: boolean;
}

const ALL_VARIANTS = ['zip', 'package', 'plain', 'squashfs'];

function parseConfig(argv: string[]): Config {
  const opt = (name: string, def: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : def;
  };
  const cfg: Config = {
    work: resolve(opt('--work', '/tmp/vhfs-bench-create')),
    files: Number(opt('--files', '20000')),
    dirs: Number(opt('--dirs', '100')),
    fileSize: Number(opt('--file-size', '16384')),
    runs: Number(opt('--runs', '1')),
    variants: opt('--variants', ALL_VARIANTS.join(',')).split(','),
    dropCaches: !argv.includes('--skip-drop-caches'),
  };
  if (!isAbsolute(cfg.work) || cfg.work.split('/').filter(Boolean).length < 2) {
    throw new Error(`work dir ${cfg.work} must be an absolute path at least two levels deep (parts of it are wiped)`);
  }
  for (const v of cfg.variants) if (!ALL_VARIANTS.includes(v)) throw new Error(`unknown variant ${v} (known: ${ALL_VARIANTS.join(', ')})`);
  for (const k of ['files', 'dirs', 'fileSize', 'runs'] as const) {
    if (!(Number.isInteger(cfg[k]) && cfg[k] > 0)) throw new Error(`bad --${k}: ${cfg[k]}`);
  }
  return cfg;
}

const cfg = parseConfig(process.argv.slice(2));
const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const VHFS = join(REPO, 'bin', 'vhfs.js');
const DATA = join(cfg.work, `tree-${cfg.files}x${cfg.fileSize}-${cfg.dirs}`);
const TREE = join(DATA, 'tree');
const OUT = join(cfg.work, 'out');
const log = (s: string) => process.stderr.write(`${s}\n`);

const dirName = (d: number) => `d${String(d).padStart(3, '0')}`;
const fileName = (f: number) => `f${String(f).padStart(7, '0')}.bin`;

/** Generate the tree once; a stamp records the parameters. Content differs per file (no dedup). */
function ensureTree(): void {
  const stamp = JSON.stringify({ files: cfg.files, dirs: cfg.dirs, fileSize: cfg.fileSize, v: 1 });
  const stampFile = join(DATA, 'stamp.json');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return;
  log(`generating ${cfg.files} × ${cfg.fileSize} B in ${cfg.dirs} dirs under ${TREE}`);
  rmSync(DATA, { recursive: true, force: true });
  for (let d = 0; d < cfg.dirs; d++) mkdirSync(join(TREE, dirName(d)), { recursive: true });
  const pool = randomBytes(Math.max(cfg.fileSize * 64, 4 << 20));
  for (let f = 0; f < cfg.files; f++) {
    const off = (f * 4099) % (pool.length - cfg.fileSize + 1);
    const body = Buffer.from(pool.subarray(off, off + cfg.fileSize));
    body.writeUInt32LE(f, 0); // unique even where pool windows repeat
    writeFileSync(join(TREE, dirName(f % cfg.dirs), fileName(f)), body);
  }
  writeFileSync(stampFile, stamp);
}

function dropCaches(): void {
  if (!cfg.dropCaches) return;
  const r = spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
  if (r.status !== 0) throw new Error(`drop_caches failed (needs root; or pass --skip-drop-caches): ${r.stderr}`);
}

interface Measurement {
  seconds: number;
  stats?: { puts: number; heads: number; gets: number; lists: number; bytesWritten: number };
}

function run(cmd: string, args: string[], cwd: string): Promise<{ seconds: number; stderr: string }> {
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) fail(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
      else ok({ seconds, stderr });
    });
  });
}

const commands: Record<string, { show: string; available: () => boolean; run: () => Promise<Measurement> }> = {
  zip: {
    show: 'zip -0 -r -q OUT.zip tree',
    available: () => spawnSync('zip', ['-v']).status === 0,
    run: async () => ({ seconds: (await run('zip', ['-0', '-r', '-q', join(OUT, 'tree.zip'), 'tree'], DATA)).seconds }),
  },
  package: {
    show: 'vhfs --home FRESH --quiet --stats dataset create bench/v1 tree --package',
    available: () => true,
    run: () => vhfsCreate(['--package']),
  },
  plain: {
    show: 'vhfs --home FRESH --quiet --stats dataset create bench/v1 tree',
    available: () => true,
    run: () => vhfsCreate([]),
  },
  squashfs: {
    show: 'mksquashfs tree OUT.sqfs -noappend -noI -noD -noF -noX -quiet -no-progress',
    available: () => spawnSync('mksquashfs', ['-version']).status === 0,
    run: async () => ({
      seconds: (await run('mksquashfs', ['tree', join(OUT, 'tree.sqfs'), '-noappend', '-noI', '-noD', '-noF', '-noX', '-quiet', '-no-progress'], DATA)).seconds,
    }),
  },
};

async function vhfsCreate(extra: string[]): Promise<Measurement> {
  const home = join(OUT, 'home');
  const r = await run(process.execPath, [VHFS, '--home', home, '--quiet', '--stats', 'dataset', 'create', 'bench/v1', 'tree', ...extra], DATA);
  const line = r.stderr.split('\n').find((l) => l.startsWith('store stats: '));
  if (!line) throw new Error(`no "store stats:" line from vhfs --stats in: ${r.stderr}`);
  return { seconds: r.seconds, stats: JSON.parse(line.slice('store stats: '.length)) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  ensureTree();
  const results = new Map<string, Measurement[]>();
  const skipped: string[] = [];
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  for (let round = 0; round < cfg.runs; round++) {
    for (const v of cfg.variants) {
      const c = commands[v];
      if (!c.available()) {
        if (round === 0) skipped.push(v);
        continue;
      }
      rmSync(OUT, { recursive: true, force: true });
      mkdirSync(OUT, { recursive: true });
      dropCaches();
      const m = await c.run();
      log(`round ${round + 1}/${cfg.runs} ${v}: ${m.seconds.toFixed(2)} s${m.stats ? ` (puts ${m.stats.puts}, heads ${m.stats.heads})` : ''}`);
      results.set(v, [...(results.get(v) ?? []), m]);
    }
  }
  rmSync(OUT, { recursive: true, force: true });

  const zipSeconds = results.has('zip') ? median(results.get('zip')!.map((m) => m.seconds)) : undefined;
  const mb = (cfg.files * cfg.fileSize) / 1e6;
  const lines = [
    `### Creating a version: ${cfg.files.toLocaleString('en')} × ${cfg.fileSize} B in ${cfg.dirs} dirs (${mb.toFixed(0)} MB), ` +
      `median of ${cfg.runs}, page cache dropped before each${cfg.dropCaches ? '' : ' (NOT: --skip-drop-caches)'}`,
    '',
    `load average at start: ${load}; command: \`node dist/scripts/bench/create-version.js ${process.argv.slice(2).join(' ')}\``,
    '',
    '| variant | command | seconds | files/s | ÷ zip -0 | store puts | puts/file | heads | gets | MB written to store |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [v, ms] of results) {
    const s = median(ms.map((m) => m.seconds));
    const st = ms[ms.length - 1].stats;
    lines.push(`| ${v} | \`${commands[v].show}\` | ${s.toFixed(2)} | ${Math.round(cfg.files / s).toLocaleString('en')} | ` +
      `${zipSeconds ? (s / zipSeconds).toFixed(2) + '×' : '–'} | ${st ? st.puts.toLocaleString('en') : '–'} | ` +
      `${st ? (st.puts / cfg.files).toFixed(4) : '–'} | ${st ? st.heads : '–'} | ${st ? st.gets : '–'} | ${st ? (st.bytesWritten / 1e6).toFixed(0) : '–'} |`);
  }
  if (skipped.length) lines.push('', `not installed, skipped: ${skipped.join(', ')}`);
  const table = lines.join('\n');
  process.stdout.write(`${table}\n`);
  const resultsDir = join(cfg.work, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, `create-${cfg.files}-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), `${table}\n`);
}

main().catch((err: unknown) => {
  log(`create-version bench: ${err instanceof Error ? err.message : String(err)}`);
  rmSync(OUT, { recursive: true, force: true });
  process.exitCode = 1;
});
