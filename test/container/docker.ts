/**
 * Docker for the container tests, from Debian's packages only (no image registry is reachable here):
 * `docker.io` (dockerd 20.10) and an image built with `debootstrap` from the host's own apt mirror.
 *
 * - dockerd: used if one answers; otherwise started here (log in a temp file) and stopped again by
 *   `stop()`. Debian's own client (/usr/bin/docker) is used, not whatever `docker` comes first on PATH: it
 *   speaks the daemon's API version.
 * - The image `vhfs-test:bookworm-1` (minbase + fuse3, libfuse2, python3, ca-certificates: what vhfs and a
 *   job need) is built once (~1.5–4 min here) and kept by its tag, so later runs and CI re-runs pay nothing.
 *   Bump the tag when its package list changes. The tag is always explicit: an untagged name makes docker
 *   try a registry.
 * - vhfs itself is not in the image: containers bind-mount the host's node binary and this checkout
 *   (read-only), exactly as built.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, run, type RunResult } from '../fuse/helpers.js';

export const CONTAINERS_ENABLED = process.env.VHFS_TEST_CONTAINERS === '1';
export const IMAGE = 'vhfs-test:bookworm-1';
export const DOCKER = '/usr/bin/docker';
const DOCKERD = '/usr/sbin/dockerd';
const PACKAGES = 'fuse3,libfuse2,python3,ca-certificates';
/** Where the checkout's node binary is mounted inside containers. */
export const NODE_IN_CONTAINER = '/usr/local/bin/node';

export function docker(args: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
  return run(DOCKER, args, { timeoutMs: opts.timeoutMs ?? 120_000 });
}

export interface DockerDaemon {
  /** True when this process started dockerd (and `stop` will stop it). */
  started: boolean;
  log?: string;
  stop(): Promise<void>;
}

async function answers(): Promise<boolean> {
  return (await docker(['info', '--format', '{{.ServerVersion}}'], { timeoutMs: 20_000 })).code === 0;
}

/** A dockerd that answers: the running one, or one started now (stopped again by `stop`). */
export async function ensureDockerd(): Promise<DockerDaemon> {
  for (const bin of [DOCKER, DOCKERD, '/usr/sbin/debootstrap']) {
    await fs.access(bin).catch(() => {
      throw new Error(`${bin} is missing: install docker.io and debootstrap (VHFS_TEST_CONTAINERS=1 npm test does, as root)`);
    });
  }
  if (await answers()) return { started: false, stop: async () => {} };
  const log = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-dockerd-')), 'dockerd.log');
  const fd = openSync(log, 'a');
  const child = spawn(DOCKERD, [], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => { gone = true; });
  const deadline = Date.now() + 90_000;
  while (!(await answers())) {
    if (gone || Date.now() > deadline) {
      const tail = (await fs.readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n');
      if (!gone) child.kill('SIGTERM');
      throw new Error(`dockerd ${gone ? 'exited' : 'did not answer within 90 s'}; ${log}:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    started: true, log,
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
      await fs.rm(path.dirname(log), { recursive: true, force: true });
    },
  };
}

/** The Debian mirror apt uses on this host (deb822 `URIs:` of the main suite, or a one-line `deb` entry). */
export async function debianMirror(): Promise<string> {
  const deb822 = await fs.readFile('/etc/apt/sources.list.d/debian.sources', 'utf8').catch(() => '');
  for (const stanza of deb822.split(/\n\s*\n/)) {
    const uris = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
    const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1].split(/\s+/) ?? [];
    if (uris && suites.includes('bookworm')) return uris;
  }
  const list = await fs.readFile('/etc/apt/sources.list', 'utf8').catch(() => '');
  const line = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m.exec(list);
  if (line) return line[1];
  throw new Error('no Debian bookworm mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list');
}

/** Build `IMAGE` unless docker has it; says how long it took (0 when it was there). */
export async function ensureImage(log: (line: string) => void): Promise<{ built: boolean; ms: number }> {
  if ((await docker(['image', 'inspect', IMAGE])).code === 0) return { built: false, ms: 0 };
  const started = Date.now();
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-image-'));
  const rootfs = path.join(work, 'rootfs');
  try {
    const mirror = await debianMirror();
    log(`building ${IMAGE}: debootstrap --variant=minbase --include=${PACKAGES} bookworm (${mirror})`);
    const boot = await run('debootstrap', ['--variant=minbase', `--include=${PACKAGES}`, 'bookworm', rootfs, mirror], { timeoutMs: 20 * 60_000 });
    if (boot.code !== 0) throw new Error(`debootstrap exited ${boot.code}: ${(boot.stdout + boot.stderr).trim().split('\n').slice(-10).join('\n')}`);
    // The downloaded .debs are a sixth of the tree and no container needs them.
    await run('sh', ['-c', 'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*', 'sh', rootfs]);
    await importRootfs(rootfs);
    log(`built ${IMAGE} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    return { built: true, ms: Date.now() - started };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** `tar -C rootfs -c . | docker import - IMAGE`. */
async function importRootfs(rootfs: string): Promise<void> {
  const tar = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const imp = spawn(DOCKER, ['import', '-', IMAGE], { stdio: ['pipe', 'pipe', 'pipe'] });
  tar.stdout.pipe(imp.stdin);
  let errors = '';
  tar.stderr.on('data', (d: Buffer) => { errors += d; });
  imp.stderr.on('data', (d: Buffer) => { errors += d; });
  const [tarCode, importCode] = await Promise.all([tar, imp].map((c) => new Promise<number | null>((resolve) => c.once('close', resolve))));
  if (tarCode !== 0 || importCode !== 0) throw new Error(`tar | docker import ${IMAGE} failed (tar ${tarCode}, import ${importCode}): ${errors.trim().slice(-1000)}`);
}

/**
 * `docker run` flags that give a container this checkout and the host's node, read-only, at the same paths
 * (node_modules too, wherever its symlink points), and no network.
 */
export async function vhfsMounts(): Promise<string[]> {
  const binds = [`${process.execPath}:${NODE_IN_CONTAINER}:ro`, `${REPO}:${REPO}:ro`];
  const modules = await fs.realpath(path.join(REPO, 'node_modules'));
  if (!modules.startsWith(`${REPO}/`)) binds.push(`${modules}:${modules}:ro`);
  return ['--network', 'none', ...binds.flatMap((b) => ['-v', b])];
}

/** `--security-opt apparmor=unconfined` where AppArmor is on (its default docker profile denies mount(2)). */
export async function fuseFlags(): Promise<string[]> {
  const apparmor = (await fs.readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => 'N')).trim() === 'Y';
  return ['--device', '/dev/fuse', '--cap-add', 'SYS_ADMIN', ...(apparmor ? ['--security-opt', 'apparmor=unconfined'] : [])];
}
