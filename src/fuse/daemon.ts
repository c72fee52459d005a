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
 * Logs: one file per daemon in `<home>/logs/` (two mounts of a path never interleave their lines), the
 * newest five per mountpoint kept; repeated error lines are rate-limited (`RateLimitedLog`), so a job
 * hammering a broken file cannot fill the disk.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { describeError, isVhfsError, VhfsError, type VhfsErrorCode } from '../util/errors.js';
import { canonicalPath, servedByUs } from './mountpoint.js';

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

/** Logs kept per mountpoint: the running daemon's and a few before it, for post-mortems. */
const KEPT_LOGS = 5;
const DAEMON_COMMAND = '__daemon';

// ------------------------------------------------------------------------------------------- files

function mountKey(mountpoint: string): string {
  return createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16);
}

export function runFile(home: string, mountpoint: string): string {
  return path.join(home, 'run', `${mountKey(mountpoint)}.json`);
}

/** A new log file for one daemon of `mountpoint`: `<home>/logs/mount-<key>-<time>.log`. */
export function newLogFile(home: string, mountpoint: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return path.join(home, 'logs', `mount-${mountKey(mountpoint)}-${stamp}-${process.pid}.log`);
}

/** Keep the newest `keep` logs of `mountpoint`'s daemons; older ones go. */
async function pruneLogs(home: string, mountpoint: string, keep: number): Promise<void> {
  const dir = path.join(home, 'logs');
  const prefix = `mount-${mountKey(mountpoint)}-`;
  const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith(prefix) && n.endsWith('.log')).sort();
  for (const name of names.slice(0, Math.max(0, names.length - keep))) await fs.rm(path.join(dir, name), { force: true });
}

export async function readRunState(file: string): Promise<RunState | undefined> {
  try {
    const state = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<RunState>;
    return typeof state.pid === 'number' && typeof state.mountpoint === 'string' ? state as RunState : undefined;
  } catch {
    return undefined;
  }
}

/** Fields 3 on of /proc/PID/stat, or undefined if there is no such process. */
async function procStat(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined if there is no such process. */
export async function processStartTime(pid: number): Promise<string | undefined> {
  return (await procStat(pid))?.[19];
}

/** The daemon a run file names, if that very process (same pid and start time) is still running. */
export async function liveDaemon(home: string, mountpoint: string): Promise<RunState | undefined> {
  const state = await readRunState(runFile(home, mountpoint));
  if (!state) return undefined;
  const started = await processStartTime(state.pid);
  return started !== undefined && started === state.startTime ? state : undefined;
}


// ------------------------------------------------------------------------------------------ starting

/**
 * Start `vhfs <args> --foreground` as a detached daemon (see the module comment for why the arguments go
 * over IPC) and resolve once it reports ready; reject with its own error if it fails to start.
 */
export async function spawnDaemon(opts: { home: string; mountpoint: string; args: string[]; script: string }): Promise<{ pid: number; log: string; info: Record<string, unknown> }> {
  const log = newLogFile(opts.home, opts.mountpoint);
  await fs.mkdir(path.dirname(log), { recursive: true, mode: 0o700 });
  await pruneLogs(opts.home, opts.mountpoint, KEPT_LOGS - 1);
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

/**
 * Call `onGone(mountpoint)` when the path no longer serves the mount we made there (detached from outside,
 * or replaced by a newer daemon with --force), seen twice in a row, 2 s apart: a statfs of the path that our
 * own handler did not answer (`servedByUs`). A statfs that does not answer in time is no evidence either way.
 */
async function watchOutsideUnmount(mountpoints: string[], onGone: (mountpoint: string) => void): Promise<() => void> {
  const canonical = await Promise.all(mountpoints.map(canonicalPath));
  const misses = mountpoints.map(() => 0);
  const timer = setInterval(() => {
    canonical.forEach((mp, i) => {
      servedByUs(mp).then((ours) => {
        if (ours === undefined) return;
        misses[i] = ours ? 0 : misses[i] + 1;
        if (misses[i] >= 2) onGone(mountpoints[i]);
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
  | { kind: 'unresponsive'; pid: number; paused: boolean };

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
  const file = runFile(home, mountpoint);
  let paused = false;
  while (Date.now() < deadline) {
    const stat = await procStat(state.pid);
    if (stat?.[19] !== state.startTime) return { kind: 'stopped', pid: state.pid };
    // The daemon removes its run file once everything is unmounted; the process may outlive that by a
    // moment, or for as long as a read stuck in a hung filesystem holds one of its threads.
    if ((await readRunState(file))?.pid !== state.pid) return { kind: 'stopped', pid: state.pid };
    // A stopped process (SIGSTOP, a debugger) will not act on SIGTERM until continued: no use waiting.
    paused = stat[0] === 'T' || stat[0] === 't';
    if (paused) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { kind: 'unresponsive', pid: state.pid, paused };
}
