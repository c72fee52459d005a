/**
 * Helpers for the outputs tests: a staging area + journal + catalog on a local directory store in a temp
 * dir, and readers of what really landed in the store (every datum record, each blob's bytes), so tests
 * check the store itself rather than what the code under test says it did.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { Catalog } from '../../src/catalog/catalog.js';
import { storeKeys, type DatumBatchRecord, type DatumRecord, type Producer } from '../../src/catalog/index.js';
import { currentOwner, Journal, type RunRow } from '../../src/outputs/journal.js';
import { StagingArea } from '../../src/outputs/staging.js';
import type { FinalizeContext } from '../../src/outputs/finalize.js';
import { LocalDirStore } from '../../src/store/local.js';
import type { ObjectStore } from '../../src/store/types.js';

export const PRODUCER: Producer = { tool: 'vhfs outputs', executionId: 'exec-test-1', project: 'p1', step: 'train', parameters: { lr: 0.1 }, commit: 'abc123' };

export interface OutputsEnv {
  dir: string;
  store: LocalDirStore;
  catalog: Catalog;
  staging: StagingArea;
  journal: Journal;
  run: RunRow;
  tree: string;
  ctx: (extra?: Partial<FinalizeContext>) => FinalizeContext;
  logs: string[];
  /** Write a file into the run's tree. */
  write: (p: string, data: string | Buffer) => Promise<Buffer>;
}

export async function outputsEnv(t: ExecutionContext, opts: { packaging?: boolean; store?: (s: LocalDirStore) => ObjectStore } = {}): Promise<OutputsEnv> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-outputs-')));
  const store = new LocalDirStore(path.join(dir, 'store'), { fsync: false });
  const catalog = await Catalog.open({ store: opts.store ? opts.store(store) : store, dbPath: path.join(dir, 'catalog.sqlite') });
  const staging = new StagingArea(path.join(dir, 'staging'));
  await fs.mkdir(staging.dir, { recursive: true });
  const journal = Journal.open(staging.journalFile);
  const run = journal.createRun(PRODUCER, opts.packaging ?? false, currentOwner());
  await staging.createRunDirs(run.id);
  const tree = staging.treeDir(run.id);
  const logs: string[] = [];
  t.teardown(async () => {
    journal.close();
    catalog.close();
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  return {
    dir, store, catalog, staging, journal, run, tree, logs,
    ctx: (extra = {}) => ({ catalog, journal, staging, outputsDir: '/valohai/outputs', quiet: true, log: (l) => logs.push(l), ...extra }),
    write: async (p, data) => {
      const abs = path.join(tree, p);
      await fs.mkdir(path.dirname(abs), { recursive: true });
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
      await fs.writeFile(abs, buf);
      return buf;
    },
  };
}

/** Every datum record in the store (the truth, not the catalog's SQLite). */
export async function storeDatums(store: ObjectStore): Promise<DatumRecord[]> {
  // Records written on their own, and those written 4096 to a batch object (datums/batches/).
  const page = await store.list(storeKeys.datumsPrefix);
  const out: DatumRecord[] = [];
  for (const o of page.objects) {
    const record = JSON.parse((await store.get(o.key)).toString('utf8')) as DatumRecord | DatumBatchRecord;
    if ('records' in record) out.push(...record.records);
    else out.push(record);
  }
  return out;
}

/** Datums grouped by name. */
export async function datumsByName(store: ObjectStore): Promise<Map<string, DatumRecord[]>> {
  const by = new Map<string, DatumRecord[]>();
  for (const d of await storeDatums(store)) by.set(d.name, [...(by.get(d.name) ?? []), d]);
  return by;
}

export async function blobBytes(store: ObjectStore, d: DatumRecord): Promise<Buffer> {
  return store.get(d.blobKey);
}

/** Deterministic bytes for a name (content differs per name and per `salt`). */
export function contentFor(name: string, size: number, salt = 0): Buffer {
  const out = Buffer.alloc(size);
  let x = 2166136261 ^ salt;
  for (let i = 0; i < name.length; i++) x = Math.imul(x ^ name.charCodeAt(i), 16777619);
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
