/**
 * A catalog on the in-memory store, behind a `FaultyStore` the test can arm at any point, with a few
 * versions and datums made through the real creation path (`createVersion`, `putDatum`, `setAlias`) from
 * files on a temp directory. For tests below the mount: resolver, input set, FUSE ops, no /dev/fuse.
 *
 * Contents (every byte deterministic, so expectations come from `files`, never from vhfs):
 *  - dataset://pkg/v1   packaged (one .vhpkgzip), alias `latest`
 *  - dataset://plain/v1 not packaged (one blob per file)
 *  - model://net/v1     packaged model version
 *  - datum alias `weights` → a datum named `weights.bin`
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Catalog } from '../../src/catalog/catalog.js';
import { createVersion, listDirectory } from '../../src/catalog/create-version.js';
import type { DatumRecord } from '../../src/catalog/types.js';
import { FaultyStore } from '../../src/store/faulty.js';
import { MemoryStore } from './memory-store.js';

/** `size` deterministic bytes, different for each `seed`. */
export function content(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (Math.imul(i + 1, 2654435761) ^ Math.imul(seed, 40503)) >>> 24;
  return b;
}

/** Relative path → bytes, per version. The 600 KiB file spans three 256 KiB blocks. */
export const TREES: Record<'pkg' | 'plain' | 'net', Record<string, Buffer>> = {
  pkg: {
    'a/x.txt': content(1, 1000),
    'a/b/big.bin': content(2, 600 * 1024 + 7),
    'empty.txt': Buffer.alloc(0),
    'top.txt': content(3, 5000),
  },
  plain: {
    'p/one.bin': content(4, 70_000),
    'p/q/two.bin': content(5, 123),
  },
  net: {
    'weights/layer0.bin': content(6, 40_000),
    'config.json': Buffer.from('{"layers": 1}\n'),
  },
};
export const WEIGHTS = content(7, 9999);

export interface MemoryCatalog {
  dir: string;
  mem: MemoryStore;
  /** Wraps `mem`; set `store.plan` to inject faults from then on. */
  store: FaultyStore;
  catalog: Catalog;
  weights: DatumRecord;
  /** Where the local-path trees were written: `<dir>/src/<pkg|plain|net>/…`. */
  src: string;
}

/** Build the fixture; closed and removed at teardown. */
export async function memoryCatalog(t: ExecutionContext): Promise<MemoryCatalog> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-memcat-'));
  const mem = new MemoryStore();
  const store = new FaultyStore(mem);
  const catalog = await Catalog.open({ store, dbPath: path.join(dir, 'catalog.sqlite'), tmpDir: path.join(dir, 'tmp') });
  t.teardown(async () => {
    catalog.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const src = path.join(dir, 'src');
  for (const [name, tree] of Object.entries(TREES)) {
    for (const [rel, data] of Object.entries(tree)) {
      const file = path.join(src, name, rel);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, data);
    }
  }
  const producer = { tool: 'test/helpers/catalog-fixture' };
  const common = { producer, quiet: true, tmpDir: path.join(dir, 'tmp') };
  await createVersion(catalog, { ...common, collection: 'pkg', version: 'v1', files: await listDirectory(path.join(src, 'pkg')), packaging: true, aliases: ['latest'] });
  await createVersion(catalog, { ...common, collection: 'plain', version: 'v1', files: await listDirectory(path.join(src, 'plain')) });
  await createVersion(catalog, { ...common, kind: 'model', collection: 'net', version: 'v1', files: await listDirectory(path.join(src, 'net')), packaging: true });
  const weights = await catalog.putDatum(WEIGHTS, { name: 'weights.bin', producer });
  await catalog.setAlias('datum', '', 'weights', weights.id);
  // Fixture building is not what tests measure.
  store.calls.head = store.calls.get = store.calls.getRange = store.calls.getStream = store.calls.put = store.calls.list = store.calls.delete = 0;
  mem.ranges = [];
  Object.assign(mem.stats, { gets: 0, bytesRead: 0, puts: 0, bytesWritten: 0, heads: 0, lists: 0 });
  return { dir, mem, store, catalog, weights, src };
}

/** The package blob key of a packaged version (the store's truth, read through the catalog's records). */
export async function packageKey(c: MemoryCatalog, kind: 'dataset' | 'model', collection: string, version: string): Promise<string> {
  const summary = await c.catalog.getVersionSummary(kind, collection, version);
  if (summary.packages.length !== 1) throw new Error(`${kind}://${collection}/${version}: ${summary.packages.length} packages`);
  return (await c.catalog.getDatum(summary.packages[0].datumId)).blobKey;
}
