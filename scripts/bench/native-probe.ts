/**
 * native-probe: runs fuse-probe (a minimal in-memory fuse-native filesystem) under a series of mount
 * options and workloads, and prints one markdown report. This is how every figure in native-notes/ was
 * produced; re-run it after changing fuse-native, libfuse or the kernel.
 *
 *   node dist/scripts/bench/native-probe.js [--work /tmp/vhfs-native-probe] [--files 20000] [--quick]
 *        [--only getattr,roundtrip,readdir,read,maxread,timeout,sigkill,stubs,xattr]
 *
 * Workloads run in this process with synchronous fs calls (one request in flight at a time), so a figure
 * is the latency of one kernel→libfuse→JS→libfuse→kernel round trip plus the syscall.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearStaleMount, isMounted, mountState } from '../../src/fuse/mountpoint.js';

const PROBE = fileURLToPath(new URL('./fuse-probe.js', import.meta.url));
const argv = process.argv.slice(2);
const flag = (name: string, def: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const WORK = flag('--work', '/tmp/vhfs-native-probe');
const QUICK = argv.includes('--quick');
const FILES = Number(flag('--files', QUICK ? '2000' : '20000'));
const DIRS = 100;
const ONLY = new Set(flag('--only', 'getattr,roundtrip,readdir,read,maxread,timeout,sigkill,stubs,xattr').split(','));
const MNT = join(WORK, 'mnt');
const STATS = join(WORK, 'stats.json');
const out: string[] = [];
const log = (s = '') => { out.push(s); process.stdout.write(s + '\n'); };

interface Probe { child: ChildProcess; cmd: string }

/**
 * The probe's stderr goes to a file opened O_APPEND, not a pipe: workloads here block this process in
 * synchronous syscalls on the mount, so a pipe would not be drained, libfuse's --debug trace (written by
 * the FUSE thread) would fill it and the whole thing would deadlock.
 */
const STDERR = join(WORK, 'probe-stderr.log');
const probeStderr = () => readFileSync(STDERR, 'utf8');
const resetStderr = () => truncateSync(STDERR, 0);

async function startProbe(extra: string[]): Promise<Probe> {
  const args = [PROBE, MNT, '--files', String(FILES), '--dirs', String(DIRS), '--stats', STATS, ...extra];
  const errFd = openSync(STDERR, 'w');
  closeSync(errFd);
  const appendFd = openSync(STDERR, 'a');
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', appendFd] });
  closeSync(appendFd);
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error('probe not ready')), 15000);
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) { clearTimeout(t); res(); } });
    child.on('exit', (c) => { clearTimeout(t); rej(new Error(`probe exited ${c}: ${probeStderr().slice(-2000)}`)); });
  });
  return { child, cmd: `node dist/scripts/bench/fuse-probe.js MNT --files ${FILES} --dirs ${DIRS} ${extra.join(' ')}`.trim() };
}

async function stopProbe(p: Probe): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) {
    const exited = new Promise((r) => p.child.once('exit', r));
    p.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
  if (await isMounted(MNT)) await clearStaleMount(MNT, { force: true });
}

/** Ask the probe for its counters since the last call (it resets them). */
async function counters(p: Probe): Promise<{ counts: Record<string, number>; readLens: Record<string, number> }> {
  rmSync(STATS, { force: true });
  p.child.kill('SIGUSR2');
  for (let i = 0; i < 200; i++) {
    try { return JSON.parse(readFileSync(STATS, 'utf8')); } catch { await sleep(10); }
  }
  throw new Error('no stats from probe');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const files = () => Array.from({ length: FILES }, (_, f) => join(MNT, `d${String(f % DIRS).padStart(3, '0')}`, `f${String(f).padStart(6, '0')}`));
function timed(fn: () => void): number { const t = process.hrtime.bigint(); fn(); return Number(process.hrtime.bigint() - t) / 1e9; }
const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
function dropCaches(): void { spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']); }

// ------------------------------------------------------------------------------------------ workloads

async function getattrScenarios(): Promise<void> {
  log('### getattr (stat of every file, 2 passes)');
  log('| mount options | pass 1 stat/s | pass 2 stat/s | daemon getattr calls pass 1 / pass 2 |');
  log('|---|---|---|---|');
  for (const opts of [['--entry-timeout', '0', '--attr-timeout', '0'], [], ['--entry-timeout', '86400', '--attr-timeout', '86400']]) {
    const p = await startProbe(opts);
    await counters(p);
    const list = files();
    const t1 = timed(() => { for (const f of list) statSync(f); });
    const c1 = (await counters(p)).counts.getattr ?? 0;
    const t2 = timed(() => { for (const f of list) statSync(f); });
    const c2 = (await counters(p)).counts.getattr ?? 0;
    log(`| \`${opts.join(' ') || '(defaults: 1 s)'}\` | ${fmt(FILES / t1)} | ${fmt(FILES / t2)} | ${c1} / ${c2} |`);
    await stopProbe(p);
  }
  log();
}

async function roundTrip(): Promise<void> {
  log('### Round trip per request (stat of one file, nothing cached)');
  const n = QUICK ? 5000 : 20000;
  const p = await startProbe(['--entry-timeout', '0', '--attr-timeout', '0']);
  const f = files()[0];
  statSync(f);
  await counters(p);
  const t = timed(() => { for (let i = 0; i < n; i++) statSync(f); });
  const c = (await counters(p)).counts.getattr ?? 0;
  await stopProbe(p);
  const src = join(WORK, 'bindfs-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'x'), 'x');
  mkdirSync(MNT, { recursive: true });
  spawnSync('bindfs', ['-o', 'entry_timeout=0,attr_timeout=0', src, MNT]);
  const tb = timed(() => { for (let i = 0; i < n; i++) statSync(join(MNT, 'x')); });
  await clearStaleMount(MNT, { force: true });
  const tl = timed(() => { for (let i = 0; i < n; i++) statSync(join(src, 'x')); });
  log(`| target | µs per stat | requests seen |`);
  log('|---|---|---|');
  log(`| fuse-native probe, entry/attr timeout 0 | ${(t / n * 1e6).toFixed(1)} | ${c} getattr for ${n} stats |`);
  log(`| bindfs (C, libfuse2) \`-o entry_timeout=0,attr_timeout=0\` | ${(tb / n * 1e6).toFixed(1)} | – |`);
  log(`| local disk | ${(tl / n * 1e6).toFixed(1)} | – |`);
  log(`(n = ${n}; \`${p.cmd}\`)`);
  log();
}

async function readdirScenario(): Promise<void> {
  log('### readdir (readdir of each of the 100 dirs, 2 passes)');
  log('| mount options | pass 1 dirs/s | pass 2 dirs/s | daemon readdir calls pass 1 / 2 |');
  log('|---|---|---|---|');
  for (const opts of [['--entry-timeout', '0', '--attr-timeout', '0'], ['--entry-timeout', '86400', '--attr-timeout', '86400', '--kernel-cache']]) {
    const p = await startProbe(opts);
    const dirs = Array.from({ length: DIRS }, (_, d) => join(MNT, `d${String(d).padStart(3, '0')}`));
    await counters(p);
    const t1 = timed(() => { for (const d of dirs) readdirSync(d); });
    const c1 = (await counters(p)).counts.readdir ?? 0;
    const t2 = timed(() => { for (const d of dirs) readdirSync(d); });
    const c2 = (await counters(p)).counts.readdir ?? 0;
    log(`| \`${opts.join(' ')}\` | ${fmt(DIRS / t1)} | ${fmt(DIRS / t2)} | ${c1} / ${c2} |`);
    await stopProbe(p);
  }
  log(`(${FILES / DIRS} entries per dir)`);
  log();
}

function readAll(list: string[], buf: Buffer): void {
  for (const f of list) {
    const fd = openSync(f, 'r');
    while (readSync(fd, buf, 0, buf.length, null) > 0) { /* drain */ }
    closeSync(fd);
  }
}

async function readScenarios(): Promise<void> {
  log('### read (every 16 KiB file, 2 passes, page cache dropped before pass 1)');
  log('| mount options | pass 1 files/s | pass 2 files/s | daemon read calls pass 1 / 2 | open calls pass 2 |');
  log('|---|---|---|---|---|');
  const buf = Buffer.alloc(1 << 20);
  for (const opts of [['--entry-timeout', '0', '--attr-timeout', '0'], ['--entry-timeout', '86400', '--attr-timeout', '86400'],
    ['--entry-timeout', '86400', '--attr-timeout', '86400', '--kernel-cache']]) {
    const p = await startProbe(opts);
    const list = files();
    dropCaches();
    await counters(p);
    const t1 = timed(() => readAll(list, buf));
    const c1 = (await counters(p)).counts;
    const t2 = timed(() => readAll(list, buf));
    const c2 = (await counters(p)).counts;
    log(`| \`${opts.join(' ')}\` | ${fmt(FILES / t1)} | ${fmt(FILES / t2)} | ${c1.read ?? 0} / ${c2.read ?? 0} | ${c2.open ?? 0} |`);
    await stopProbe(p);
  }
  log();
}

async function maxReadScenarios(): Promise<void> {
  const big = QUICK ? 256 << 20 : 1 << 30;
  log(`### Read sizes the kernel sends (one ${big >> 20} MiB file read with 1 MiB read() calls, kernel_cache off)`);
  log('| mount options | MB/s | read lengths the daemon saw (len × count) |');
  log('|---|---|---|');
  const buf = Buffer.alloc(1 << 20);
  for (const opts of [[], ['--max-read', '131072'], ['--max-read', '1048576'], ['--max-read', '1048576', '--extra', 'max_readahead=1048576'],
    ['--extra', 'max_readahead=0'], ['--max-read', '65536']]) {
    const p = await startProbe(['--files', '0', '--big', String(big), ...opts]);
    await counters(p);
    const t = timed(() => readAll([join(MNT, 'big')], buf));
    const { readLens } = await counters(p);
    const lens = Object.entries(readLens).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([l, c]) => `${l}×${c}`).join(', ');
    log(`| \`${opts.join(' ') || '(none)'}\` | ${fmt(big / t / 1e6)} | ${lens} |`);
    await stopProbe(p);
  }
  log();
}

async function timeoutScenario(): Promise<void> {
  log('### A handler that never calls back');
  log('| probe options | what the reader gets | after |');
  log('|---|---|---|');
  for (const opts of QUICK ? [['--op-timeout', '2000']] : [['--op-timeout', '2000'], []]) {
    const p = await startProbe(['--hang', 'hang', ...opts]);
    const t0 = Date.now();
    await counters(p);
    const r = spawnSync('cat', [join(MNT, 'hang')], { encoding: 'utf8' });
    const ms = Date.now() - t0;
    const reads = (await counters(p)).readLens;
    const seen = Object.entries(reads).map(([l, c]) => `${c} read(len ${l})`).join(', ');
    log(`| \`--hang hang ${opts.join(' ')}\` | \`cat\`: ${r.stderr.trim().replace(MNT, 'MNT')} (exit ${r.status}); daemon saw ${seen} | ${(ms / 1000).toFixed(1)} s |`);
    await stopProbe(p);
  }
  log();
}

async function sigkillScenario(): Promise<void> {
  log('### Daemon SIGKILLed');
  const p = await startProbe([]);
  statSync(join(MNT, 'd000'));
  p.child.kill('SIGKILL');
  await new Promise((r) => p.child.once('exit', r));
  const r = spawnSync('stat', [join(MNT, 'd000')], { encoding: 'utf8' });
  const rl = spawnSync('ls', [MNT], { encoding: 'utf8' });
  log(`- \`stat MNT/d000\`: ${r.stderr.trim().replace(MNT, 'MNT')}`);
  log(`- \`ls MNT\`: ${rl.stderr.trim().replace(MNT, 'MNT')}`);
  log(`- mountState: ${await mountState(MNT)}; still listed in /proc/self/mountinfo: ${await isMounted(MNT)}`);
  const res = await clearStaleMount(MNT);
  log(`- clearStaleMount: \`${res.action}\` → mounted: ${await isMounted(MNT)}`);
  log();
}

/** Count FUSE opcodes the kernel sent, from libfuse's debug trace ("unique: N, opcode: FLUSH (25)"). */
function opcodes(): Record<string, number> {
  const c: Record<string, number> = {};
  for (const m of probeStderr().matchAll(/opcode: ([A-Z_]+)/g)) c[m[1]] = (c[m[1]] ?? 0) + 1;
  return c;
}

async function stubScenarios(): Promise<void> {
  log('### Unimplemented ops vs handlers returning ENOSYS (libfuse debug trace: requests the kernel sent)');
  log('| probe options | round | FLUSH | OPENDIR | RELEASEDIR | ACCESS | GETXATTR | JS handler calls |');
  log('|---|---|---|---|---|---|---|---|');
  const list = files().slice(0, 50);
  for (const opts of [[], ['--stub', 'flush,releasedir,access'], ['--stub', 'opendir']]) {
    const p = await startProbe(['--debug', '--entry-timeout', '86400', '--attr-timeout', '86400', ...opts]);
    await counters(p);
    for (const round of [1, 2]) {
      try {
      resetStderr();
      for (const f of list) { readFileSync(f); spawnSync('test', ['-r', f]); }
      for (let d = 0; d < 5; d++) readdirSync(join(MNT, `d00${d}`));
      spawnSync('python3', ['-c', 'import os,sys\ntry: os.getxattr(sys.argv[1], "user.x")\nexcept OSError: pass', list[0]]);
      await sleep(200);
      const k = opcodes();
      const js = (await counters(p)).counts;
      const jsc = ['flush', 'opendir', 'releasedir', 'access'].map((o) => `${o} ${js[o] ?? 0}`).join(', ');
      log(`| \`${opts.join(' ') || '(none)'}\` | ${round} | ${k.FLUSH ?? 0} | ${k.OPENDIR ?? 0} | ${k.RELEASEDIR ?? 0} | ${k.ACCESS ?? 0} | ${k.GETXATTR ?? 0} | ${jsc} |`);
      } catch (err) {
        await sleep(200);
        const how = p.child.signalCode ?? p.child.exitCode ?? 'still running';
        const last = probeStderr().trim().split('\n').slice(-3).join(' / ');
        log(`| \`${opts.join(' ')}\` | ${round} | **daemon died (${how})**: reader got ${(err as NodeJS.ErrnoException).code}; last trace lines: ${last} |||||| `);
        break;
      }
    }
    await stopProbe(p);
  }
  log('(per round: read 50 files, `test -r` each (access(2)), readdir 5 dirs, one `getxattr(user.x)` from python3; `--debug` makes libfuse print every request)');
  log();
}

async function xattrScenarios(): Promise<void> {
  log('### `ls -l` of one directory with and without a getxattr handler');
  log('| probe options | `ls -l` pass 1 | pass 2 | GETXATTR / LISTXATTR requests (both passes) | JS getxattr calls |');
  log('|---|---|---|---|---|');
  for (const opts of [[], ['--getxattr', 'enodata'], ['--getxattr', 'enosys'], ['--getxattr', 'enodata', '--listxattr']]) {
    const p = await startProbe(['--files', String(FILES), '--dirs', '1', '--entry-timeout', '86400', '--attr-timeout', '86400', ...opts]);
    const dir = join(MNT, 'd000');
    await counters(p);
    const t1 = timed(() => { spawnSync('ls', ['-l', dir], { stdio: 'ignore' }); });
    const t2 = timed(() => { spawnSync('ls', ['-l', dir], { stdio: 'ignore' }); });
    const js = (await counters(p)).counts;
    await stopProbe(p);
    const d = await startProbe(['--debug', '--files', String(FILES), '--dirs', '1', '--entry-timeout', '86400', '--attr-timeout', '86400', ...opts]);
    spawnSync('ls', ['-l', dir], { stdio: 'ignore' });
    spawnSync('ls', ['-l', dir], { stdio: 'ignore' });
    await sleep(300);
    const k = opcodes();
    await stopProbe(d);
    log(`| \`${opts.join(' ') || '(none)'}\` | ${(t1 * 1000).toFixed(0)} ms | ${(t2 * 1000).toFixed(0)} ms | ${k.GETXATTR ?? 0} / ${k.LISTXATTR ?? 0} | ${js.getxattr ?? 0} |`);
  }
  log(`(${FILES} files in one directory)`);
  log();
}

async function main(): Promise<void> {
  mkdirSync(MNT, { recursive: true });
  if (await isMounted(MNT)) await clearStaleMount(MNT, { force: true });
  log(`## native-probe ${new Date().toISOString()} — ${FILES} files × 16 KiB in ${DIRS} dirs, kernel ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, node ${process.version}`);
  log();
  const steps: [string, () => Promise<void>][] = [['getattr', getattrScenarios], ['roundtrip', roundTrip], ['readdir', readdirScenario],
    ['read', readScenarios], ['maxread', maxReadScenarios], ['timeout', timeoutScenario], ['sigkill', sigkillScenario],
    ['stubs', stubScenarios], ['xattr', xattrScenarios]];
  try {
    for (const [name, fn] of steps) if (ONLY.has(name)) await fn();
  } finally {
    if (await isMounted(MNT)) await clearStaleMount(MNT, { force: true });
  }
  writeFileSync(join(WORK, 'native-probe.md'), out.join('\n') + '\n');
}

main().catch(async (err) => {
  process.stderr.write(`native-probe: ${(err as Error).stack}\n`);
  if (await isMounted(MNT).catch(() => false)) await clearStaleMount(MNT, { force: true }).catch(() => undefined);
  process.exit(1);
});
