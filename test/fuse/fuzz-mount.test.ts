/**
 * The fuzz corpus of test/package/fuzz-corpus.ts, read through a real mount: every mutated package is a
 * dataset version, every version an input of one mount, and a Python walker lists and reads every input.
 * The oracle is the package reader run on the same bytes in this process:
 *  - a package the reader rejects is EIO at `ls` of its input (never a crash, never a listing);
 *  - a package the reader lists shows exactly those paths, and every file either reads back with the
 *    bytes the writer put at that member's place, or fails with EIO (its check failed): never other bytes;
 *  - the daemon serves on: it is alive at the end, answers a good input, and logged no handler crash.
 *
 *   VHFS_FUZZ_MOUNT_CASES=N   cases (default 1000)     VHFS_FUZZ_SEED=S   the seed (default random, printed)
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.js';
import { openStore } from '../../src/store/index.js';
import { bufferSource, readPackageListing } from '../../src/package/index.js';
import { fuzzCase, makeBases, type FuzzCase } from '../package/fuzz-corpus.js';
import { mount, pidAlive, python, tempDir } from './helpers.js';

const cases = Number(process.env.VHFS_FUZZ_MOUNT_CASES ?? 1000);
const seed = process.env.VHFS_FUZZ_SEED !== undefined ? Number(process.env.VHFS_FUZZ_SEED) : (Math.random() * 2 ** 32) >>> 0;

const PY_READ_INPUTS = String.raw`
import errno, hashlib, json, os, sys
root, names = sys.argv[1], json.load(open(sys.argv[2]))
out = {}
def err(e): return errno.errorcode.get(e.errno, str(e.errno))
for name in names:
    top = os.path.join(root, name)
    res = {"files": {}}
    try:
        walk_errors = []
        for d, dirs, files in os.walk(top, onerror=walk_errors.append):
            for f in files:
                p = os.path.join(d, f)
                rel = os.path.relpath(p, top)
                try:
                    with open(p, "rb") as fh:
                        res["files"][rel] = {"sha256": hashlib.sha256(fh.read()).hexdigest()}
                except OSError as e:
                    res["files"][rel] = {"errno": err(e)}
        if walk_errors:
            res["error"] = err(walk_errors[0])
    except OSError as e:
        res["error"] = err(e)
    out[name] = res
print(json.dumps(out))
`;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface Expected {
  /** The reader rejected the package. */
  rejected: boolean;
  /** path → sha256 of the bytes a read may return. */
  files: Map<string, string>;
}

async function expectationOf(c: FuzzCase): Promise<Expected> {
  try {
    const listing = await readPackageListing(bufferSource(c.zip), 'fuzz');
    const files = new Map<string, string>();
    for (let i = 0; i < listing.count; i++) {
      const p = listing.paths[i];
      const original = c.base.files.get(p);
      const at = listing.dataOffsets[i];
      files.set(p, sha(original ?? c.base.zip.subarray(at, Math.min(at + listing.sizes[i], c.base.zip.length))));
    }
    return { rejected: false, files };
  } catch {
    return { rejected: true, files: new Map() };
  }
}

test(`${cases} mutated packages read through one mount: EIO or the right bytes, never other bytes, never a crash`, async (t) => {
  t.timeout(600_000);
  t.log(`seed ${seed} (rerun with VHFS_FUZZ_SEED=${seed})`);
  const dir = await tempDir(t, 'vhfs-fuzz-mount-');
  const home = path.join(dir, 'home');
  await fs.mkdir(home, { recursive: true });
  const store = openStore(path.join(home, 'store'), { fsync: false });
  const catalog = await Catalog.open({ store, dbPath: path.join(home, 'catalog.sqlite'), verifyVersionFiles: false });
  const bases = await makeBases();
  const expected = new Map<string, { c: FuzzCase; want: Expected }>();
  const producer = { tool: 'fuzz-mount test', host: 'test' };
  for (let i = 0; i < cases; i++) {
    const c = fuzzCase(bases, seed, i);
    const name = `c${i}`;
    const datum = await catalog.putDatum(c.zip, { name: `fz.${name}.vhpkgzip`, producer });
    await catalog.createVersion({
      kind: 'dataset', collection: 'fz', version: name, files: [], producer,
      packages: [{ datumId: datum.id, name: `fz.${name}.vhpkgzip`, size: c.zip.length, entries: 0 }],
    });
    expected.set(name, { c, want: await expectationOf(c) });
  }
  catalog.close();
  await store.close?.();
  const names = [...expected.keys()];
  const inputsFile = path.join(dir, 'inputs.json');
  await fs.writeFile(inputsFile, JSON.stringify(Object.fromEntries(names.map((n) => [n, `dataset://fz/${n}`]))));
  const m = await mount(t, home, path.join(dir, 'root'), ['--inputs', inputsFile]);
  const namesFile = path.join(dir, 'names.json');
  await fs.writeFile(namesFile, JSON.stringify(names));
  const got = await python<Record<string, { files: Record<string, { sha256?: string; errno?: string }>; error?: string }>>(
    PY_READ_INPUTS, [m.mnt, namesFile], 500_000);

  const problems: string[] = [];
  let rejected = 0;
  let served = 0;
  let refused = 0;
  for (const [name, { c, want }] of expected) {
    const res = got[name];
    const what = `case ${c.index} (${c.base.name}: ${c.mutations.join('; ')})`;
    if (want.rejected) {
      rejected++;
      if (res.error !== 'EIO' || Object.keys(res.files).length > 0) problems.push(`${what}: the reader rejects it, the mount gave ${JSON.stringify(res).slice(0, 200)}`);
      continue;
    }
    if (res.error !== undefined) {
      problems.push(`${what}: the reader lists it, the mount's walk failed with ${res.error}`);
      continue;
    }
    const listed = Object.keys(res.files).sort();
    const wanted = [...want.files.keys()].sort();
    if (JSON.stringify(listed) !== JSON.stringify(wanted)) problems.push(`${what}: listed ${JSON.stringify(listed)}, the reader lists ${JSON.stringify(wanted)}`);
    for (const [p, r] of Object.entries(res.files)) {
      if (r.errno !== undefined) {
        if (r.errno !== 'EIO') problems.push(`${what}: ${p}: ${r.errno}, expected the bytes or EIO`);
        refused++;
      } else if (r.sha256 !== want.files.get(p)) problems.push(`${what}: ${p}: WRONG BYTES served`);
      else served++;
    }
  }
  t.log(`${cases} cases: ${rejected} rejected packages (EIO at ls), ${served} files served right, ${refused} refused with EIO`);
  t.deepEqual(problems.slice(0, 20), [], `seed ${seed}`);
  t.true(pidAlive(m.pid), 'the daemon survived');
  t.notRegex(await fs.readFile(m.log, 'utf8'), /handler threw/);
  t.true(served > 0 && rejected > 0, 'the corpus exercised both outcomes');
});
