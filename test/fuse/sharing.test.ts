/**
 * `vhfs mount --allow-other --job-root` on the host (issue 15 item 7), without containers: a job running as
 * uid 1000 (setpriv) reads every input through inputs.json. The two failures the first container attempt
 * met are shown here too: without --allow-other uid 1000 gets EACCES, and without --job-root inputs.json
 * lists host paths. test/container/ runs the same jobs inside real containers (opt-in locally).
 */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isMounted, makeTree, mount, run, tempDir, vhfs, vhfsJson, type FileSpec } from './helpers.js';
import { PY_VERIFY_INPUTS_JSON, type VerifyResult } from './job-scripts.js';

const JOB_UID = '1000';

/** A temp dir another uid can traverse (mkdtemp makes 0700). */
async function openDir(t: ExecutionContext): Promise<string> {
  const dir = await tempDir(t, 'vhfs-sharing-');
  await fs.chmod(dir, 0o755);
  return dir;
}

async function fixture(t: ExecutionContext): Promise<{ dir: string; home: string; datum: string; files: number }> {
  const dir = await openDir(t);
  const home = path.join(dir, 'home');
  const specs: FileSpec[] = [{ path: 'empty', size: 0 }, { path: 'big.bin', size: 700_000 }];
  for (let i = 0; i < 30; i++) specs.push({ path: `d${i % 4}/f${i}.bin`, size: 50 + i * 3001 });
  await makeTree(path.join(dir, 'src'), specs);
  await vhfsJson(home, ['dataset', 'create', 'shared/v1', path.join(dir, 'src'), '--package']);
  const put = await vhfsJson<Array<{ uri: string }>>(home, ['put', path.join(dir, 'src', 'big.bin')]);
  return { dir, home, datum: put[0].uri, files: specs.length + 1 };
}

/** The job: PY_VERIFY_INPUTS_JSON as uid 1000 (with the system python: a python3 on root's PATH may live under /root), job paths followed to the host by `mapping`. */
async function jobAsUser(inputsJson: string, mapping: [string, string] | [] = []): Promise<VerifyResult> {
  const r = await run('setpriv', ['--reuid', JOB_UID, '--regid', JOB_UID, '--clear-groups', '/usr/bin/python3', '-c', PY_VERIFY_INPUTS_JSON, inputsJson, ...mapping]);
  if (r.code !== 0) throw new Error(`the job exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  return JSON.parse(r.stdout) as VerifyResult;
}

async function mountOptions(mnt: string): Promise<string[]> {
  const line = (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === mnt)!;
  return [...line.split(' ')[5].split(','), ...line.split(' - ')[1].split(' ')[2].split(',')];
}

test('--allow-other --job-root: uid 1000 reads every input by the job paths inputs.json gives, byte-identical', async (t) => {
  const f = await fixture(t);
  const root = path.join(f.dir, 'valohai');
  const m = await mount(t, f.home, root, ['--input', 'data=dataset://shared/v1', '--input', `one=${f.datum}`, '--allow-other', '--job-root', '/valohai', '--wait']);
  t.true((await mountOptions(m.mnt)).includes('allow_other'));
  t.true((await mountOptions(m.mnt)).includes('default_permissions'));
  const spec = JSON.parse(await fs.readFile(m.inputsJson, 'utf8')) as Record<string, { files: Array<{ path: string }> }>;
  const paths = Object.values(spec).flatMap((i) => i.files.map((x) => x.path));
  t.is(paths.length, f.files);
  t.deepEqual(paths.filter((p) => !p.startsWith('/valohai/inputs/')), [], 'every path is where the job sees it');
  t.true(paths.includes('/valohai/inputs/data/d3/f7.bin'));

  const job = await jobAsUser(m.inputsJson, ['/valohai/', `${root}/`]);
  t.is(job.uid, 1000);
  t.deepEqual(job.errors, []);
  t.deepEqual(job.bad, []);
  t.deepEqual(job.input_errors, {});
  t.is(job.files, f.files);
});

test('without --allow-other uid 1000 gets EACCES; without --job-root inputs.json lists the host paths', async (t) => {
  const f = await fixture(t);
  const root = path.join(f.dir, 'valohai');
  const m = await mount(t, f.home, root, ['--input', 'data=dataset://shared/v1', '--wait']);
  t.false((await mountOptions(m.mnt)).includes('allow_other'));
  const spec = JSON.parse(await fs.readFile(m.inputsJson, 'utf8')) as Record<string, { files: Array<{ path: string }> }>;
  t.true(spec.data.files.every((x) => x.path.startsWith(`${root}/inputs/data/`)));
  const job = await jobAsUser(m.inputsJson);
  t.is(job.files, 0);
  t.is(job.errors.length, 10, 'the first ten failures are listed');
  t.true(job.errors.every(([, err]) => err === 'EACCES'), JSON.stringify(job.errors));
  const asRoot = await run('python3', ['-c', PY_VERIFY_INPUTS_JSON, m.inputsJson]);
  t.is((JSON.parse(asRoot.stdout) as VerifyResult).files, f.files - 1, 'the mounting user reads them all');
});

test('--job-root must be absolute and stand for --root', async (t) => {
  const dir = await openDir(t);
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'valohai');
  const relative = await vhfs(home, ['mount', '--root', root, '--input', 'a=/etc/hostname', '--job-root', 'valohai']);
  t.is(relative.code, 2, relative.stderr);
  t.regex(relative.stderr, /^vhfs: --job-root "valohai": expected an absolute path as the job sees it/m);
  const elsewhere = await vhfs(home, ['mount', '--root', root, '--inputs-dir', path.join(dir, 'in'), '--input', 'a=/etc/hostname', '--job-root', '/valohai']);
  t.is(elsewhere.code, 2, elsewhere.stderr);
  t.regex(elsewhere.stderr, /--job-root \/valohai stands for --root .* but the inputs dir .*\/in is not under it/);
  t.false(await isMounted(path.join(root, 'inputs')));
  t.false(await isMounted(path.join(dir, 'in')));
});
