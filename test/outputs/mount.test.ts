/**
 * The outputs mount end to end: a real FUSE mount (mountOutputs, served by this process) written by
 * ordinary tools in child processes, then finalized, and every datum compared byte for byte with what was
 * written. This process never touches a mountpoint itself (it serves them; a synchronous access would
 * deadlock): every look at a mount goes through a child process.
 *
 * "What was written" is known independently of the mount: each workload is applied twice, to the mount and
 * to a plain local directory (the reference), and the reference's files are what the store must hold.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.js';
import { storeKeys } from '../../src/catalog/index.js';
import { mountInputs } from '../../src/fuse/mount-inputs.js';
import { mountOutputs, type OutputsMount, type OutputsMountOptions } from '../../src/fuse/mount-outputs.js';
import { parseInputFlags } from '../../src/inputs/config.js';
import { Journal } from '../../src/outputs/journal.js';
import { outputsStatus } from '../../src/outputs/status.js';
import { StagingArea } from '../../src/outputs/staging.js';
import { LocalDirStore } from '../../src/store/local.js';
import { python, run, tempDir, waitFor } from '../fuse/helpers.js';
import { blobBytes, datumsByName } from './helpers.js';

interface MountEnv {
  dir: string;
  root: string;
  ref: string;
  store: LocalDirStore;
  catalog: Catalog;
  mount: OutputsMount;
  out: string;
  logs: string[];
}

async function mountEnv(t: ExecutionContext, opts: Partial<OutputsMountOptions> = {}): Promise<MountEnv> {
  const dir = await tempDir(t, 'vhfs-outputs-mnt-');
  const root = path.join(dir, 'root');
  const ref = path.join(dir, 'ref');
  await fs.mkdir(root);
  await fs.mkdir(ref);
  const store = new LocalDirStore(path.join(dir, 'home', 'store'), { fsync: false });
  const catalog = await Catalog.open({ store, dbPath: path.join(dir, 'home', 'catalog.sqlite') });
  const logs: string[] = [];
  const mount = await mountOutputs({
    mountpoint: path.join(root, 'outputs'), home: path.join(dir, 'home'), catalog, env: { VH_EXECUTION_ID: 'exec-mnt-1', VH_PROJECT_ID: 'proj' },
    quiet: true, log: (l) => logs.push(l), closeGraceMs: 2000, ...opts,
  });
  t.teardown(async () => {
    await mount.unmount({ finalize: false }).catch(() => undefined);
    catalog.close();
  });
  return { dir, root, ref, store, catalog, mount, out: mount.mountpoint, logs };
}

/** Run a Python snippet against each of `tops` in turn (argv[1] = the top directory, then `args`). */
async function onBoth(script: string, tops: string[], args: string[] = []): Promise<void> {
  for (const top of tops) {
    const r = await run('python3', ['-c', script, top, ...args], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`python on ${top} exited ${r.code}: ${r.stderr.trim().slice(-1500)}`);
  }
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Every regular file under `dir`, relative path → bytes (a local directory, never a mount). */
async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const rel of (await fs.readdir(dir, { recursive: true })).sort()) {
    const abs = path.join(dir, rel);
    if ((await fs.lstat(abs)).isFile()) out.set(rel.split(path.sep).join('/'), await fs.readFile(abs));
  }
  return out;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const PY_WORKLOAD = String.raw`
import os, sys
top = sys.argv[1]
J = lambda *p: os.path.join(top, *p)
def data(n, seed):
    x = (seed * 2654435761 + 12345) & 0xffffffff
    out = bytearray(n)
    for i in range(0, n, 4):
        x = (x * 1103515245 + 12345) & 0xffffffff
        out[i:i+4] = x.to_bytes(4, "little")[:n - i]
    return bytes(out)
# write, append, overwrite, truncate
with open(J("py-write.bin"), "wb") as f: f.write(data(300000, 1))
with open(J("py-append.log"), "w") as f: f.write("line 1\n")
for i in range(2, 50):
    with open(J("py-append.log"), "a") as f: f.write("line %d\n" % i)
with open(J("py-over.txt"), "w") as f: f.write("first version, long long long long\n")
with open(J("py-over.txt"), "w") as f: f.write("second\n")
with open(J("py-trunc.bin"), "wb") as f: f.write(data(100000, 2))
os.truncate(J("py-trunc.bin"), 4097)
# rename a file, rename a folder (with files under it), replace a file by rename
os.makedirs(J("dir-a", "inner"))
with open(J("dir-a", "inner", "f1"), "wb") as f: f.write(data(5000, 3))
with open(J("dir-a", "f2"), "wb") as f: f.write(data(7000, 4))
os.rename(J("dir-a"), J("dir-b"))
with open(J("tmp.part"), "wb") as f: f.write(data(9000, 5))
os.rename(J("tmp.part"), J("dir-b", "renamed.bin"))
with open(J("victim"), "w") as f: f.write("will be replaced")
with open(J("replacer"), "w") as f: f.write("replaced it")
os.replace(J("replacer"), J("victim"))
# sparse: a write far past the end, then one inside the hole
fd = os.open(J("sparse.bin"), os.O_CREAT | os.O_WRONLY, 0o644)
os.pwrite(fd, b"tail", 50_000_000)
os.pwrite(fd, b"middle", 20_000_000)
os.fsync(fd)
os.close(fd)
# unlink and rmdir
with open(J("gone.txt"), "w") as f: f.write("x")
os.unlink(J("gone.txt"))
os.makedirs(J("empty-dir-removed"))
os.rmdir(J("empty-dir-removed"))
# chmod that keeps write bits is just a chmod
with open(J("mode.sh"), "w") as f: f.write("#!/bin/sh\n")
os.chmod(J("mode.sh"), 0o755)
# a hard link is one more name for the same bytes
os.link(J("py-write.bin"), J("hardlink.bin"))
`;

/** N processes at once: each writes its own files, and all append lines to one shared file. */
const PY_WRITERS = String.raw`
import os, sys
top, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(os.path.join(top, "w%d" % me), exist_ok=True)
for i in range(n):
    with open(os.path.join(top, "w%d" % me, "f%04d" % i), "wb") as f:
        f.write((b"%d:%d;" % (me, i)) * (1 + (i * 37) % 500))
    with open(os.path.join(top, "shared.log"), "a") as f:
        f.write("writer %d line %d\n" % (me, i))
`;

test('ordinary tools write through the mount; every datum matches what was written, byte for byte', async (t) => {
  const env = await mountEnv(t);
  const { out, ref } = env;
  const src = path.join(env.dir, 'src');
  await fs.mkdir(path.join(src, 'tree', 'a', 'b'), { recursive: true });
  await sh('dd', [`if=/dev/urandom`, `of=${path.join(src, 'big.bin')}`, 'bs=1M', 'count=48', 'status=none']);
  await sh('dd', [`if=/dev/urandom`, `of=${path.join(src, 'cp.bin')}`, 'bs=1k', 'count=3001', 'status=none']);
  for (let i = 0; i < 40; i++) await fs.writeFile(path.join(src, 'tree', i % 2 ? 'a' : 'a/b', `t${i}.dat`), Buffer.alloc(1000 + i * 977, i));
  await sh('tar', ['-C', path.join(src, 'tree'), '-cf', path.join(src, 'tree.tar'), '.']);

  for (const top of [out, ref]) {
    await sh('cp', [path.join(src, 'cp.bin'), path.join(top, 'copied.bin')]);
    await sh('dd', [`if=${path.join(src, 'big.bin')}`, `of=${path.join(top, 'dd-1M.bin')}`, 'bs=1M', 'status=none']);
    await sh('dd', [`if=${path.join(src, 'cp.bin')}`, `of=${path.join(top, 'dd-4k.bin')}`, 'bs=4k', 'status=none']);
    await fs.mkdir(path.join(top === ref ? ref : env.dir, 'unused'), { recursive: true });
    await sh('mkdir', [path.join(top, 'untarred')]);
    await sh('tar', ['-C', path.join(top, 'untarred'), '-xf', path.join(src, 'tree.tar')]);
  }
  await onBoth(PY_WORKLOAD, [out, ref]);
  // Many writers at once (on the mount; the reference gets the same files one writer after another).
  const writers = 6;
  const perWriter = 60;
  const results = await Promise.all(Array.from({ length: writers }, (_, w) => run('python3', ['-c', PY_WRITERS, out, String(w), String(perWriter)], { timeoutMs: 120_000 })));
  t.deepEqual(results.map((r) => r.code), results.map(() => 0), results.map((r) => r.stderr).join(''));
  for (let w = 0; w < writers; w++) await onBoth(PY_WRITERS, [ref], [String(w), String(perWriter)]);
  // sqlite3 writing a database (several transactions, an index, a vacuum).
  const db = path.join(out, 'results.sqlite');
  await sh('sqlite3', [db, 'CREATE TABLE r(i INTEGER PRIMARY KEY, v TEXT);']);
  for (let k = 0; k < 5; k++) {
    await sh('sqlite3', [db, `BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 400) INSERT INTO r(v) SELECT hex(randomblob(20)) || ${k} FROM c; COMMIT;`]);
  }
  await sh('sqlite3', [db, 'CREATE INDEX rv ON r(v); VACUUM;']);
  const dbSha = (await sh('sha256sum', [db])).split(' ')[0];
  t.is((await sh('sqlite3', [db, 'SELECT count(*) FROM r;'])).trim(), '2000');

  const outs = await sh('find', [out, '-type', 'f']);
  t.true(outs.includes('untarred/a/b/t0.dat'));

  const result = await env.mount.unmount();
  t.truthy(result);
  t.true(result!.complete, result!.warnings.join('\n'));
  t.deepEqual(result!.warnings, []);

  const expected = await readTree(ref);
  const by = await datumsByName(env.store);
  // The shared log: same lines, in whatever order the writers got them in.
  const shared = by.get('shared.log')!;
  t.is(shared.length, 1);
  const sortLines = (b: Buffer) => b.toString().split('\n').filter(Boolean).sort().join('\n');
  t.is(sortLines(await blobBytes(env.store, shared[0])), sortLines(expected.get('shared.log')!));
  expected.delete('shared.log');
  by.delete('shared.log');
  // The database: the bytes that were on the mount at the end, and a database that opens with its rows.
  const dbDatum = by.get('results.sqlite')!;
  t.is(dbDatum.length, 1);
  t.is(dbDatum[0].sha256, dbSha);
  const dbCopy = path.join(env.dir, 'db-copy.sqlite');
  await fs.writeFile(dbCopy, await blobBytes(env.store, dbDatum[0]));
  t.is((await sh('sqlite3', [dbCopy, 'PRAGMA integrity_check; SELECT count(*) FROM r;'])).trim(), 'ok\n2000');
  by.delete('results.sqlite');

  t.deepEqual([...by.keys()].sort(), [...expected.keys()].sort());
  for (const [name, data] of expected) {
    const ds = by.get(name)!;
    t.is(ds.length, 1, name);
    t.true((await blobBytes(env.store, ds[0])).equals(data), `${name}: bytes differ`);
    t.deepEqual(ds[0].producer.executionId, 'exec-mnt-1');
    t.deepEqual(ds[0].producer.project, 'proj');
  }
  t.is(expected.get('sparse.bin')!.length, 50_000_004);
});

const PY_LIVE = String.raw`
import os, sys, time, json
top = sys.argv[1]
J = lambda p: os.path.join(top, p)
def wait_gone(p):
    deadline = time.time() + 20
    while os.path.exists(p):
        if time.time() > deadline: raise SystemExit("still there: " + p)
        time.sleep(0.01)
out = {}
# valohai-utils' live_upload: chmod to 0444 once written
with open(J("ckpt.pt"), "wb") as f: f.write(b"checkpoint v1" * 1000)
with open(J("ckpt.pt.metadata.json"), "w") as f: json.dump({"valohai.tags": ["epoch-1"], "epoch": 1}, f)
os.chmod(J("ckpt.pt"), 0o444)
out["gone_right_after_chmod"] = not os.path.exists(J("ckpt.pt"))
out["listed_after_chmod"] = "ckpt.pt" in os.listdir(top)
wait_gone(J("ckpt.pt"))
# the same name again, overwritten after its live upload (no metadata this time: the sidecar is kept for it)
with open(J("ckpt.pt"), "wb") as f: f.write(b"checkpoint v2" * 2000)
# chmod while still open for writing: uploaded when closed, with everything written
f = open(J("open.bin"), "wb")
f.write(b"a" * 100000)
f.flush()
os.chmod(J("open.bin"), 0o444)
out["open_still_there"] = os.path.exists(J("open.bin"))
f.write(b"b" * 100000)
f.close()
wait_gone(J("open.bin"))
# chmod to read-only then back before anything happens is still a live upload (chmod is the signal)
with open(J("later.txt"), "w") as f: f.write("written later")
print(json.dumps(out))
`;

test('live upload: chmod 0444 uploads at once and removes the file; an overwrite afterwards is another datum', async (t) => {
  const env = await mountEnv(t);
  const out = await python<Record<string, boolean>>(PY_LIVE, [env.out]);
  t.deepEqual(out, { gone_right_after_chmod: true, listed_after_chmod: false, open_still_there: true });
  await waitFor(async () => (await datumsByName(env.store)).has('open.bin'), 20_000, 'the live upload of open.bin');
  // Before finalize: live datums exist, the rest is pending.
  const journal = Journal.open(env.mount.journalFile);
  t.teardown(() => journal.close());
  const [st] = await outputsStatus(journal, new StagingArea(env.mount.staging));
  t.deepEqual(st.files.map((f) => `${f.path}:${f.state}${f.via ? ':live' : ''}`).sort(),
    ['ckpt.pt:done:live', 'ckpt.pt:pending', 'ckpt.pt.metadata.json:pending', 'later.txt:pending', 'open.bin:done:live'].sort());

  const result = await env.mount.unmount();
  t.true(result!.complete, result!.warnings.join('\n'));
  const by = await datumsByName(env.store);
  const ckpt = by.get('ckpt.pt')!.sort((a, b) => (a.id < b.id ? -1 : 1));
  t.is(ckpt.length, 2);
  t.true((await blobBytes(env.store, ckpt[0])).equals(Buffer.from('checkpoint v1'.repeat(1000))));
  t.true((await blobBytes(env.store, ckpt[1])).equals(Buffer.from('checkpoint v2'.repeat(2000))));
  // The sidecar present at chmod time tagged the live datum; at finalize it applies to the new file too.
  t.deepEqual(ckpt[0].tags, ['epoch-1']);
  t.deepEqual(ckpt[0].properties, { epoch: 1 });
  t.deepEqual(ckpt[1].tags, ['epoch-1']);
  t.false(by.has('ckpt.pt.metadata.json'));
  t.true((await blobBytes(env.store, by.get('open.bin')![0])).equals(Buffer.concat([Buffer.alloc(100000, 'a'), Buffer.alloc(100000, 'b')])));
  t.is(by.get('later.txt')!.length, 1);
  t.regex(env.logs.join('\n'), /live upload complete: "ckpt\.pt" → datum:\/\//);
});

const PY_ERRORS = String.raw`
import errno, json, os, sys
top = sys.argv[1]
J = lambda p: os.path.join(top, p)
res = {}
def attempt(name, fn):
    try:
        fn(); res[name] = "ok"
    except OSError as e:
        res[name] = errno.errorcode[e.errno]
attempt("mkfifo", lambda: os.mkfifo(J("fifo")))
attempt("mknod-socket", lambda: __import__("socket").socket(__import__("socket").AF_UNIX).bind(J("sock")))
os.makedirs(J("full/sub"))
attempt("rmdir-not-empty", lambda: os.rmdir(J("full")))
attempt("open-missing", lambda: open(J("missing.txt")))
attempt("mkdir-exists", lambda: os.mkdir(J("full")))
attempt("rename-missing", lambda: os.rename(J("missing.txt"), J("x")))
attempt("symlink", lambda: os.symlink("full/sub", J("dirlink")))
attempt("excl-create-existing", lambda: os.open(J("full"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
with open(J("ro.txt"), "w") as f: f.write("x")
attempt("readlink-regular", lambda: os.readlink(J("ro.txt")))
print(json.dumps(res))
`;

test('POSIX refusals come back as the errno a program expects', async (t) => {
  const env = await mountEnv(t);
  const res = await python<Record<string, string>>(PY_ERRORS, [env.out]);
  t.deepEqual(res, {
    'mkfifo': 'EPERM', 'mknod-socket': 'EPERM', 'rmdir-not-empty': 'ENOTEMPTY', 'open-missing': 'ENOENT',
    'mkdir-exists': 'EEXIST', 'rename-missing': 'ENOENT', 'symlink': 'ok', 'excl-create-existing': 'EEXIST',
    'readlink-regular': 'EINVAL',
  });
  const result = await env.mount.unmount();
  // The directory symlink is not an output (a warning says so); the file is.
  t.regex(result!.warnings.join('\n'), /dirlink: symlink points to a directory or special file \(full\/sub\); not uploaded/);
  t.deepEqual([...(await datumsByName(env.store)).keys()], ['ro.txt']);
});

const PY_LATE_WRITER = String.raw`
import errno, os, sys, time
top, flag = sys.argv[1], sys.argv[2]
f = os.open(os.path.join(top, "late.txt"), os.O_CREAT | os.O_WRONLY, 0o644)
os.write(f, b"before finalize\n")
open(flag, "w").close()
time.sleep(1.5)   # finalize starts meanwhile; its grace (300 ms) runs out while this file is open
try:
    os.write(f, b"after finalize\n"); print("ok")
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    os.open(os.path.join(top, "new-after.txt"), os.O_CREAT | os.O_WRONLY, 0o644); print("created")
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(f)
`;

test('finalize while a writer keeps a file open: its content so far is uploaded, later writes get EROFS, the mount goes on', async (t) => {
  const env = await mountEnv(t, { closeGraceMs: 300 });
  const flag = path.join(env.dir, 'flag');
  const writer = run('python3', ['-c', PY_LATE_WRITER, env.out, flag], { timeoutMs: 60_000 });
  await waitFor(() => fs.access(flag).then(() => true, () => false), 20_000, 'the writer to start');
  const result = await env.mount.finalize();
  const w = await writer;
  t.is(w.code, 0, w.stderr);
  // The late write was refused; the create after finalize went to the next run.
  t.deepEqual(w.stdout.trim().split('\n'), ['EROFS', 'created']);
  t.true(result.complete);
  t.regex(env.logs.join('\n'), /still open for writing at finalize, uploaded as they are now \(further writes get EROFS\): late\.txt/);
  const by = await datumsByName(env.store);
  t.true((await blobBytes(env.store, by.get('late.txt')![0])).equals(Buffer.from('before finalize\n')));
  t.false(by.has('new-after.txt'));
  await env.mount.unmount();
  t.is((await datumsByName(env.store)).get('new-after.txt')!.length, 1);
});

test('--eager-upload: blobs go up while the job runs, a rewrite is uploaded again, finalize only records datums', async (t) => {
  const env = await mountEnv(t, { eagerQuietMs: 100 });
  const journal = Journal.open(env.mount.journalFile);
  t.teardown(() => journal.close());
  const runId = env.mount.session.runId;
  const v1 = Buffer.alloc(3_000_000, 1);
  const v2 = Buffer.alloc(3_000_000, 2);
  const hasBlob = async (b: Buffer) => (await env.store.head(storeKeys.blob(sha(b)))) !== undefined;
  await python('import sys; open(sys.argv[1] + "/e.bin", "wb").write(b"\\x01" * 3000000); print(1)', [env.out]);
  await waitFor(() => journal.eager(runId, 'e.bin')?.sha256 === sha(v1), 20_000, 'the eager upload of v1');
  t.true(await hasBlob(v1));
  t.deepEqual([...(await datumsByName(env.store)).keys()], []); // bytes only: no datum before finalize
  await python('import sys; open(sys.argv[1] + "/e.bin", "wb").write(b"\\x02" * 3000000); print(1)', [env.out]);
  await waitFor(() => journal.eager(runId, 'e.bin')?.sha256 === sha(v2), 20_000, 'the eager upload of the rewrite');
  t.true(await hasBlob(v2));
  const putsBefore = env.store.stats.puts;
  const result = await env.mount.unmount();
  t.true(result!.complete);
  t.is(env.store.stats.puts - putsBefore, 1); // the datum record; the blob was already there
  const by = await datumsByName(env.store);
  t.is(by.get('e.bin')!.length, 1);
  t.true((await blobBytes(env.store, by.get('e.bin')![0])).equals(v2));
});

const PY_DATASET = String.raw`
import json, os, sys, hashlib
top = sys.argv[1]
meta = []
for cls in ("cats", "dogs", "birds"):
    os.makedirs(os.path.join(top, cls), exist_ok=True)
    for i in range(100):
        name = "%s/%s_%05d.jpg" % (cls, cls, i)
        data = hashlib.sha256(name.encode()).digest() * (1 + i * 13)
        with open(os.path.join(top, name), "wb") as f: f.write(data)
        meta.append({"file": name, "metadata": {"valohai.dataset-versions": [{"uri": "dataset://animals/train-v1", "packaging": True, "targeting_aliases": ["latest"]}]}})
with open(os.path.join(top, "valohai.metadata.jsonl"), "w") as f:
    for m in meta:
        json.dump(m, f); f.write("\n")
`;

const PY_HASH_TREE = String.raw`
import hashlib, json, os, sys
top = sys.argv[1]
out = {}
for d, _, files in os.walk(top):
    for n in files:
        p = os.path.join(d, n)
        out[os.path.relpath(p, top)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
print(json.dumps(out))
`;

test('a packaged dataset version made from outputs is read back byte-identical through its package by an inputs mount', async (t) => {
  const env = await mountEnv(t, { env: { VH_EXECUTION_ID: 'exec-ds', VH_ENABLE_DATASET_VERSION_PACKAGING: 'yes' } });
  await onBoth(PY_DATASET, [env.out, env.ref]);
  const result = await env.mount.unmount();
  t.true(result!.complete, result!.warnings.join('\n'));
  t.deepEqual(result!.versions, ['dataset://animals/train-v1']);
  t.true(env.logs.some((l) => /^\(dataset version package 1\/1\) uploading animals\.train-v1\.vhpkgzip \(/.test(l)));
  const version = await env.catalog.getVersion('dataset', 'animals', 'latest');
  t.is(version.version, 'train-v1');
  t.is(version.packages.length, 1);

  // A second mount reads the version as an input: every file, through the package.
  const root2 = path.join(env.dir, 'job2');
  const inputs = await mountInputs({
    mountpoint: path.join(root2, 'inputs'), configDir: path.join(root2, 'config'), specs: parseInputFlags(['train=dataset://animals/train-v1'], { cwd: env.dir }),
    catalog: env.catalog, cacheDir: path.join(env.dir, 'home', 'cache'),
  });
  t.teardown(() => inputs.unmount().catch(() => undefined));
  const got = await python<Record<string, string>>(PY_HASH_TREE, [path.join(inputs.mountpoint, 'train')]);
  const expected = await readTree(env.ref);
  expected.delete('valohai.metadata.jsonl');
  t.is(Object.keys(got).length, 300);
  t.deepEqual(Object.keys(got).sort(), [...expected.keys()].sort());
  for (const [p, data] of expected) t.is(got[p], sha(data), p);
  const resolved = inputs.inputs.get('train')!;
  const pkg = await env.catalog.getDatum(version.packages[0].datumId);
  t.deepEqual(resolved.index.sources.map((s) => s.key), [pkg.blobKey]); // served from the package, not the 300 blobs
});
