/**
 * Mount lifecycle helpers: is a path mounted, is that mount stale, clear it, prepare a mountpoint, and
 * promise wrappers around fuse-native's mount/unmount. No filesystem logic lives here.
 *
 * Why this exists: a FUSE daemon that dies (SIGKILL, OOM, crash in a handler) leaves its mount behind and
 * every access to it fails with ENOTCONN ("Transport endpoint is not connected") until someone detaches it.
 * Job runners restart vhfs on the same path, so recovery has to be automatic but must never tear down a
 * healthy mount that belongs to someone else. The truth about mounts is `/proc/self/mountinfo`.
 *
 * fuse-native 2.2.6 behaviours worked around here (see node_modules/fuse-native/index.js, fuse-native.c
 * and native-notes/README.md):
 * - its `force` option only handles a stale mount; a live one gives "Mountpoint in use". We prepare the
 *   mountpoint ourselves and never pass `force`/`mkdir` through.
 * - `Fuse.unmount` runs `fusermount -uz "<path>"` through a shell (a `$` or backquote in the path is
 *   expanded) and fails the whole close when the path is no longer mounted, which skips the native
 *   unmount and keeps the Node event loop alive forever. We replace it with an execFile version that treats
 *   "already gone" as success.
 * - options whose value is 0 (`entryTimeout: 0`, `attrTimeout: 0`) are silently dropped (libfuse2 then
 *   uses 1 s), and `nonempty`, `negative_timeout`, `max_readahead`… cannot be passed at all. We append
 *   them to the `fsname=` option, which fuse-native copies verbatim into the `-o` list.
 * - if `fuse_new` fails after `fuse_mount` succeeded, the mount is left behind: we clear it on failure.
 * - the mount callback fires only when the kernel's INIT arrives; nothing times out. We add a timeout.
 * - a handler that throws crashes the daemon (the exception escapes a N-API callback), and a handler that
 *   calls back twice posts the native semaphore twice. `guardOps` makes every callback once-only and turns a
 *   throw into EIO.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, readdir, readFile, readlink, realpath, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import Fuse from 'fuse-native';
import type { FuseOptions, Ops } from 'fuse-native';
import { VhfsError } from '../util/errors.js';
import { mkdirShared } from '../util/shared-dirs.js';

/** One line of /proc/self/mountinfo (see proc(5)). */
export interface MountInfo {
  mountId: number;
  parentId: number;
  /** "major:minor"; for FUSE the minor is the connection number under /sys/fs/fuse/connections. */
  device: string;
  root: string;
  mountPoint: string;
  mountOptions: string;
  optionalFields: string[];
  fsType: string;
  source: string;
  superOptions: string;
}

export type MountState = 'not-mounted' | 'live' | 'stale' | 'hung';

export interface ClearResult {
  path: string;
  /** What was run, e.g. "fusermount3 -uz", or "none" if the path was not mounted. */
  action: string;
  /** The mount state before clearing. */
  was: MountState;
}

export interface PrepareResult {
  path: string;
  created: boolean;
  cleared?: ClearResult;
}

export interface MountOptions extends FuseOptions {
  /** Give up on the mount after this long (default 10 s); the half-made mount is cleared. */
  mountTimeoutMs?: number;
  /** fuse-native's per-operation timeout in ms (default 15000, false = none); the kernel then gets ETIMEDOUT. */
  opTimeoutMs?: number | false;
  /** Run prepareMountpoint first (default true). */
  prepare?: boolean;
  /** Allow replacing a live mount / mounting over a non-empty directory (passed to prepareMountpoint). */
  force?: boolean;
  /** Extra libfuse -o options fuse-native cannot express, e.g. "negative_timeout=60", "max_readahead=1048576". */
  extraOptions?: string[];
  /** Wrap every handler so it calls back exactly once and a throw becomes EIO (default true). */
  guardOps?: boolean;
  /** Told about a handler that threw (with guardOps). */
  onHandlerError?: (op: string, err: unknown) => void;
}

const STAT_TIMEOUT_MS = 2000;
const DEFAULT_MOUNT_TIMEOUT_MS = 10_000;
const DEFAULT_UNMOUNT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------- mountinfo

/** Undo the octal escapes the kernel writes for space, tab, newline and backslash (`\040` etc). */
export function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse the text of /proc/<pid>/mountinfo. Malformed lines are skipped. */
export function parseMountinfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    const parsed = parseMountinfoLine(line);
    if (parsed) mounts.push(parsed);
  }
  return mounts;
}

function parseMountinfoLine(line: string): MountInfo | undefined {
  const fields = line.trim().split(' ');
  const dash = fields.indexOf('-');
  if (dash < 6 || fields.length < dash + 3) return undefined;
  return {
    mountId: Number(fields[0]),
    parentId: Number(fields[1]),
    device: fields[2],
    root: unescapeMountField(fields[3]),
    mountPoint: unescapeMountField(fields[4]),
    mountOptions: fields[5],
    optionalFields: fields.slice(6, dash),
    fsType: fields[dash + 1],
    source: unescapeMountField(fields[dash + 2]),
    superOptions: fields[dash + 3] ?? '',
  };
}

export async function listMounts(): Promise<MountInfo[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/**
 * The absolute, symlink-free form of `path` as mountinfo spells it. Only the parent is resolved: the path
 * itself may be a stale mount on which realpath fails with ENOTCONN.
 */
export async function canonicalPath(path: string): Promise<string> {
  const abs = resolve(path);
  if (abs === '/') return abs;
  try {
    return join(await realpath(dirname(abs)), basename(abs));
  } catch {
    return abs;
  }
}

/** The topmost mount on exactly `path` (the last one listed wins when mounts are stacked). */
export async function mountInfo(path: string): Promise<MountInfo | undefined> {
  const target = await canonicalPath(path);
  const mounts = await listMounts();
  let found: MountInfo | undefined;
  for (const m of mounts) if (m.mountPoint === target) found = m;
  return found;
}

export async function isMounted(path: string): Promise<boolean> {
  return (await mountInfo(path)) !== undefined;
}

export function isFuseType(fsType: string): boolean {
  return fsType === 'fuse' || fsType === 'fuseblk' || fsType.startsWith('fuse.');
}

// ------------------------------------------------------------------------------------------------ state

/**
 * statfs() with a deadline. statfs, not stat: the kernel answers stat of the mount root from its attribute
 * cache for up to attr_timeout after the daemon died, while FUSE_STATFS always goes to the daemon and fails
 * with ENOTCONN at once. A hung daemon blocks the call forever (its libuv thread stays blocked; we move on).
 */
async function probeWithTimeout(path: string, ms: number): Promise<NodeJS.ErrnoException | null | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), ms); });
  const probe = statfs(path).then(() => null, (err: NodeJS.ErrnoException) => err);
  try {
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * not-mounted; live (statfs answers); stale (FUSE mount whose daemon is gone: ENOTCONN, or ECONNABORTED after
 * an abort via /sys/fs/fuse/connections); hung (statfs did not answer within `statTimeoutMs`).
 */
export async function mountState(path: string, statTimeoutMs = STAT_TIMEOUT_MS): Promise<MountState> {
  const info = await mountInfo(path);
  if (!info) return 'not-mounted';
  const res = await probeWithTimeout(await canonicalPath(path), statTimeoutMs);
  if (res === 'timeout') return 'hung';
  if (res && isFuseType(info.fsType) && (res.code === 'ENOTCONN' || res.code === 'ECONNABORTED')) return 'stale';
  return 'live';
}

/** Mounted as FUSE, but the daemon is gone (statfs/stat give ENOTCONN). */
export async function isStale(path: string): Promise<boolean> {
  return (await mountState(path)) === 'stale';
}

/**
 * Pids serving the FUSE connection `connection` (the minor of the mount's device, "0:<minor>"): processes
 * holding /dev/fuse open whose fdinfo says `fuse_connection: <minor>` (kernels since 6.x print it; on older
 * ones every /dev/fuse holder is returned, so treat the answer as a hint for messages only).
 */
export async function fuseDaemonPids(connection?: number): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    if (await servesConnection(entry, connection)) pids.push(Number(entry));
  }
  return pids;
}

async function servesConnection(pid: string, connection?: number): Promise<boolean> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target !== '/dev/fuse') continue;
    if (connection === undefined) return true;
    const info = await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => '');
    const m = /^fuse_connection:\s*(\d+)/m.exec(info);
    if (!m || Number(m[1]) === connection) return true;
  }
  return false;
}

/** The FUSE connection number of a mount (minor of "0:NN"). */
export function fuseConnection(info: MountInfo): number | undefined {
  const minor = Number(info.device.split(':')[1]);
  return Number.isInteger(minor) ? minor : undefined;
}

// ------------------------------------------------------------------------------------------------ unmount

async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/bin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch { /* next */ }
  }
  return undefined;
}

function run(file: string, args: string[], timeoutMs = 10_000): Promise<{ ok: boolean; stderr: string }> {
  return new Promise((res) => {
    execFile(file, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      res({ ok: !err, stderr: String(stderr || (err ? err.message : '')).trim() });
    });
  });
}

/**
 * Lazily detach whatever is mounted on `path`: fusermount3 -uz (fuse3), else fusermount -uz (fuse2; on
 * Debian with fuse3 installed it is a symlink to fusermount3), else umount -l (root only). Repeats while
 * mounts are stacked on the path. Returns the commands that worked.
 */
async function detach(path: string): Promise<string> {
  const done: string[] = [];
  for (let round = 0; round < 8 && (await isMounted(path)); round++) {
    const action = await detachOnce(path);
    if (!action) break;
    done.push(action);
  }
  if (await isMounted(path)) {
    throw new VhfsError('CONFLICT', `could not unmount ${path} (tried ${done.join(', ') || 'fusermount/umount'})`);
  }
  return done.join(' + ') || 'none';
}

async function detachOnce(path: string): Promise<string | undefined> {
  const errors: string[] = [];
  for (const [tool, args] of [['fusermount3', ['-uz']], ['fusermount', ['-uz']], ['umount', ['-l']]] as const) {
    const bin = await findExecutable(tool);
    if (!bin) continue;
    const r = await run(bin, [...args, path]);
    if (r.ok) return `${tool} ${args.join(' ')}`;
    errors.push(`${tool}: ${r.stderr}`);
    if (!(await isMounted(path))) return `${tool} ${args.join(' ')}`;
  }
  if (errors.length) return undefined;
  throw new VhfsError('UNSUPPORTED', `cannot unmount ${path}: none of fusermount3, fusermount, umount is installed`);
}

/**
 * Clear a stale (or hung) FUSE mount on `path`. A healthy live mount is refused with CONFLICT unless
 * `force` is given. Returns what it did ("none" if nothing was mounted).
 */
export async function clearStaleMount(path: string, opts: { force?: boolean } = {}): Promise<ClearResult> {
  const target = await canonicalPath(path);
  const was = await mountState(target);
  if (was === 'not-mounted') return { path: target, action: 'none', was };
  if (was === 'live' && !opts.force) throw await conflictError(target);
  // Processes blocked on a hung mount stay blocked after a lazy detach; aborting the connection first
  // releases them (ECONNABORTED), so nothing waits on a daemon that will never answer.
  const aborted = was === 'hung' ? await abortConnection(target) : undefined;
  const detached = await detach(target);
  return { path: target, action: aborted ? `${aborted} + ${detached}` : detached, was };
}

const FUSECTL = '/sys/fs/fuse/connections';

/**
 * Abort the FUSE connection of the mount at `path` (fusectl's `abort` file): every request waiting on its
 * daemon fails at once with ECONNABORTED and the mount is dead from then on. Only for a hung mount. Mounts
 * fusectl if it is not (root only). Returns what was done, or undefined if it could not be done.
 */
export async function abortConnection(path: string): Promise<string | undefined> {
  const info = await mountInfo(path);
  const connection = info && isFuseType(info.fsType) ? fuseConnection(info) : undefined;
  if (connection === undefined) return undefined;
  const file = join(FUSECTL, String(connection), 'abort');
  const write = () => writeFile(file, '1');
  try {
    await write();
  } catch {
    const mounted = await run('mount', ['-t', 'fusectl', 'fusectl', FUSECTL], 5000);
    if (!mounted.ok) return undefined;
    try {
      await write();
    } catch {
      return undefined;
    }
  }
  return `abort of FUSE connection ${connection}`;
}

async function conflictError(path: string, what = 'is already mounted'): Promise<VhfsError> {
  const info = await mountInfo(path);
  const type = info ? info.fsType : 'unknown type';
  let owner = '?';
  if (info && isFuseType(info.fsType)) {
    const pids = await fuseDaemonPids(fuseConnection(info));
    if (pids.length === 1) owner = String(pids[0]);
    else if (pids.length > 1) owner = `one of ${pids.join(',')}`;
  }
  const src = info && info.source ? `, source ${info.source}` : '';
  return new VhfsError('CONFLICT', `${path} ${what} (pid ${owner} / ${type}${src}); stop it with "vhfs unmount", or use --force to replace it`);
}

// ------------------------------------------------------------------------------------------------ prepare

/**
 * Make `path` ready to mount on: recover a stale mount, refuse a live one (unless force), create the
 * directory, and refuse a non-empty one unless force (a mount hides what is underneath; libfuse2 also
 * refuses it without `-o nonempty`, which mountFuse adds when forced).
 */
export async function prepareMountpoint(path: string, opts: { force?: boolean } = {}): Promise<PrepareResult> {
  const target = await canonicalPath(path);
  const state = await mountState(target);
  let cleared: ClearResult | undefined;
  if (state === 'live' && !opts.force) throw await conflictError(target);
  // A hung mount has a daemon that is alive but not answering (stopped, or stuck): taking its place
  // without being asked would leave that daemon running, untracked, with a mount it believes is its own.
  if (state === 'hung' && !opts.force) throw await conflictError(target, 'is mounted but not answering');
  if (state !== 'not-mounted') cleared = await clearStaleMount(target, { force: opts.force });
  const created = await ensureDirectory(target);
  if (!created && !opts.force) await refuseNonEmpty(target);
  return cleared ? { path: target, created, cleared } : { path: target, created };
}

async function ensureDirectory(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isDirectory()) throw new VhfsError('BAD_ARGUMENT', `mountpoint ${path} exists and is not a directory`);
    return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw wrapFsError(err, path);
  }
  await mkdirShared(path).catch((err) => { throw wrapFsError(err, path); });
  return true;
}

async function refuseNonEmpty(path: string): Promise<void> {
  const entries = await readdir(path);
  if (entries.length === 0) return;
  throw new VhfsError('CONFLICT',
    `mountpoint ${path} is not empty (${entries.length} entries, e.g. ${entries[0]}); the mount would hide them ` +
    `- use an empty directory, or --force to mount over it`);
}

function wrapFsError(err: unknown, path: string): unknown {
  if (err instanceof VhfsError) return err;
  const e = err as NodeJS.ErrnoException;
  return new VhfsError('STORE', `mountpoint ${path}: ${e.code ?? ''} ${e.message}`.trim(), { cause: err });
}

// --------------------------------------------------------------------------------------------- fuse-native

let unmountPatched = false;

/**
 * Every mount this process made, by mountpoint, with the number of FUSE statfs requests it has answered.
 * That count is how a daemon knows a path is still served by *its* mount: it asks the kernel for statfs of
 * the path and sees whether its own handler answered. Device numbers ("0:NN" in mountinfo) cannot tell: the
 * kernel reuses them, so a newer mount on the same path can carry the number of an older, detached one.
 */
const ownMounts = new Map<string, { pings: number }>();

/**
 * Replace fuse-native's static unmount (shell + "fusermount -uz", fails on an already-gone mount) with an
 * execFile version that detaches only a mount this process made: if the path is no longer served by our
 * mount (detached from outside, or replaced by a newer daemon with --force), the newer mount must not be
 * touched. fuse-native's close() calls it through the class binding, so patching the class works.
 */
export function installSafeUnmount(): void {
  if (unmountPatched) return;
  unmountPatched = true;
  (Fuse as unknown as { unmount: (mnt: string, cb: (err: Error | null) => void) => void }).unmount = (mnt, cb) => {
    detachOwn(mnt).then(() => cb(null), (err: Error) => cb(err));
  };
}

/**
 * Whether the mount this process made at `path` is what the path serves now: true (it answered our
 * statfs), false (something else answered), or undefined (no answer within `timeoutMs`: no evidence).
 */
export async function servedByUs(path: string, timeoutMs = STAT_TIMEOUT_MS): Promise<boolean | undefined> {
  const mine = ownMounts.get(path);
  if (!mine) return false;
  const before = mine.pings;
  const res = await probeWithTimeout(path, timeoutMs);
  if (res === 'timeout') return undefined;
  return res === null && mine.pings > before;
}

async function detachOwn(path: string): Promise<void> {
  if (!ownMounts.has(path)) {
    // Not a mount of ours that we could identify: detach the top mount once, never a stack of them.
    if (await isMounted(path)) await detachOnce(path);
    return;
  }
  if (await servedByUs(path) !== false) await detachOnce(path);
}

/** Count the statfs requests a mount answers (see `ownMounts`); answer them itself when `ops` does not. */
function countPings(ops: Ops, mine: { pings: number }): Ops {
  const inner = ops.statfs?.bind(ops);
  return {
    ...ops,
    statfs(p, cb) {
      mine.pings++;
      if (inner) inner(p, cb);
      else cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 });
    },
  };
}

/** fuse-native's `-o` list loses zero values and cannot express some options: carry them in fsname. */
export function buildFuseOptions(opts: MountOptions): FuseOptions {
  const {
    mountTimeoutMs: _m, opTimeoutMs, prepare: _p, force, extraOptions = [], guardOps: _g, onHandlerError: _h,
    ...fuseOpts
  } = opts;
  const extra = [...extraOptions];
  for (const [key, opt] of [['entryTimeout', 'entry_timeout'], ['attrTimeout', 'attr_timeout']] as const) {
    if (fuseOpts[key] === 0) extra.push(`${opt}=0`);
  }
  if (force) extra.push('nonempty');
  for (const o of extra) {
    if (!/^[A-Za-z_]+(=[^,\s]*)?$/.test(o)) throw new VhfsError('BAD_ARGUMENT', `bad FUSE option "${o}"`);
  }
  const fsname = fuseOpts.fsname ?? 'vhfs';
  if (/[,\s]/.test(fsname)) throw new VhfsError('BAD_ARGUMENT', `fsname "${fsname}" must not contain commas or spaces`);
  const out: FuseOptions = {
    ...fuseOpts,
    fsname: [fsname, ...extra].join(','),
    force: false,
    mkdir: false,
  };
  if (opTimeoutMs !== undefined) out.timeout = opTimeoutMs;
  return out;
}

const FUSE_EIO = -5;

/** Every handler calls back exactly once; a synchronous throw becomes EIO instead of killing the daemon. */
export function guardOps(ops: Ops, onError?: (op: string, err: unknown) => void): Ops {
  const guarded: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(ops)) {
    if (typeof fn !== 'function') continue;
    guarded[name] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as (...r: unknown[]) => void;
      let called = false;
      const once = (...r: unknown[]) => { if (!called) { called = true; cb(...r); } };
      try {
        (fn as (...a: unknown[]) => void).apply(ops, [...args.slice(0, -1), once]);
      } catch (err) {
        onError?.(name, err);
        once(FUSE_EIO);
      }
    };
  }
  return guarded as Ops;
}

/**
 * Mount `ops` on `path` and resolve once the kernel's INIT has been answered. Prepares the mountpoint
 * (stale recovery, conflict and non-empty checks) unless `prepare: false`.
 */
export async function mountFuse(path: string, ops: Ops, opts: MountOptions = {}): Promise<Fuse> {
  installSafeUnmount();
  const target = await canonicalPath(path);
  if (opts.prepare !== false) await prepareMountpoint(target, { force: opts.force });
  const mine = { pings: 0 };
  const handlers = countPings(opts.guardOps === false ? ops : guardOps(ops, opts.onHandlerError), mine);
  const fuse = new Fuse(target, handlers, buildFuseOptions(opts));
  const timeoutMs = opts.mountTimeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS;
  try {
    await withTimeout(new Promise<void>((res, rej) => fuse.mount((err) => (err ? rej(err) : res()))), timeoutMs,
      `mounting ${target} did not finish within ${timeoutMs} ms`);
  } catch (err) {
    await abandonMount(fuse, target);
    if (err instanceof VhfsError) throw err;
    const msg = (err as Error).message;
    throw new VhfsError('STORE', `cannot mount ${target}: ${msg}${hintFor(msg)}`, { cause: err });
  }
  ownMounts.set(target, mine);
  return fuse;
}

/** Best effort after a failed mount: unmount the half-made mount so it is not left stale. */
async function abandonMount(fuse: Fuse, target: string): Promise<void> {
  await new Promise<void>((res) => {
    try { fuse.unmount(() => res()); } catch { res(); }
  });
  if (await isMounted(target)) await detach(target).catch(() => undefined);
}

function hintFor(message: string): string {
  if (/fuse failed/.test(message)) {
    return ' (check /dev/fuse exists and is usable: in a container add --device /dev/fuse --cap-add SYS_ADMIN,' +
      ' on some hosts also --security-opt apparmor:unconfined; allow_other as non-root needs user_allow_other' +
      ' in /etc/fuse.conf)';
  }
  return '';
}

/**
 * Set the kernel's readahead for the mount at `path` (its backing device's `read_ahead_kb`). Needs root and
 * a writable /sys; false when it could not be set (the kernel's default then stays: nothing breaks).
 */
export async function setReadahead(path: string, kib: number): Promise<boolean> {
  const info = await mountInfo(path).catch(() => undefined);
  if (!info || !/^\d+:\d+$/.test(info.device)) return false;
  return writeFile(`/sys/class/bdi/${info.device}/read_ahead_kb`, `${kib}\n`).then(() => true, () => false);
}

/** Unmount (lazily, like fuse-native) and wait until the path has left mountinfo. */
export async function unmountFuse(fuse: Fuse, opts: { timeoutMs?: number } = {}): Promise<void> {
  installSafeUnmount();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_UNMOUNT_TIMEOUT_MS;
  await withTimeout(new Promise<void>((res, rej) => fuse.unmount((err) => (err ? rej(err) : res()))), timeoutMs,
    `unmounting ${fuse.mnt} did not finish within ${timeoutMs} ms`);
  const deadline = Date.now() + timeoutMs;
  // Wait for our mount to leave; another (newer) one may stay mounted on the same path.
  const ours = async () => (await servedByUs(fuse.mnt)) !== false;
  while (await ours()) {
    if (Date.now() > deadline) throw new VhfsError('TIMEOUT', `${fuse.mnt} is still mounted after unmount`);
    await new Promise((r) => setTimeout(r, 20));
  }
  ownMounts.delete(fuse.mnt);
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new VhfsError('TIMEOUT', message)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
