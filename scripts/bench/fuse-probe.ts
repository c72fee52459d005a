/**
 * fuse-probe: a minimal read-only fuse-native filesystem served from memory, used to measure the native
 * side (per-op overhead, kernel caching, read sizes, timeouts, which ops the kernel stops sending) apart
 * from anything vhfs does. See native-notes/README.md for the commands and results.
 *
 *   node dist/scripts/bench/fuse-probe.js MNT [--files N] [--dirs D] [--size BYTES] [--big BYTES]
 *        [--entry-timeout S] [--attr-timeout S] [--kernel-cache] [--max-read BYTES] [--op-timeout MS]
 *        [--hang NAME] [--getxattr enodata|enosys] [--listxattr] [--stub flush,opendir,releasedir,access]
 *        [--extra opt=val,...] [--debug] [--stats FILE]
 *
 * Tree: /dNNN/fNNNNN (N files spread over D dirs, S bytes each, content derived from the name) and /big
 * (--big bytes, 0 = none). Prints "ready <pid>" once mounted; on SIGUSR2 writes op counters and the
 * histogram of read lengths the kernel asked for to --stats (JSON); SIGTERM unmounts and exits.
 */
import { writeFileSync } from 'node:fs';
import Fuse from 'fuse-native';
import type { Ops, Stat } from 'fuse-native';
import { mountFuse, unmountFuse } from '../../src/fuse/mountpoint.js';
import type { MountOptions } from '../../src/fuse/mountpoint.js';

interface Args {
  mnt: string; files: number; dirs: number; size: number; big: number; entryTimeout?: number; attrTimeout?: number;
  kernelCache: boolean; maxRead?: number; opTimeout?: number; hang?: string; getxattr?: string; listxattr: boolean;
  stub: string[]; extra: string[]; debug: boolean; stats?: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { mnt: '', files: 1000, dirs: 10, size: 16384, big: 0, kernelCache: false, listxattr: false, stub: [], extra: [], debug: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    switch (k) {
      case '--files': a.files = Number(v()); break;
      case '--dirs': a.dirs = Number(v()); break;
      case '--size': a.size = Number(v()); break;
      case '--big': a.big = Number(v()); break;
      case '--entry-timeout': a.entryTimeout = Number(v()); break;
      case '--attr-timeout': a.attrTimeout = Number(v()); break;
      case '--kernel-cache': a.kernelCache = true; break;
      case '--max-read': a.maxRead = Number(v()); break;
      case '--op-timeout': a.opTimeout = Number(v()); break;
      case '--hang': a.hang = v(); break;
      case '--getxattr': a.getxattr = v(); break;
      case '--listxattr': a.listxattr = true; break;
      case '--stub': a.stub = v().split(','); break;
      case '--extra': a.extra = v().split(','); break;
      case '--debug': a.debug = true; break;
      case '--stats': a.stats = v(); break;
      default:
        if (k.startsWith('--') || a.mnt) throw new Error(`unknown argument ${k}`);
        a.mnt = k;
    }
  }
  if (!a.mnt) throw new Error('usage: fuse-probe.js MNT [options]');
  return a;
}

const args = parseArgs(process.argv.slice(2));
const counts: Record<string, number> = {};
const readLens: Record<string, number> = {};
const count = (op: string) => { counts[op] = (counts[op] ?? 0) + 1; };
const now = new Date();
const dirName = (d: number) => `d${String(d).padStart(3, '0')}`;
const fileName = (f: number) => `f${String(f).padStart(6, '0')}`;

/** path → size (files) or -1 (dirs); children per dir. */
const sizes = new Map<string, number>([['/', -1]]);
const children = new Map<string, string[]>([['/', []]]);
for (let d = 0; d < args.dirs; d++) { sizes.set(`/${dirName(d)}`, -1); children.set(`/${dirName(d)}`, []); children.get('/')!.push(dirName(d)); }
for (let f = 0; f < args.files; f++) {
  const dir = `/${dirName(f % args.dirs)}`;
  sizes.set(`${dir}/${fileName(f)}`, args.size);
  children.get(dir)!.push(fileName(f));
}
if (args.big > 0) { sizes.set('/big', args.big); children.get('/')!.push('big'); }
const pattern = Buffer.alloc(1 << 20);
for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 31 + 7) & 0xff;

function statOf(size: number): Stat {
  const dir = size < 0;
  return { mtime: now, atime: now, ctime: now, size: dir ? 4096 : size, mode: dir ? 0o40555 : 0o100444, uid: 0, gid: 0, nlink: dir ? 2 : 1 };
}
const hangs = (path: string) => args.hang !== undefined && path.endsWith(args.hang);

const ops: Ops = {
  getattr(path, cb) {
    count('getattr');
    if (hangs(path) && path.endsWith('/hang-getattr')) return; // never call back
    const size = sizes.get(path);
    return size === undefined ? cb(Fuse.ENOENT) : cb(0, statOf(size));
  },
  readdir(path, cb) {
    count('readdir');
    const names = children.get(path);
    return names ? cb(0, names) : cb(Fuse.ENOENT);
  },
  open(path, _flags, cb) {
    count('open');
    return sizes.has(path) ? cb(0, 1) : cb(Fuse.ENOENT);
  },
  release(_path, _fd, cb) { count('release'); cb(0); },
  read(path, _fd, buf, len, pos, cb) {
    count('read');
    readLens[len] = (readLens[len] ?? 0) + 1;
    if (hangs(path)) return; // never call back: fuse-native's op timeout answers for us
    const size = sizes.get(path) ?? 0;
    const n = Math.max(0, Math.min(len, size - pos));
    let done = 0;
    while (done < n) {
      const off = (pos + done) % pattern.length;
      done += pattern.copy(buf, done, off, Math.min(pattern.length, off + n - done));
    }
    cb(n);
  },
};
if (args.getxattr) {
  const errno = args.getxattr === 'enosys' ? Fuse.ENOSYS : Fuse.ENODATA;
  ops.getxattr = (_p, _n, _pos, cb) => { count('getxattr'); cb(errno); };
}
if (args.listxattr) ops.listxattr = (_p, cb) => { count('listxattr'); cb(0, []); };
for (const name of args.stub) {
  const stub = (...a: unknown[]) => { count(name); (a[a.length - 1] as (e: number) => void)(Fuse.ENOSYS); };
  (ops as Record<string, unknown>)[name] = stub;
}
if (args.hang) sizes.set(`/${args.hang}`, args.size);
if (args.hang) children.get('/')!.push(args.hang);

function dumpStats(): void {
  if (args.stats) writeFileSync(args.stats, JSON.stringify({ counts, readLens }) + '\n');
}

async function main(): Promise<void> {
  const opts: MountOptions = {
    force: true, kernelCache: args.kernelCache, debug: args.debug, extraOptions: args.extra,
    entryTimeout: args.entryTimeout, attrTimeout: args.attrTimeout, maxRead: args.maxRead,
    opTimeoutMs: args.opTimeout,
  };
  // Handlers go in before "ready": a signal that arrives before process.on() would kill the process.
  process.on('SIGUSR2', () => { dumpStats(); for (const k of Object.keys(counts)) delete counts[k]; for (const k of Object.keys(readLens)) delete readLens[k]; });
  let fuse: Awaited<ReturnType<typeof mountFuse>> | undefined;
  process.on('SIGTERM', () => { dumpStats(); (fuse ? unmountFuse(fuse) : Promise.resolve()).finally(() => process.exit(0)); });
  fuse = await mountFuse(args.mnt, ops, opts);
  process.stdout.write(`ready ${process.pid}\n`);
}

main().catch((err) => { process.stderr.write(`fuse-probe: ${(err as Error).message}\n`); process.exit(1); });
