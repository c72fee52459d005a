/**
 * End-to-end tests of `vhfs mount` (issue 3, "Done when"): real FUSE mounts made by the CLI daemon, looked
 * at only from other processes (ls, find, stat, sha256sum, python3 …) through async execFile. The test
 * process never serves a mount and never makes a synchronous call under one.
 *
 * Each test mounts under its own fresh temporary root and unmounts at teardown (`vhfs unmount`, then
 * `fusermount3 -uz`, then SIGKILL of a daemon still alive).
 */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import {
  cleanupMount, dirsOf, fuseTest, isMounted, makeTree, mount, pidAlive, python, PY_MMAP, PY_PREAD, PY_READ_ALL, PY_WALK,
  readStats, run, sha256, sortedPaths, tempDir, vhfs, vhfsJson, waitFor, writeJson, type FileSpec, type TreeFile,
} from './helpers.js';
import { bigFile, buildBigDataset } from './big-fixture.js';
import { listingCost, zipLayout } from '../helpers/zip-oracle.js';

/** Python tail for the errno tests: runs each lambda of `ops` and prints {name: errno or null} as JSON. */
const ERRNO_OF_OPS = `out = {}
for k, f in ops.items():
    try:
        f(); out[k] = None
    except OSError as e:
        out[k] = e.errno
print(json.dumps(out))
`;


// ------------------------------------------------------------------------------------------ shared data

/** Deterministic pseudo-random numbers (sizes and names must not change between runs). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const KiB = 1024;
const MiB = 1024 * KiB;
const BIG_FILE = 'big/five-mib.bin';
const BIG_SIZE = 5 * MiB + 12_345;

/** ~300 files in nested directories, 0 B – 300 KiB, plus one ~5 MiB file spanning six 1 MiB blocks. */
function packagedSpecs(): FileSpec[] {
  const rnd = lcg(42);
  const dirs = ['', 'a', 'a/b', 'a/b/c', 'a/b/c/d/e', 'dir with space', 'ünïcödé', 'x/y', '.hidden-dir'];
  for (let i = 0; i < 12; i++) dirs.push(`set${i}`, `set${i}/sub${i % 3}`);
  const edge = [0, 0, 1, 2, 511, 4095, 4096, 4097, 65535, 65536, 65537, 131072, 300 * KiB, 300 * KiB - 1];
  const specs: FileSpec[] = [];
  for (let i = 0; i < 299; i++) {
    const dir = dirs[i % dirs.length];
    const size = i < edge.length ? edge[i] : Math.floor(rnd() ** 3 * 300 * KiB);
    const name = i % 37 === 5 ? `file ${i}.dat` : i % 41 === 7 ? `.dot${i}` : `f${String(i).padStart(3, '0')}.bin`;
    specs.push({ path: dir ? `${dir}/${name}` : name, size });
  }
  specs.push({ path: BIG_FILE, size: BIG_SIZE });
  return specs;
}

/** An unpackaged dataset: a few dozen files, one of 2.5 MiB. */
function plainSpecs(): FileSpec[] {
  const rnd = lcg(7);
  const specs: FileSpec[] = [{ path: 'empty', size: 0 }, { path: 'deep/er/still/blob-2.5M', size: 2.5 * MiB }];
  for (let i = 0; i < 38; i++) specs.push({ path: `p${i % 4}/q${i % 3}/file-${i}.txt`, size: Math.floor(rnd() ** 2 * 300 * KiB) });
  return specs;
}

/** Local files for the wildcard input: .txt files at several depths and decoys that must not match. */
const WILD: Array<FileSpec & { match: boolean }> = [
  { path: 'top.txt', size: 100, match: true },
  { path: 'a/one.txt', size: 5000, match: true },
  { path: 'a/b/two.txt', size: 70_000, match: true },
  { path: 'a/b/skip.bin', size: 10, match: false },
  { path: 'c/empty.txt', size: 0, match: true },
  { path: 'c/notes.txt.bak', size: 10, match: false },
  { path: 'c/d e/space name.txt', size: 1234, match: true },
];

interface Shared {
  dir: string;
  home: string;
  src: { pkg: string; plain: string; wild: string; model: string };
  /** input name → relative path → {size, sha256} as the mount must show it. */
  expected: Record<string, Map<string, TreeFile>>;
  modelUri: string;
  inputsFile: string;
}

let S: Shared;
const INPUTS = ['model', 'pkg', 'plain', 'x'];

test.before(async () => {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-fuse-shared-')));
  const home = path.join(dir, 'home');
  const src = { pkg: path.join(dir, 'src-pkg'), plain: path.join(dir, 'src-plain'), wild: path.join(dir, 'wild'), model: path.join(dir, 'model.bin') };
  const pkg = await makeTree(src.pkg, packagedSpecs());
  const plain = await makeTree(src.plain, plainSpecs());
  const wildAll = await makeTree(src.wild, WILD);
  const x = new Map([...wildAll].filter(([p]) => WILD.find((w) => w.path === p)!.match));
  const modelTree = await makeTree(dir, [{ path: 'model.bin', size: 200 * KiB + 3 }]);

  const t0 = Date.now();
  await vhfsJson(home, ['dataset', 'create', 'pkg/v1', src.pkg, '--package', '--max-package-size', '64M']);
  await vhfsJson(home, ['dataset', 'create', 'plain/v1', src.plain]);
  const put = await vhfsJson<Array<{ uri: string }>>(home, ['put', src.model]);
  const created = Date.now() - t0;
  const inputsFile = path.join(dir, 'inputs.json');
  await writeJson(inputsFile, {
    inputs: [
      { name: 'pkg', default: 'dataset://pkg/v1' },
      { name: 'plain', default: 'dataset://plain/v1' },
      { name: 'model', default: put[0].uri },
      { name: 'x', default: `${src.wild}/**.txt`, 'keep-directories': 'suffix' },
    ],
  });
  S = { dir, home, src, expected: { pkg, plain, model: modelTree, x }, modelUri: put[0].uri, inputsFile };
  console.log(`shared fixture: ${pkg.size + plain.size + 1 + x.size} files, datasets created in ${created} ms`);
});

test.after.always(async () => {
  if (S) await fs.rm(S.dir, { recursive: true, force: true });
});

/** Where an input's file comes from on the local disk. */
function sourceOf(input: string, rel: string): string {
  switch (input) {
    case 'pkg': return path.join(S.src.pkg, rel);
    case 'plain': return path.join(S.src.plain, rel);
    case 'x': return path.join(S.src.wild, rel);
    default: return S.src.model;
  }
}

/** Every expected file as `<input>/<path>`. */
function allExpected(): Map<string, TreeFile> {
  const all = new Map<string, TreeFile>();
  for (const input of INPUTS) for (const [p, f] of S.expected[input]) all.set(`${input}/${p}`, f);
  return all;
}

async function mountAll(t: ExecutionContext, extra: string[] = []) {
  const root = await tempDir(t);
  return mount(t, S.home, root, ['--inputs', S.inputsFile, ...extra]);
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

// -------------------------------------------------------------------------------------------- 1. reads

fuseTest('1a: ls -R, find, stat and sha256sum of packaged, unpackaged, datum and wildcard inputs match the sources', async (t) => {
  t.timeout(120_000);
  const m = await mountAll(t);

  const top = await run('ls', [m.mnt]);
  t.is(top.code, 0, top.stderr);
  t.deepEqual(lines(top.stdout), INPUTS);

  // ls -R of each dataset input equals ls -R of its source directory.
  for (const input of ['pkg', 'plain'] as const) {
    const mounted = await run('ls', ['-R', '.'], { cwd: path.join(m.mnt, input) });
    const source = await run('ls', ['-R', '.'], { cwd: S.src[input] });
    t.is(mounted.code, 0, mounted.stderr);
    t.is(mounted.stdout, source.stdout, `ls -R of input ${input}`);
  }
  const lsx = await run('ls', ['-R', '.'], { cwd: path.join(m.mnt, 'x') });
  t.is(lsx.code, 0, lsx.stderr);
  t.true(lsx.stdout.includes('space name.txt') && !lsx.stdout.includes('skip.bin') && !lsx.stdout.includes('.bak'), lsx.stdout);

  // find -type f | sort, find -type d
  const expected = allExpected();
  const files = await run('find', ['.', '-type', 'f'], { cwd: m.mnt });
  t.is(files.code, 0, files.stderr);
  t.deepEqual(lines(files.stdout).map((l) => l.slice(2)).sort(byteOrder), sortedPaths(expected));
  const dirs = await run('find', ['.', '-mindepth', '1', '-type', 'd'], { cwd: m.mnt });
  t.deepEqual(lines(dirs.stdout).map((l) => l.slice(2)).sort(byteOrder), [...new Set([...INPUTS, ...dirsOf(expected.keys())])].sort(byteOrder));

  // stat: sizes, type, modes (files 444, directories 555)
  const st = await run('find', ['.', '-type', 'f', '-exec', 'stat', '-c', '%s|%F|%a|%n', '{}', '+'], { cwd: m.mnt });
  t.is(st.code, 0, st.stderr);
  let checked = 0;
  for (const line of lines(st.stdout)) {
    const [size, type, mode, name] = line.split('|');
    const want = expected.get(name.slice(2));
    if (!t.truthy(want, `unexpected file ${name}`)) continue;
    t.is(Number(size), want!.size, `size of ${name}`);
    t.is(type, want!.size === 0 ? 'regular empty file' : 'regular file', `type of ${name}`);
    t.is(mode, '444', `mode of ${name}`);
    checked++;
  }
  t.is(checked, expected.size);
  const dst = await run('find', ['.', '-type', 'd', '-exec', 'stat', '-c', '%F|%a|%n', '{}', '+'], { cwd: m.mnt });
  t.is(dst.code, 0, dst.stderr);
  for (const line of lines(dst.stdout)) t.is(line.split('|').slice(0, 2).join('|'), 'directory|555', line);

  // sha256sum of every file
  const sums = await run('find', ['.', '-type', 'f', '-exec', 'sha256sum', '{}', '+'], { cwd: m.mnt });
  t.is(sums.code, 0, sums.stderr);
  const got = new Map(lines(sums.stdout).map((l) => [l.slice(66 + 2), l.slice(0, 64)]));
  t.is(got.size, expected.size);
  for (const [p, f] of expected) t.is(got.get(p), f.sha256, `sha256 of ${p}`);

  // the big file through a plain sequential cat as well
  const cat = await run('sh', ['-c', `cat "$1" | sha256sum`, 'sh', path.join(m.mnt, 'pkg', BIG_FILE)]);
  t.is(cat.stdout.slice(0, 64), S.expected.pkg.get(BIG_FILE)!.sha256);
});

fuseTest('1b: python os.walk equals the source trees; random preads and mmap match the sources', async (t) => {
  t.timeout(120_000);
  const m = await mountAll(t);
  type Walk = Array<[string, string[], string[]]>;
  const norm = (w: Walk) => w.map(([d, ds, fs_]) => [d, [...ds].sort(byteOrder), [...fs_].sort(byteOrder)] as const)
    .sort((a, b) => byteOrder(a[0], b[0]));
  for (const input of ['pkg', 'plain'] as const) {
    const [mounted, source] = await Promise.all([
      python<Walk>(PY_WALK, [path.join(m.mnt, input)]), python<Walk>(PY_WALK, [S.src[input]]),
    ]);
    t.deepEqual(norm(mounted), norm(source), `os.walk of input ${input}`);
  }
  // The wildcard input: the same walk as the matching files alone would give.
  const wx = norm(await python<Walk>(PY_WALK, [path.join(m.mnt, 'x')]));
  const paths = [...S.expected.x.keys()];
  const want: Walk = ['.', ...dirsOf(paths)].map((d) => {
    const prefix = d === '.' ? '' : `${d}/`;
    const children = paths.filter((p) => p.startsWith(prefix)).map((p) => p.slice(prefix.length));
    return [d, [...new Set(children.filter((c) => c.includes('/')).map((c) => c.split('/')[0]))], children.filter((c) => !c.includes('/'))];
  });
  t.deepEqual(wx, norm(want), 'os.walk of the wildcard input');

  // Random preads across every file of every input (offsets past EOF and reads spanning blocks included).
  const pairs: Array<[string, string]> = [];
  for (const input of INPUTS) for (const p of S.expected[input].keys()) pairs.push([path.join(m.mnt, input, p), sourceOf(input, p)]);
  const cfg = path.join(await tempDir(t, 'vhfs-pread-'), 'cfg.json');
  await writeJson(cfg, { pairs, reads: 3000, seed: 1234 });
  const pr = await python<{ reads: number; mismatches: unknown[] }>(PY_PREAD, [cfg]);
  t.is(pr.reads, 3000);
  t.deepEqual(pr.mismatches, [], 'pread mismatches: [mounted, offset, length, got, want]');

  // mmap of the ~5 MiB file: random slices (page faults out of order), then the whole.
  const mm = await python<{ len: number; same: boolean; bad: unknown[] }>(PY_MMAP, [path.join(m.mnt, 'pkg', BIG_FILE), sourceOf('pkg', BIG_FILE)]);
  t.is(mm.len, BIG_SIZE);
  t.deepEqual(mm.bad, []);
  t.true(mm.same);
});

fuseTest.serial('1c: four processes reading every file concurrently (cold mount, 8 MiB block cache) all see the right bytes', async (t) => {
  t.timeout(150_000);
  const m = await mountAll(t, ['--memory', '8M']);
  const manifest: Record<string, string> = {};
  for (const [p, f] of allExpected()) manifest[path.join(m.mnt, p)] = f.sha256;
  const file = path.join(await tempDir(t, 'vhfs-manifest-'), 'manifest.json');
  await writeJson(file, manifest);
  const started = Date.now();
  const results = await Promise.all([1, 2, 3, 4].map((seed) =>
    python<{ files: number; bytes: number; bad: string[] }>(PY_READ_ALL, [file, String(seed)], 140_000)));
  t.log(`4 concurrent readers: ${Date.now() - started} ms`);
  const totalBytes = [...allExpected().values()].reduce((n, f) => n + f.size, 0);
  for (const r of results) {
    t.is(r.files, Object.keys(manifest).length);
    t.is(r.bytes, totalBytes);
    t.deepEqual(r.bad, [], 'files whose sha256 differed');
  }
  t.true(pidAlive(m.pid), 'the daemon survived');
});

// ------------------------------------------------------------------------------------------ 2. inputs.json

fuseTest('2: inputs.json lists every file with name, path, size, uri, datum_id and a correct sha256', async (t) => {
  t.timeout(60_000);
  const m = await mountAll(t);
  await waitFor(() => fs.access(m.inputsJson).then(() => true, () => false), 30_000, 'inputs.json');
  t.is(m.inputsJson, path.join(m.root, 'config', 'inputs.json'));
  const doc = JSON.parse(await fs.readFile(m.inputsJson, 'utf8')) as Record<string, {
    files: Array<{ name: string; path: string; size: number; uri: string; datum_id?: string; checksums: { sha256?: string }; metadata: unknown[] }>;
  }>;
  t.deepEqual(Object.keys(doc).sort(), INPUTS);
  const paths: string[] = [];
  const sizes = new Map<string, number>();
  for (const input of INPUTS) {
    const files = doc[input].files;
    const want = S.expected[input];
    t.deepEqual(files.map((f) => f.name).sort(byteOrder), sortedPaths(want), `names of input ${input}`);
    for (const f of files) {
      const w = want.get(f.name);
      if (!w) continue;
      t.is(f.path, path.join(m.mnt, input, f.name));
      t.is(f.size, w.size, `size of ${input}/${f.name}`);
      t.deepEqual(f.metadata, []);
      if (input === 'x') {
        t.is(f.uri, `file://${sourceOf('x', f.name)}`);
        // vhfs does not hash local files while resolving (that would read them): no checksum, no datum.
        t.deepEqual(f.checksums, {});
        t.is(f.datum_id, undefined);
      } else {
        t.regex(f.uri, /^datum:\/\/[0-9a-f-]{36}$/, `uri of ${input}/${f.name}`);
        t.is(f.datum_id, f.uri.slice('datum://'.length));
        t.is(f.checksums.sha256, w.sha256, `sha256 of ${input}/${f.name}`);
      }
      paths.push(f.path);
      sizes.set(f.path, w.size);
    }
  }
  t.is(doc.model.files[0].uri, S.modelUri);
  // Every path exists (checked from outside, through the mount) as a regular file of the right size.
  const st = await run('stat', ['-c', '%s|%F|%n', ...paths]);
  t.is(st.code, 0, st.stderr);
  for (const line of lines(st.stdout)) {
    const [size, type, name] = line.split('|');
    t.is(Number(size), sizes.get(name) ?? -1, name);
    t.true(type.startsWith('regular'), name);
  }
  t.is(lines(st.stdout).length, paths.length);
});

// ---------------------------------------------------------------------------------------------- 3. EROFS

fuseTest('3: writes, deletes, renames and mode changes under inputs fail with EROFS and change nothing', async (t) => {
  t.timeout(60_000);
  const m = await mountAll(t);
  const file = path.join(m.mnt, 'pkg', 'a', 'f001.bin');
  const dir = path.join(m.mnt, 'pkg', 'a');
  t.true(S.expected.pkg.has('a/f001.bin'));
  const outside = await tempDir(t, 'vhfs-outside-');
  const cmds: Array<[string, string[]]> = [
    ['touch', [path.join(dir, 'new-file')]],
    ['touch', [file]],
    ['rm', ['-f', file]],
    ['rm', ['-rf', path.join(m.mnt, 'pkg', 'a', 'b')]],
    ['rmdir', [path.join(m.mnt, 'pkg', 'a', 'b', 'c', 'd', 'e')]],
    ['mkdir', [path.join(dir, 'new-dir')]],
    ['mkdir', [path.join(m.mnt, 'new-input')]],
    ['mv', [file, path.join(dir, 'renamed.bin')]],
    ['mv', [file, path.join(outside, 'moved.bin')]],
    ['truncate', ['-s', '0', file]],
    ['chmod', ['644', file]],
    ['ln', ['-s', 'target', path.join(dir, 'symlink')]],
    ['sh', ['-c', 'echo data >> "$1"', 'sh', file]],
    ['cp', [S.src.model, dir]],
  ];
  for (const [cmd, args] of cmds) {
    const r = await run(cmd, args);
    t.not(r.code, 0, `${cmd} ${args.join(' ')} succeeded`);
    t.true(r.stderr.includes('Read-only file system'), `${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
  }
  // errno from python for the same kinds of operation.
  const py = await python<Record<string, number | null>>(String.raw`
import errno, json, os, sys
p, d = sys.argv[1], sys.argv[2]
ops = {
  "open_w": lambda: open(p, "w"),
  "open_a": lambda: open(p, "a"),
  "open_rplus": lambda: open(p, "r+b"),
  "open_new": lambda: open(os.path.join(d, "new"), "w"),
  "remove": lambda: os.remove(p),
  "rename": lambda: os.rename(p, p + ".x"),
  "mkdir": lambda: os.mkdir(os.path.join(d, "nd")),
  "rmdir": lambda: os.rmdir(os.path.join(d, "b")),
  "chmod": lambda: os.chmod(p, 0o644),
  "truncate": lambda: os.truncate(p, 0),
  "utime": lambda: os.utime(p, (0, 0)),
  "symlink": lambda: os.symlink("t", os.path.join(d, "l")),
  "link": lambda: os.link(p, os.path.join(d, "hard")),
}
${ERRNO_OF_OPS}`, [file, dir]);
  for (const [op, errno] of Object.entries(py)) t.is(errno, 30, `python ${op}: errno ${errno} (want 30 EROFS)`);
  // Nothing changed: the file still reads right, nothing new appeared, nothing left.
  const sum = await run('sha256sum', [file]);
  t.is(sum.stdout.slice(0, 64), S.expected.pkg.get('a/f001.bin')!.sha256);
  const after = await run('find', ['.', '-type', 'f'], { cwd: path.join(m.mnt, 'pkg') });
  t.is(lines(after.stdout).length, S.expected.pkg.size);
  // (A cross-device `mv` copies first and then fails to remove the source: GNU mv leaves the copy behind.)
  t.deepEqual((await fs.readdir(outside)).filter((n) => n !== 'moved.bin'), []);
});

// --------------------------------------------------------------------------------------------- 4. ENOENT

fuseTest('4: missing files and missing inputs give ENOENT (ENOTDIR below a file)', async (t) => {
  t.timeout(60_000);
  const m = await mountAll(t);
  const expectFail = async (cmd: string, args: string[], message: string) => {
    const r = await run(cmd, args);
    t.not(r.code, 0, `${cmd} ${args.join(' ')} succeeded`);
    t.true(r.stderr.includes(message), `${cmd} ${args.join(' ')}: ${r.stderr.trim()} (want "${message}")`);
  };
  for (let round = 0; round < 2; round++) { // the second round is answered from the kernel's negative cache
    await expectFail('cat', [path.join(m.mnt, 'pkg', 'no-such-file')], 'No such file or directory');
    await expectFail('stat', [path.join(m.mnt, 'pkg', 'a', 'nope', 'deeper')], 'No such file or directory');
    await expectFail('ls', [path.join(m.mnt, 'no-such-input')], 'No such file or directory');
    await expectFail('stat', [path.join(m.mnt, 'no-such-input')], 'No such file or directory');
    await expectFail('cat', [path.join(m.mnt, 'plain', 'empty', 'below')], 'Not a directory');
    await expectFail('ls', [path.join(m.mnt, 'model', 'x')], 'No such file or directory');
  }
  const py = await python<Record<string, number | null>>(String.raw`
import json, os, sys
mnt = sys.argv[1]
ops = {
  "open": lambda: open(os.path.join(mnt, "pkg", "missing.bin"), "rb"),
  "listdir_input": lambda: os.listdir(os.path.join(mnt, "missing-input")),
  "stat": lambda: os.stat(os.path.join(mnt, "x", "a", "missing.txt")),
  "listdir_sub": lambda: os.listdir(os.path.join(mnt, "pkg", "a", "zz")),
}
${ERRNO_OF_OPS}`, [m.mnt]);
  for (const [op, errno] of Object.entries(py)) t.is(errno, 2, `python ${op}: errno ${errno} (want 2 ENOENT)`);
  // Existing files are unaffected.
  const ok = await run('cat', [path.join(m.mnt, 'x', 'top.txt')]);
  t.is(ok.code, 0, ok.stderr);
});

// ------------------------------------------------------------------------------------- 5. 100,000 files

fuseTest.serial('5: a 100,000-file package lists without reading file data, and a second mount reads nothing from the store', async (t) => {
  t.timeout(180_000);
  const dir = await tempDir(t, 'vhfs-big-');
  const home = path.join(dir, 'home');
  const DIRS = 1000;
  const PER_DIR = 100;
  const COUNT = DIRS * PER_DIR;
  let t0 = Date.now();
  const big = await buildBigDataset(home, 'big', 'v1', DIRS, PER_DIR);
  t.log(`built ${big.files} files in one ${(big.packageBytes / MiB).toFixed(0)} MiB package in ${Date.now() - t0} ms (library fast path, see big-fixture.ts)`);
  // Everything expected comes from the generator and from Python's zipfile, never from vhfs.
  const want = Array.from({ length: COUNT }, (_, n) => bigFile(n, PER_DIR));
  const layout = await zipLayout(big.packageFile);
  t.is(layout.members.length, COUNT);
  const cost = listingCost(layout);
  const pad = (n: number) => String(n).padStart(4, '0');

  const listAndCount = async (mnt: string) => {
    const ls = await run('ls', [path.join(mnt, 'big')]);
    t.is(ls.code, 0, ls.stderr);
    t.deepEqual(lines(ls.stdout), Array.from({ length: DIRS }, (_, d) => `d${pad(d)}`), 'ls of the input directory');
    const ls1 = await run('ls', [path.join(mnt, 'big', 'd0500')]);
    t.deepEqual(lines(ls1.stdout), Array.from({ length: PER_DIR }, (_, f) => `f${pad(f)}.bin`));
    const find = await run('find', ['.', '-type', 'f'], { cwd: path.join(mnt, 'big'), timeoutMs: 120_000 });
    t.is(find.code, 0, find.stderr);
    const found = lines(find.stdout).map((l) => l.slice(2)).sort();
    t.is(found.length, COUNT, 'find -type f');
    t.deepEqual(found, want.map((f) => f.path), 'find lists exactly the generated paths');
  };

  // First mount: the index comes from the package's tail and central directory, nothing else.
  const root1 = path.join(dir, 'r1');
  const stats1 = path.join(dir, 'stats1.json');
  t0 = Date.now();
  const m1 = await mount(t, home, root1, ['--input', `big=${big.uri}`, '--stats-file', stats1]);
  const mountMs = Date.now() - t0;
  t0 = Date.now();
  await listAndCount(m1.mnt);
  const listMs = Date.now() - t0;
  const s1 = await readStats(stats1, m1.pid, m1.log);
  t.log(`first mount ${mountMs} ms, ls + find ${listMs} ms; store ${JSON.stringify(s1.store)}; tail + central directory ${cost.bytes} bytes in ${cost.reads} reads`);
  t.is(s1.store.gets, cost.reads, 'ranged reads of the first mount: the tail and the central directory');
  t.is(s1.store.bytesRead, cost.bytes, 'bytes read by the first mount: the tail and the central directory');
  t.is(s1.cache.storeFetches, 0, 'no block was fetched for file data');
  // inputs.json (100,000 entries) is written in the background; wait for it before unmounting.
  await waitFor(() => fs.access(m1.inputsJson).then(() => true, () => false), 60_000, 'inputs.json');
  const s1b = await readStats(stats1, m1.pid, m1.log);
  t.deepEqual([s1b.store.gets, s1b.store.bytesRead], [cost.reads, cost.bytes], 'writing inputs.json read nothing from the store');

  // inputs.json lists every file once, with its path under the mount, its size and its checksum.
  const doc = JSON.parse(await fs.readFile(m1.inputsJson, 'utf8')) as Record<string, {
    files: Array<{ name: string; path: string; size: number; uri: string; datum_id: string; checksums: { sha256: string } }>;
  }>;
  t.deepEqual(Object.keys(doc), ['big']);
  const listed = doc.big.files;
  t.is(listed.length, COUNT);
  let wrong = 0;
  const names = new Set<string>();
  listed.forEach((f) => names.add(f.name));
  const byName = new Map(listed.map((f) => [f.name, f]));
  for (const w of want) {
    const f = byName.get(w.path);
    if (!f || f.path !== path.join(m1.mnt, 'big', w.path) || f.size !== w.body.length || f.checksums.sha256 !== sha256(w.body) || f.uri !== `datum://${f.datum_id}`) {
      if (wrong++ < 5) t.fail(`inputs.json entry for ${w.path}: ${JSON.stringify(f)}`);
    }
  }
  t.is(names.size, COUNT, 'every file listed once');
  t.is(wrong, 0, 'inputs.json entries with a wrong path, size, checksum or uri');

  const un = await vhfs(home, ['unmount', '--root', root1]);
  t.is(un.code, 0, un.stderr);
  t.false(await isMounted(m1.mnt));

  // Second mount of the same version: the persisted index is loaded, the store is not read at all.
  const stats2 = path.join(dir, 'stats2.json');
  t0 = Date.now();
  const m2 = await mount(t, home, path.join(dir, 'r2'), ['--input', `big=${big.uri}`, '--stats-file', stats2]);
  await listAndCount(m2.mnt);
  const s2 = await readStats(stats2, m2.pid, m2.log);
  t.log(`second mount + ls + find ${Date.now() - t0} ms; store ${JSON.stringify(s2.store)}`);
  t.is(s2.store.bytesRead, 0, 'the second mount read bytes from the store');
  t.is(s2.store.gets, 0);
  const log = await fs.readFile(m2.log, 'utf8');
  t.regex(log, /resolved from the cached index/);
  // Warnings in the daemon log (e.g. Node's MaxListenersExceededWarning) point at leaks.
  t.notRegex(await fs.readFile(m1.log, 'utf8'), /MaxListenersExceededWarning/, 'daemon log has a listener-leak warning');

  // The bytes: a deterministic sample (every 97th file, the first and the last) read through the mount
  // and compared with the generator.
  const sample = want.filter((_, n) => n % 97 === 0 || n === COUNT - 1);
  const manifest: Record<string, string> = {};
  for (const f of sample) manifest[path.join(m2.mnt, 'big', f.path)] = sha256(f.body);
  const file = path.join(dir, 'sample.json');
  await writeJson(file, manifest);
  const read = await python<{ files: number; bytes: number; bad: string[] }>(PY_READ_ALL, [file, '5']);
  t.deepEqual(read, { files: sample.length, bytes: sample.reduce((n, f) => n + f.body.length, 0), bad: [] });
});

// ------------------------------------------------------------------------------------------ 6. stale mounts

fuseTest('6a: SIGKILLed daemon leaves a stale mount (ENOTCONN); a new mount replaces it; unmount clears one', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const file = 'deep/er/still/blob-2.5M';
  const want = S.expected.plain.get(file)!.sha256;
  const args = ['--input', 'plain=dataset://plain/v1'];
  const m1 = await mount(t, S.home, root, args);
  const ok = await run('sha256sum', [path.join(m1.mnt, 'plain', file)]);
  t.is(ok.stdout.slice(0, 64), want);

  process.kill(m1.pid, 'SIGKILL');
  await waitFor(() => !pidAlive(m1.pid), 10_000, 'the daemon to die');
  const st = await run('stat', [m1.mnt]);
  t.not(st.code, 0);
  // The kernel says ENOTCONN once the daemon is gone, or ECONNABORTED for a request that was in flight
  // (or queued) when it died: both mean a stale mount.
  t.regex(st.stderr, /Transport endpoint is not connected|Software caused connection abort/, st.stderr);
  const errno = await python<number | null>('import os,sys,json\ntry:\n  os.stat(sys.argv[1]); print("null")\nexcept OSError as e:\n  print(e.errno)', [m1.mnt]);
  t.true(errno === 107 || errno === 103, `ENOTCONN or ECONNABORTED, got ${errno}`);
  t.true(await isMounted(m1.mnt), 'the stale mount is still listed');

  // A new mount on the same root clears the stale one and serves files.
  const m2 = await mount(t, S.home, root, args);
  t.not(m2.pid, m1.pid);
  const again = await run('sha256sum', [path.join(m2.mnt, 'plain', file)]);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout.slice(0, 64), want);

  // `vhfs unmount` clears a stale mount.
  process.kill(m2.pid, 'SIGKILL');
  await waitFor(() => !pidAlive(m2.pid), 10_000, 'the second daemon to die');
  t.not((await run('stat', [m2.mnt])).code, 0);
  const un = await vhfs(S.home, ['unmount', '--root', root], { timeoutMs: 30_000 });
  t.is(un.code, 0, un.stderr);
  t.false(await isMounted(m2.mnt), 'still mounted after vhfs unmount');
  const plain = await run('stat', ['-c', '%F', m2.mnt]);
  t.is(plain.code, 0, plain.stderr);
  t.is(plain.stdout.trim(), 'directory');
});

fuseTest('6b: SIGTERM to the daemon unmounts cleanly', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const m = await mount(t, S.home, root, ['--input', 'plain=dataset://plain/v1']);
  const ok = await run('cat', [path.join(m.mnt, 'plain', 'empty')]);
  t.is(ok.code, 0, ok.stderr);
  process.kill(m.pid, 'SIGTERM');
  await waitFor(async () => !pidAlive(m.pid) && !(await isMounted(m.mnt)), 15_000, 'the daemon to exit and unmount');
  const log = await fs.readFile(m.log, 'utf8');
  t.regex(log, /SIGTERM: unmounting/);
  t.true(log.includes(`unmounted ${m.mnt}`), log);
  t.false(log.includes('error'), log);
  const st = await run('stat', ['-c', '%F', m.mnt]);
  t.is(st.stdout.trim(), 'directory');
});

fuseTest('6d: a mount detached from outside (fusermount -uz) makes the daemon exit', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const m = await mount(t, S.home, root, ['--input', 'plain=dataset://plain/v1']);
  t.is((await run('cat', [path.join(m.mnt, 'plain', 'empty')])).code, 0);
  t.is((await run('fusermount3', ['-uz', m.mnt])).code, 0);
  await waitFor(() => !pidAlive(m.pid), 15_000, 'the daemon to notice and exit');
  const log = await fs.readFile(m.log, 'utf8');
  t.regex(log, /was unmounted from outside/);
  t.regex(log, /exiting/);
});

fuseTest('6c: mount --foreground exits 0 on SIGTERM with the mount gone', async (t) => {
  t.timeout(120_000);
  const root = await tempDir(t);
  const child = spawn(process.execPath, [
    path.join(path.dirname(new URL(import.meta.url).pathname), '../../../bin/vhfs.js'),
    '--home', S.home, '--json', 'mount', '--root', root, '--input', 'plain=dataset://plain/v1', '--foreground',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const mnt = path.join(root, 'inputs');
  t.teardown(() => cleanupMount({ home: S.home, root, mnt, pid: child.pid ?? -1 }));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })));
  // The same readiness deadline as every daemonized mount in these tests (helpers.ts mount: 60 s): a loaded
  // 2-core CI machine can take 20 s to start a Node process and mount.
  await waitFor(() => /"pid"/.test(stdout) && stdout.trim().endsWith('}'), 60_000, `ready output (stderr: ${stderr})`);
  const ready = JSON.parse(stdout) as { mountpoint: string; pid: number };
  t.is(ready.mountpoint, mnt);
  t.is(ready.pid, child.pid ?? -1);
  const cat = await run('sha256sum', [path.join(mnt, 'plain', 'p0', 'q0', 'file-0.txt')]);
  t.is(cat.stdout.slice(0, 64), S.expected.plain.get('p0/q0/file-0.txt')!.sha256);
  child.kill('SIGTERM');
  const res = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
  t.deepEqual(res, { code: 0, signal: null }, `foreground daemon did not exit 0 on SIGTERM; stderr: ${stderr}`);
  t.false(await isMounted(mnt));
});

// --------------------------------------------------------------------------------------- 7. store failure

fuseTest('7: a missing blob gives EIO for that file only, is logged, and the mount stays up', async (t) => {
  t.timeout(60_000);
  const dir = await tempDir(t, 'vhfs-eio-');
  const home = path.join(dir, 'home');
  const src = path.join(dir, 'src');
  const tree = await makeTree(src, [
    { path: 'victim.bin', size: 70_000 }, { path: 'big-victim.bin', size: 3 * MiB + 5 },
    { path: 'ok/one.bin', size: 1000 }, { path: 'ok/two.bin', size: 2 * MiB }, { path: 'ok/three.bin', size: 0 },
  ]);
  await vhfsJson(home, ['dataset', 'create', 'fragile/v1', src]);
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', 'in=dataset://fragile/v1']);
  // Listing reads no data: the blobs can go after it.
  const ls = await run('ls', ['-R', path.join(m.mnt, 'in')]);
  t.is(ls.code, 0, ls.stderr);
  for (const victim of ['victim.bin', 'big-victim.bin']) {
    await fs.rm(path.join(home, 'store', 'blobs', 'sha256', tree.get(victim)!.sha256));
  }
  for (let round = 0; round < 2; round++) {
    for (const victim of ['victim.bin', 'big-victim.bin']) {
      const cat = await run('cat', [path.join(m.mnt, 'in', victim)]);
      t.not(cat.code, 0, `cat ${victim} succeeded`);
      t.true(cat.stderr.includes('Input/output error'), `cat ${victim}: ${cat.stderr.trim()}`);
    }
  }
  const errno = await python<number | null>(
    'import os,sys\ntry:\n  f=open(sys.argv[1],"rb"); f.read(); print("null")\nexcept OSError as e:\n  print(e.errno)',
    [path.join(m.mnt, 'in', 'victim.bin')]);
  t.is(errno, 5, 'EIO');
  // stat still answers from the index.
  const st = await run('stat', ['-c', '%s', path.join(m.mnt, 'in', 'victim.bin')]);
  t.is(st.stdout.trim(), '70000');
  // The other files read fine, the daemon is alive, the log names the missing object.
  for (const p of ['ok/one.bin', 'ok/two.bin', 'ok/three.bin']) {
    const sum = await run('sha256sum', [path.join(m.mnt, 'in', p)]);
    t.is(sum.code, 0, sum.stderr);
    t.is(sum.stdout.slice(0, 64), tree.get(p)!.sha256, p);
  }
  t.true(pidAlive(m.pid), 'the daemon died');
  t.true(await isMounted(m.mnt));
  const log = await fs.readFile(m.log, 'utf8');
  for (const victim of ['victim.bin', 'big-victim.bin']) {
    const key = `blobs/sha256/${tree.get(victim)!.sha256}`;
    t.true(log.split('\n').some((l) => l.includes(key) && l.includes('error')), `no error line naming ${key} in:\n${log}`);
  }
});

// ------------------------------------------------------------------------------------------ 8. bad input

fuseTest('8: an input that cannot be resolved gives EIO and a log line; the other inputs work', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const m = await mount(t, S.home, root, ['--input', 'bad=dataset://nope/v1', '--input', 'plain=dataset://plain/v1']);
  const top = await run('ls', [m.mnt]);
  t.deepEqual(lines(top.stdout), ['bad', 'plain']);
  const ls = await run('ls', [path.join(m.mnt, 'bad')]);
  t.not(ls.code, 0);
  t.true(ls.stderr.includes('Input/output error'), ls.stderr);
  const cat = await run('cat', [path.join(m.mnt, 'bad', 'anything')]);
  t.true(cat.stderr.includes('Input/output error'), cat.stderr);
  const errno = await python<number | null>('import os,sys\ntry:\n  os.listdir(sys.argv[1]); print("null")\nexcept OSError as e:\n  print(e.errno)', [path.join(m.mnt, 'bad')]);
  t.is(errno, 5);
  const sums = await run('find', ['.', '-type', 'f', '-exec', 'sha256sum', '{}', '+'], { cwd: path.join(m.mnt, 'plain') });
  t.is(sums.code, 0, sums.stderr);
  const got = new Map(lines(sums.stdout).map((l) => [l.slice(66 + 2), l.slice(0, 64)]));
  t.is(got.size, S.expected.plain.size);
  for (const [p, f] of S.expected.plain) t.is(got.get(p), f.sha256, p);
  await waitFor(() => fs.access(m.inputsJson).then(() => true, () => false), 30_000, 'inputs.json');
  const doc = JSON.parse(await fs.readFile(m.inputsJson, 'utf8')) as Record<string, { files: unknown[] }>;
  t.deepEqual(doc.bad.files, []);
  t.is(doc.plain.files.length, S.expected.plain.size);
  const log = await fs.readFile(m.log, 'utf8');
  t.true(log.split('\n').some((l) => l.includes('dataset://nope/v1') && l.includes('error')), log);
  t.true(pidAlive(m.pid));
});

// ------------------------------------------------------------------------------ 9. inputs.json not writable

fuseTest('9: an unwritable config dir is logged; the daemon keeps serving (no crash, no stale mount)', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  // mkdir -p /proc succeeds, creating /proc/inputs.json.<pid>.tmp fails: inputs.json cannot be written.
  const m = await mount(t, S.home, root, ['--config-dir', '/proc', '--input', 'plain=dataset://plain/v1']);
  // inputs.json is attempted in the background right after mounting: wait for its failure to be logged.
  const failedLine = (log: string) => log.split('\n').some((l) => l.includes('error') && l.includes('inputs.json'));
  await waitFor(async () => failedLine(await fs.readFile(m.log, 'utf8')), 30_000, 'the inputs.json failure in the daemon log');
  const sum = await run('sha256sum', [path.join(m.mnt, 'plain', 'empty')]);
  t.is(sum.code, 0, `mount no longer serves: ${sum.stderr.trim()}`);
  t.is(sum.stdout.slice(0, 64), S.expected.plain.get('empty')!.sha256);
  t.true(pidAlive(m.pid), 'the daemon died');
  const log = await fs.readFile(m.log, 'utf8');
  t.notRegex(log, /Unhandled 'error' event/, log);
  t.false(await fs.access(path.join('/proc', 'inputs.json')).then(() => true, () => false));
});
