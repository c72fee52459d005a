/**
 * Helpers for the CLI tests: run the real `vhfs` binary as a child process (async `execFile`, never
 * the sync variants), make throw-away state directories, generate file trees, find a version's
 * package blobs in a directory store, and run external zip checkers (`unzip -t`, python's testzip).
 *
 * Temp dirs go to /dev/shm when it exists (override with VHFS_TEST_TMPDIR): the local store fsyncs
 * every object, and on a disk-backed /tmp that alone doubles the 10,000-file test's run time.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

/** Repository root: this file runs as dist/test/cli/helpers.js. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = path.join(ROOT, 'bin', 'vhfs.js');

export interface RunResult {
  /** Exit code (a signal counts as -1). */
  code: number;
  stdout: Buffer;
  /** stdout as UTF-8. */
  out: string;
  stderr: string;
  /** Wall time of the child, ms. */
  ms: number;
  args: string[];
}

/** The environment children get: no VHFS_* leaking in from the developer's shell. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  delete env.VHFS_HOME;
  delete env.VHFS_STORE;
  delete env.VHFS_DEBUG;
  return env;
}

/** Run a program asynchronously; never rejects (the exit code is in the result). */
export function runProgram(file: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { encoding: 'buffer', maxBuffer: 1 << 30, env: childEnv(opts.env), cwd: opts.cwd ?? os.tmpdir() },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: number | string; signal?: string | null };
          code = typeof e.code === 'number' ? e.code : e.signal ? -1 : 127;
        }
        resolve({ code, stdout, out: stdout.toString('utf8'), stderr: stderr.toString('utf8'), ms: Date.now() - start, args });
      },
    );
  });
}

/** `node bin/vhfs.js ARGS…` */
export function vhfs(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Promise<RunResult> {
  return runProgram(process.execPath, [BIN, ...args], opts);
}

/** A `--home` (and optionally `--store`) bound CLI. */
export class Cli {
  constructor(readonly home: string, readonly storeUrl?: string) {}

  /** The directory store's root (`<home>/store` unless `--store` names another directory). */
  get storeDir(): string {
    return this.storeUrl ?? path.join(this.home, 'store');
  }

  run(...args: string[]): Promise<RunResult> {
    return vhfs(['--home', this.home, ...(this.storeUrl ? ['--store', this.storeUrl] : []), ...args]);
  }

  /** Run and require exit code 0; throws with the command's stderr otherwise. */
  async ok(...args: string[]): Promise<RunResult> {
    const r = await this.run(...args);
    if (r.code !== 0) throw new Error(`vhfs ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
    return r;
  }

  /** Run with `--json` and parse stdout. */
  async json<T = any>(...args: string[]): Promise<T> {
    const r = await this.ok('--json', ...args);
    return JSON.parse(r.out) as T;
  }

  /** Run with `--stats` and return the parsed `store stats:` line along with the result. */
  async stats(...args: string[]): Promise<{ result: RunResult; stats: StoreStats }> {
    const result = await this.ok('--stats', ...args);
    return { result, stats: parseStats(result.stderr) };
  }
}

export type { StoreStats } from '../../src/store/types.js';
import type { StoreStats } from '../../src/store/types.js';

export function parseStats(stderr: string): StoreStats {
  const line = stderr.split('\n').filter((l) => l.startsWith('store stats: ')).pop();
  if (!line) throw new Error(`no "store stats:" line in stderr:\n${stderr}`);
  return JSON.parse(line.slice('store stats: '.length)) as StoreStats;
}

/**
 * Assert a failed command: exit code `code`, stderr exactly one line `vhfs: …` containing every
 * string of `mentions` (the thing at fault).
 */
export function assertFails(t: ExecutionContext, r: RunResult, code: number, ...mentions: string[]): string {
  const what = `vhfs ${r.args.slice(1).join(' ')}`;
  t.is(r.code, code, `${what}: exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  t.is(lines.length, 1, `${what}: stderr must be exactly one line, got:\n${r.stderr}`);
  const line = lines[0] ?? '';
  t.true(line.startsWith('vhfs: '), `${what}: stderr line must start with "vhfs: ", got ${JSON.stringify(line)}`);
  for (const m of mentions) t.true(line.includes(m), `${what}: message should name ${JSON.stringify(m)}: ${line}`);
  return line;
}

/** Base directory for temp dirs (tmpfs when available). */
export function tempBase(): string {
  const wanted = process.env.VHFS_TEST_TMPDIR;
  if (wanted) return wanted;
  return existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
}

/** A fresh temp dir removed when the test ends. */
export async function tempDir(t: ExecutionContext, label = 'vhfs-cli-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(tempBase(), label));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export { rng } from '../helpers/rng.js';
import { rng } from '../helpers/rng.js';

export interface TreeFile {
  /** Relative `/`-separated path. */
  path: string;
  size: number;
  sha256: string;
}

const DIR_NAMES = ['train', 'val', 'données', '日本語', 'emoji😀', 'x y', 'Ω', 'a.b', 'deep'];
const FILE_STEMS = ['img', 'label', 'façade', 'наука', '文件', 'z'];

/**
 * Write `count` files under `dir`: nested directories (depth 0–3), some unicode names, sizes uniform in
 * [0, maxSize] (a few exactly 0), random bytes. Paths are unique and never both a file and a directory
 * (files are named `…-<i>.<ext>`, directories never contain a `-<digit>`). Returns the files sorted by
 * path (JS string order).
 */
export async function makeTree(dir: string, count: number, opts: { seed?: number; maxSize?: number; concurrency?: number } = {}): Promise<TreeFile[]> {
  const rand = rng(opts.seed ?? 1);
  const maxSize = opts.maxSize ?? 8192;
  const specs: Array<{ path: string; size: number }> = [];
  for (let i = 0; i < count; i++) {
    const depth = Math.floor(rand() * 4);
    const segs: string[] = [];
    for (let d = 0; d < depth; d++) segs.push(`${DIR_NAMES[Math.floor(rand() * DIR_NAMES.length)]}${Math.floor(rand() * 3)}`);
    segs.push(`${FILE_STEMS[Math.floor(rand() * FILE_STEMS.length)]}-${i}.bin`);
    const size = i % 97 === 0 ? 0 : Math.floor(rand() * (maxSize + 1));
    specs.push({ path: segs.join('/'), size });
  }
  const dirs = new Set(specs.map((s) => path.posix.dirname(s.path)));
  for (const d of dirs) await fs.mkdir(path.join(dir, d), { recursive: true });
  const files: TreeFile[] = new Array(specs.length);
  let next = 0;
  await Promise.all(Array.from({ length: opts.concurrency ?? 32 }, async () => {
    while (next < specs.length) {
      const i = next++;
      const data = randomBytes(specs[i].size);
      await fs.writeFile(path.join(dir, specs[i].path), data);
      files[i] = { path: specs[i].path, size: data.length, sha256: sha256(data) };
    }
  }));
  return files.sort((a, b) => compare(a.path, b.path));
}

export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Hash of the concatenation of `files` read from `dir`, in the given order. */
export async function concatHash(dir: string, paths: readonly string[]): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for (const p of paths) {
    const data = await fs.readFile(path.join(dir, p));
    h.update(data);
    size += data.length;
  }
  return { sha256: h.digest('hex'), size };
}

/** Run `fn` over items with at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export interface StoredPackage {
  name: string;
  datumId: string;
  size: number;
  sha256: string;
  /** Absolute path of the package's blob in the directory store. */
  file: string;
}

/** A version's package parts as they lie in a directory store, read from the store's own records. */
export async function storedPackages(storeDir: string, collection: string, version: string, kind: 'datasets' | 'models' = 'datasets'): Promise<StoredPackage[]> {
  const rec = JSON.parse(await fs.readFile(path.join(storeDir, kind, collection, 'versions', `${version}.json`), 'utf8')) as {
    packages: Array<{ datumId: string; name: string; size: number }>;
  };
  const out: StoredPackage[] = [];
  for (const p of rec.packages) {
    const datum = JSON.parse(await fs.readFile(path.join(storeDir, 'datums', `${p.datumId}.json`), 'utf8')) as { blobKey: string; sha256: string; size: number };
    out.push({ name: p.name, datumId: p.datumId, size: datum.size, sha256: datum.sha256, file: path.join(storeDir, ...datum.blobKey.split('/')) });
  }
  return out;
}

/** `unzip -t -q FILE`: passes when exit 0 (warnings would be exit 1). */
export function unzipTest(file: string): Promise<RunResult> {
  return runProgram('unzip', ['-t', '-q', file]);
}

/** `zipinfo FILE` */
export function zipinfo(file: string): Promise<RunResult> {
  return runProgram('zipinfo', [file]);
}

/** Python's zipfile: open, `testzip()` (None = every CRC fine), and print the member count. */
export function pythonTestzip(file: string): Promise<RunResult> {
  const code = [
    'import sys, zipfile',
    'z = zipfile.ZipFile(sys.argv[1])',
    'bad = z.testzip()',
    'print("BAD:" + bad if bad else "OK %d" % len(z.infolist()))',
    'sys.exit(1 if bad else 0)',
  ].join('\n');
  return runProgram('python3', ['-c', code, file]);
}

/** Run a python script with args (for building hostile zips). */
export function python(code: string, ...args: string[]): Promise<RunResult> {
  return runProgram('python3', ['-c', code, ...args]);
}
