/**
 * Promises of `vhfs mount` not covered by mount.test.ts, end to end as a user meets them: model://
 * inputs, a datum alias that moves, local inputs (`*`, `file://`, keep-directories, `filename`), inputs
 * from a valohai.yaml step, a split package, `--wait`, `--force`, and ETIMEDOUT from a store that does not
 * answer. Same rules as mount.test.ts: mounts are made by the CLI daemon and looked at only from other
 * processes. Expectations come from the source files the fixture wrote and from Python's zipfile.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  fuseTest, isMounted, makeTree, mount, pidAlive, python, PY_READ_ALL, readStats, run, tempDir, vhfs, vhfsJson, waitFor,
  writeJson, type Mounted, type TreeFile,
} from './helpers.js';
import { storedPackages } from '../cli/helpers.js';
import { faultsEnv } from '../helpers/store-faults-preload.js';
import { listingCost, zipLayout } from '../helpers/zip-oracle.js';

const KiB = 1024;

interface Shared {
  dir: string;
  home: string;
  src: { model: string; split: string; plain: string; local: string };
  trees: { model: Map<string, TreeFile>; split: Map<string, TreeFile>; plain: Map<string, TreeFile>; local: Map<string, TreeFile> };
  /** The two datums of the moving alias `datum://moving`: first → a.bin, then → b.bin. */
  datums: { a: { id: string; sha256: string; size: number }; b: { id: string; sha256: string; size: number } };
}

let S: Shared;

test.before(async () => {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-fuse-inputs-')));
  const home = path.join(dir, 'home');
  const src = { model: path.join(dir, 'src-model'), split: path.join(dir, 'src-split'), plain: path.join(dir, 'src-plain'), local: path.join(dir, 'local') };
  const model = await makeTree(src.model, [
    { path: 'weights/layer0.bin', size: 200 * KiB + 3 }, { path: 'weights/layer1.bin', size: 70_000 },
    { path: 'config.json', size: 321 }, { path: 'tokenizer/vocab.txt', size: 3000 },
  ]);
  // 256 KiB parts: the 600 KiB file has a part of its own, the small ones share several parts.
  const split = await makeTree(src.split, [
    ...Array.from({ length: 40 }, (_, i) => ({ path: `s${i % 4}/f${String(i).padStart(2, '0')}.bin`, size: (i * 7919) % (40 * KiB) })),
    { path: 'big/huge.bin', size: 600 * KiB + 11 },
  ]);
  const plain = await makeTree(src.plain, [{ path: 'one.bin', size: 50_000 }, { path: 'sub/two.bin', size: 10 }]);
  const local = await makeTree(src.local, [
    { path: 'top.txt', size: 100 }, { path: 'other.txt', size: 0 }, { path: 'a/one.txt', size: 5000 },
    { path: 'a/b/two.txt', size: 70_000 }, { path: 'a/b/skip.bin', size: 10 }, { path: 'c/three.txt', size: 1234 },
  ]);
  const datumFiles = await makeTree(dir, [{ path: 'a.bin', size: 1000 }, { path: 'b.bin', size: 2500 }]);

  await vhfsJson(home, ['dataset', 'create', 'net/v1', src.model, '--model', '--package', '--alias', 'best']);
  await vhfsJson(home, ['dataset', 'create', 'split/v1', src.split, '--package', '--max-package-size', '256K']);
  await vhfsJson(home, ['dataset', 'create', 'plain/v1', src.plain]);
  const [a] = await vhfsJson<Array<{ id: string }>>(home, ['put', path.join(dir, 'a.bin'), '--alias', 'moving']);
  const [b] = await vhfsJson<Array<{ id: string }>>(home, ['put', path.join(dir, 'b.bin')]);
  S = {
    dir, home, src, trees: { model, split, plain, local },
    datums: { a: { id: a.id, ...datumFiles.get('a.bin')! }, b: { id: b.id, ...datumFiles.get('b.bin')! } },
  };
});

test.after.always(async () => {
  if (S) await fs.rm(S.dir, { recursive: true, force: true });
});

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** A Map with its keys in sorted order (ava compares Maps in insertion order). */
function sorted<V>(entries: Iterable<[string, V]>): Map<string, V> {
  return new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Relative path → sha256 of every file under `dir` (from outside, through the mount), sorted by path. */
async function hashesUnder(dir: string): Promise<Map<string, string>> {
  const r = await run('find', ['.', '-type', 'f', '-exec', 'sha256sum', '{}', '+'], { cwd: dir });
  if (r.code !== 0) throw new Error(`find under ${dir}: ${r.stderr}`);
  return sorted(lines(r.stdout).map((l): [string, string] => [l.slice(66 + 2), l.slice(0, 64)]));
}

/** Path → sha256 of a source tree, sorted by path. */
const want = (tree: Map<string, TreeFile>) => sorted([...tree].map(([p, f]): [string, string] => [p, f.sha256]));

type InputsJson = Record<string, { files: Array<{ name: string; path: string; size: number; uri: string; datum_id?: string; checksums: { sha256?: string } }> }>;

async function inputsJson(m: Mounted): Promise<InputsJson> {
  return JSON.parse(await fs.readFile(m.inputsJson, 'utf8')) as InputsJson;
}

// ----------------------------------------------------------------------------------------------- model://

fuseTest('model://NAME/VERSION and model://NAME/ALIAS mount like datasets; --wait returns with inputs.json written', async (t) => {
  t.timeout(60_000);
  const m = await mount(t, S.home, await tempDir(t), ['--input', 'm=model://net/v1', '--input', 'best=model://net/best', '--wait']);
  // --wait: inputs.json is there the moment the command returns (no polling).
  const doc = await inputsJson(m);
  t.deepEqual(Object.keys(doc).sort(), ['best', 'm']);
  for (const input of ['m', 'best']) {
    t.deepEqual(await hashesUnder(path.join(m.mnt, input)), want(S.trees.model), `files of ${input}`);
    const files = doc[input].files;
    t.deepEqual(files.map((f) => f.name).sort(), [...S.trees.model.keys()].sort());
    for (const f of files) {
      const w = S.trees.model.get(f.name)!;
      t.deepEqual([f.path, f.size, f.checksums.sha256, f.uri], [path.join(m.mnt, input, f.name), w.size, w.sha256, `datum://${f.datum_id}`]);
    }
  }
});

// ------------------------------------------------------------------------------------------ datum://alias

fuseTest('datum://ALIAS: a running mount keeps the datum it pinned when the alias moves; a new mount sees the new one', async (t) => {
  t.timeout(90_000);
  const { a, b } = S.datums;
  const home = path.join(await tempDir(t, 'vhfs-alias-home-'), 'home');
  // A home of its own (same store), so that moving the alias cannot disturb other tests.
  const store = path.join(S.home, 'store');
  const cli = (args: string[]) => vhfs(home, ['--store', store, ...args]);
  const mountArgs = ['--store', store, '--input', 'w=datum://moving', '--cache-timeout', '0', '--no-kernel-cache', '--wait'];
  // The alias is where the fixture put it (a), whatever another run of this test did to this store before.
  const reset = await cli(['alias', 'set', 'datum://moving', a.id]);
  t.is(reset.code, 0, reset.stderr);
  const m1 = await mount(t, home, await tempDir(t), mountArgs);
  t.deepEqual(await hashesUnder(path.join(m1.mnt, 'w')), new Map([['a.bin', a.sha256]]), 'the mount serves a');

  const moved = await cli(['alias', 'set', 'datum://moving', b.id]);
  t.is(moved.code, 0, moved.stderr);
  // No kernel caching: every stat and read below reaches the running daemon, which answers from its pin.
  t.deepEqual(await hashesUnder(path.join(m1.mnt, 'w')), new Map([['a.bin', a.sha256]]), 'the running mount still serves a');
  const st = await run('stat', ['-c', '%s', path.join(m1.mnt, 'w', 'a.bin')]);
  t.is(st.stdout.trim(), String(a.size));
  t.deepEqual((await inputsJson(m1)).w.files.map((f) => [f.name, f.datum_id]), [['a.bin', a.id]]);

  const m2 = await mount(t, home, await tempDir(t), mountArgs);
  t.deepEqual(await hashesUnder(path.join(m2.mnt, 'w')), new Map([['b.bin', b.sha256]]), 'a new mount sees b');
  t.deepEqual((await inputsJson(m2)).w.files.map((f) => [f.name, f.datum_id, f.size]), [['b.bin', b.id, b.size]]);
  t.deepEqual(await hashesUnder(path.join(m1.mnt, 'w')), new Map([['a.bin', a.sha256]]), 'and the first still serves a');
});

// ------------------------------------------------------------------------------------------- local paths

fuseTest('local inputs: *, **, file://, keep-directories none/full/suffix and filename', async (t) => {
  t.timeout(60_000);
  const L = S.src.local;
  const spec = path.join(await tempDir(t, 'vhfs-local-spec-'), 'inputs.json');
  await writeJson(spec, {
    inputs: [
      { name: 'star', default: `${L}/*.txt` },
      { name: 'none', default: `${L}/**.txt`, 'keep-directories': 'none' },
      { name: 'full', default: `${L}/a/**.txt`, 'keep-directories': 'full' },
      { name: 'suffix', default: `${L}/**.txt`, 'keep-directories': 'suffix' },
      { name: 'url', default: `file://${L}/a/one.txt` },
      { name: 'renamed', default: `${L}/a/b/two.txt`, filename: 'renamed.txt' },
      { name: 'several', default: [`${L}/top.txt`, `${L}/c/three.txt`], filename: 'ignored.txt' },
    ],
  });
  const m = await mount(t, S.home, await tempDir(t), ['--inputs', spec, '--wait']);
  const local = S.trees.local;
  /** The local files `paths`, each shown under `name(path)`. */
  const shown = (paths: string[], name: (p: string) => string = (p) => p) =>
    sorted(paths.map((p): [string, string] => [name(p), local.get(p)!.sha256]));
  const txt = [...local.keys()].filter((p) => p.endsWith('.txt'));
  const expected: Record<string, Map<string, string>> = {
    star: shown(['other.txt', 'top.txt']),
    none: shown(txt, (p) => path.basename(p)),
    full: shown(['a/one.txt', 'a/b/two.txt'], (p) => `${L.slice(1)}/${p}`),
    suffix: shown(txt),
    url: shown(['a/one.txt'], () => 'one.txt'),
    renamed: shown(['a/b/two.txt'], () => 'renamed.txt'),
    several: shown(['top.txt', 'c/three.txt'], (p) => path.basename(p)),
  };
  t.deepEqual(lines((await run('ls', [m.mnt])).stdout), Object.keys(expected).sort());
  const doc = await inputsJson(m);
  for (const [input, files] of Object.entries(expected)) {
    t.deepEqual(await hashesUnder(path.join(m.mnt, input)), files, `files of input ${input}`);
    t.deepEqual(doc[input].files.map((f) => f.name).sort(), [...files.keys()].sort(), `inputs.json of ${input}`);
    for (const f of doc[input].files) t.regex(f.uri, new RegExp(`^file://${L}/`), `${input}/${f.name} names its local file`);
  }
  t.true(lines(await fs.readFile(m.log, 'utf8')).some((l) => l.includes('warning') && l.includes('filename "ignored.txt" ignored')), 'filename with two files is ignored with a warning');
});

// -------------------------------------------------------------------------------------- valohai.yaml --step

fuseTest('--inputs valohai.yaml --step mounts that step\'s inputs (parameters interpolated); without a valid --step it is refused', async (t) => {
  t.timeout(60_000);
  const yaml = path.join(await tempDir(t, 'vhfs-yaml-'), 'valohai.yaml');
  await fs.writeFile(yaml, [
    '- step:',
    '    name: prep',
    '    image: python:3.11',
    '    command: python prep.py',
    '    inputs:',
    `      - name: raw`,
    `        default: ${S.src.local}/a/one.txt`,
    '- step:',
    '    name: train',
    '    image: python:3.11',
    '    command: python train.py',
    '    parameters:',
    '      - name: model_version',
    '        type: string',
    '        default: v1',
    '    inputs:',
    '      - name: model',
    '        default: model://net/{parameter:model_version}',
    '      - name: data',
    '        default: dataset://plain/v1',
    '      - name: notes',
    '        optional: true',
    '',
  ].join('\n'));
  const m = await mount(t, S.home, await tempDir(t), ['--inputs', yaml, '--step', 'train', '--wait']);
  t.deepEqual(lines((await run('ls', [m.mnt])).stdout), ['data', 'model', 'notes'], 'train\'s inputs');
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'model')), want(S.trees.model));
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'data')), want(S.trees.plain));
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'notes')), new Map(), 'an optional input without a URI is an empty directory');
  const doc = await inputsJson(m);
  t.deepEqual(Object.keys(doc).sort(), ['data', 'model', 'notes']);
  t.deepEqual(doc.notes.files, []);

  for (const [args, mention] of [[[], '2 steps (prep, train): choose one with --step NAME'], [['--step', 'test'], 'no step named "test" (steps: prep, train)']] as const) {
    const root = await tempDir(t);
    const r = await vhfs(S.home, ['mount', '--root', root, '--inputs', yaml, ...args]);
    t.is(r.code, 2, r.stderr);
    t.deepEqual(lines(r.stderr), [`vhfs: ${yaml}: ${mention}`]);
    t.false(await isMounted(path.join(root, 'inputs')));
  }
});

// ---------------------------------------------------------------------------------------------- split

fuseTest('a split package (several parts) reads through the mount byte for byte; each part\'s listing is read once', async (t) => {
  t.timeout(90_000);
  const parts = await storedPackages(path.join(S.home, 'store'), 'split', 'v1');
  t.true(parts.length > 1, `the version has ${parts.length} part(s); this test needs a split`);
  let reads = 0;
  let bytes = 0;
  const members: string[] = [];
  for (const p of parts) {
    const layout = await zipLayout(p.file);
    const cost = listingCost(layout);
    reads += cost.reads;
    bytes += cost.bytes;
    members.push(...layout.members.map((m) => m.path));
  }
  t.deepEqual(members.sort(), [...S.trees.split.keys()].sort(), 'Python sees every file exactly once across the parts');
  // Only this test mounts split/v1: no persisted index of it exists yet, so resolving reads the parts.
  const work = await tempDir(t, 'vhfs-split-');
  const stats = path.join(work, 'stats.json');
  const m = await mount(t, S.home, await tempDir(t), ['--input', 's=dataset://split/v1', '--stats-file', stats, '--wait']);
  const listed = await readStatsOnce(stats, m);
  t.deepEqual([listed.gets, listed.bytesRead], [reads, bytes], 'resolving read each part\'s tail and central directory, nothing else');

  // Every file (those on both sides of each part boundary included), in a shuffled order, random chunk sizes.
  const manifest: Record<string, string> = {};
  for (const [p, f] of S.trees.split) manifest[path.join(m.mnt, 's', p)] = f.sha256;
  const file = path.join(work, 'manifest.json');
  await writeJson(file, manifest);
  const all = await python<{ files: number; bytes: number; bad: string[] }>(PY_READ_ALL, [file, '3']);
  t.deepEqual(all, { files: S.trees.split.size, bytes: [...S.trees.split.values()].reduce((n, f) => n + f.size, 0), bad: [] });
  const doc = await inputsJson(m);
  t.deepEqual(doc.s.files.map((f) => [f.name, f.size, f.checksums.sha256]).sort(), [...S.trees.split].map(([p, f]) => [p, f.size, f.sha256]).sort());
});

/** The daemon's store counters, once the stats file has been written. */
async function readStatsOnce(file: string, m: Mounted): Promise<{ gets: number; bytesRead: number }> {
  await waitFor(() => fs.access(file).then(() => true, () => false), 20_000, file);
  return (await readStats(file, m.pid, m.log)).store;
}

// ---------------------------------------------------------------------------------------------- --force

fuseTest('a second mount on a live one is refused with exit 4 (conflict) and one line naming the mountpoint and --force', async (t) => {
    t.timeout(60_000);
    const root = await tempDir(t);
    const m = await mount(t, S.home, root, ['--input', 'p=dataset://plain/v1']);
    const r = await vhfs(S.home, ['mount', '--root', root, '--input', 'p=dataset://plain/v1']);
    t.true(pidAlive(m.pid), 'the live mount is untouched');
    t.deepEqual(await hashesUnder(path.join(m.mnt, 'p')), want(S.trees.plain));
    t.is(r.code, 4, r.stderr);
    t.is(lines(r.stderr).length, 1, r.stderr);
    // The daemon mounts outputs first (a job must never see inputs ready and nowhere to write): either names its own mountpoint.
    t.regex(r.stderr, new RegExp(`^vhfs: (${m.mnt}|${path.join(root, 'outputs')}) is already mounted .*use --force`));
  });

fuseTest('mount --force replaces a live mount: the new daemon serves, unmount stops it', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const old = await mount(t, S.home, root, ['--input', 'p=dataset://plain/v1']);
  const m = await mount(t, S.home, root, ['--input', 'm=model://net/v1', '--force']);
  t.not(m.pid, old.pid);
  t.is(m.mnt, old.mnt);
  t.deepEqual(lines((await run('ls', [m.mnt])).stdout), ['m'], 'the new mount\'s inputs');
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'm')), want(S.trees.model));
  t.is((await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.split(' ')[4] === m.mnt).length, 1, 'one mount at the mountpoint');
  const un = await vhfs(S.home, ['unmount', '--root', root]);
  t.is(un.code, 0, un.stderr);
  t.false(await isMounted(m.mnt));
  await waitFor(() => !pidAlive(m.pid), 15_000, 'the new daemon to exit');
});

fuseTest('mount --force stops the daemon of the mount it replaces', async (t) => {
  t.timeout(60_000);
  const root = await tempDir(t);
  const old = await mount(t, S.home, root, ['--input', 'p=dataset://plain/v1']);
  const m = await mount(t, S.home, root, ['--input', 'p=dataset://plain/v1', '--force']);
  // The outside-unmount watcher polls every 2 s and needs two sightings; 15 s is plenty.
  await waitFor(() => !pidAlive(old.pid), 15_000, `the replaced daemon ${old.pid} to exit`);
  // Its exit left the new mount alone.
  t.true(pidAlive(m.pid));
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'p')), want(S.trees.plain));
  // It serves the outputs too: whichever of its two mounts it finds replaced first is the one it names.
  t.regex(await fs.readFile(old.log, 'utf8'), new RegExp(`(${m.mnt}|${path.join(root, 'outputs')}) was unmounted from outside`), 'the old daemon says why it left');
});

// ------------------------------------------------------------------------------------------- ETIMEDOUT

fuseTest('a store that does not answer: a read fails with ETIMEDOUT after the fetch deadline, logged; the mount stays up', async (t) => {
  t.timeout(90_000);
  // Blob reads hang for an hour (test/helpers/store-faults-preload.ts); the listing comes from SQLite.
  const m = await mount(t, S.home, await tempDir(t), ['--input', 'p=dataset://plain/v1', '--input', `l=${S.src.local}/a/one.txt`, '--fetch-timeout', '1s'],
    { env: faultsEnv({ keys: '^blobs/', delayMs: 3_600_000 }) });
  const file = path.join(m.mnt, 'p', 'one.bin');
  const st = await run('stat', ['-c', '%s', file]);
  t.is(st.stdout.trim(), String(S.trees.plain.get('one.bin')!.size), 'stat answers from the index');
  const errno = await python<number | null>('import os,sys\ntry:\n  f=open(sys.argv[1],"rb"); f.read(); print("null")\nexcept OSError as e:\n  print(e.errno)', [file]);
  t.is(errno, 110, 'ETIMEDOUT');
  const log = await fs.readFile(m.log, 'utf8');
  const key = `blobs/sha256/${S.trees.plain.get('one.bin')!.sha256}`;
  t.true(lines(log).some((l) => l.includes('error') && l.includes('one.bin') && l.includes(key) && l.includes('no answer') && l.includes('within 1000 ms')), log);
  t.true(pidAlive(m.pid));
  t.deepEqual(await hashesUnder(path.join(m.mnt, 'l')), new Map([['one.txt', S.trees.local.get('a/one.txt')!.sha256]]), 'local files are unaffected');
});
