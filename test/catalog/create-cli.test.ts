/**
 * `vhfs dataset create` and `vhfs put` as a user runs them: racing creations of one version name, a file
 * the user cannot read, symbolic links, and reading a packaged member back by `datum://<id>`.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { assertFails, BIN, Cli, makeTree, runProgram, sha256, tempDir } from '../cli/helpers.js';
import { LocalDirStore } from '../../src/store/local.js';
import { batchIdOf, keys } from '../../src/catalog/store-records.js';
import type { VersionRecord } from '../../src/catalog/types.js';
import { allKeys, referencedKeys } from './helpers.js';

const exec = promisify(execFile);

/** Every key of the directory store, or those the version at `versionKey` refers to. */
async function withStore<T>(storeDir: string, fn: (store: LocalDirStore) => Promise<T>): Promise<T> {
  const store = new LocalDirStore(storeDir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
const storeKeys = (storeDir: string) => withStore(storeDir, allKeys);
const referenced = (storeDir: string, versionKey: string) =>
  withStore(storeDir, async (s) => referencedKeys(s, JSON.parse((await s.get(versionKey)).toString()) as VersionRecord));

test('two processes create the same version at once: exactly one wins, the other exits 4 with one line and leaves nothing', async (t) => {
  t.timeout(180_000);
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const srcA = path.join(dir, 'a');
  const srcB = path.join(dir, 'b');
  await makeTree(srcA, 400, { seed: 11, maxSize: 40_000 });
  await makeTree(srcB, 300, { seed: 12, maxSize: 90_000 });
  for (let round = 0; round < 3; round++) {
    const name = `race${round}/v1`;
    const [a, b] = await Promise.all([
      cli.run('--quiet', 'dataset', 'create', name, srcA, '--package'),
      cli.run('--quiet', 'dataset', 'create', name, srcB, '--package'),
    ]);
    const winners = [a, b].filter((r) => r.code === 0);
    t.is(winners.length, 1, `round ${round}: exit codes ${a.code}, ${b.code}: ${a.stderr}${b.stderr}`);
    const loser = a.code === 0 ? b : a;
    assertFails(t, loser, 4, `dataset://${name}`);
  }
  // Everything in the store is referenced by one of the three winning versions.
  const wanted = new Set<string>();
  for (let round = 0; round < 3; round++) for (const k of await referenced(cli.storeDir, `datasets/race${round}/versions/v1.json`)) wanted.add(k);
  t.deepEqual(await storeKeys(cli.storeDir), [...wanted].sort());
});

test('a file the user cannot read, midway: exit 2 naming it, and no datum or package is left', async (t) => {
  t.timeout(120_000);
  if (process.getuid?.() !== 0) return t.pass('needs root to run the CLI as another user');
  const dir = await tempDir(t);
  await fs.chmod(dir, 0o777);
  const src = path.join(dir, 'src');
  await makeTree(src, 120, { seed: 3, maxSize: 20_000 });
  const names = (await fs.readdir(src, { recursive: true })).sort();
  const entries = await Promise.all(names.map(async (n) => ({ n, st: await fs.stat(path.join(src, n)) })));
  const victim = path.join(src, entries.filter((e) => e.st.isFile())[60].n);
  await exec('chmod', ['-R', 'a+rwX', dir]);
  await fs.chmod(victim, 0o000);
  const home = path.join(dir, 'home');
  const asNobody = ['--reuid=65534', '--regid=65534', '--clear-groups'];
  const readable = await runProgram('setpriv', [...asNobody, process.execPath, BIN, '--help']);
  if (readable.code !== 0) return t.pass(`this checkout cannot be run by an unprivileged user here: ${readable.stderr.split('\n')[0]}`);
  for (const packaging of [['--package'], []]) {
    const r = await runProgram('setpriv', [...asNobody, process.execPath, BIN, '--home', home, '--quiet', 'dataset', 'create', 'ds/v1', src, ...packaging]);
    assertFails(t, r, 2, victim, 'permission denied');
    const left = (await storeKeys(path.join(home, 'store'))).filter((k) => !k.startsWith('blobs/sha256/'));
    t.deepEqual(left, [], `${packaging.join(' ') || 'unpackaged'}: no record, batch, package or version`);
  }
});

test('symbolic links: refused by default, dangling is exit 3, --follow-symlinks keeps them inside the tree; --help says so', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  const src = path.join(dir, 'src');
  await fs.mkdir(path.join(src, 'a'), { recursive: true });
  await fs.writeFile(path.join(src, 'a/real.txt'), 'real');
  await fs.symlink('real.txt', path.join(src, 'a/alias.txt'));
  assertFails(t, await cli.run('dataset', 'create', 'ds/v1', src), 5, path.join(src, 'a/alias.txt'), 'symbolic link', '--follow-symlinks');
  const created = await cli.json<{ files: number }>('dataset', 'create', 'ds/v1', src, '--follow-symlinks');
  t.is(created.files, 2);
  t.is((await cli.ok('cat', 'dataset://ds/v1', 'a/alias.txt')).out, 'real');

  await fs.writeFile(path.join(dir, 'outside.txt'), 'not yours');
  await fs.symlink(path.join(dir, 'outside.txt'), path.join(src, 'a/escape.txt'));
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', src, '--follow-symlinks'), 5, path.join(src, 'a/escape.txt'), 'outside');
  await fs.rm(path.join(src, 'a/escape.txt'));

  await fs.rm(path.join(src, 'a/alias.txt'));
  await fs.symlink('gone.txt', path.join(src, 'a/dangling.txt'));
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', src, '--follow-symlinks'), 3, path.join(src, 'a/dangling.txt'), 'dangling symbolic link');
  assertFails(t, await cli.run('dataset', 'create', 'ds/v2', src), 3, path.join(src, 'a/dangling.txt'), 'dangling symbolic link');

  const help = await cli.ok('dataset', 'create', '--help');
  t.true(help.out.includes('--follow-symlinks'), help.out);
  t.true(/Symbolic links are refused unless --follow-symlinks/.test(help.out.replace(/\s+/g, ' ')), help.out);
});

test('a packaged member is a datum: cat datum://<id> gives its bytes, on this host and on another sharing the store', async (t) => {
  t.timeout(120_000);
  const dir = await tempDir(t);
  const store = path.join(dir, 'store');
  const hostA = new Cli(path.join(dir, 'A'), store);
  const hostB = new Cli(path.join(dir, 'B'), store);
  const src = path.join(dir, 'src');
  const files = await makeTree(src, 50, { seed: 9, maxSize: 150_000 });
  await hostA.ok('--quiet', 'dataset', 'create', 'ds/v1', src, '--package');
  const v = JSON.parse(await fs.readFile(path.join(store, 'datasets/ds/versions/v1.json'), 'utf8')) as VersionRecord;
  for (const f of [files[0], files[17], files[49]]) {
    const id = v.files.find((x) => x.path === f.path)!.datumId;
    for (const host of [hostA, hostB]) {
      const out = await host.ok('cat', `datum://${id}`);
      t.is(sha256(out.stdout), f.sha256, `${f.path} via datum://${id}`);
    }
    t.is((await hostB.ok('ls', `datum://${id}`)).out, `${path.posix.basename(f.path)}\n`);
  }
});

test('put of several files: all recorded in one batch, or none when one fails', async (t) => {
  const dir = await tempDir(t);
  const cli = new Cli(path.join(dir, 'home'));
  await fs.writeFile(path.join(dir, 'one.txt'), 'one');
  await fs.writeFile(path.join(dir, 'two.txt'), 'two');
  const put = await cli.json<Array<{ id: string; uri: string }>>('put', path.join(dir, 'one.txt'), path.join(dir, 'two.txt'));
  t.is(put.length, 2);
  t.is(batchIdOf(put[0].id), batchIdOf(put[1].id));
  t.deepEqual((await storeKeys(cli.storeDir)).filter((k) => k.startsWith('datums/')), [keys.datumBatch(batchIdOf(put[0].id))]);
  t.is((await cli.ok('cat', put[1].uri)).out, 'two');
  assertFails(t, await cli.run('put', path.join(dir, 'one.txt'), path.join(dir, 'missing.txt')), 3, 'missing.txt');
  t.deepEqual((await storeKeys(cli.storeDir)).filter((k) => k.startsWith('datums/')), [keys.datumBatch(batchIdOf(put[0].id))], 'the failed put recorded nothing');
});
