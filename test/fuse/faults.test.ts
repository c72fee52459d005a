/**
 * The fault matrix (issue 11): for each fault, what `ls` and `cat` through the mount, `vhfs cat`,
 * `vhfs mount --wait` and `vhfs unmount` answer, and the longest each may take. No cell may hang and no
 * cell may serve a wrong byte: a read either returns the right bytes or fails with the errno in the table.
 *
 * | fault                     | ls          | cat                 | vhfs cat | mount --wait | unmount |
 * |---------------------------|-------------|---------------------|----------|--------------|---------|
 * | package missing           | EIO         | EIO                 | 3        | 3            | 0       |
 * | package truncated         | EIO         | EIO                 | 5        | 5            | 0       |
 * | a byte flipped in a member| ok          | EIO (that member)   | 5        | 0            | 0       |
 *   (small member: its CRC-32; large member: the 64 KiB chunk holding the byte, via the chunk table)
 * | store never answers       | ETIMEDOUT   | ETIMEDOUT           | 6 *      | 6            | 0       |
 * | read slow, past deadline  | ETIMEDOUT   | ETIMEDOUT           | 6        | 6            | 0       |
 * | read slow, within deadline| ok          | ok                  | 0        | 0            | 0       |
 * | daemon SIGKILL            | ENOTCONN    | ENOTCONN            | 0        | 0 (replaces) | 0       |
 * | daemon SIGSTOP            | blocks until unmount, then ECONNABORTED/ENOTCONN | 0 | 4 (hung) | 0 |
 * | disk full for the cache   | ok          | ok                  | 0        | 0            | 0       |
 *
 * Deadlines run at `--fetch-timeout 2s` here (10 s by default). "Read slow" and "never answers" put the
 * store directory behind a FUSE passthrough that answers every read after a delay, or never
 * (test/fuse/fixtures/slow-dir.ts): a hung disk or NFS server. (*) vhfs cat prints its exit-6 error at the
 * deadline; the process itself cannot exit while the kernel holds its read (Node joins its I/O threads).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.js';
import { openStore } from '../../src/store/index.js';
import { fuseTest, makeTree, mount, pidAlive, python, REPO, run, slowStore, tempDir, vhfs, waitFor, type Mounted, type TreeFile } from './helpers.js';

const DEADLINE = ['--fetch-timeout', '2s'];
/** The longest a cell that must fail at the deadline may take (2 s deadline, plus start-up and load). */
const DEADLINE_CELL_MS = 9_000;
const QUICK_CELL_MS = 6_000;
const URI = 'dataset://pk/v1';

interface Template {
  home: string;
  tree: Map<string, TreeFile>;
  members: Array<{ path: string; offset: number; size: number }>;
  packageKey: string;
}

let template: Template;
let templateDir = '';

/** One packaged version, made once; each fault works on its own copy of the home. */
test.before(async () => {
  templateDir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-faults-template-')));
  const src = path.join(templateDir, 'src');
  const specs = Array.from({ length: 24 }, (_, i) => ({ path: `a/small-${String(i).padStart(2, '0')}.bin`, size: 3000 + i * 1500 }));
  specs.push({ path: 'big.bin', size: 3 * 1024 * 1024 + 17 });
  const tree = await makeTree(src, specs);
  const home = path.join(templateDir, 'home');
  const made = await vhfs(home, ['dataset', 'create', 'pk/v1', src, '--package']);
  if (made.code !== 0) throw new Error(made.stderr);
  const inspected = await vhfs(home, ['--json', 'package', 'inspect', URI, '--entries']);
  const members = (JSON.parse(inspected.stdout) as Array<{ members: Template['members'] }>)[0].members;
  const catalog = await Catalog.open({ store: openStore(path.join(home, 'store')), dbPath: path.join(home, 'catalog.sqlite') });
  const summary = await catalog.getVersionSummary('dataset', 'pk', 'v1');
  const packageKey = (await catalog.getDatum(summary.packages[0].datumId)).blobKey;
  catalog.close();
  template = { home, tree, members, packageKey };
});

test.after.always(async () => {
  if (templateDir) await fs.rm(templateDir, { recursive: true, force: true });
});

const makeTemplate = async (_t: ExecutionContext): Promise<Template> => template;

async function copyHome(t: ExecutionContext, tpl: Template): Promise<{ dir: string; home: string; pkg: string }> {
  const dir = await tempDir(t, 'vhfs-fault-');
  const home = path.join(dir, 'home');
  await run('cp', ['-a', tpl.home, home]);
  await fs.rm(path.join(home, 'cache'), { recursive: true, force: true });
  return { dir, home, pkg: path.join(home, 'store', tpl.packageKey) };
}

type Outcome = { ok: number } | { sha256: string } | { errno: string };

const PY_LS = String.raw`
import errno, json, os, sys
try:
    p = sys.argv[1]
    names = os.listdir(p)
    for n in names: os.stat(os.path.join(p, n))
    print(json.dumps({"ok": len(names)}))
except OSError as e:
    print(json.dumps({"errno": errno.errorcode.get(e.errno, str(e.errno))}))
`;

const PY_CAT = String.raw`
import errno, hashlib, json, sys
try:
    with open(sys.argv[1], "rb") as f:
        print(json.dumps({"sha256": hashlib.sha256(f.read()).hexdigest()}))
except OSError as e:
    print(json.dumps({"errno": errno.errorcode.get(e.errno, str(e.errno))}))
`;

/** Run a cell, asserting it finishes within `maxMs`; returns its outcome. */
async function cell<T>(t: ExecutionContext, name: string, maxMs: number, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  const out = await fn();
  const ms = Date.now() - started;
  t.log(`${name}: ${JSON.stringify(out)} in ${ms} ms`);
  t.true(ms <= maxMs, `${name} took ${ms} ms (limit ${maxMs})`);
  return out;
}

const ls = (m: Mounted) => python<Outcome>(PY_LS, [path.join(m.mnt, 'x')], 60_000);
const cat = (m: Mounted, file: string) => python<Outcome>(PY_CAT, [path.join(m.mnt, 'x', file)], 60_000);
const vhfsCat = async (home: string, file: string) => (await vhfs(home, ['cat', ...DEADLINE, URI, file, '-o', '/dev/null'], { timeoutMs: 60_000 })).code;
const mountWait = async (dir: string, home: string, extra: string[] = []) => {
  const root = path.join(dir, `wait-${Date.now()}`);
  const r = await vhfs(home, ['mount', '--root', root, '--input', `x=${URI}`, '--wait', ...DEADLINE, ...extra], { timeoutMs: 60_000 });
  if (r.code === 0) await vhfs(home, ['unmount', '--root', root], { timeoutMs: 30_000 });
  return r.code;
};
const unmount = async (m: Mounted) => {
  const r = await vhfs(m.home, ['unmount', '--root', m.root], { timeoutMs: 60_000 });
  return { code: r.code, mounted: (await run('findmnt', ['-n', m.mnt])).code === 0 };
};

const SMALL = 'a/small-05.bin';
const OTHER = 'a/small-06.bin';

/** Every cell of one row, with the row's expectations. */
async function row(t: ExecutionContext, tpl: Template, dir: string, home: string, want: {
  ls: Outcome | 'ok'; cat: Outcome | 'ok'; vhfsCat: number; wait: number; maxMs: number;
}, mountArgs: string[] = []): Promise<void> {
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', `x=${URI}`, ...DEADLINE, ...mountArgs]);
  const l = await cell(t, 'ls', want.maxMs, () => ls(m));
  if (want.ls === 'ok') t.deepEqual(l, { ok: 2 });
  else t.deepEqual(l, want.ls);
  const c = await cell(t, 'cat', want.maxMs, () => cat(m, SMALL));
  if (want.cat === 'ok') t.deepEqual(c, { sha256: tpl.tree.get(SMALL)!.sha256 });
  else t.deepEqual(c, want.cat);
  t.is(await cell(t, 'vhfs cat', want.maxMs + 3000, () => vhfsCat(home, SMALL)), want.vhfsCat);
  t.is(await cell(t, 'mount --wait', want.maxMs + 3000, () => mountWait(dir, home)), want.wait);
  t.deepEqual(await cell(t, 'unmount', QUICK_CELL_MS, () => unmount(m)), { code: 0, mounted: false });
}

fuseTest.serial('package missing: EIO through the mount, NOT_FOUND (3) from the CLI', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home, pkg } = await copyHome(t, tpl);
  await fs.rm(pkg);
  await row(t, tpl, dir, home, { ls: { errno: 'EIO' }, cat: { errno: 'EIO' }, vhfsCat: 3, wait: 3, maxMs: QUICK_CELL_MS });
});

fuseTest.serial('package truncated: EIO through the mount, BAD_PACKAGE (5) from the CLI', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home, pkg } = await copyHome(t, tpl);
  await fs.truncate(pkg, Math.floor((await fs.stat(pkg)).size / 2));
  await row(t, tpl, dir, home, { ls: { errno: 'EIO' }, cat: { errno: 'EIO' }, vhfsCat: 5, wait: 5, maxMs: QUICK_CELL_MS });
});

fuseTest.serial('a flipped byte: that member is EIO (never its wrong bytes), the others read right; INTEGRITY (5) from vhfs cat', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home, pkg } = await copyHome(t, tpl);
  const member = tpl.members.find((e) => e.path === SMALL)!;
  const big = tpl.members.find((e) => e.path === 'big.bin')!;
  const fh = await fs.open(pkg, 'r+');
  // One byte in a small member (checked by its CRC-32), one in the middle of a large one (by its chunk).
  for (const at of [member.offset + 100, big.offset + 2 * 1024 * 1024 + 5]) {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] ^= 0x01;
    await fh.write(b, 0, 1, at);
  }
  await fh.close();
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', `x=${URI}`, ...DEADLINE]);
  t.deepEqual(await cell(t, 'ls', QUICK_CELL_MS, () => ls(m)), { ok: 2 });
  t.deepEqual(await cell(t, 'cat', QUICK_CELL_MS, () => cat(m, SMALL)), { errno: 'EIO' });
  t.deepEqual(await cell(t, 'cat other', QUICK_CELL_MS, () => cat(m, OTHER)), { sha256: tpl.tree.get(OTHER)!.sha256 });
  t.deepEqual(await cell(t, 'cat big', QUICK_CELL_MS, () => cat(m, 'big.bin')), { errno: 'EIO' });
  const head = await python<{ ok: boolean }>('import sys,json\nwith open(sys.argv[1],"rb") as f: print(json.dumps({"ok": len(f.read(1 << 20)) == 1 << 20}))', [path.join(m.mnt, 'x', 'big.bin')]);
  t.deepEqual(head, { ok: true }, 'the chunks of the large member before the damage still read');
  t.is(await cell(t, 'vhfs cat', QUICK_CELL_MS, () => vhfsCat(home, SMALL)), 5);
  t.is(await cell(t, 'vhfs cat other', QUICK_CELL_MS, () => vhfsCat(home, OTHER)), 0);
  t.is(await cell(t, 'mount --wait', QUICK_CELL_MS, () => mountWait(dir, home)), 0);
  const log = await fs.readFile(m.log, 'utf8');
  t.regex(log, new RegExp(`reading "${SMALL}".*do not match its CRC-32`), 'the daemon log names the member and why');
  t.deepEqual(await cell(t, 'unmount', QUICK_CELL_MS, () => unmount(m)), { code: 0, mounted: false });
});

fuseTest.serial('a store that never answers (a hung disk): ETIMEDOUT at the deadline, exit 6, unmount still works', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  await slowStore(t, dir, home, 1e9);
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', `x=${URI}`, ...DEADLINE]);
  t.deepEqual(await cell(t, 'ls', DEADLINE_CELL_MS, () => ls(m)), { errno: 'ETIMEDOUT' });
  t.deepEqual(await cell(t, 'cat', DEADLINE_CELL_MS, () => cat(m, SMALL)), { errno: 'ETIMEDOUT' });
  // Reads of a hung local disk cannot be cancelled: the command reports at the deadline, but Node waits
  // for its stuck I/O thread before the process can exit (docs/SEMANTICS.md), so the cell is the error line.
  const line = await cell(t, 'vhfs cat (error line)', DEADLINE_CELL_MS, () => vhfsErrorLine(t, home, SMALL));
  t.regex(line, /^vhfs: .*no answer for bytes .* within 2000 ms/);
  t.is(await cell(t, 'mount --wait', DEADLINE_CELL_MS + 3000, () => mountWait(dir, home)), 6);
  t.deepEqual(await cell(t, 'unmount', QUICK_CELL_MS * 3, () => unmount(m)), { code: 0, mounted: false });
});

/** Run `vhfs cat` and resolve with its first `vhfs:` line on stderr (the process is killed at teardown). */
function vhfsErrorLine(t: ExecutionContext, home: string, file: string): Promise<string> {
  const child = spawn(process.execPath, [path.join(REPO, 'bin/vhfs.js'), '--home', home, 'cat', ...DEADLINE, URI, file, '-o', '/dev/null'], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => { child.kill('SIGKILL'); });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const line = err.split('\n').find((l) => l.startsWith('vhfs:'));
      if (line) resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`vhfs cat exited ${code} without an error line: ${err}`)));
  });
}


fuseTest.serial('a store slower than the deadline: ETIMEDOUT through the mount, exit 6 from the CLI', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  await slowStore(t, dir, home, 4000);
  await row(t, tpl, dir, home, { ls: { errno: 'ETIMEDOUT' }, cat: { errno: 'ETIMEDOUT' }, vhfsCat: 6, wait: 6, maxMs: DEADLINE_CELL_MS });
});

fuseTest.serial('a slow store within the deadline: every cell succeeds, just slower', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  await slowStore(t, dir, home, 150);
  await row(t, tpl, dir, home, { ls: 'ok', cat: 'ok', vhfsCat: 0, wait: 0, maxMs: QUICK_CELL_MS * 2 });
});

fuseTest.serial('daemon SIGKILL: ENOTCONN at once; vhfs cat is unaffected; a new mount replaces the stale one; unmount clears it', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  const root = path.join(dir, 'root');
  const m = await mount(t, home, root, ['--input', `x=${URI}`, ...DEADLINE]);
  t.deepEqual(await ls(m), { ok: 2 });
  process.kill(m.pid, 'SIGKILL');
  await waitFor(() => !pidAlive(m.pid), 10_000, 'the daemon to die');
  t.deepEqual(await cell(t, 'ls', QUICK_CELL_MS, () => ls(m)), { errno: 'ENOTCONN' });
  t.deepEqual(await cell(t, 'cat', QUICK_CELL_MS, () => cat(m, SMALL)), { errno: 'ENOTCONN' });
  t.is(await cell(t, 'vhfs cat', QUICK_CELL_MS, () => vhfsCat(home, SMALL)), 0);
  const again = await cell(t, 'mount --wait (same root)', QUICK_CELL_MS * 2, () =>
    vhfs(home, ['mount', '--root', root, '--input', `x=${URI}`, '--wait', ...DEADLINE], { timeoutMs: 60_000 }));
  t.is(again.code, 0, again.stderr);
  t.deepEqual(await cat(m, SMALL), { sha256: tpl.tree.get(SMALL)!.sha256 });
  t.deepEqual(await cell(t, 'unmount', QUICK_CELL_MS, () => unmount(m)), { code: 0, mounted: false });
});

fuseTest.serial('daemon SIGSTOP: readers block only until vhfs unmount, which aborts the connection; a new mount needs --force', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  const root = path.join(dir, 'root');
  const m = await mount(t, home, root, ['--input', `x=${URI}`, ...DEADLINE]);
  t.deepEqual(await ls(m), { ok: 2 });
  process.kill(m.pid, 'SIGSTOP');
  t.teardown(() => { if (pidAlive(m.pid)) { process.kill(m.pid, 'SIGCONT'); process.kill(m.pid, 'SIGKILL'); } });
  // A reader of a file not yet in the kernel's cache now waits on the stopped daemon: its request shows in
  // the connection's `waiting` count (fusectl; the connection is the mount's device minor number).
  const blocked = cat(m, OTHER);
  const device = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')).find((f) => f[4] === m.mnt)?.[2];
  const waiting = `/sys/fs/fuse/connections/${device?.split(':')[1]}/waiting`;
  await waitFor(async () => Number(await fs.readFile(waiting, 'utf8').catch(() => '0')) > 0, 20_000, `a request waiting on the stopped daemon (${waiting})`);
  t.is(await cell(t, 'vhfs cat', QUICK_CELL_MS, () => vhfsCat(home, SMALL)), 0);
  const refused = await cell(t, 'mount --wait (same root)', QUICK_CELL_MS * 2, () =>
    vhfs(home, ['mount', '--root', root, '--input', `x=${URI}`, '--wait', ...DEADLINE], { timeoutMs: 60_000 }));
  t.is(refused.code, 4, refused.stderr);
  t.regex(refused.stderr, /is mounted but not answering.*vhfs unmount.*--force/);
  const un = await cell(t, 'unmount', QUICK_CELL_MS * 2, () => unmount(m));
  t.deepEqual(un, { code: 0, mounted: false });
  const released = await cell(t, 'the blocked cat', QUICK_CELL_MS, () => blocked);
  t.true('errno' in released && ['ECONNABORTED', 'ENOTCONN'].includes(released.errno), JSON.stringify(released));
  // The stopped daemon, continued, finds its mount gone and exits without touching anything.
  const m2 = await mount(t, home, root, ['--input', `x=${URI}`, ...DEADLINE]);
  process.kill(m.pid, 'SIGCONT');
  await waitFor(() => !pidAlive(m.pid), 15_000, 'the old daemon to exit');
  const survived = await cat(m2, SMALL);
  if (!('sha256' in survived)) t.log(await fs.readFile(m.log, 'utf8'), await run('grep', [root, '/proc/self/mountinfo']));
  t.deepEqual(survived, { sha256: tpl.tree.get(SMALL)!.sha256 }, 'the new mount survived the old daemon');
});

fuseTest.serial('disk full for the cache: every read still succeeds from the store, and the log says why once', async (t) => {
  const tpl = await makeTemplate(t);
  const { dir, home } = await copyHome(t, tpl);
  const cacheDir = path.join(home, 'cache');
  await fs.mkdir(cacheDir, { recursive: true });
  const tmpfs = await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', cacheDir]);
  t.is(tmpfs.code, 0, tmpfs.stderr);
  t.teardown(() => run('umount', ['-l', cacheDir]).then(() => undefined));
  const m = await mount(t, home, path.join(dir, 'root'), ['--input', `x=${URI}`, ...DEADLINE, '--disk-cache']);
  t.deepEqual(await cell(t, 'ls', QUICK_CELL_MS, () => ls(m)), { ok: 2 });
  for (const file of [SMALL, OTHER, 'big.bin']) {
    t.deepEqual(await cell(t, `cat ${file}`, QUICK_CELL_MS, () => cat(m, file)), { sha256: tpl.tree.get(file)!.sha256 });
  }
  t.is(await cell(t, 'vhfs cat', QUICK_CELL_MS, () => vhfsCat(home, 'big.bin')), 0);
  t.is(await cell(t, 'mount --wait', QUICK_CELL_MS * 2, () => mountWait(dir, home, ['--disk-cache'])), 0);
  t.deepEqual(await cell(t, 'unmount', QUICK_CELL_MS, () => unmount(m)), { code: 0, mounted: false });
  const log = await fs.readFile(m.log, 'utf8');
  t.regex(log, /ENOSPC|no space/i);
});
