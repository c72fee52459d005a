/**
 * Scale benchmark: what a mount of a packaged version with a million tiny files costs — time from
 * `vhfs mount` to the first `ls`, store bytes read for it, the daemon's memory, inputs.json, lookups and
 * reads through the mount, and the same for a second mount (persisted index: no package tail read).
 *
 *   node dist/scripts/bench/scale.js [--files N] [--dirs N] [--work DIR]
 *
 * Defaults: 1,000,000 files (0–64 bytes) in 1,000 directories, work dir /tmp/vhfs-scale (wiped first).
 * The version is built with test/fuse/big-fixture (real package writer and catalog, member datums recorded
 * in SQLite only) because per-file datum uploads are not what is measured here.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildBigDataset } from '../../test/fuse/big-fixture.js';

const run = promisify(execFile);
const argv = process.argv.slice(2);
const opt = (name: string, def: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : def);
const files = Number(opt('--files', '1000000'));
const dirs = Number(opt('--dirs', '1000'));
const work = path.resolve(opt('--work', '/tmp/vhfs-scale'));
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const vhfsBin = path.join(repo, 'bin/vhfs.js');
const home = path.join(work, 'home');
const root = path.join(work, 'valohai');
const mnt = path.join(root, 'inputs');
const statsFile = path.join(work, 'stats.json');

const seconds = (ms: number) => (ms / 1000).toFixed(2);
const vhfs = (...args: string[]) => run('node', [vhfsBin, '--home', home, ...args], { maxBuffer: 1 << 28 });

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, performance.now() - t0];
}

async function storeStats(pid: number): Promise<{ gets: number; bytesRead: number }> {
  const before = await fs.stat(statsFile).then((s) => s.mtimeMs, () => 0);
  process.kill(pid, 'SIGUSR1');
  for (let i = 0; i < 200; i++) {
    const now = await fs.stat(statsFile).then((s) => s.mtimeMs, () => 0);
    if (now !== before) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return (JSON.parse(await fs.readFile(statsFile, 'utf8')) as { store: { gets: number; bytesRead: number } }).store;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function mountOnce(uri: string): Promise<Record<string, string>> {
  await fs.rm(statsFile, { force: true });
  await fs.rm(path.join(root, 'config', 'inputs.json'), { force: true });
  const [mounted, mountMs] = await timed(() => vhfs('--json', 'mount', '--root', root, '--input', `big=${uri}`, '--stats-file', statsFile));
  const pid = (JSON.parse(mounted.stdout) as { pid: number }).pid;
  const [ls, lsMs] = await timed(() => run('ls', [path.join(mnt, 'big')], { maxBuffer: 1 << 26 }));
  const afterLs = await storeStats(pid);
  const rssAfterLs = rssMiB(pid);
  // inputs.json lists every file, so it is written in the background after mounting; wait for it so the
  // figures below are not measured while the daemon is also writing a few hundred MB of JSON.
  const inputsJson = path.join(root, 'config', 'inputs.json');
  const [, jsonMs] = await timed(async () => {
    for (let i = 0; i < 6000; i++) {
      if (await fs.stat(inputsJson).then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  const jsonBytes = (await fs.stat(inputsJson)).size;
  const [, subLsMs] = await timed(() => run('ls', ['-l', path.join(mnt, 'big', 'd0500')], { maxBuffer: 1 << 26 }));
  const sample = Array.from({ length: 2000 }, (_, i) => path.join(mnt, 'big', `d${String((i * 7) % dirs).padStart(4, '0')}`, `f${String((i * 13) % Math.floor(files / dirs)).padStart(4, '0')}.bin`));
  const [, catMs] = await timed(() => run('cat', sample, { maxBuffer: 1 << 26 }));
  const rss = rssMiB(pid);
  await vhfs('unmount', '--root', root);
  return {
    'vhfs mount returns (s)': seconds(mountMs),
    'first ls of the input (s)': seconds(lsMs),
    'entries at top level': String(ls.stdout.trim().split('\n').length),
    'store GETs / bytes read by then': `${afterLs.gets} / ${afterLs.bytesRead.toLocaleString('en')}`,
    'daemon RSS after ls (MiB)': rssAfterLs.toFixed(0),
    'inputs.json complete, after the ls (s)': `${seconds(jsonMs)} (${(jsonBytes / 1e6).toFixed(0)} MB)`,
    'ls -l of a 1,000-entry directory (s)': seconds(subLsMs),
    'cat of 2,000 files in 1,000 dirs (files/s)': (2000 / (catMs / 1000)).toFixed(0),
    'daemon RSS at the end (MiB)': rss.toFixed(0),
  };
}

async function main(): Promise<void> {
  spawnSync('fusermount3', ['-uz', mnt]);
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });
  process.stderr.write(`building a packaged version of ${files.toLocaleString('en')} files in ${dirs} directories…\n`);
  const [big, buildMs] = await timed(() => buildBigDataset(home, 'scale', 'v1', dirs, Math.floor(files / dirs)));
  process.stderr.write(`built in ${seconds(buildMs)} s; package ${big.packageBytes.toLocaleString('en')} bytes\n`);
  const [inspect] = await timed(() => vhfs('--json', 'package', 'inspect', big.uri));
  const cd = (JSON.parse(inspect.stdout) as Array<{ bytesRead: number; centralDirectoryReads: number }>)[0];
  const cold = await mountOnce(big.uri);
  const warm = await mountOnce(big.uri);
  const index = (await fs.readdir(path.join(home, 'cache', 'indexes')))[0];
  const indexBytes = (await fs.stat(path.join(home, 'cache', 'indexes', index))).size;

  const rows = Object.keys(cold).map((k) => `| ${k} | ${cold[k]} | ${warm[k]} |`);
  const out = [
    `## Scale: ${big.files.toLocaleString('en')} files in one package`,
    '',
    `Command: \`node dist/scripts/bench/scale.js --files ${files} --dirs ${dirs}\`. Package ${big.packageBytes.toLocaleString('en')} bytes;` +
      ` its central directory is read with ${cd.centralDirectoryReads} ranged reads (${cd.bytesRead.toLocaleString('en')} bytes);` +
      ` persisted index ${indexBytes.toLocaleString('en')} bytes (${(indexBytes / big.files).toFixed(1)} B per file).`,
    '',
    '| | first mount (reads the package tail) | second mount (persisted index) |',
    '|---|---|---|',
    ...rows,
  ].join('\n');
  process.stdout.write(`${out}\n`);
}

main().catch((err: unknown) => {
  spawnSync('fusermount3', ['-uz', mnt]);
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
