/**
 * A packaged dataset version with very many tiny files, built fast for test/fuse/mount.test.ts.
 *
 * Why not `vhfs dataset create --package`: it makes one datum per file (blob + datum record, each fsynced,
 * plus ~2 MiB of read buffers per tiny file); on this 2-core VM 100,000 files took 11 min 44 s. The mount
 * test is about what a mount reads, not about creation, so this builder writes the same package with the
 * real package writer and registers it with the real catalog API, but records the member datums in this
 * host's SQLite only (no per-member blob or datum object in the store) and creates the version with
 * `verifyVersionFiles: false`. The package itself is a real datum in the store, as `dataset create` makes it.
 *
 * No FUSE is involved here, so running it inside the test process is fine.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Catalog } from '../../src/catalog/catalog.js';
import { keys } from '../../src/catalog/store-records.js';
import type { DatumRecord, VersionFile } from '../../src/catalog/types.js';
import { packagePartName, writePackage, type PackageEntry } from '../../src/package/index.js';
import { openStore } from '../../src/store/index.js';
import { hashBuffer } from '../../src/util/hash.js';
import { uuidv7 } from '../../src/util/ids.js';

export interface BigDataset {
  uri: string;
  files: number;
  dirs: number;
  packageBytes: number;
  /** The package's blob in the directory store. */
  packageFile: string;
}

const POOL = Buffer.alloc(64 * 1024);
for (let i = 0; i < POOL.length; i++) POOL[i] = (i * 2654435761) >>> 24;

/**
 * The generator: file number `n` (0-based, in path order) of a big dataset with `perDir` files per
 * directory. Tests re-derive expected paths and bytes from it, never from what vhfs reports.
 */
export function bigFile(n: number, perDir: number): { path: string; body: Buffer } {
  const d = Math.floor(n / perDir);
  const f = n % perDir;
  const size = (n * 7919) % 65;
  return {
    path: `d${String(d).padStart(4, '0')}/f${String(f).padStart(4, '0')}.bin`,
    body: Buffer.from(POOL.subarray(n % 60000, (n % 60000) + size)),
  };
}

/** `dataset://<name>/<version>` with `dirs` × `perDir` files of 0–64 bytes, in one package. */
export async function buildBigDataset(home: string, name: string, version: string, dirs: number, perDir: number): Promise<BigDataset> {
  const store = openStore(path.join(home, 'store'), { fsync: false });
  const catalog = await Catalog.open({
    store, dbPath: path.join(home, 'catalog.sqlite'), tmpDir: path.join(home, 'tmp'), verifyVersionFiles: false,
  });
  try {
    const ctime = new Date();
    const producer = { tool: 'test/fuse/big-fixture' };
    const files: VersionFile[] = [];
    const datums: DatumRecord[] = [];
    const bodies: Buffer[] = [];
    for (let d = 0; d < dirs; d++) {
      for (let f = 0; f < perDir; f++) {
        const n = files.length;
        const { path: p, body } = bigFile(n, perDir);
        const digest = hashBuffer(body);
        const id = uuidv7();
        files.push({ path: p, datumId: id, size: body.length, sha256: digest.sha256 });
        datums.push({
          id, name: p, size: body.length, sha256: digest.sha256, ctime: ctime.toISOString(), blobKey: keys.blob(digest.sha256),
          producer, tags: [], properties: {},
        });
        bodies.push(body);
      }
    }
    catalog.db.insertDatums(datums);

    const tmp = path.join(home, 'tmp');
    await fs.mkdir(tmp, { recursive: true });
    const partFile = path.join(tmp, `big-${process.pid}.vhpkgzip`);
    const entries = files.map((f, i): PackageEntry => ({ path: f.path, size: f.size, mtime: ctime, open: () => [bodies[i]] }));
    const parts = await writePackage(entries, { name: `dataset://${name}/${version}`, openPart: () => createWriteStream(partFile) });
    if (parts.length !== 1) throw new Error(`expected one package part, got ${parts.length}`);
    const pkgName = packagePartName(name, version, 1, 1);
    const rec = await catalog.putDatum({ path: partFile }, {
      name: pkgName, size: parts[0].size, producer,
      package: { kind: 'dataset', collection: name, version, part: 1, parts: 1 },
    });
    await fs.rm(partFile, { force: true });
    await catalog.createVersion({
      kind: 'dataset', collection: name, version, files, producer, ctime: ctime.toISOString(),
      packages: [{ datumId: rec.id, name: pkgName, size: parts[0].size, entries: parts[0].entries }],
    });
    return {
      uri: `dataset://${name}/${version}`, files: files.length, dirs, packageBytes: parts[0].size,
      packageFile: path.join(home, 'store', ...rec.blobKey.split('/')),
    };
  } finally {
    catalog.close();
  }
}
