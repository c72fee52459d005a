/**
 * URI forms through the CLI, as a user types them (README "URI forms"): `model://` versions and aliases,
 * and local inputs — `*`, `**`, `file://`, `--keep-directories none|full|suffix`. Expected listings and
 * bytes come from the files the test wrote.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { assertFails, Cli, compare, concatHash, makeTree, sha256, tempDir } from './helpers.js';

test('model://: create --model, ls, cat, package inspect, dataset ls --model; a model is not a dataset', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const src = path.join(dir, 'model');
  const files = await makeTree(src, 30, { seed: 21, maxSize: 20_000 });
  const created = await cli.json<{ uri: string; files: number; packages: Array<{ name: string; entries: number }>; aliases: string[] }>(
    'dataset', 'create', 'net/v1', src, '--model', '--package', '--alias', 'best');
  t.deepEqual(
    [created.uri, created.files, created.packages.map((p) => [p.name, p.entries]), created.aliases],
    ['model://net/v1', files.length, [['net.v1.vhpkgzip', files.length]], ['best']],
  );
  const paths = files.map((f) => f.path);
  for (const uri of ['model://net/v1', 'model://net/best']) {
    const listed = (await cli.ok('--quiet', 'ls', '-R', uri)).out.split('\n').filter(Boolean);
    t.deepEqual(listed.sort(compare), paths, `ls -R ${uri}`);
    const cat = await cli.ok('--quiet', 'cat', uri, ...paths);
    t.is(sha256(cat.stdout), (await concatHash(src, paths)).sha256, `cat ${uri}`);
  }
  t.deepEqual(await cli.json<string[]>('dataset', 'ls', '--model'), ['net']);
  t.deepEqual(await cli.json<string[]>('dataset', 'ls'), [], 'no datasets');
  t.is((await cli.ok('ls', 'model://')).out, 'model://net/\n');
  const versions = await cli.json<{ versions: Array<{ version: string; aliases: string[] }> }>('dataset', 'ls', 'net', '--model');
  t.deepEqual(versions.versions, [{ version: 'v1', aliases: ['best'] }]);
  const inspect = await cli.json<Array<{ package: string; entries: number; verified: number }>>('package', 'inspect', 'model://net/best', '--verify');
  t.deepEqual(inspect.map((r) => [r.package, r.entries, r.verified]), [['net.v1.vhpkgzip', files.length, files.length]]);
  assertFails(t, await cli.run('ls', 'dataset://net/v1'), 3, 'net');
  // A second model version by --from, and the alias moved to it.
  const extra = path.join(dir, 'extra');
  await fs.mkdir(extra);
  await fs.writeFile(path.join(extra, 'README.md'), '# net v2\n');
  await cli.ok('--quiet', 'dataset', 'create', 'model://net/v2', extra, '--model', '--from', 'net/v1', '--alias', 'best');
  const v2 = (await cli.ok('--quiet', 'ls', '-R', 'model://net/best')).out.split('\n').filter(Boolean);
  t.deepEqual(v2.sort(compare), [...paths, 'README.md'].sort(compare));
});

test('local paths: *, **, file:// and --keep-directories none|full|suffix list what a mount would show; cat reads them', async (t) => {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const L = path.join(dir, 'local');
  const specs = ['top.txt', 'other.txt', 'a/one.txt', 'a/b/two.txt', 'a/b/skip.bin', 'c/three.txt'];
  for (const [i, p] of specs.entries()) {
    await fs.mkdir(path.dirname(path.join(L, p)), { recursive: true });
    await fs.writeFile(path.join(L, p), `local file ${i}: ${p}\n`);
  }
  const ls = async (...args: string[]) => (await cli.ok('--quiet', 'ls', '-R', ...args)).out.split('\n').filter(Boolean).sort(compare);
  t.deepEqual(await ls(`${L}/*.txt`), ['other.txt', 'top.txt'], '* stays within one directory level');
  t.deepEqual(await ls(`${L}/**.txt`), ['one.txt', 'other.txt', 'three.txt', 'top.txt', 'two.txt'], '** crosses levels; keep none by default');
  t.deepEqual(await ls('--keep-directories', 'suffix', `${L}/**.txt`), ['a/b/two.txt', 'a/one.txt', 'c/three.txt', 'other.txt', 'top.txt']);
  t.deepEqual(await ls('--keep-directories', 'full', `${L}/a/**`), [`${L.slice(1)}/a/b/skip.bin`, `${L.slice(1)}/a/b/two.txt`, `${L.slice(1)}/a/one.txt`]);
  t.deepEqual(await ls(`file://${L}/a/one.txt`), ['one.txt']);
  t.deepEqual(await ls('--keep-directories', 'full', `file://${L}/c/three.txt`), [`${L.slice(1)}/c/three.txt`]);
  t.is((await cli.ok('cat', `file://${L}/a/b/two.txt`)).out, 'local file 3: a/b/two.txt\n');
  t.is((await cli.ok('cat', `${L}/top.txt`)).out, 'local file 0: top.txt\n');
  // cat of a wildcard names files by their full path (keep-directories full).
  t.is((await cli.ok('cat', `${L}/**.txt`, `${L.slice(1)}/c/three.txt`, `${L.slice(1)}/other.txt`)).out, 'local file 5: c/three.txt\nlocal file 1: other.txt\n');
  // Errors name the URI.
  assertFails(t, await cli.run('ls', `${L}/nope.txt`), 3, `${L}/nope.txt`);
  assertFails(t, await cli.run('ls', `${L}/*.csv`), 3, `${L}/*.csv`, 'matches no file');
  assertFails(t, await cli.run('ls', L), 2, L, 'is a directory');
  assertFails(t, await cli.run('ls', '--keep-directories', 'sideways', `${L}/*.txt`), 2, 'sideways');
});
