/**
 * Jobs in real containers (issue 15 item 7). Opt-in locally with VHFS_TEST_CONTAINERS=1 (needs root,
 * docker.io and debootstrap: `VHFS_TEST_CONTAINERS=1 npm test` installs them); `.ci/run` always runs them.
 *
 *  (a) One host mount (`vhfs mount --allow-other --job-root /valohai`), its root bind-mounted read-only into
 *      two containers whose jobs run as uid 1000 at the same time: each reads every input through
 *      inputs.json, byte-identical. The first attempt's two failures are shown as well: without those flags
 *      uid 1000 gets EACCES and inputs.json names host paths that do not exist in the container.
 *  (b) A job in its own container (`--device /dev/fuse --cap-add SYS_ADMIN`) mounts its inputs itself from
 *      the store (bind-mounted read-only) and reads them, as uid 1000 through `--allow-other`.
 *  (c) `vhfs serve` on the host; a container bind-mounts one version directory and reads it as uid 1000.
 *  (d) A container started before `vhfs serve` (bind with `rslave` propagation) sees the mount appear, go
 *      and come back when the daemon restarts, and reads through an alias symlink.
 *
 * Timings (image build, each part) are logged: `npx ava --verbose dist/test/container/jobs.test.js`.
 */
import test, { type ExecutionContext } from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BIN, isMounted, makeTree, mount, pidAlive, PY_READ_ALL, run, vhfs, vhfsJson, writeJson, type FileSpec, type TreeFile,
} from '../fuse/helpers.js';
import { PY_VERIFY_INPUTS_JSON, type VerifyResult } from '../fuse/job-scripts.js';
import { CONTAINERS_ENABLED, docker, ensureDockerd, ensureImage, fuseFlags, IMAGE, NODE_IN_CONTAINER, vhfsMounts, type DockerDaemon } from './docker.js';

const containerTest = CONTAINERS_ENABLED ? test : test.skip;
const JOB_USER = '1000:1000';

interface Shared {
  dir: string;
  home: string;
  daemon: DockerDaemon;
  /** input name → URI */
  inputs: Record<string, string>;
  /** Files across all inputs. */
  files: number;
  /** The packaged version's files: relative path → {size, sha256}. */
  packaged: Map<string, TreeFile>;
}

let S: Shared | undefined;

/** ~500 files in nested directories, 0 B – 200 KiB, and one of 3 MiB. */
function packagedSpecs(): FileSpec[] {
  const specs: FileSpec[] = [{ path: 'big/three-mib.bin', size: 3 * 1024 * 1024 + 5 }, { path: 'empty', size: 0 }];
  for (let i = 0; i < 498; i++) specs.push({ path: `c${i % 7}/s${i % 3}/f${String(i).padStart(3, '0')}.bin`, size: (i * 7919) % (200 * 1024) });
  return specs;
}

test.before(async (t) => {
  if (!CONTAINERS_ENABLED) return;
  t.timeout(30 * 60_000, 'starting dockerd and building the test image');
  const started = Date.now();
  const daemon = await ensureDockerd();
  t.log(daemon.started ? `started dockerd (log ${daemon.log})` : 'using the running dockerd');
  const image = await ensureImage((line) => t.log(line));
  t.log(image.built ? `image ${IMAGE} built in ${(image.ms / 1000).toFixed(1)} s (cold)` : `image ${IMAGE} was there (warm)`);

  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-containers-')));
  await fs.chmod(dir, 0o755);
  const home = path.join(dir, 'home');
  const packaged = await makeTree(path.join(dir, 'src', 'pkg'), packagedSpecs());
  const plain = await makeTree(path.join(dir, 'src', 'plain'), [{ path: 'a.txt', size: 1000 }, { path: 'b/c.bin', size: 300_000 }]);
  const one = await makeTree(path.join(dir, 'src'), [{ path: 'model.bin', size: 123_457 }]);
  await vhfsJson(home, ['dataset', 'create', 'pkg/v1', path.join(dir, 'src', 'pkg'), '--package']);
  await vhfsJson(home, ['dataset', 'create', 'plain/v1', path.join(dir, 'src', 'plain')]);
  const put = await vhfsJson<Array<{ uri: string }>>(home, ['put', path.join(dir, 'src', 'model.bin')]);
  S = {
    dir, home, daemon, packaged,
    inputs: { pkg: 'dataset://pkg/v1', plain: 'dataset://plain/v1', model: put[0].uri },
    files: packaged.size + plain.size + one.size,
  };
  t.log(`set-up ${((Date.now() - started) / 1000).toFixed(1)} s`);
});

test.after.always(async () => {
  if (!S) return;
  await S.daemon.stop();
  await fs.rm(S.dir, { recursive: true, force: true });
});

const inputFlags = () => Object.entries(S!.inputs).flatMap(([name, uri]) => ['--input', `${name}=${uri}`]);

/** A fresh directory under the shared one that uid 1000 can traverse. */
async function scratch(t: ExecutionContext, name: string): Promise<string> {
  const dir = path.join(S!.dir, `${name}-${process.hrtime.bigint()}`);
  await fs.mkdir(dir, { mode: 0o755 });
  t.teardown(async () => {
    for (const m of (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4]).filter((m) => m?.startsWith(`${dir}/`))) {
      await run('fusermount3', ['-uz', m]);
    }
  });
  return dir;
}

/** `docker run --rm IMAGE …`; the job's stdout (one JSON line last) parsed. */
async function job<T>(flags: string[], command: string[], timeoutMs = 180_000): Promise<{ value: T; ms: number; stdout: string }> {
  const started = Date.now();
  const r = await docker(['run', '--rm', ...flags, IMAGE, ...command], { timeoutMs });
  if (r.code !== 0) throw new Error(`docker run exited ${r.code}: ${(r.stdout + r.stderr).trim().slice(-2000)}`);
  const last = r.stdout.trim().split('\n').pop()!;
  return { value: JSON.parse(last) as T, ms: Date.now() - started, stdout: r.stdout };
}

containerTest('(a) jobs as uid 1000 in two containers read every input of one host mount through inputs.json', async (t) => {
  t.timeout(10 * 60_000);
  const root = path.join(await scratch(t, 'shared'), 'valohai');
  const m = await mount(t, S!.home, root, [...inputFlags(), '--allow-other', '--job-root', '/valohai', '--wait']);
  const flags = [...(await vhfsMounts()), '--user', JOB_USER, '-v', `${root}:/valohai:ro`];
  const verify = ['python3', '-c', PY_VERIFY_INPUTS_JSON, '/valohai/config/inputs.json'];
  const [first, second] = await Promise.all([job<VerifyResult>(flags, verify), job<VerifyResult>(flags, verify)]);
  for (const r of [first, second]) {
    t.is(r.value.uid, 1000);
    t.deepEqual(r.value.errors, []);
    t.deepEqual(r.value.bad, []);
    t.deepEqual(r.value.input_errors, {});
    t.is(r.value.files, S!.files);
  }
  t.log(`two containers read ${S!.files} files each (${first.value.bytes} bytes) in ${first.ms} / ${second.ms} ms`);
  t.true(pidAlive(m.pid));

  // The first attempt: no --allow-other, no --job-root. inputs.json names host paths (not there in the
  // container) and the mount itself refuses uid 1000.
  const bareRoot = path.join(await scratch(t, 'bare'), 'valohai');
  await mount(t, S!.home, bareRoot, [...inputFlags(), '--wait']);
  const probe = `${PY_VERIFY_INPUTS_JSON}
import os, errno as E
try:
    os.listdir("/valohai/inputs/pkg")
    out["listdir"] = None
except OSError as e:
    out["listdir"] = E.errorcode[e.errno]
print(json.dumps(out))`;
  const bare = await job<VerifyResult & { listdir: string | null }>([...(await vhfsMounts()), '--user', JOB_USER, '-v', `${bareRoot}:/valohai:ro`],
    ['python3', '-c', probe, '/valohai/config/inputs.json']);
  t.is(bare.value.files, 0);
  t.true(bare.value.errors.length > 0 && bare.value.errors.every(([p, err]) => p.startsWith(`${bareRoot}/inputs/`) && err === 'ENOENT'), JSON.stringify(bare.value.errors));
  t.is(bare.value.listdir, 'EACCES');
});

containerTest('(b) a job inside its own container mounts its inputs itself and reads them as uid 1000', async (t) => {
  t.timeout(10 * 60_000);
  const vhfsIn = `${NODE_IN_CONTAINER} ${BIN} --home /tmp/vhfs-home --store /store`;
  const inputs = Object.entries(S!.inputs).map(([name, uri]) => `--input ${name}=${uri}`).join(' ');
  const script = [
    'set -e',
    `${vhfsIn} -q mount --root /valohai ${inputs} --allow-other --wait >/dev/null`,
    // The job: a different user, reading what inputs.json says.
    'setpriv --reuid 1000 --regid 1000 --clear-groups python3 -c "$1" /valohai/config/inputs.json',
    `${vhfsIn} -q unmount --root /valohai >/dev/null`,
  ].join('\n');
  const r = await job<VerifyResult>([...(await vhfsMounts()), ...(await fuseFlags()), '-v', `${path.join(S!.home, 'store')}:/store:ro`],
    ['sh', '-c', script, 'sh', PY_VERIFY_INPUTS_JSON]);
  t.is(r.value.uid, 1000);
  t.deepEqual(r.value.errors, []);
  t.deepEqual(r.value.bad, []);
  t.deepEqual(r.value.input_errors, {});
  t.is(r.value.files, S!.files);
  t.log(`a container mounted and read ${S!.files} files (${r.value.bytes} bytes) in ${r.ms} ms, start to exit`);

  // Without the device and the capability: one line that names them, and nothing left mounted.
  const bare = await docker(['run', '--rm', ...(await vhfsMounts()), '-v', `${path.join(S!.home, 'store')}:/store:ro`, IMAGE, 'sh', '-c',
    `${vhfsIn} mount --root /valohai ${inputs} --wait; echo "exit $?"; grep -cE ' /valohai/(inputs|outputs) ' /proc/self/mountinfo || true`]);
  t.is(bare.code, 0, bare.stderr);
  // The outputs are mounted first (a job must never find inputs ready and nowhere to write): the first mount
  // to fail is either.
  t.regex(bare.stderr, /^vhfs: cannot mount \/valohai\/(inputs|outputs): fuse failed .*--device \/dev\/fuse --cap-add SYS_ADMIN/m);
  t.is(bare.stderr.trim().split('\n').length, 1, bare.stderr);
  t.deepEqual(bare.stdout.trim().split('\n'), ['exit 6', '0']);
});

containerTest('(c) a container bind-mounts one version of a host vhfs serve and reads it as uid 1000', async (t) => {
  t.timeout(10 * 60_000);
  const dir = await scratch(t, 'serve');
  const mnt = path.join(dir, 'mnt');
  const served = await vhfsJson<{ pid: number }>(S!.home, ['serve', mnt]);
  t.teardown(async () => {
    await vhfs(S!.home, ['serve', '--stop', mnt]);
    if (pidAlive(served.pid)) process.kill(served.pid, 'SIGKILL');
  });
  const manifest: Record<string, string> = {};
  for (const [p, f] of S!.packaged) manifest[path.posix.join('/valohai/inputs/pkg', p)] = f.sha256;
  const jobDir = path.join(dir, 'job');
  await fs.mkdir(jobDir, { mode: 0o755 });
  await writeJson(path.join(jobDir, 'manifest.json'), manifest);
  await fs.chmod(path.join(jobDir, 'manifest.json'), 0o644);
  const r = await job<{ files: number; bad: string[] }>(
    [...(await vhfsMounts()), '--user', JOB_USER, '-v', `${path.join(mnt, 'datasets/pkg/v1')}:/valohai/inputs/pkg:ro`, '-v', `${jobDir}:/job:ro`],
    ['python3', '-c', PY_READ_ALL, '/job/manifest.json', '5']);
  t.deepEqual(r.value.bad, []);
  t.is(r.value.files, S!.packaged.size);
  t.log(`a container read ${r.value.files} files of a served version in ${r.ms} ms`);
  t.is((await vhfs(S!.home, ['serve', '--stop', mnt])).code, 0);
  t.false(await isMounted(mnt));
});

containerTest('(d) a running container sees vhfs serve mount, unmount and mount again through rslave propagation', async (t) => {
  t.timeout(10 * 60_000);
  // The host side of the bind must be a shared mount for mounts made later to reach containers (on systemd
  // hosts `/` already is; here it is private, so the directory is made a shared mount of its own).
  const shared = path.join(await scratch(t, 'propagation'), 'shared');
  await fs.mkdir(path.join(shared, 'job'), { recursive: true, mode: 0o755 });
  await fs.chmod(shared, 0o755);
  const manifest: Record<string, string> = {};
  for (const [p, f] of S!.packaged) manifest[path.posix.join('/data/mnt/datasets/pkg/@current', p)] = f.sha256;
  await writeJson(path.join(shared, 'job', 'manifest.json'), manifest);
  await fs.chmod(path.join(shared, 'job', 'manifest.json'), 0o644);
  for (const args of [['--bind', shared, shared], ['--make-shared', shared]]) {
    const r = await run('mount', args);
    t.is(r.code, 0, r.stderr);
  }
  t.teardown(async () => { await run('umount', ['-l', shared]); });
  t.is((await vhfs(S!.home, ['alias', 'set', 'dataset://pkg/current', 'v1'])).code, 0);

  const name = `vhfs-test-${process.pid}-${Date.now()}`;
  const started = await docker(['run', '-d', '--name', name, ...(await vhfsMounts()), '--user', JOB_USER, '-v', `${shared}:/data:ro,rslave`, IMAGE, 'sleep', '600']);
  t.is(started.code, 0, started.stderr);
  t.teardown(async () => { await docker(['rm', '-f', name]); });
  const inContainer = async () => {
    const r = await docker(['exec', name, 'python3', '-c', PY_READ_ALL, '/data/job/manifest.json', '3']);
    return r.code === 0 ? (JSON.parse(r.stdout) as { files: number; bad: string[] }) : { files: 0, bad: [r.stderr.trim().slice(-300)] };
  };

  const mnt = path.join(shared, 'mnt');
  for (const round of ['first', 'after a restart']) {
    const served = await vhfsJson<{ pid: number }>(S!.home, ['serve', mnt]);
    t.teardown(async () => { if (pidAlive(served.pid)) process.kill(served.pid, 'SIGKILL'); });
    const read = await inContainer();
    t.deepEqual(read.bad, [], round);
    t.is(read.files, S!.packaged.size, round);
    t.is((await vhfs(S!.home, ['serve', '--stop', mnt])).code, 0);
    const after = await docker(['exec', name, 'ls', '-A', '/data/mnt']);
    t.is(after.stdout, '', `${round}: the unmount reached the container too`);
  }
});
