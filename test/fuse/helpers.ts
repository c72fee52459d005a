/**
 * Helpers for the end-to-end mount tests (test/fuse/mount.test.ts).
 *
 * Rule that shapes everything here: the test process never touches a FUSE mount synchronously, and never
 * serves one. Mounts are made by the `vhfs mount` CLI (a detached daemon in another process) and looked at
 * through external tools run with async execFile (ls, find, stat, sha256sum, python3 …). Synchronous fs
 * calls are used only on ordinary local directories (sources, homes), never under a mountpoint.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';

// ------------------------------------------------------------------------------------ tests that mount

/** Marks a test that needs a real FUSE mount; scripts/test.sh fails the run if one is skipped where /dev/fuse exists. */
export const FUSE_TAG = '[fuse]';
export const HAVE_FUSE = existsSync('/dev/fuse');

type Impl = (t: ExecutionContext) => Promise<void> | void;

/**
 * Declare a test that mounts: its title gets `[fuse]`, and without /dev/fuse it is registered as skipped
 * (so a machine without FUSE says so in the summary instead of "passing" tests that never mounted).
 */
export function fuseTest(title: string, impl: Impl): void {
  (HAVE_FUSE ? test : test.skip)(`${title} ${FUSE_TAG}`, impl);
}
fuseTest.serial = (title: string, impl: Impl): void => {
  (HAVE_FUSE ? test.serial : test.skip)(`${title} ${FUSE_TAG}`, impl);
};

/** dist/test/fuse/helpers.js → the repository root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = path.join(REPO, 'bin', 'vhfs.js');

export interface RunResult {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Run a program; never rejects (a failure is a non-zero code). LC_ALL=C so messages and sorting are stable. */
export function run(
  file: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv; maxBuffer?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, {
      cwd: opts.cwd,
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: opts.maxBuffer ?? 256 * 1024 * 1024,
      env: { ...process.env, LC_ALL: 'C', LANG: 'C', ...opts.env },
      encoding: 'utf8',
    }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string | null }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : 127) : 0,
        signal: e?.signal ?? null,
        stdout: String(stdout),
        stderr: String(stderr),
      });
    });
  });
}

/** `vhfs --home <home> …args` (`env` adds to the environment, e.g. faultsEnv from test/helpers/store-faults-preload.ts). */
export function vhfs(home: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return run(process.execPath, [BIN, '--home', home, ...args], opts);
}

/** `vhfs --home <home> --json …args`, parsed; throws (with stderr) unless it exits 0. */
export async function vhfsJson<T>(home: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<T> {
  const r = await vhfs(home, ['--json', ...args], opts);
  if (r.code !== 0) throw new Error(`vhfs ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

/** A fresh temporary directory, removed at teardown (after unmounting anything still mounted under it). */
export async function tempDir(t: ExecutionContext, prefix = 'vhfs-fuse-'): Promise<string> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), prefix)));
  t.teardown(async () => {
    for (const m of await mountsUnder(dir)) await run('fusermount3', ['-uz', m], { timeoutMs: 10_000 });
    if ((await mountsUnder(dir)).length === 0) await fs.rm(dir, { recursive: true, force: true });
  });
  return dir;
}

// ---------------------------------------------------------------------------------------------- mounts

/** Mount points listed in /proc/self/mountinfo (octal escapes undone). Reading /proc is not a FUSE access. */
export async function mountPoints(): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').filter(Boolean).map((line) =>
    line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export async function isMounted(p: string): Promise<boolean> {
  return (await mountPoints()).includes(p);
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await mountPoints()).filter((m) => m === dir || m.startsWith(`${dir}/`)).reverse();
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (killed, not yet reaped by whoever adopted it) answers kill(0) but is gone for our purposes.
  // /proc/<pid>/stat is procfs, not FUSE: a sync read is harmless.
  let stat = '';
  try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return false; }
  return !/\)\s+Z\s/.test(stat);
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Mounted {
  home: string;
  root: string;
  /** `<root>/inputs` */
  mnt: string;
  pid: number;
  log: string;
  inputsJson: string;
}

/**
 * `vhfs mount --root <root> …args` (daemonized). At teardown: `vhfs unmount`, then `fusermount3 -uz` if it is
 * still mounted, then SIGKILL if the daemon is still alive.
 */
export async function mount(t: ExecutionContext, home: string, root: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<Mounted> {
  const r = await vhfs(home, ['--json', 'mount', '--root', root, ...args], { timeoutMs: 60_000, ...opts });
  if (r.code !== 0) throw new Error(`vhfs mount exited ${r.code}: ${r.stderr.trim()}`);
  const out = JSON.parse(r.stdout) as { mountpoint: string; pid: number; log: string; inputsJson: string };
  const m: Mounted = { home, root, mnt: out.mountpoint, pid: out.pid, log: out.log, inputsJson: out.inputsJson };
  t.teardown(() => cleanupMount(m));
  return m;
}

export async function cleanupMount(m: Pick<Mounted, 'home' | 'root' | 'mnt' | 'pid'>): Promise<void> {
  if (pidAlive(m.pid) || (await isMounted(m.mnt))) await vhfs(m.home, ['unmount', '--root', m.root], { timeoutMs: 30_000 });
  if (await isMounted(m.mnt)) await run('fusermount3', ['-uz', m.mnt], { timeoutMs: 10_000 });
  if (pidAlive(m.pid)) {
    try { process.kill(m.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** Ask the daemon for fresh counters (SIGUSR1) and read the stats file once it has been rewritten. */
export async function readStats(file: string, pid: number, log?: string): Promise<StatsFile> {
  // Every write renames a new file into place: a new inode says "rewritten" even when two writes land in
  // the same coarse mtime tick.
  const version = () => fs.stat(file).then((s) => `${s.ino}:${s.mtimeMs}`, () => '');
  const before = await version();
  process.kill(pid, 'SIGUSR1');
  try {
    await waitFor(async () => (await version()) !== before, 20_000, `${file} to be rewritten`);
  } catch (err) {
    const tail = log ? (await fs.readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-8).join('\n') : '';
    throw new Error(`${(err as Error).message}; daemon ${pid} ${pidAlive(pid) ? 'alive' : 'gone'}; log tail:\n${tail}`);
  }
  return JSON.parse(await fs.readFile(file, 'utf8')) as StatsFile;
}

export interface StatsFile {
  store: { gets: number; bytesRead: number; puts: number; bytesWritten: number; heads: number; lists: number };
  cache: Record<string, number>;
}

// ------------------------------------------------------------------------------------------------ trees

export interface FileSpec {
  /** Relative path, `/`-separated. */
  path: string;
  size: number;
}

export interface TreeFile {
  size: number;
  sha256: string;
}

/** Write random content for every spec under `dir`; returns path → {size, sha256}. */
export async function makeTree(dir: string, specs: FileSpec[]): Promise<Map<string, TreeFile>> {
  const out = new Map<string, TreeFile>();
  for (const s of specs) {
    const data = randomBytes(s.size);
    const abs = path.join(dir, s.path);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.writeFile(abs, data);
    out.set(s.path, { size: s.size, sha256: sha256(data) });
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Sorted keys of a tree map, LC_ALL=C order (byte order of UTF-8). */
export function sortedPaths(tree: Map<string, unknown>): string[] {
  return [...tree.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** Every directory implied by a set of file paths ('' excluded). */
export function dirsOf(paths: Iterable<string>): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/** Run a Python snippet with `sys.argv[1:] = args`; its stdout is returned parsed as JSON. */
export async function python<T>(script: string, args: string[], timeoutMs = 120_000): Promise<T> {
  const r = await run('python3', ['-c', script, ...args], { timeoutMs });
  if (r.code !== 0) throw new Error(`python3 exited ${r.code} (signal ${r.signal}): ${r.stderr.trim().slice(-2000)}`);
  return JSON.parse(r.stdout) as T;
}

/** sha256 of every regular file under `dir`, by relative path (python: a test never reads a mount itself). */
export function hashTree(dir: string): Promise<Record<string, string>> {
  return python<Record<string, string>>([
    'import hashlib, json, os, sys',
    'out = {}',
    'for base, _, names in os.walk(sys.argv[1]):',
    '    for n in names:',
    '        p = os.path.join(base, n)',
    '        out[os.path.relpath(p, sys.argv[1])] = hashlib.sha256(open(p, "rb").read()).hexdigest()',
    'print(json.dumps(out))',
  ].join('\n'), [dir]);
}

/**
 * os.walk of a directory as a sorted list of [reldir, sorted subdirs, sorted files]. argv: <dir>.
 */
export const PY_WALK = String.raw`
import json, os, sys
top = sys.argv[1]
out = []
for d, dirs, files in os.walk(top, onerror=lambda e: (_ for _ in ()).throw(e)):
    rel = os.path.relpath(d, top)
    out.append([rel, sorted(dirs), sorted(files)])
out.sort()
print(json.dumps(out))
`;

/**
 * Random preads of files, each compared with the same range of its source. argv: <json file>, JSON
 * `{"pairs": [[mounted, source], …], "reads": N, "seed": S}`. Prints {"reads": n, "mismatches": [...]}.
 */
export const PY_PREAD = String.raw`
import json, os, random, sys
cfg = json.load(open(sys.argv[1]))
rnd = random.Random(cfg["seed"])
mism = []
n = 0
fds = []
for m, s in cfg["pairs"]:
    fm = os.open(m, os.O_RDONLY); fs_ = os.open(s, os.O_RDONLY)
    fds.append((m, fm, fs_, os.fstat(fs_).st_size))
for i in range(cfg["reads"]):
    m, fm, fs_, size = rnd.choice(fds)
    off = rnd.randrange(0, size + 2) if size else rnd.randrange(0, 4)
    ln = rnd.choice([1, 7, 511, 4096, 4097, 65536, 131073, 1048576, 1048577, 2500000])
    a = os.pread(fm, ln, off); b = os.pread(fs_, ln, off)
    n += 1
    if a != b:
        mism.append([m, off, ln, len(a), len(b)])
for _, fm, fs_, _ in fds:
    os.close(fm); os.close(fs_)
print(json.dumps({"reads": n, "mismatches": mism[:20]}))
`;

/** mmap a mounted file and its source; compare whole and in random slices. argv: <mounted> <source>. */
export const PY_MMAP = String.raw`
import json, mmap, os, random, sys, hashlib
m, s = sys.argv[1], sys.argv[2]
with open(m, "rb") as fm, open(s, "rb") as fs_:
    mm = mmap.mmap(fm.fileno(), 0, access=mmap.ACCESS_READ)
    ms = mmap.mmap(fs_.fileno(), 0, access=mmap.ACCESS_READ)
    rnd = random.Random(7)
    bad = []
    # touch pages out of order first (page faults in random order), then the whole
    for i in range(200):
        off = rnd.randrange(0, len(ms))
        ln = rnd.randrange(1, 300000)
        if mm[off:off+ln] != ms[off:off+ln]:
            bad.append([off, ln])
    same = len(mm) == len(ms) and hashlib.sha256(mm).hexdigest() == hashlib.sha256(ms).hexdigest()
    mm.close(); ms.close()
print(json.dumps({"len": os.path.getsize(m), "same": same, "bad": bad[:10]}))
`;

/**
 * Read every file of a manifest in a shuffled order with a random chunk size, verifying sha256. argv:
 * <manifest json {path: sha256}> <seed>. Prints {"files": n, "bytes": b, "bad": [...]}.
 */
export const PY_READ_ALL = String.raw`
import hashlib, json, random, sys
man = json.load(open(sys.argv[1]))
rnd = random.Random(int(sys.argv[2]))
items = list(man.items())
rnd.shuffle(items)
bad = []
total = 0
for p, want in items:
    h = hashlib.sha256()
    chunk = rnd.choice([4096, 65536, 131072, 1 << 20, 3 * 1000 * 1000])
    with open(p, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            total += len(b)
            h.update(b)
    if h.hexdigest() != want:
        bad.append(p)
print(json.dumps({"files": len(items), "bytes": total, "bad": bad[:20]}))
`;

/** Write a JSON file (ordinary local directory). */
export async function writeJson(file: string, value: unknown): Promise<void> {
  await fs.writeFile(file, JSON.stringify(value));
}

/** Put the home's store directory behind a FUSE passthrough (test/fuse/fixtures/slow-dir.ts) that delays every read by `delayMs`. */
export async function slowStore(t: ExecutionContext, dir: string, home: string, delayMs: number): Promise<void> {
  const real = path.join(dir, 'store-real');
  await fs.rename(path.join(home, 'store'), real);
  const mnt = path.join(home, 'store');
  await fs.mkdir(mnt);
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO, 'dist/test/fuse/fixtures/slow-dir.js'), real, mnt, String(delayMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(async () => {
    if (pidAlive(child.pid!)) child.kill('SIGTERM');
    await waitFor(() => !pidAlive(child.pid!), 10_000, 'slow-dir to stop').catch(() => child.kill('SIGKILL'));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`slow-dir exited ${code}`)));
  });
}
