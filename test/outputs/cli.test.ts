/**
 * `vhfs mount --outputs-only` and `vhfs outputs status|finalize|recover` as a user runs them: the mount is a
 * separate process, files are written with the shell, and everything is observed through the CLI's own
 * output and the store.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { LocalDirStore } from '../../src/store/local.js';
import { BIN, isMounted, run, tempDir, vhfs, vhfsJson, waitFor } from '../fuse/helpers.js';
import { datumsByName } from './helpers.js';

interface StatusJson {
  staging: string;
  runs: Array<{ id: string; state: string; executionId?: string; owner: { pid: number; alive: boolean }; counts: Record<string, number>; files: Array<{ path: string; state: string; datum?: string; via?: string }> }>;
}

interface Daemon {
  pid: number;
  exited: Promise<number | null>;
  log: string;
}

async function startMount(t: ExecutionContext, home: string, root: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const log = path.join(home, `mount-${Date.now()}.log`);
  await fs.mkdir(home, { recursive: true });
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [BIN, '--home', home, 'mount', '--outputs-only', '--foreground', '--root', root, ...args], {
    stdio: ['ignore', 'pipe', fd], env: { ...process.env, ...env },
  });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => { if (l.startsWith('ready:')) resolve(); });
    void exited.then((code) => reject(new Error(`vhfs mount --outputs-only exited ${code}: ${readFileSync(log, 'utf8')}`)));
  });
  t.teardown(async () => {
    try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone */ }
    await exited;
    if (await isMounted(path.join(root, 'outputs'))) await run('fusermount3', ['-uz', path.join(root, 'outputs')]);
  });
  return { pid: child.pid!, exited, log };
}

async function sh(script: string): Promise<void> {
  const r = await run('sh', ['-c', script]);
  if (r.code !== 0) throw new Error(`sh -c ${script}: ${r.stderr}`);
}

test('mount with --execution, status while capturing, finalize asked of the live mount, SIGTERM finalizes the rest', async (t) => {
  const dir = await tempDir(t, 'vhfs-outputs-cli-');
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'root');
  const config = path.join(dir, 'config');
  await fs.mkdir(config);
  await fs.writeFile(path.join(config, 'execution.json'), JSON.stringify({
    'valohai.execution-id': '016eb6ec-50cb-0031-3f48-d556e47b1c78', 'valohai.project-id': 'proj-9',
    'valohai.execution-step': 'train-model', 'valohai.commit-identifier': 'deadbeef', 'valohai.execution-counter': 42,
  }));
  await fs.writeFile(path.join(config, 'parameters.json'), JSON.stringify({ lr: 0.001, epochs: 3 }));
  const daemon = await startMount(t, home, root, ['--execution', path.join(config, 'execution.json')]);
  const out = path.join(root, 'outputs');
  await sh(`printf 'model bytes' > ${out}/model.pkl && mkdir -p ${out}/logs && echo hi > ${out}/logs/train.log`);

  const st = await vhfsJson<StatusJson>(home, ['outputs', 'status', '--root', root]);
  t.is(st.runs.length, 1);
  t.is(st.runs[0].state, 'capturing');
  t.deepEqual(st.runs[0].owner, { pid: daemon.pid, alive: true });
  t.is(st.runs[0].executionId, '016eb6ec-50cb-0031-3f48-d556e47b1c78');
  t.deepEqual(st.runs[0].files.map((f) => [f.path, f.state]), [['logs/train.log', 'pending'], ['model.pkl', 'pending']]);
  const human = await vhfs(home, ['outputs', 'status', '--root', root]);
  t.regex(human.stdout, /^run \S+ \(capturing, owner pid \d+, execution 016eb6ec-\S+\): 2 pending, 0 uploading, 0 done, 0 failed\n {2}pending {3}logs\/train\.log \(3 B\)\n {2}pending {3}model\.pkl \(11 B\)\n$/);

  const fin = await vhfsJson<StatusJson>(home, ['outputs', 'finalize', '--root', root]);
  t.is(fin.runs.length, 1);
  t.is(fin.runs[0].state, 'finalized');
  t.deepEqual(fin.runs[0].counts, { pending: 0, uploading: 0, done: 2, failed: 0 });
  const store = new LocalDirStore(path.join(home, 'store'));
  t.teardown(() => store.close());
  const by = await datumsByName(store);
  t.deepEqual(fin.runs[0].files.map((f) => f.datum).sort(), ['logs/train.log', 'model.pkl'].map((n) => `datum://${by.get(n)![0].id}`).sort());
  t.deepEqual(by.get('model.pkl')![0].producer, {
    tool: 'vhfs outputs', host: by.get('model.pkl')![0].producer.host,
    executionId: '016eb6ec-50cb-0031-3f48-d556e47b1c78', project: 'proj-9', step: 'train-model', commit: 'deadbeef',
    parameters: { lr: 0.001, epochs: 3 },
  });

  // The mount goes on capturing; SIGTERM finalizes what came after and unmounts.
  await sh(`echo later > ${out}/after.txt`);
  process.kill(daemon.pid, 'SIGTERM');
  t.is(await daemon.exited, 0);
  t.false(await isMounted(out));
  t.is((await datumsByName(store)).get('after.txt')!.length, 1);
});

test('a killed mount: status shows its run orphaned, recover uploads it; VH_* environment gives the identity', async (t) => {
  const dir = await tempDir(t, 'vhfs-outputs-cli-');
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'root');
  const config = path.join(dir, 'config');
  await fs.mkdir(config);
  await fs.writeFile(path.join(config, 'execution.json'), JSON.stringify({ 'valohai.execution-step': 'prep' }));
  await fs.writeFile(path.join(config, 'parameters.json'), '{not json');
  const env = { VH_JOB_ID: 'exec-0190abcd', VH_PROJECT_ID: 'proj-env', VH_CONFIG_DIR: config };
  const daemon = await startMount(t, home, root, [], env);
  t.regex(readFileSync(daemon.log, 'utf8'), /warning: .*parameters\.json: is not valid JSON .*; the outputs' lineage goes without it/);
  const out = path.join(root, 'outputs');
  await sh(`dd if=/dev/urandom of=${out}/a.bin bs=64k count=20 status=none && cp ${out}/a.bin ${dir}/a.ref`);
  process.kill(daemon.pid, 'SIGKILL');
  await daemon.exited;

  const st = await vhfsJson<StatusJson>(home, ['outputs', 'status', '--root', root]);
  t.is(st.runs[0].owner.alive, false);
  t.deepEqual(st.runs[0].files.map((f) => [f.path, f.state]), [['a.bin', 'pending']]);
  const rec = await vhfs(home, ['outputs', 'recover', '--root', root]);
  t.is(rec.code, 0, rec.stderr);
  t.regex(rec.stderr, /outputs: recovering run \S+ \(capturing, owner pid \d+ is gone\)/);
  t.regex(rec.stdout, /\(finalized, execution 0190abcd\): 0 pending, 0 uploading, 1 done, 0 failed/);
  const store = new LocalDirStore(path.join(home, 'store'));
  t.teardown(() => store.close());
  const [d] = (await datumsByName(store)).get('a.bin')!;
  t.true((await store.get(d.blobKey)).equals(await fs.readFile(path.join(dir, 'a.ref'))));
  t.deepEqual({ ...d.producer, host: 'h' }, { tool: 'vhfs outputs', host: 'h', executionId: '0190abcd', project: 'proj-env', step: 'prep' }); // VH_JOB_ID is "exec-" + the id
  // Nothing left: a second recover has nothing to do.
  const again = await vhfs(home, ['outputs', 'recover', '--root', root]);
  t.is(again.code, 0);
  t.is(again.stdout.trim(), 'nothing to finalize');
});

test('the next mount of the same root recovers a killed mount\'s outputs in the background', async (t) => {
  const dir = await tempDir(t, 'vhfs-outputs-cli-');
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'root');
  const first = await startMount(t, home, root);
  await sh(`echo one > ${root}/outputs/one.txt`);
  process.kill(first.pid, 'SIGKILL');
  await first.exited;
  const second = await startMount(t, home, root);
  await waitFor(async () => (await vhfsJson<StatusJson>(home, ['outputs', 'status', '--root', root])).runs[0].state === 'finalized', 30_000, 'the first run to be recovered');
  await sh(`test ! -e ${root}/outputs/one.txt && echo two > ${root}/outputs/two.txt`); // the new run starts empty
  process.kill(second.pid, 'SIGTERM');
  t.is(await second.exited, 0);
  const store = new LocalDirStore(path.join(home, 'store'));
  t.teardown(() => store.close());
  t.deepEqual([...(await datumsByName(store)).keys()].sort(), ['one.txt', 'two.txt']);
  t.regex(readFileSync(second.log, 'utf8'), /outputs: recovering run \S+ \(capturing, owner pid \d+ is gone\)/);
});

test('errors are one line naming what is wrong', async (t) => {
  const dir = await tempDir(t, 'vhfs-outputs-cli-');
  const home = path.join(dir, 'home');
  const st = await vhfs(home, ['outputs', 'status', '--root', path.join(dir, 'nothing')]);
  t.is(st.code, 3);
  t.regex(st.stderr, /^vhfs: no outputs staged for \S+\/nothing\/outputs \(no journal at \S+journal\.sqlite\)\n$/);
  const bad = await vhfs(home, ['mount', '--outputs-only', '--foreground', '--root', path.join(dir, 'r'), '--execution', path.join(dir, 'missing.json')]);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /^vhfs: --execution \S+missing\.json: cannot read \(ENOENT\)\n$/);
  await fs.writeFile(path.join(dir, 'noid.json'), '{"step": "x"}');
  const noid = await vhfs(home, ['mount', '--outputs-only', '--foreground', '--root', path.join(dir, 'r'), '--execution', path.join(dir, 'noid.json')]);
  t.is(noid.code, 2);
  t.regex(noid.stderr, /no execution id \("id" or "valohai\.execution-id"\)/);
  t.false(await isMounted(path.join(dir, 'r', 'outputs')));
});

test('vhfs mount serves inputs and outputs from one daemon; vhfs unmount finalizes the outputs first', async (t) => {
  const dir = await tempDir(t, 'vhfs-outputs-cli-');
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'root');
  await fs.mkdir(path.join(dir, 'data'));
  await fs.writeFile(path.join(dir, 'data', 'in.txt'), 'input bytes');
  const [put] = await vhfsJson<Array<{ id: string }>>(home, ['put', path.join(dir, 'data', 'in.txt')]);
  const started = await vhfsJson<{ mountpoint: string; outputs: string; staging: string; pid: number }>(home, [
    'mount', '--root', root, '--input', `model=datum://${put.id}`,
  ], { timeoutMs: 60_000 });
  t.teardown(async () => {
    try { process.kill(started.pid, 'SIGKILL'); } catch { /* gone */ }
    for (const mp of [started.mountpoint, started.outputs]) if (await isMounted(mp)) await run('fusermount3', ['-uz', mp]);
  });
  t.is(started.outputs, path.join(root, 'outputs'));
  // A job: reads its input, writes an output.
  await sh(`cp ${root}/inputs/model/in.txt ${root}/outputs/copy.txt && echo result > ${root}/outputs/result.txt`);
  const un = await vhfs(home, ['unmount', '--root', root], { timeoutMs: 120_000 });
  t.is(un.code, 0, un.stderr);
  t.regex(un.stderr, /finalizing the outputs at \S+\/outputs \(uploading them\) before unmounting/);
  t.regex(un.stdout, new RegExp(`stopped daemon ${started.pid}`));
  t.false(await isMounted(started.mountpoint));
  t.false(await isMounted(started.outputs));
  const store = new LocalDirStore(path.join(home, 'store'));
  t.teardown(() => store.close());
  const by = await datumsByName(store);
  t.true((await store.get(by.get('copy.txt')![0].blobKey)).equals(Buffer.from('input bytes')));
  t.is(by.get('result.txt')!.length, 1);
  const st = await vhfsJson<StatusJson>(home, ['outputs', 'status', '--root', root]);
  t.true(st.runs.every((r) => r.state === 'finalized'));

  // An outputs-only daemon is found by `vhfs unmount` through its outputs mountpoint.
  const only = await vhfsJson<{ mountpoint: string; pid: number }>(home, ['mount', '--root', root, '--outputs-only'], { timeoutMs: 60_000 });
  t.teardown(() => { try { process.kill(only.pid, 'SIGKILL'); } catch { /* gone */ } });
  t.is(only.mountpoint, started.outputs);
  await sh(`echo again > ${root}/outputs/again.txt`);
  const un2 = await vhfs(home, ['unmount', '--root', root], { timeoutMs: 120_000 });
  t.regex(un2.stdout, new RegExp(`stopped daemon ${only.pid}`));
  t.false(await isMounted(started.outputs));
  t.is((await datumsByName(store)).get('again.txt')!.length, 1);

  // --outputs-only with --no-outputs is refused.
  const both = await vhfs(home, ['mount', '--root', root, '--outputs-only', '--no-outputs']);
  t.is(both.code, 2);
  t.regex(both.stderr, /--outputs-only and --no-outputs leave nothing to mount/);
});
