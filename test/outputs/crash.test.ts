/**
 * Crash test: a job writes 1,000 outputs through `vhfs outputs mount` while the daemon is killed with
 * SIGKILL over and over (50+ times): during writes (with live and eager uploads and the background
 * recovery of the previous daemon's run in flight), during `vhfs outputs recover`, and during finalize.
 * Afterwards every file the job completed must be in the store exactly once, byte for byte; a file being
 * written at a kill at most once, as a prefix of what was being written; nothing else.
 *
 * The daemon (`vhfs mount --outputs-only --foreground`) and `recover` are separate processes, killed for real. The writer is a Python
 * process that survives the daemon: it is stopped (SIGSTOP) before each kill and continued once the next
 * daemon is ready, so it never writes into the bare mountpoint in between; a write that was in flight fails
 * (ENOTCONN) and the writer moves on to the next file, as a job that tolerates a lost file would.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { LocalDirStore } from '../../src/store/local.js';
import { BIN, tempDir, vhfsJson, waitFor } from '../fuse/helpers.js';
import { datumsByName, storeDatums } from './helpers.js';

const FILES = 1000;
const SEED = 20261202;

const PY_JOB = String.raw`
import errno, hashlib, os, sys
top, n = sys.argv[1], int(sys.argv[2])
def content(i):
    size = [1000, 4096, 16384, 65536, 300000][i % 5] + i
    h = hashlib.sha256(b"%d" % i).digest()
    return (h * (size // 32 + 1))[:size]
for i in range(n):
    d = os.path.join(top, "d%02d" % (i % 20))
    p = os.path.join(d, "f%04d" % i)
    try:
        os.makedirs(d, exist_ok=True)
        data = content(i)
        with open(p, "wb", buffering=0) as f:
            for k in range(0, len(data), 65536):
                f.write(data[k:k + 65536])
        if i % 25 == 0:
            os.chmod(p, 0o444)   # live upload
        print("ok", i, flush=True)
    except OSError as e:
        print("err", i, errno.errorcode.get(e.errno, str(e.errno)), flush=True)
print("done", flush=True)
`;

function content(i: number): Buffer {
  const size = [1000, 4096, 16384, 65536, 300000][i % 5] + i;
  const h = createHash('sha256').update(String(i)).digest();
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; at += 32) h.copy(out, at, 0, Math.min(32, size - at));
  return out;
}

const nameOf = (i: number) => `d${String(i % 20).padStart(2, '0')}/f${String(i).padStart(4, '0')}`;

/** Small deterministic PRNG, so a failing run can be replayed with the same kill delays. */
function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

interface Proc {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log: string;
}

function startVhfs(home: string, args: string[], log: string, env: NodeJS.ProcessEnv): Proc & { ready: Promise<void> } {
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [BIN, '--home', home, ...args], { stdio: ['ignore', 'pipe', fd], env: { ...process.env, ...env } });
  closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (l) => { if (l.startsWith('ready:')) resolve(); });
    void exited.then((e) => reject(new Error(`vhfs ${args[0]} ${args[1] ?? ''} exited (${e.code ?? e.signal}) before ready; log:\n${readFileSync(log, 'utf8').split('\n').slice(-12).join('\n')}`)));
  });
  ready.catch(() => undefined);
  return { child, exited, log, ready };
}

test('SIGKILL at 50+ points of a 1,000-file run (writes, uploads, finalize, recover): every file in the store exactly once, byte-identical', async (t) => {
  t.timeout(300_000);
  const dir = await tempDir(t, 'vhfs-outputs-crash-');
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'root');
  await fs.mkdir(root, { recursive: true });
  const out = path.join(root, 'outputs');
  const env = { VH_EXECUTION_ID: 'exec-crash', VH_PROJECT_ID: 'proj-crash' };
  const rnd = prng(SEED);
  const delay = (lo: number, hi: number) => new Promise((r) => setTimeout(r, lo + rnd() * (hi - lo)));
  const kills = { writes: 0, uploadsStarted: 0, finalize: 0, recover: 0 };
  let daemons = 0;
  const live = new Set<Proc>();
  t.teardown(() => { for (const p of live) p.child.kill('SIGKILL'); });

  const startDaemon = async () => {
    const eager = daemons % 2 === 0 ? ['--eager-upload', '--eager-quiet', '50ms'] : [];
    const d = startVhfs(home, ['mount', '--outputs-only', '--foreground', '--root', root, ...eager], path.join(dir, `daemon-${daemons++}.log`), env);
    live.add(d);
    await d.ready;
    return d;
  };
  const kill = async (p: Proc) => {
    p.child.kill('SIGKILL');
    await p.exited;
    live.delete(p);
  };
  const uploading = (p: Proc) => /outputs: uploading \d+ file|live upload: /.test(readFileSync(p.log, 'utf8'));

  // Phase 1: the job writes while daemons are killed and restarted under it.
  const completed = new Set<number>();
  const failed = new Set<number>();
  let daemon = await startDaemon();
  const writer = spawn('python3', ['-c', PY_JOB, out, String(FILES)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const writerDone = new Promise<void>((resolve) => {
    createInterface({ input: writer.stdout }).on('line', (l) => {
      const [what, i] = l.split(' ');
      if (what === 'ok') completed.add(Number(i));
      else if (what === 'err') failed.add(Number(i));
      else if (what === 'done') resolve();
    });
  });
  let writing = true;
  void writerDone.then(() => { writing = false; });
  // Kill points spread over the first part of the job; then it finishes in peace (each restart costs
  // about a second on a busy 2-core machine, and the whole test must stay around two minutes).
  while (writing && kills.writes < 26) {
    await delay(40, 160);
    if (!writing) break;
    writer.kill('SIGSTOP');
    if (uploading(daemon)) kills.uploadsStarted++;
    await kill(daemon);
    kills.writes++;
    daemon = await startDaemon();
    writer.kill('SIGCONT');
  }
  await writerDone;
  t.is(completed.size + failed.size, FILES);

  // Phase 2: no daemon; `vhfs outputs recover` finishes the killed daemons' runs, and is itself killed part way.
  await kill(daemon);
  kills.writes++;
  for (let i = 0; i < 12; i++) {
    const r = startVhfs(home, ['outputs', 'recover', '--root', root], path.join(dir, `recover-${i}.log`), env);
    live.add(r);
    await delay(150, 700);
    if (uploading(r)) kills.uploadsStarted++;
    r.child.kill('SIGKILL');
    await r.exited;
    live.delete(r);
    kills.recover++;
  }

  // Phase 3: a daemon again; finalize (SIGTERM) killed part way, again and again, then one that finishes.
  const finalizeKills = Math.max(12, 52 - kills.writes - kills.recover);
  daemon = await startDaemon();
  for (let attempt = 0; ; attempt++) {
    daemon.child.kill('SIGTERM');
    if (attempt < finalizeKills) {
      await delay(15, 250);
      const finished = await Promise.race([daemon.exited.then(() => true), Promise.resolve(false)]);
      if (!finished) {
        if (uploading(daemon)) kills.uploadsStarted++;
        await kill(daemon);
        kills.finalize++;
        daemon = await startDaemon();
        continue;
      }
    }
    const exit = await daemon.exited;
    live.delete(daemon);
    if (exit.code === 0) break;
    t.fail(`a finalize that was not killed exited ${exit.code ?? exit.signal}:\n${readFileSync(daemon.log, 'utf8').slice(-2000)}`);
    return;
  }

  const status = await vhfsJson<{ runs: Array<{ state: string; counts: Record<string, number> }> }>(home, ['outputs', 'recover', '--root', root], { timeoutMs: 120_000 });
  t.true(status.runs.every((r) => r.state === 'finalized'));
  const all = await vhfsJson<{ runs: Array<{ state: string; counts: Record<string, number> }> }>(home, ['outputs', 'status', '--root', root]);
  t.true(all.runs.every((r) => r.state === 'finalized' && r.counts.pending === 0 && r.counts.uploading === 0 && r.counts.failed === 0));

  const total = kills.writes + kills.finalize + kills.recover;
  t.log(`kills: ${JSON.stringify(kills)}; ${daemons} daemons; ${completed.size} files completed, ${failed.size} interrupted; ${all.runs.length} runs`);
  t.true(total >= 50, `only ${total} kill points`);
  t.true(kills.writes >= 15 && kills.finalize >= 10 && kills.recover >= 10 && kills.uploadsStarted >= 10, JSON.stringify(kills));

  // The store: completed files exactly once and byte-identical; interrupted ones at most once, a prefix.
  const store = new LocalDirStore(path.join(home, 'store'));
  t.teardown(() => store.close());
  const by = await datumsByName(store);
  const expectedNames = new Set(Array.from({ length: FILES }, (_, i) => nameOf(i)));
  const strays = [...by.keys()].filter((n) => !expectedNames.has(n));
  t.deepEqual(strays, []);
  const problems: string[] = [];
  for (let i = 0; i < FILES; i++) {
    const ds = by.get(nameOf(i)) ?? [];
    const want = content(i);
    if (completed.has(i)) {
      if (ds.length !== 1) { problems.push(`${nameOf(i)}: ${ds.length} datums`); continue; }
      const got = await store.get(ds[0].blobKey);
      if (!got.equals(want)) problems.push(`${nameOf(i)}: bytes differ (${got.length} vs ${want.length})`);
      if (ds[0].producer.executionId !== 'exec-crash') problems.push(`${nameOf(i)}: producer ${JSON.stringify(ds[0].producer)}`);
    } else {
      if (ds.length > 1) problems.push(`${nameOf(i)} (interrupted): ${ds.length} datums`);
      for (const d of ds) {
        const got = await store.get(d.blobKey);
        if (!want.subarray(0, got.length).equals(got)) problems.push(`${nameOf(i)} (interrupted): not a prefix`);
      }
    }
  }
  t.deepEqual(problems, []);
  t.is((await storeDatums(store)).length, [...by.values()].reduce((n, ds) => n + ds.length, 0));
  await waitFor(async () => !(await fs.readFile('/proc/self/mountinfo', 'utf8')).includes(out), 10_000, 'no mount left');
});
