/**
 * `vhfs serve MOUNTPOINT` as a user meets it (issue 15 item 6): the catalog by URI path, looked at with ls,
 * find, cat, readlink, stat and python from other processes (the test process never touches the mount
 * synchronously; see helpers.ts). A packaged and an unpackaged dataset version, a model, aliases and datums;
 * every file byte-identical; aliases are symlinks; listings refresh after the listing TTL; errors; unmount.
 */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BIN, isMounted, makeTree, pidAlive, python, PY_READ_ALL, run, tempDir, vhfs, vhfsJson, waitFor, writeJson,
  type FileSpec, type TreeFile,
} from './helpers.js';

const KiB = 1024;

interface Shared {
  dir: string;
  home: string;
  /** `<kind dir>/<name>/<version>` → relative path → {size, sha256}. */
  versions: Map<string, Map<string, TreeFile>>;
  datums: Array<{ id: string; sha256: string; size: number }>;
}

let S: Shared;

function imagesV1(): FileSpec[] {
  const specs: FileSpec[] = [
    { path: 'empty', size: 0 }, { path: 'one', size: 1 }, { path: 'big/1.3M.bin', size: 1300 * KiB + 7 },
    { path: 'dir with space/file name.txt', size: 4097 }, { path: 'ünïcödé/ß.bin', size: 65537 },
  ];
  for (let i = 0; i < 40; i++) specs.push({ path: `cats/c${i % 3}/cat_${String(i).padStart(3, '0')}.jpg`, size: 100 + i * 997 });
  return specs;
}

function imagesV2(): FileSpec[] {
  return [{ path: 'only-in-v2.txt', size: 300 }, { path: 'dogs/d1.jpg', size: 70_000 }, { path: 'dogs/d2.jpg', size: 0 }];
}

test.before(async () => {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-serve-shared-')));
  const home = path.join(dir, 'home');
  const versions = new Map<string, Map<string, TreeFile>>();
  /** `vhfs dataset create [--model] NAME/VERSION` of a fresh tree; recorded under `<datasets|models>/NAME/VERSION`. */
  const create = async (kind: 'datasets' | 'models', nameVersion: string, specs: FileSpec[], flags: string[]) => {
    const src = path.join(dir, 'src', kind, nameVersion);
    versions.set(`${kind}/${nameVersion}`, await makeTree(src, specs));
    await vhfsJson(home, ['dataset', 'create', ...(kind === 'models' ? ['--model'] : []), nameVersion, src, ...flags]);
  };
  await create('datasets', 'images/v1', imagesV1(), ['--package', '--alias', 'latest']);
  await create('datasets', 'images/v2', imagesV2(), []);
  await create('models', 'net/v1', [{ path: 'weights.bin', size: 300 * KiB }, { path: 'config/params.json', size: 120 }], ['--package', '--alias', 'best']);
  const datumSrc = await makeTree(path.join(dir, 'src', 'datums'), [{ path: 'a.bin', size: 5000 }, { path: 'b.bin', size: 0 }]);
  const datums: Shared['datums'] = [];
  for (const name of ['a.bin', 'b.bin']) {
    const put = await vhfsJson<Array<{ id: string }>>(home, ['put', path.join(dir, 'src', 'datums', name), ...(name === 'a.bin' ? ['--alias', 'config'] : [])]);
    datums.push({ id: put[0].id, ...datumSrc.get(name)! });
  }
  S = { dir, home, versions, datums };
});

test.after.always(async () => {
  if (S) await fs.rm(S.dir, { recursive: true, force: true });
});

interface Served {
  mnt: string;
  pid: number;
  log: string;
  home: string;
}

/** `vhfs serve <tmp>/mnt …args` (daemonized); at teardown `vhfs serve --stop`, then fusermount, then SIGKILL. */
async function serve(t: ExecutionContext, home: string, args: string[] = []): Promise<Served> {
  const mnt = path.join(await tempDir(t, 'vhfs-serve-'), 'mnt');
  const r = await vhfs(home, ['--json', 'serve', mnt, ...args], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`vhfs serve exited ${r.code}: ${r.stderr.trim()}`);
  const out = JSON.parse(r.stdout) as { mountpoint: string; pid: number; log: string };
  const s: Served = { mnt: out.mountpoint, pid: out.pid, log: out.log, home };
  t.teardown(async () => {
    if (pidAlive(s.pid) || (await isMounted(s.mnt))) await vhfs(home, ['serve', '--stop', s.mnt], { timeoutMs: 30_000 });
    if (await isMounted(s.mnt)) await run('fusermount3', ['-uz', s.mnt]);
    if (pidAlive(s.pid)) process.kill(s.pid, 'SIGKILL');
  });
  return s;
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Every path `find MP -mindepth 1` must print for the shared catalog (symlinks not followed). */
function expectedFind(mnt: string): string[] {
  const out = new Set<string>(['datasets', 'datums', 'models', 'datasets/images', 'datasets/images/@latest', 'models/net', 'models/net/@best', 'datums/@config']);
  for (const [version, tree] of S.versions) {
    out.add(version);
    for (const p of tree.keys()) {
      const parts = p.split('/');
      for (let i = 1; i <= parts.length; i++) out.add(`${version}/${parts.slice(0, i).join('/')}`);
    }
  }
  return [...out].map((p) => path.join(mnt, p)).sort(byteOrder);
}

/** {name: errno or null} for each Python expression, run against the mount. */
async function errnos(exprs: Record<string, string>): Promise<Record<string, number | null>> {
  const script = `import json, os, sys\nout = {}\n${Object.entries(exprs).map(([k, e]) =>
    `try:\n    ${e}\n    out[${JSON.stringify(k)}] = None\nexcept OSError as err:\n    out[${JSON.stringify(k)}] = err.errno`).join('\n')}\nprint(json.dumps(out))\n`;
  return python<Record<string, number | null>>(script, []);
}

const ENOENT = 2;
const EROFS = 30;
const EISDIR = 21;

test('ls and find show every dataset, model, version, alias and datum alias; every file reads byte-identical', async (t) => {
  const s = await serve(t, S.home);
  t.deepEqual(lines((await run('ls', ['-1', s.mnt])).stdout), ['datasets', 'datums', 'models']);
  t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'datasets')])).stdout), ['images']);
  t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'models')])).stdout), ['net']);
  t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'datasets', 'images')])).stdout), ['@latest', 'v1', 'v2']);
  // Datum ids are looked up, never listed: the listing holds the datum aliases only.
  t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'datums')])).stdout), ['@config']);

  const found = await run('find', [s.mnt, '-mindepth', '1']);
  t.is(found.code, 0, found.stderr);
  t.deepEqual(lines(found.stdout).sort(byteOrder), expectedFind(s.mnt));
  // readdir says which entries are symlinks: find needs no lookup to tell them apart.
  const links = await run('find', [s.mnt, '-type', 'l']);
  t.deepEqual(lines(links.stdout).sort(byteOrder), ['datasets/images/@latest', 'datums/@config', 'models/net/@best'].map((p) => path.join(s.mnt, p)).sort(byteOrder));

  const manifest: Record<string, string> = {};
  for (const [version, tree] of S.versions) for (const [p, f] of tree) manifest[path.join(s.mnt, version, p)] = f.sha256;
  for (const d of S.datums) manifest[path.join(s.mnt, 'datums', d.id)] = d.sha256;
  manifest[path.join(s.mnt, 'datums', '@config')] = S.datums[0].sha256;
  for (const [p, f] of S.versions.get('datasets/images/v1')!) manifest[path.join(s.mnt, 'datasets/images/@latest', p)] = f.sha256;
  const manifestFile = path.join(S.dir, `manifest-${process.hrtime.bigint()}.json`);
  await writeJson(manifestFile, manifest);
  const read = await python<{ files: number; bad: string[] }>(PY_READ_ALL, [manifestFile, '11']);
  t.deepEqual(read.bad, []);
  t.is(read.files, Object.keys(manifest).length);

  // Sizes and types as stat(1) shows them.
  const big = S.versions.get('datasets/images/v1')!.get('big/1.3M.bin')!;
  t.is((await run('stat', ['-c', '%s %F %a', path.join(s.mnt, 'datasets/images/v1/big/1.3M.bin')])).stdout.trim(), `${big.size} regular file 444`);
  t.is((await run('stat', ['-c', '%s %F', path.join(s.mnt, 'datums', S.datums[1].id)])).stdout.trim(), '0 regular empty file');
  t.is((await run('stat', ['-c', '%F %a', path.join(s.mnt, 'datasets/images/v2')])).stdout.trim(), 'directory 555');
});

test('aliases are symlinks to a version (or a datum id) that cd, cat and readlink follow', async (t) => {
  const s = await serve(t, S.home);
  const imgs = path.join(s.mnt, 'datasets', 'images');
  t.is((await run('readlink', [path.join(imgs, '@latest')])).stdout, 'v1\n');
  t.is((await run('readlink', [path.join(s.mnt, 'models/net/@best')])).stdout, 'v1\n');
  t.is((await run('readlink', [path.join(s.mnt, 'datums/@config')])).stdout, `${S.datums[0].id}\n`);
  t.is((await run('stat', ['-c', '%F', path.join(imgs, '@latest')])).stdout.trim(), 'symbolic link');
  t.regex((await run('ls', ['-l', imgs])).stdout, /^l[rwx-]{9} .* @latest -> v1$/m);
  t.is((await run('readlink', ['-f', path.join(imgs, '@latest', 'cats')])).stdout, `${path.join(imgs, 'v1', 'cats')}\n`);
  const viaAlias = await run('sh', ['-c', 'cd "$1" && sha256sum one', 'sh', path.join(imgs, '@latest')]);
  t.is(viaAlias.stdout.split(' ')[0], S.versions.get('datasets/images/v1')!.get('one')!.sha256);
});

test('a version is resolved when its contents are first touched, not when it is listed', async (t) => {
  const s = await serve(t, S.home);
  const resolvedLine = /input "dataset:\/\/images\/v1": \d+ files/;
  const listed = await run('ls', ['-l', path.join(s.mnt, 'datasets', 'images')]);
  t.is(listed.code, 0, listed.stderr);
  t.notRegex(await fs.readFile(s.log, 'utf8'), resolvedLine, 'listing the versions resolved one');
  t.is((await run('ls', [path.join(s.mnt, 'datasets', 'images', 'v1')])).code, 0);
  t.regex(await fs.readFile(s.log, 'utf8'), resolvedLine);
});

test('unknown names give ENOENT, a directory read gives EISDIR, every change EROFS', async (t) => {
  const s = await serve(t, S.home);
  const p = (rel: string) => JSON.stringify(path.join(s.mnt, rel));
  const id = S.datums[0].id;
  const got = await errnos({
    top: `os.stat(${p('nope')})`,
    dataset: `os.stat(${p('datasets/nope')})`,
    version: `os.stat(${p('datasets/images/v9')})`,
    alias: `os.stat(${p('datasets/images/@nope')})`,
    aliasWithoutAt: `os.stat(${p('datasets/images/latest')})`,
    file: `os.stat(${p('datasets/images/v1/cats/nope.jpg')})`,
    datum: `os.stat(${p('datums/01234567-89ab-7def-8123-456789abcdef')})`,
    datumUpperCase: `os.stat(${p(`datums/${id.toUpperCase()}`)})`,
    notAnId: `os.stat(${p('datums/not-an-id')})`,
    datumAlias: `os.stat(${p('datums/@nope')})`,
    modelVersion: `os.stat(${p('models/net/v2')})`,
    readDir: `open(${p('datasets/images/v1/cats')}, 'rb').read()`,
    create: `open(${p('datasets/images/v1/new')}, 'wb')`,
    mkdir: `os.mkdir(${p('datasets/new')})`,
    unlink: `os.unlink(${p('datasets/images/v1/one')})`,
    rename: `os.rename(${p('datasets/images/v1/one')}, ${p('datasets/images/v1/two')})`,
    symlink: `os.symlink('v2', ${p('datasets/images/@mine')})`,
  });
  t.deepEqual(got, {
    top: ENOENT, dataset: ENOENT, version: ENOENT, alias: ENOENT, aliasWithoutAt: ENOENT, file: ENOENT, datum: ENOENT,
    datumUpperCase: ENOENT, notAnId: ENOENT, datumAlias: ENOENT, modelVersion: ENOENT,
    readDir: EISDIR, create: EROFS, mkdir: EROFS, unlink: EROFS, rename: EROFS, symlink: EROFS,
  });
  // The daemon is still serving after all that.
  t.is((await run('cat', [path.join(s.mnt, 'datasets/images/v1/one')])).code, 0);
});

test('new versions, datasets and datum aliases and a moved alias show after the listing TTL; until then the listing is reused', async (t) => {
  const dir = await tempDir(t, 'vhfs-serve-ttl-');
  const home = path.join(dir, 'home');
  const tree = (name: string, size: number) => makeTree(path.join(dir, 'src', name), [{ path: `${name}.bin`, size }]);
  const v1 = await tree('v1', 1000);
  const v2 = await tree('v2', 2000);
  t.is((await vhfs(home, ['dataset', 'create', 'd/v1', path.join(dir, 'src', 'v1'), '--alias', 'latest'])).code, 0);
  const fresh = await serve(t, home, ['--listing-ttl', '1']);
  const slow = await serve(t, home, ['--listing-ttl', '600']);
  for (const s of [fresh, slow]) {
    t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'datasets', 'd')])).stdout), ['@latest', 'v1']);
    t.is((await run('readlink', [path.join(s.mnt, 'datasets/d/@latest')])).stdout, 'v1\n');
    // A lookup before the version exists: the kernel remembers the ENOENT for the listing TTL only.
    t.is((await run('stat', [path.join(s.mnt, 'datasets/d/v2')])).code, 1);
    t.deepEqual(lines((await run('ls', ['-1', path.join(s.mnt, 'datums')])).stdout), []);
  }

  t.is((await vhfs(home, ['dataset', 'create', 'd/v2', path.join(dir, 'src', 'v2')])).code, 0);
  t.is((await vhfs(home, ['alias', 'set', 'dataset://d/latest', 'v2'])).code, 0);
  t.is((await vhfs(home, ['dataset', 'create', 'other/v1', path.join(dir, 'src', 'v1')])).code, 0);
  t.is((await vhfs(home, ['put', path.join(dir, 'src', 'v1', 'v1.bin'), '--alias', 'weights'])).code, 0);
  const changed = Date.now();

  const m = (rel: string) => path.join(fresh.mnt, rel);
  await waitFor(async () => (await run('readlink', [m('datasets/d/@latest')])).stdout === 'v2\n', 20_000, 'the moved alias');
  t.log(`the moved alias was followed ${Date.now() - changed} ms after the change (listing TTL 1 s)`);
  await waitFor(async () => (await run('stat', [m('datasets/d/v2')])).code === 0, 20_000, 'the new version by name');
  t.deepEqual(lines((await run('ls', ['-1', m('datasets/d')])).stdout), ['@latest', 'v1', 'v2']);
  t.deepEqual(lines((await run('ls', ['-1', m('datasets')])).stdout), ['d', 'other']);
  t.deepEqual(lines((await run('ls', ['-1', m('datums')])).stdout), ['@weights']);
  const [name, file] = [...v2][0];
  t.is((await run('sha256sum', [m(`datasets/d/@latest/${name}`)])).stdout.split(' ')[0], file.sha256);
  t.is((await run('sha256sum', [m('datums/@weights')])).stdout.split(' ')[0], v1.get('v1.bin')!.sha256);

  // The mount with a 10-minute TTL still shows what it listed, and still serves it.
  const o = (rel: string) => path.join(slow.mnt, rel);
  t.deepEqual(lines((await run('ls', ['-1', o('datasets/d')])).stdout), ['@latest', 'v1']);
  t.is((await run('readlink', [o('datasets/d/@latest')])).stdout, 'v1\n');
  t.is((await run('stat', [o('datasets/d/v2')])).code, 1);
  t.deepEqual(lines((await run('ls', ['-1', o('datasets')])).stdout), ['d']);
  t.is((await run('sha256sum', [o('datasets/d/@latest/v1.bin')])).stdout.split(' ')[0], v1.get('v1.bin')!.sha256);
});

test('the mount is shared (allow_other, default_permissions) unless --no-allow-other; read-only', async (t) => {
  const shared = await serve(t, S.home);
  const own = await serve(t, S.home, ['--no-allow-other']);
  const options = async (mnt: string) => {
    const line = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt)!;
    return new Set(line.split(' - ')[1].split(' ')[2].split(',').concat(line.split(' ')[5].split(',')));
  };
  const a = await options(shared.mnt);
  t.true(a.has('allow_other') && a.has('default_permissions') && a.has('ro'), [...a].join(','));
  const b = await options(own.mnt);
  t.false(b.has('allow_other'), [...b].join(','));
  t.true(b.has('ro'));
});

test('serve --stop unmounts and stops the daemon; vhfs unmount --inputs-dir does too; a live mount is not replaced', async (t) => {
  const s = await serve(t, S.home);
  const again = await vhfs(S.home, ['serve', s.mnt]);
  t.is(again.code, 4, again.stderr);
  t.regex(again.stderr, /already mounted .*--force/);
  const stop = await vhfs(S.home, ['serve', '--stop', s.mnt]);
  t.is(stop.code, 0, stop.stderr);
  t.regex(stop.stdout, new RegExp(`stopped daemon ${s.pid}`));
  t.false(await isMounted(s.mnt));
  await waitFor(() => !pidAlive(s.pid), 10_000, 'the daemon to exit');

  const s2 = await serve(t, S.home);
  const un = await vhfs(S.home, ['unmount', '--inputs-dir', s2.mnt]);
  t.is(un.code, 0, un.stderr);
  t.false(await isMounted(s2.mnt));
  t.regex(await fs.readFile(s2.log, 'utf8'), /SIGTERM: unmounting/);
});

test('as a non-root user the shared mount needs user_allow_other, and the error says so', async (t) => {
  const conf = await fs.readFile('/etc/fuse.conf', 'utf8').catch(() => '');
  if (conf.split('\n').some((l) => l.replace(/#.*/, '').trim() === 'user_allow_other')) {
    t.log('/etc/fuse.conf allows allow_other for every user here: nothing to refuse');
    t.pass();
    return;
  }
  const dir = await tempDir(t, 'vhfs-serve-user-');
  await fs.chmod(dir, 0o755);
  const home = path.join(dir, 'home');
  await fs.mkdir(home);
  await fs.chown(home, 1000, 1000);
  const mnt = path.join(dir, 'mnt');
  await fs.mkdir(mnt);
  await fs.chown(mnt, 1000, 1000);
  const asUser = (args: string[]) => run('setpriv', ['--reuid', '1000', '--regid', '1000', '--clear-groups', process.execPath, BIN, '--home', home, ...args]);
  const r = await asUser(['serve', mnt, '--foreground']);
  t.is(r.code, 7, r.stderr);
  t.regex(r.stderr, /^vhfs: .*non-root user \(uid 1000\).*"user_allow_other" in \/etc\/fuse\.conf.*--no-allow-other/m);
  t.false(await isMounted(mnt));
});
