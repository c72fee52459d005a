/**
 * Mount lifecycle against the real kernel: a daemon killed with SIGKILL leaves a stale mount (ENOTCONN),
 * prepareMountpoint recovers it, a live mount is refused without force. The daemon runs in a child process
 * (fixtures/tiny-mount.ts) so killing it does not kill the test. Every test detaches its mounts in
 * t.teardown, so a failing assertion does not leave stale mounts behind. Needs /dev/fuse and root (or
 * fusermount); skipped otherwise.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fuse from 'fuse-native';
import type { Stat } from 'fuse-native';
import {
  buildFuseOptions, clearStaleMount, isMounted, isStale, mountFuse, mountInfo, mountState, parseMountinfo,
  prepareMountpoint, unmountFuse,
} from '../../src/fuse/mountpoint.js';
import { isVhfsError } from '../../src/util/errors.js';
import { fuseTest } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/tiny-mount.js', import.meta.url));

/** A fresh directory whose name has a space, so mountinfo's `\040` escape is exercised for real. */
async function workDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vhfs-mp-'));
  const mnt = join(dir, 'mount point');
  t.teardown(async () => {
    await forceDetach(mnt);
    await rm(dir, { recursive: true, force: true });
  });
  return mnt;
}

async function forceDetach(mnt: string): Promise<void> {
  for (let i = 0; i < 4 && (await isMounted(mnt)); i++) await clearStaleMount(mnt, { force: true }).catch(() => undefined);
}

/** Start the fixture daemon; resolves once it printed "ready". Killed in teardown whatever happens. */
function startDaemon(t: ExecutionContext, mnt: string, ...args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [FIXTURE, mnt, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  return new Promise((res, rej) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => rej(new Error(`daemon not ready after 10 s: ${err}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) { clearTimeout(timer); res(child); }
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', (code) => { clearTimeout(timer); rej(new Error(`daemon exited ${code}: ${err.trim()}`)); });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((res) => child.once('exit', () => res()));
}

test('parseMountinfo unescapes spaces, tabs and backslashes and reads the fields after the dash', (t) => {
  const text = [
    '36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
    '42 27 0:39 / /tmp/a\\011tab\\134back rw,nosuid,nodev,relatime - fuse vhfs rw,user_id=0,group_id=0',
    'garbage line',
  ].join('\n');
  const [a, b, ...rest] = parseMountinfo(text);
  t.is(rest.length, 0);
  t.is(a.mountPoint, '/mnt with space');
  t.deepEqual(a.optionalFields, ['master:1']);
  t.is(a.fsType, 'ext3');
  t.is(a.source, '/dev/root');
  t.is(b.mountPoint, '/tmp/a\ttab\\back');
  t.is(b.device, '0:39');
  t.is(b.fsType, 'fuse');
});

test('buildFuseOptions keeps zero timeouts and extra options that fuse-native would drop', (t) => {
  const o = buildFuseOptions({ entryTimeout: 0, attrTimeout: 0, extraOptions: ['negative_timeout=60'], force: true });
  t.is(o.fsname, 'vhfs,negative_timeout=60,entry_timeout=0,attr_timeout=0,nonempty');
  t.false(o.force);
  t.false(o.mkdir);
  t.throws(() => buildFuseOptions({ extraOptions: ['a,b'] }), { message: /bad FUSE option/ });
});

fuseTest.serial('SIGKILLed daemon leaves a stale mount; prepareMountpoint recovers it and a new mount works', async (t) => {
  const mnt = await workDir(t);
  const first = await startDaemon(t, mnt);
  t.is(await readFile(join(mnt, 'hello.txt'), 'utf8'), 'hello from tiny-mount\n');
  t.is(await mountState(mnt), 'live');

  first.kill('SIGKILL');
  await waitExit(first);
  // stat of the root may still be answered from the attribute cache for attr_timeout (1 s); a lookup of a
  // name and statfs always reach the (dead) daemon.
  const err = await t.throwsAsync(stat(join(mnt, 'hello.txt')));
  t.is((err as NodeJS.ErrnoException).code, 'ENOTCONN');
  const errFs = await t.throwsAsync(statfs(mnt));
  t.is((errFs as NodeJS.ErrnoException).code, 'ENOTCONN');
  t.true(await isMounted(mnt));
  t.true(await isStale(mnt));

  const prepared = await prepareMountpoint(mnt);
  t.is(prepared.cleared?.was, 'stale');
  t.regex(prepared.cleared?.action ?? '', /fusermount|umount/);
  t.false(await isMounted(mnt));

  const second = await startDaemon(t, mnt);
  t.is(await readFile(join(mnt, 'hello.txt'), 'utf8'), 'hello from tiny-mount\n');
  second.kill('SIGTERM');
  await waitExit(second);
  t.false(await isMounted(mnt), 'SIGTERM unmounts cleanly');
});

fuseTest.serial('a live mount is refused without force and replaced with force', async (t) => {
  const mnt = await workDir(t);
  const live = await startDaemon(t, mnt);
  const err = await t.throwsAsync(prepareMountpoint(mnt));
  t.true(isVhfsError(err, 'CONFLICT'));
  t.regex(err!.message, new RegExp(`already mounted \\(pid ${live.pid} / fuse`));
  t.regex(err!.message, /use --force to replace it/);
  await t.throwsAsync(clearStaleMount(mnt), { message: /already mounted/ });
  t.is(await mountState(mnt), 'live', 'refusal left the live mount alone');

  const replaced = await prepareMountpoint(mnt, { force: true });
  t.is(replaced.cleared?.was, 'live');
  t.false(await isMounted(mnt));
});

fuseTest.serial('a non-empty plain directory is refused unless forced', async (t) => {
  const mnt = await workDir(t);
  await mkdir(mnt, { recursive: true });
  await writeFile(join(mnt, 'keep.txt'), 'x');
  const err = await t.throwsAsync(prepareMountpoint(mnt));
  t.true(isVhfsError(err, 'CONFLICT'));
  t.regex(err!.message, /is not empty/);
  const ok = await prepareMountpoint(mnt, { force: true });
  t.false(ok.created);
});

fuseTest.serial('mountFuse/unmountFuse in process: mounts over a forced non-empty dir, reads, unmounts', async (t) => {
  const mnt = await workDir(t);
  await mkdir(mnt, { recursive: true });
  await writeFile(join(mnt, 'hidden.txt'), 'x');
  const ops = {
    getattr(path: string, cb: (err: number, st?: Stat) => void) {
      const now = new Date();
      if (path === '/') return cb(0, { mtime: now, atime: now, ctime: now, size: 4096, mode: 0o40555, uid: 0, gid: 0 });
      if (path === '/boom') throw new Error('handler bug');
      return cb(Fuse.ENOENT);
    },
    readdir(_path: string, cb: (err: number, names?: string[]) => void) { cb(0, ['boom']); },
  };
  const fuse = await mountFuse(mnt, ops, { force: true, entryTimeout: 0, attrTimeout: 0, onHandlerError: () => undefined });
  t.teardown(() => unmountFuse(fuse).catch(() => undefined));
  const info = await mountInfo(mnt);
  t.is(info?.source, 'vhfs');
  t.deepEqual(await readdir(mnt), ['boom']);
  const boom = await t.throwsAsync(stat(join(mnt, 'boom')));
  t.is((boom as NodeJS.ErrnoException).code, 'EIO', 'a throwing handler becomes EIO, the daemon survives');
  t.is(await mountState(mnt), 'live');
  await unmountFuse(fuse);
  t.false(await isMounted(mnt));
  t.is(await readFile(join(mnt, 'hidden.txt'), 'utf8'), 'x', 'the directory underneath is untouched');
});
