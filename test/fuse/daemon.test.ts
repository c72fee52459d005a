/**
 * The mount daemon as an operator meets it: what its process shows, what it leaves on disk and with which
 * permissions, and that `vhfs unmount` signals only the daemon its run file recorded.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { runFile } from '../../src/fuse/daemon.js';
import { makeTree, mount, pidAlive, run, tempDir, vhfs, waitFor } from './helpers.js';

test('the daemon\'s command line carries no input URI; VHFS_HOME is private, what the job reads is not', async (t) => {
  const dir = await tempDir(t);
  const home = path.join(dir, 'home');
  await makeTree(path.join(dir, 'src'), [{ path: 'a.txt', size: 100 }, { path: 'sub/b.txt', size: 5000 }]);
  t.is((await vhfs(home, ['dataset', 'create', 'secretive/v1', path.join(dir, 'src'), '--package'])).code, 0);
  const root = path.join(dir, 'valohai');
  const m = await mount(t, home, root, ['--input', 'x=dataset://secretive/v1', '--wait']);
  const cmdline = (await fs.readFile(`/proc/${m.pid}/cmdline`, 'utf8')).split('\0').join(' ');
  t.notRegex(cmdline, /secretive|dataset:\/\//, cmdline);
  t.regex(cmdline, /__daemon/);

  const modes: string[] = [];
  for (const rel of await fs.readdir(home, { recursive: true })) {
    const st = await fs.lstat(path.join(home, rel));
    const want = st.isDirectory() ? 0o700 : 0o600;
    if ((st.mode & 0o777) !== want) modes.push(`${rel}: ${(st.mode & 0o777).toString(8)}`);
  }
  t.deepEqual(modes, [], 'everything under VHFS_HOME is 0700/0600');
  t.is((await fs.stat(path.join(root, 'config'))).mode & 0o777, 0o755);
  t.is((await fs.stat(path.join(root, 'config', 'inputs.json'))).mode & 0o777, 0o644);
  t.is((await fs.stat(root)).mode & 0o777, 0o755, 'a job of another uid can reach <root>/inputs');
});

test('vhfs unmount never signals a process that merely has the pid its run file names', async (t) => {
  const dir = await tempDir(t);
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'valohai');
  const mountpoint = path.join(root, 'inputs');
  // An unrelated process, and a run file that names its pid as if it were a daemon started earlier.
  const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => { bystander.kill('SIGKILL'); });
  const file = runFile(home, mountpoint);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, JSON.stringify({ pid: bystander.pid, startTime: '1', mountpoint, started: new Date(0).toISOString(), log: '' }));
  const un = await vhfs(home, ['unmount', '--root', root]);
  t.is(un.code, 0, un.stderr);
  t.regex(un.stdout, /not mounted/);
  await new Promise((r) => setTimeout(r, 300));
  t.true(pidAlive(bystander.pid!), 'the bystander was signalled');
});

test('each daemon of a mountpoint logs to its own file; old logs are pruned to five', async (t) => {
  const dir = await tempDir(t);
  const home = path.join(dir, 'home');
  await makeTree(path.join(dir, 'src'), [{ path: 'a.txt', size: 10 }]);
  t.is((await vhfs(home, ['dataset', 'create', 'l/v1', path.join(dir, 'src')])).code, 0);
  const root = path.join(dir, 'valohai');
  const logs = new Set<string>();
  for (let i = 0; i < 7; i++) {
    const m = await mount(t, home, root, ['--input', 'x=dataset://l/v1']);
    logs.add(m.log);
    t.is((await vhfs(home, ['unmount', '--root', root])).code, 0);
    await waitFor(() => !pidAlive(m.pid), 10_000, 'the daemon to exit');
  }
  t.is(logs.size, 7, 'a new log file per daemon');
  const kept = (await fs.readdir(path.join(home, 'logs'))).filter((n) => n.endsWith('.log'));
  t.is(kept.length, 5);
  const last = [...logs].pop()!;
  t.true(kept.includes(path.basename(last)), 'the newest log is kept');
  t.regex(await fs.readFile(last, 'utf8'), /SIGTERM: unmounting/);
  t.is((await run('findmnt', ['-n', path.join(root, 'inputs')])).code, 1);
});
