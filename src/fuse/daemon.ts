/**
 * The mount daemon: the process that serves a mount after `vhfs mount` has returned, and the tools to
 * start, find and stop it. Nothing here knows what is mounted: the caller hands `serveDaemon` a `start`
 * that mounts (inputs today, outputs too) and gets back what to unmount, watch and report.
 *
 * Starting. `spawnDaemon` runs this program again, detached, as `vhfs __daemon`, with the original
 * arguments sent over the IPC channel rather than on the command line: input URIs may carry passwords or
 * `token=` queries, and a command line is readable by every user in `/proc/PID/cmdline`. The child parses
 * them as `vhfs mount … --foreground` and reports `{ ready }` or `{ error: { code, message } }` back, so the
 * parent exits with the child's own error and code (a conflict is exit 4, one line), never with lines
 * from a log file another mount of the same path may have written.
 *
 * Finding. The daemon records `{ pid, startTime, mountpoint, log }` in `<home>/run/<hash of mountpoint>.json`.
 * `startTime` is the process start time from `/proc/PID/stat`: a pid alone may have been reused by an
 * unrelated process since, and `vhfs unmount` must never signal one.
 *
 * Stopping. SIGINT/SIGTERM unmount cleanly; handlers are installed before anything is mounted, so a signal
 * racing the start still unmounts. A mount detached from outside (`fusermount -u`, `umount -l`, or replaced
 * by a newer mount with `--force`) is noticed by the mountpoint's device number changing, twice in a row,
 * and the daemon exits; its own unmount then finds the mount gone and detaches nothing (see mountpoint.ts:
 * an old daemon never unmounts a newer daemon's mount), and it removes the run file only if it names itself.
 *
 * Logs: one file per mountpoint in `<home>/logs/`, rotated (one `.1` kept) when it passes 8 MiB at start;
 * repeated error lines are rate-limited (`RateLimitedLog`), so a job hammering a broken file cannot fill
 * the disk.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { describeError, isVhfsError, VhfsError, type VhfsErrorCode } from '../util/errors.js';
import { canonicalPath, mountInfo, ownMountDevice } from './mountpoint.js';

export interface ServedMounts {
  /** Mountpoints whose detachment from outside ends the daemon. */
  watch: string[];
  /** Awaited before reporting ready (e.g. `--wait`: every input resolved); a throw fails the start. */
  ready(): Promise<Record<string, unknown>>;
  /** Unmount everything (finalize outputs first when there are any). */
  stop(): Promise<void>;
  /** Counters for `--stats-file`. */
  snapshot?(): unknown;
}

export interface RunState {
  pid: number;
  startTime: string;
  mountpoint: string;
  started: string;
  log: string;
}

const LOG_ROTATE_BYTES = 8 * 1024 * 1024;
const DAEMON_COMMAND = '__daemon';

// ------------------------------------------------------------------------------------------- files

function mountKey(mountpoint: string): string {
  return createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16);
}

export function runFile(home: string, mountpoint: string): string {
  return path.join(home, 'run', `${mountKey(mountpoint)}.json`);
}

export function logFile(home: string, mountpoint: string): string {
  return path.join(home, 'logs', `mount-${mountKey(mountpoint)}.log`);
}

export async function readRunState(file: string): Promise<RunState | undefined> {
  try {
    const state = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<RunState>;
    return typeof state.pid === 'number' && typeof state.mountpoint === 'string' ? state as RunState : undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined if there is no such process. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** The daemon a run file names, if that very process (same pid and start time) is still running. */
export async function liveDaemon(home: string, mountpoint: string): Promise<RunState | undefined> {
  const state = await readRunState(runFile(home, mountpoint));
  if (!state) return undefined;
  const started = await processStartTime(state.pid);
  return started !== undefined && started === state.startTime ? state : undefined;
}

/** Rotate `file` to `file.1` when it has grown past the limit. */
async function rotateLog(file: string): Promise<void> {
  const st = await fs.stat(file).catch(() => undefined);
  if (st && st.size > LOG_ROTATE_BYTES) await fs.rename(file, `${file}.1`).catch(() => undefined);
}

// ------------------------------------------------------------------------------------------ starting

/**
 * Start `vhfs <args> --foreground` as a detached daemon (see the module comment for why the arguments go
 * over IPC) and resolve once it reports ready; reject with its own error if it fails to start.
 */
export async function spawnDaemon(opts: { home: string; mountpoint: string; args: string[]; script: string }): Promise<{ pid: number; log: string; info: Record<string, unknown> }> {
  const log = logFile(opts.home, opts.mountpoint);
  await fs.mkdir(path.dirname(log), { recursive: true, mode: 0o700 });
  await rotateLog(log);
  const fd = openSync(log, 'a', 0o600);
  const child = spawn(process.execPath, [...process.execArgv, opts.script, DAEMON_COMMAND], {
    detached: true, stdio: ['ignore', fd, fd, 'ipc'],
  });
  closeSync(fd);
  child.send({ args: [...opts.args, '--foreground'], log });
  type Message = { ready?: Record<string, unknown>; error?: { code: VhfsErrorCode; message: string } };
  const result = await new Promise<Message & { exit?: number | null }>((resolve) => {
    child.once('message', (m) => resolve(m as Message));
    child.once('exit', (code, signal) => resolve({ exit: code ?? (signal ? 128 : 1) }));
    child.once('error', (err) => resolve({ error: { code: 'STORE', message: `cannot start the mount daemon: ${err.message}` } }));
  });
  if (result.error) throw new VhfsError(result.error.code, result.error.message);
  if (!result.ready) {
    throw new VhfsError('STORE', `the mount daemon for ${opts.mountpoint} exited (code ${result.exit}) before it was ready; see ${log}`);
  }
  child.unref();
  child.channel?.unref();
  child.disconnect();
  return { pid: child.pid!, log, info: result.ready };
}

/** The log file a daemon writes to (its stdout and stderr), as its parent said. */
let daemonLog = '';

/** In the child started by `spawnDaemon`: the arguments the parent sent. */
export function receiveDaemonArgs(): Promise<string[]> {
  return new Promise((resolve, reject) => {
    if (!process.send) {
      reject(new VhfsError('BAD_ARGUMENT', `"vhfs ${DAEMON_COMMAND}" is started by "vhfs mount"; run that instead`));
      return;
    }
    process.once('message', (m) => {
      const message = m as { args: string[]; log: string };
      daemonLog = message.log;
      resolve(message.args);
    });
  });
}

export { DAEMON_COMMAND };

// ------------------------------------------------------------------------------------------- serving

export interface ServeOptions {
  home: string;
  /** The mountpoint that names this daemon (run file, log). */
  mountpoint: string;
  log: (line: string) => void;
  /** Mount everything; called after the signal handlers are in place. */
  start(): Promise<ServedMounts>;
  statsFile?: string | undefined;
  /** Called with what `ready()` returned once the daemon serves (prints the CLI's ready line). */
  onReady?(info: Record<string, unknown>): void;
}

/**
 * Serve until SIGINT/SIGTERM or an outside unmount; returns the exit code. A start that fails (a mount
 * conflict, an input that cannot be resolved with --wait) is reported to a waiting parent and rethrown.
 */
export async function serveDaemon(opts: ServeOptions): Promise<number> {
  const { log } = opts;
  let stopRequested: string | undefined;
  let wake = () => {};
  const stopped = new Promise<void>((resolve) => { wake = resolve; });
  const requestStop = (why: string) => {
    if (stopRequested !== undefined) return;
    stopRequested = why;
    wake();
  };
  const onSigint = () => requestStop('SIGINT');
  const onSigterm = () => requestStop('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);

  let served: ServedMounts | undefined;
  let info: Record<string, unknown>;
  try {
    served = await opts.start();
    if (stopRequested !== undefined) throw new VhfsError('CONFLICT', `${stopRequested} arrived while mounting ${opts.mountpoint}; unmounted`);
    info = await served.ready();
  } catch (err) {
    if (served) await served.stop().catch((e: unknown) => log(`error: unmount after a failed start: ${describeError(e)}`));
    process.send?.({ error: { code: isVhfsError(err) ? err.code : 'STORE', message: describeError(err) } });
    throw err;
  }

  const file = runFile(opts.home, opts.mountpoint);
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const state: RunState = {
    pid: process.pid, startTime: (await processStartTime(process.pid)) ?? '', mountpoint: opts.mountpoint,
    started: new Date().toISOString(), log: daemonLog,
  };
  await fs.writeFile(file, JSON.stringify(state), { mode: 0o600 });

  const stopWatching = await watchOutsideUnmount(served.watch, (mp) => requestStop(`${mp} was unmounted from outside`));
  const stopStats = opts.statsFile && served.snapshot ? keepStatsFile(opts.statsFile, served.snapshot.bind(served)) : undefined;
  process.send?.({ ready: info });
  if (process.send) process.disconnect();
  opts.onReady?.(info);

  // Keep the event loop alive while serving (the mount itself does not hold a handle).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  await stopped;
  log(`${stopRequested}: unmounting ${served.watch.join(', ')}`);
  let code = 0;
  await served.stop().catch((err: unknown) => { code = 1; log(`error: unmount failed: ${describeError(err)}`); });
  clearInterval(keepAlive);
  stopWatching();
  await stopStats?.();
  // A newer daemon may own the run file by now (it replaced our mount with --force): leave its file alone.
  if ((await readRunState(file))?.pid === process.pid) await fs.rm(file, { force: true });
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigterm);
  log('exiting');
  return code;
}

/** statfs(2) f_type of every FUSE filesystem. */
const FUSE_SUPER_MAGIC = 0x65735546;

/**
 * Call `onGone(mountpoint)` when the mount we made at one of `mountpoints` is no longer there, by either
 * evidence seen twice in a row (2 s apart): statfs reports another filesystem type (detached from outside),
 * or mountinfo lists a mount on top of the path with another FUSE connection than ours (replaced by a newer
 * daemon with --force). Not the absence of our line in mountinfo, which a read can skip while other mounts
 * change, and not an error (a slow or failed statfs under load says nothing about who is mounted there).
 * Not stat either: it would prime the kernel's attribute cache of the mount root for a day.
 */
async function watchOutsideUnmount(mountpoints: string[], onGone: (mountpoint: string) => void): Promise<() => void> {
  const canonical = await Promise.all(mountpoints.map(canonicalPath));
  const misses = mountpoints.map(() => 0);
  const check = async (mp: string): Promise<boolean | undefined> => {
    const st = await fs.statfs(mp).catch(() => undefined);
    if (st && st.type !== FUSE_SUPER_MAGIC) return true;
    const ours = ownMountDevice(canonical[mountpoints.indexOf(mp)]);
    const top = ours === undefined ? undefined : await mountInfo(mp).catch(() => undefined);
    if (top && top.device !== ours) return true;
    return st ? false : undefined;
  };
  const timer = setInterval(() => {
    mountpoints.forEach((mp, i) => {
      check(mp).then((gone) => {
        if (gone === undefined) return;
        misses[i] = gone ? misses[i] + 1 : 0;
        if (misses[i] >= 2) onGone(mp);
      }, () => undefined);
    });
  }, 2000);
  timer.unref();
  return () => clearInterval(timer);
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
  const onUsr1 = () => { last = ''; write().catch(() => undefined); };
  process.on('SIGUSR1', onUsr1);
  void write();
  return async () => {
    clearInterval(timer);
    process.off('SIGUSR1', onUsr1);
    await write();
  };
}

// ------------------------------------------------------------------------------------------- logging

/**
 * A log that lets each kind of line through at most `burst` times per `windowMs`, then says how many it
 * held back. The kind is the line with digits and quoted names folded, so "read a bytes 0-9" and
 * "read b bytes 10-19" failing for the same reason count as one kind.
 */
export class RateLimitedLog {
  private readonly seen = new Map<string, { count: number; suppressed: number; since: number }>();

  constructor(private readonly write: (line: string) => void, private readonly burst = 20, private readonly windowMs = 10_000) {}

  line = (text: string): void => {
    const kind = text.replace(/"[^"]*"/g, '""').replace(/\d+/g, '#');
    const now = Date.now();
    let entry = this.seen.get(kind);
    if (!entry || now - entry.since > this.windowMs) {
      if (entry && entry.suppressed > 0) this.write(`(${entry.suppressed} more lines like "${truncate(text)}" were suppressed)`);
      entry = { count: 0, suppressed: 0, since: now };
      this.seen.set(kind, entry);
      if (this.seen.size > 1000) this.seen.delete(this.seen.keys().next().value!);
    }
    if (++entry.count <= this.burst) this.write(text);
    else entry.suppressed++;
  };
}

function truncate(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

// ------------------------------------------------------------------------------------------ stopping

export type StopResult =
  | { kind: 'not-running' }
  | { kind: 'stopped'; pid: number }
  | { kind: 'unresponsive'; pid: number };

/**
 * Ask the daemon serving `mountpoint` to stop (SIGTERM) and wait up to `timeoutMs`. Only a process that
 * is the one the run file recorded (pid and start time) is signalled.
 */
export async function stopDaemon(home: string, mountpoint: string, timeoutMs: number): Promise<StopResult> {
  const state = await liveDaemon(home, mountpoint);
  if (!state) return { kind: 'not-running' };
  try {
    process.kill(state.pid, 'SIGTERM');
  } catch {
    return { kind: 'not-running' };
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await processStartTime(state.pid)) !== state.startTime) return { kind: 'stopped', pid: state.pid };
    await new Promise((r) => setTimeout(r, 50));
  }
  return { kind: 'unresponsive', pid: state.pid };
}
