/**
 * The native read path (native/vhfs-fuse.c) through real mounts: it must answer exactly what the JavaScript
 * handlers answer, and leave to them what it cannot answer safely.
 *  - the same version mounted twice, natively and with --no-native-reads: every entry's attributes, every
 *    listing, every file's bytes and random preads (including past the end) are identical, and the errors
 *    (ENOENT, ENOTDIR) too; the native mount answered its reads itself (the daemon's counters say so, which
 *    also fails this test where the native binding was not built);
 *  - a damaged member and a damaged chunk of a big member: the native check refuses them, JavaScript reports
 *    them (EIO, a log line), the other files read right;
 *  - a store on a FUSE filesystem (which can hang a read, and a pread has no deadline) is read by JavaScript.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { NativeReadStats } from '../../src/fuse/native-reads.js';
import { fuseTest, makeTree, mount, python, PY_PREAD, PY_WALK, readStats, run, slowStore, tempDir, vhfs, writeJson, type TreeFile } from './helpers.js';


const BIG = 'models/big.bin';
/** Bigger than what vhfs-fuse.c checks whole by its CRC-32 (16 MiB): read natively by chunks. */
const BIG_SIZE = 20 * 1024 * 1024 + 12345;

async function makeVersion(t: ExecutionContext): Promise<{ dir: string; home: string; src: string; tree: Map<string, TreeFile> }> {
  const dir = await tempDir(t, 'vhfs-native-');
  const home = path.join(dir, 'home');
  const src = path.join(dir, 'src');
  const specs = [
    ...Array.from({ length: 120 }, (_, i) => ({ path: `train/c${i % 6}/img-${String(i).padStart(4, '0')}.bin`, size: 1 + ((i * 7919) % 70_000) })),
    { path: 'empty.txt', size: 0 },
    { path: 'naïve/日本語 名前.txt', size: 4097 },
    { path: 'exactly-64k.bin', size: 65536 },
    { path: BIG, size: BIG_SIZE },
  ];
  const tree = await makeTree(src, specs);
  const made = await vhfs(home, ['dataset', 'create', 'nat/v1', src, '--package'], { timeoutMs: 120_000 });
  t.is(made.code, 0, made.stderr);
  return { dir, home, src, tree };
}

/** What `lstat` says of every entry (and the listing of every directory), walked by Python. */
const PY_ATTRS = String.raw`
import json, os, sys
top = sys.argv[1]
out = {}
for d, dirs, files in os.walk(top):
    for n in ["."] + dirs + files:
        p = os.path.normpath(os.path.join(d, n))
        s = os.lstat(p)
        out[os.path.relpath(p, top)] = [s.st_mode, s.st_size, s.st_nlink, s.st_uid, s.st_gid, s.st_mtime_ns, s.st_blocks]
    out[os.path.relpath(d, top) + "/"] = sorted(dirs) + ["|"] + sorted(files)
def errno_of(f):
    try:
        f()
        return "ok"
    except OSError as e:
        import errno
        return errno.errorcode[e.errno]
# Directories carry their mount's time; compare them relative to it.
mounted = os.lstat(top).st_mtime_ns
for k, v in out.items():
    if not k.endswith("/") and (v[0] & 0o170000) == 0o040000:
        v[5] -= mounted
out["errors"] = [
    errno_of(lambda: os.stat(os.path.join(top, "no-such-file"))),
    errno_of(lambda: os.stat(os.path.join(top, "train", "c0", "nope", "x"))),
    errno_of(lambda: os.listdir(os.path.join(top, "empty.txt"))),
    errno_of(lambda: os.stat(os.path.join(top, "empty.txt", "x"))),
]
print(json.dumps(out))
`;

async function nativeCounters(statsFile: string, pid: number, log: string): Promise<NativeReadStats | null> {
  const s = await readStats(statsFile, pid, log) as unknown as { native: NativeReadStats | null };
  return s.native;
}

fuseTest('natively and through JavaScript, a mount answers the same: attributes, listings, bytes, preads and errors', async (t) => {
  t.timeout(240_000);
  const { dir, home, src, tree } = await makeVersion(t);
  const statsOf = (name: string) => path.join(dir, `${name}.json`);
  const native = await mount(t, home, path.join(dir, 'native'), ['--input', 'x=dataset://nat/v1', '--no-outputs', '--stats-file', statsOf('native'), '--wait']);
  const js = await mount(t, home, path.join(dir, 'js'), ['--input', 'x=dataset://nat/v1', '--no-outputs', '--stats-file', statsOf('js'), '--wait', '--no-native-reads']);

  const attrs = await Promise.all([native, js].map((m) => python<Record<string, unknown>>(PY_ATTRS, [path.join(m.mnt, 'x')])));
  t.deepEqual(attrs[0], attrs[1], 'every lstat, listing and error is the same');
  t.deepEqual((attrs[0].errors as string[]), ['ENOENT', 'ENOENT', 'ENOTDIR', 'ENOTDIR']);
  t.is(Object.keys(attrs[0]).filter((k) => !k.endsWith('/') && k !== 'errors' && k !== '.').length, tree.size + 1 + 6 + 1 + 1,
    'files plus train, its six classes, models and naïve');
  const walks = await Promise.all([native, js].map((m) => python<unknown>(PY_WALK, [path.join(m.mnt, 'x')])));
  t.deepEqual(walks[0], walks[1]);

  const hashes = await python<Record<string, string>>([
    'import hashlib, json, os, sys',
    'print(json.dumps({p: hashlib.sha256(open(os.path.join(sys.argv[1], p), "rb").read()).hexdigest() for p in sys.argv[2:]}))',
  ].join('\n'), [path.join(native.mnt, 'x'), ...tree.keys()]);
  for (const [p, f] of tree) t.is(hashes[p], f.sha256, p);

  // Random ranges, some past the end, against the source files (the JS mount gets its share too).
  const cfg = path.join(dir, 'pread.json');
  for (const m of [native, js]) {
    await writeJson(cfg, { pairs: [...tree.keys()].map((p) => [path.join(m.mnt, 'x', p), path.join(src, p)]), reads: 1500, seed: 11 });
    const r = await python<{ reads: number; mismatches: unknown[] }>(PY_PREAD, [cfg]);
    t.deepEqual(r, { reads: 1500, mismatches: [] }, m.mnt);
  }

  const n = await nativeCounters(statsOf('native'), native.pid, native.log);
  t.truthy(n, 'the native binding is built and loaded (scripts/build-native.sh)');
  t.log(`native counters: ${JSON.stringify(n)}`);
  t.true(n!.getattrs > 0 && n!.readdirs > 0 && n!.reads > 0, 'lookups, listings and reads were answered natively');
  t.is(n!.handedOver, 0, `no read of a local package needed JavaScript; daemon log:\n${await fs.readFile(native.log, 'utf8')}`);
  t.is(n!.checkFailures, 0);
  t.true(n!.checkedBytes >= [...tree.values()].reduce((a, f) => a + f.size, 0), 'every byte served was checked first');
  // Every file above was opened at least twice (hash, preads); the kernel asked about open once and no more.
  t.is(n!.opensDeclined, 1, 'one ENOSYS and the kernel opens and closes files without asking the daemon');
  const j = await nativeCounters(statsOf('js'), js.pid, js.log);
  t.deepEqual([j?.getattrs, j?.readdirs, j?.reads, j?.opensDeclined], [0, 0, 0, 0], '--no-native-reads: nothing answered natively');
  t.regex(await fs.readFile(native.log, 'utf8'), /native read path on/);
  t.regex(await fs.readFile(js.log, 'utf8'), /reads through JavaScript only/);
});

fuseTest('damage the native check finds is reported by JavaScript: EIO for that member and chunk, the rest reads right', async (t) => {
  t.timeout(180_000);
  const { dir, home, tree } = await makeVersion(t);
  const pkgs = (await run('find', [path.join(home, 'store'), '-name', '*.vhpkgzip'])).stdout.trim().split('\n');
  t.is(pkgs.length, 1);
  const layout = await python<Array<[string, number]>>([
    'import json, sys, zipfile, struct',
    'z = zipfile.ZipFile(sys.argv[1]); f = open(sys.argv[1], "rb"); out = []',
    'for i in z.infolist():',
    '    f.seek(i.header_offset); h = f.read(30); n, e = struct.unpack("<HH", h[26:30])',
    '    out.append([i.filename, i.header_offset + 30 + n + e])',
    'print(json.dumps(out))',
  ].join('\n'), [pkgs[0]]);
  const at = new Map(layout);
  const small = 'train/c1/img-0007.bin';
  const fh = await fs.open(pkgs[0], 'r+');
  for (const offset of [at.get(small)! + 3, at.get(BIG)! + 17 * 1024 * 1024 + 9]) {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] ^= 0x40;
    await fh.write(b, 0, 1, offset);
  }
  await fh.close();
  const stats = path.join(dir, 'stats.json');
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', 'x=dataset://nat/v1', '--no-outputs', '--stats-file', stats, '--wait']);
  const result = await python<Record<string, string>>([
    'import hashlib, json, os, sys',
    'out = {}',
    'for p in sys.argv[2:]:',
    '    try: out[p] = hashlib.sha256(open(os.path.join(sys.argv[1], p), "rb").read()).hexdigest()',
    '    except OSError as e: out[p] = os.strerror(e.errno)',
    'f = open(os.path.join(sys.argv[1], "' + BIG + '"), "rb"); head = f.read(16 * 1024 * 1024)',
    'out["big head"] = hashlib.sha256(head).hexdigest()',
    'print(json.dumps(out))',
  ].join('\n'), [path.join(m.mnt, 'x'), ...tree.keys()]);
  for (const [p, f] of tree) {
    if (p === small || p === BIG) t.is(result[p], 'Input/output error', p);
    else t.is(result[p], f.sha256, p);
  }
  const bigSource = await fs.readFile(path.join(dir, 'src', BIG));
  t.is(result['big head'], (await import('node:crypto')).createHash('sha256').update(bigSource.subarray(0, 16 * 1024 * 1024)).digest('hex'),
    'the big member reads right up to the damaged chunk');
  const n = await nativeCounters(stats, m.pid, m.log);
  t.true(n!.checkFailures > 0, 'the native check found the damage');
  t.true(n!.handedOver > 0, 'and handed those reads to JavaScript');
  const log = await fs.readFile(m.log, 'utf8');
  t.regex(log, new RegExp(`reading "${small}".*CRC-32`), 'the log names the member');
  t.regex(log, new RegExp(`reading "${BIG}".*chunk`), 'and the big member');
});

fuseTest('a store on a FUSE filesystem (which can hang a read) is read through JavaScript, which has a deadline', async (t) => {
  t.timeout(180_000);
  const { dir, home, tree } = await makeVersion(t);
  await slowStore(t, dir, home, 0);
  const stats = path.join(dir, 'stats.json');
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', 'x=dataset://nat/v1', '--no-outputs', '--stats-file', stats, '--wait']);
  const some = [...tree.keys()].slice(0, 20);
  const hashes = await python<Record<string, string>>([
    'import hashlib, json, os, sys',
    'print(json.dumps({p: hashlib.sha256(open(os.path.join(sys.argv[1], p), "rb").read()).hexdigest() for p in sys.argv[2:]}))',
  ].join('\n'), [path.join(m.mnt, 'x'), ...some]);
  for (const p of some) t.is(hashes[p], tree.get(p)!.sha256, p);
  const n = await nativeCounters(stats, m.pid, m.log);
  t.is(n!.reads, 0, 'no read was answered natively');
  t.true(n!.handedOver > 0, 'every read went to JavaScript');
  t.true(n!.getattrs > 0, 'lookups, which read no store, are still answered natively');
});
