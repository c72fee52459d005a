/**
 * `vhfs mount` / `vhfs unmount`.
 *
 * By default `mount` returns once the filesystem is ready, leaving a daemon behind (a child of this
 * process, detached, logging to `<home>/logs/`); `--foreground` serves in this process until SIGINT or
 * SIGTERM, which unmount cleanly. The daemon records `{pid, mountpoint}` in `<home>/run/`, so `unmount`
 * can stop the right process; a mount whose daemon died is stale and is cleared by `unmount` or by the
 * next `mount` of the same path (`--force` also replaces a live one).
 */
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { collect, type Context, type Run } from './context.js';
import { output, parseSize } from './main.js';
import { applyInputFlags, checkRequiredInputs, loadInputsFile, parseInputFlags, type InputSpec } from '../inputs/config.js';
import { mountInputs } from '../fuse/mount-inputs.js';
import { clearStaleMount, mountState } from '../fuse/mountpoint.js';
import { describeError, VhfsError } from '../util/errors.js';


interface MountFlags {
  root: string;
  inputsDir?: string;
  configDir?: string;
  inputs?: string;
  step?: string;
  input?: string[];
  force?: boolean;
  blockSize?: string;
  memory?: string;
  diskCache?: boolean;
  foreground?: boolean;
  wait?: boolean;
  statsFile?: string;
  kernelCache?: boolean;
  cacheTimeout?: string;
  readahead?: string;
}


/** statfs(2) f_type of every FUSE filesystem. */
const FUSE_SUPER_MAGIC = 0x65735546;

interface RunState {
  pid: number;
  mountpoint: string;
  started: string;
  log: string;
}

function runFile(ctx: Context, mountpoint: string): string {
  return path.join(ctx.home, 'run', `${createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)}.json`);
}

async function readRunState(file: string): Promise<RunState | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as RunState;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function loadSpecs(o: MountFlags): Promise<InputSpec[]> {
  let specs: InputSpec[] = [];
  if (o.inputs) specs = await loadInputsFile(o.inputs, { ...(o.step ? { step: o.step } : {}) });
  if (o.input?.length) {
    const flags = parseInputFlags(o.input, { cwd: process.cwd() });
    specs = o.inputs ? applyInputFlags(specs, flags) : flags;
  }
  checkRequiredInputs(specs, o.inputs ?? '--input');
  return specs.filter((s) => s.uris.length > 0 || s.optional);
}

export function registerMountCommands(program: Command, run: Run): void {
  program
    .command('mount')
    .description('mount the inputs read-only at <root>/inputs (each resolved on first use) and write <root>/config/inputs.json')
    .option('--root <dir>', 'Valohai root directory', '/valohai')
    .option('--inputs-dir <dir>', 'mountpoint for inputs (default <root>/inputs)')
    .option('--config-dir <dir>', 'where inputs.json is written (default <root>/config)')
    .option('--inputs <file>', 'inputs from a JSON file or a valohai.yaml')
    .option('--step <name>', 'the valohai.yaml step whose inputs to mount')
    .option('--input <name=uri[,uri…]>', 'an input (repeatable; overrides the file\'s URIs)', collect)
    .option('--force', 'replace a live mount or mount over a non-empty directory')
    .option('--block-size <size>', 'block cache block size', '256K')
    .option('--memory <size>', 'block cache memory budget', '256M')
    .option('--disk-cache', 'keep fetched blocks on disk (default: only for remote stores)')
    .option('--no-disk-cache', 'never keep blocks on disk')
    .option('--no-kernel-cache', 'do not keep file pages in the kernel page cache across opens (for measurements)')
    .option('--cache-timeout <seconds>', 'kernel entry/attribute/negative cache timeout', '86400')
    .option('--readahead <size>', 'largest block cache readahead window for sequential reads (0: none)', '8M')
    .option('--foreground', 'serve in this process until SIGINT/SIGTERM')
    .option('--wait', 'return only once inputs.json is written (every input resolved)')
    .option('--stats-file <file>', 'keep store and cache counters in this JSON file (rewritten each second while they change, and on SIGUSR1)')
    .action((o: MountFlags) => run(async (ctx) => {
      const specs = await loadSpecs(o);
      const mountpoint = path.resolve(o.inputsDir ?? path.join(o.root, 'inputs'));
      if (o.foreground) return serve(ctx, o, specs, mountpoint);
      await daemonize(ctx, o, mountpoint);
    }));

  program
    .command('unmount')
    .description('unmount inputs (stops the daemon; clears a stale mount left by a killed one)')
    .option('--root <dir>', 'Valohai root directory', '/valohai')
    .option('--inputs-dir <dir>', 'mountpoint (default <root>/inputs)')
    .action((o: { root: string; inputsDir?: string }) => run(async (ctx) => {
      const mountpoint = path.resolve(o.inputsDir ?? path.join(o.root, 'inputs'));
      const file = runFile(ctx, mountpoint);
      const state = await readRunState(file);
      let how = 'not mounted';
      if (state && alive(state.pid)) {
        process.kill(state.pid, 'SIGTERM');
        const deadline = Date.now() + 15_000;
        while (alive(state.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        if (alive(state.pid)) throw new VhfsError('TIMEOUT', `daemon ${state.pid} serving ${mountpoint} did not stop within 15 s`);
        how = `stopped daemon ${state.pid}`;
      }
      const st = await mountState(mountpoint);
      if (st !== 'not-mounted') {
        const cleared = await clearStaleMount(mountpoint, { force: true });
        how = `${how === 'not mounted' ? '' : `${how}; `}${cleared.action} (was ${cleared.was})`;
      }
      await fs.rm(file, { force: true });
      output(ctx, { mountpoint, result: how }, () => `${mountpoint}: ${how}`);
    }));
}

/** Serve in this process; resolves when unmounted by a signal. */
async function serve(ctx: Context, o: MountFlags, specs: InputSpec[], mountpoint: string): Promise<void> {
  const catalog = await ctx.catalog();
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const mount = await mountInputs({
    root: o.root, inputsDir: mountpoint, ...(o.configDir ? { configDir: o.configDir } : {}),
    specs, catalog, cacheDir: ctx.cacheDir,
    blockSize: parseSize(o.blockSize ?? '256K', '--block-size'), memoryBytes: parseSize(o.memory ?? '256M', '--memory'),
    ...(o.diskCache !== undefined ? { diskCache: o.diskCache } : {}),
    force: Boolean(o.force), log,
    readaheadBytes: parseSize(o.readahead ?? '8M', '--readahead'),
    kernel: { kernelCache: o.kernelCache !== false, ...cacheTimeouts(o.cacheTimeout ?? '86400') },
  });
  // Signal handlers go in before anything reports "ready": a SIGTERM racing ahead of them would kill the
  // process with the mount left behind, stale.
  let stopping = false;
  let stopped!: () => void;
  const done = new Promise<void>((resolve) => { stopped = resolve; });
  const stop = (why: string) => {
    if (stopping) return;
    stopping = true;
    log(`${why}: unmounting ${mountpoint}`);
    mount.unmount().catch((err: unknown) => log(`error: unmount failed: ${describeError(err)}`)).finally(stopped);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Someone else may detach the mount (fusermount -u, umount -l): then there is nothing left to serve.
  // (fuse-native's native side must still be closed then, or its handle keeps this process alive.)
  // The evidence is statfs reporting another filesystem type at the mountpoint, twice in a row: not
  // /proc/self/mountinfo, which can skip entries while other mounts change during the read, and not an
  // error (a slow or failed statfs under load says nothing about who is mounted there).
  let misses = 0;
  const watch = setInterval(() => {
    fs.statfs(mountpoint).then((st) => {
      misses = st.type === FUSE_SUPER_MAGIC ? 0 : misses + 1;
      if (misses >= 2) stop(`${mountpoint} was unmounted from outside`);
    }, () => undefined);
  }, 2000);
  watch.unref();

  const file = runFile(ctx, mountpoint);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, JSON.stringify({ pid: process.pid, mountpoint, started: new Date().toISOString(), log: process.env.VHFS_LOG_FILE ?? '' }));
  if (o.wait) await mount.inputsJson.catch(() => undefined);
  const stopStats = o.statsFile ? keepStatsFile(path.resolve(o.statsFile), () => ({
    store: catalog.store.stats, cache: mount.cache.stats, cacheMemoryBytes: mount.cache.memoryBytes,
  })) : undefined;
  process.send?.({ ready: mountpoint, inputsJson: mount.inputsJsonPath });
  if (process.send) process.disconnect();
  output(ctx, { mountpoint, inputsJson: mount.inputsJsonPath, pid: process.pid }, () => `ready: ${mountpoint}`);
  // Keep the event loop alive while serving (the mount itself does not hold a handle).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await done;
  clearInterval(keepAlive);
  clearInterval(watch);
  await stopStats?.();
  await fs.rm(file, { force: true });
  log('exiting');
  // Nothing is left to serve; do not let a native handle keep the process around.
  process.exit(process.exitCode ?? 0);
}

function cacheTimeouts(text: string): { entryTimeout: number; attrTimeout: number; negativeTimeout: number } {
  const s = Number(text);
  if (!Number.isFinite(s) || s < 0) throw new VhfsError('BAD_ARGUMENT', `--cache-timeout "${text}": expected seconds (0 or more)`);
  return { entryTimeout: s, attrTimeout: s, negativeTimeout: s };
}

/** Rewrite `file` with `snapshot()` every second while it changes; the returned function writes it a last time. */
function keepStatsFile(file: string, snapshot: () => unknown): () => Promise<void> {
  let last = '';
  let writes = 0;
  const write = async () => {
    const text = JSON.stringify(snapshot());
    if (text === last) return;
    last = text;
    const tmp = `${file}.${process.pid}.${++writes}.tmp`; // one per write: a timer and a SIGUSR1 may overlap
    await fs.writeFile(tmp, text);
    await fs.rename(tmp, file);
  };
  const timer = setInterval(() => { write().catch(() => undefined); }, 1000);
  timer.unref();
  // SIGUSR1 asks for the current figures now (tests, and `kill -USR1 <pid>` when debugging).
  process.on('SIGUSR1', () => { last = ''; write().catch(() => undefined); });
  void write();
  return async () => {
    clearInterval(timer);
    await write();
  };
}

/** Start `vhfs mount --foreground` detached and return once it reports ready (or its error). */
async function daemonize(ctx: Context, o: MountFlags, mountpoint: string): Promise<void> {
  const logDir = path.join(ctx.home, 'logs');
  await fs.mkdir(logDir, { recursive: true });
  const logFile = path.join(logDir, `mount-${path.basename(runFile(ctx, mountpoint), '.json')}.log`);
  const fd = openSync(logFile, 'a');
  const args = [...process.execArgv, process.argv[1], ...process.argv.slice(2), '--foreground'];
  const child = spawn(process.execPath, args, {
    detached: true, stdio: ['ignore', fd, fd, 'ipc'], env: { ...process.env, VHFS_LOG_FILE: logFile },
  });
  const result = await new Promise<{ ready?: string; inputsJson?: string; exit?: number }>((resolve) => {
    child.once('message', (m) => resolve(m as { ready: string; inputsJson: string }));
    child.once('exit', (code) => resolve({ exit: code ?? 1 }));
  });
  if (result.ready === undefined) {
    const tail = (await fs.readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join('\n');
    throw new VhfsError('STORE', `mount of ${mountpoint} failed (log ${logFile}):\n${tail}`);
  }
  child.unref();
  child.channel?.unref();
  output(ctx, { mountpoint, pid: child.pid, log: logFile, inputsJson: result.inputsJson }, () =>
    `mounted ${mountpoint} (daemon pid ${child.pid}, log ${logFile}); stop with: vhfs unmount --inputs-dir ${mountpoint}`);
}
