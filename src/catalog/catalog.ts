/**
 * The catalog: datums, dataset/model versions and aliases, Valohai-style.
 *
 * Truth lives in the object store (layout in docs/DESIGN.md, I/O in store-records.ts); SQLite (db.ts) is
 * this host's index of it. Rules that keep hosts sharing one store consistent:
 *  - every write goes to the store first, then SQLite; a crash in between leaves only a record SQLite has
 *    not seen yet, which the next lookup or `sync()` ingests;
 *  - immutable records (datums, versions) are looked up in SQLite first and, on a miss, read from the
 *    store and ingested (another host may have written them);
 *  - aliases are mutable, so every alias read goes to the store (one small get) and refreshes SQLite;
 *  - listings of collections, versions and aliases come from the store; queries over datums
 *    (`findDatums`) only see what this host has ingested — run `sync()` to pick up other hosts' datums.
 *
 * Datum bodies: a stream is spooled to a local temp file (its content address is only known at the end),
 * a file is read once when it fits in memory (hash, chunk table and upload from the same bytes) and
 * otherwise hashed in one pass and uploaded in a second that is hashed again; the blob goes create-if-
 * absent to `blobs/sha256/<hex>` (dedup), with its chunk table beside it (datum-writer.ts). Many datums
 * at once go through `datumWriter()`: records batched 4096 to an object, rollback on failure.
 *
 * Batched records are found from any host: a datum id missing from SQLite is looked up as
 * `datums/<id>.json`, then as a member of `datums/batches/<batchIdOf(id)>.json`, whose records are then
 * all ingested (the next lookups of that version's datums are local).
 */
import { createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { digestBytes, type BodyDigest } from '../util/hash.js';
import { isUuid, uuidv7 } from '../util/ids.js';
import { relativePathProblem } from '../util/path-rules.js';
import { mapLimit } from '../util/concurrency.js';
import type { ObjectStore } from '../store/types.js';
import { CatalogDb, type DatumQuery, type VersionSummary } from './db.js';
import { DatumWriter, storeContentBlob, storeFileBlob } from './datum-writer.js';
import {
  batchIdOf,
  casAlias,
  keys,
  NAME_RE,
  parseJson,
  parseKey,
  readAlias,
  readDatumBatch,
  readJson,
  writeDatumRecord,
  writeVersionRecord,
  datumRecord,
} from './store-records.js';
import type {
  AliasKind,
  AliasRecord,
  CollectionKind,
  DatumMeta,
  DatumRecord,
  PackageRef,
  Producer,
  VersionFile,
  VersionRecord,
} from './types.js';

export type { DatumQuery, VersionSummary } from './db.js';
export type { DatumMeta } from './types.js';

export type DatumBody = Buffer | Uint8Array | Readable | AsyncIterable<Uint8Array> | { path: string };

export interface VersionInput {
  kind: CollectionKind;
  collection: string;
  version: string;
  files: VersionFile[];
  packages?: PackageRef[];
  from?: string;
  properties?: Record<string, unknown>;
  producer: Producer;
  ctime?: string;
}

export interface SyncProgress {
  phase: 'datums' | 'versions' | 'aliases';
  done: number;
  total: number;
}

export interface SyncResult {
  datums: number;
  versions: number;
  aliases: number;
}

export interface CatalogOptions {
  store: ObjectStore;
  /** SQLite file (created if absent), or ':memory:'. */
  dbPath: string;
  /** Where streamed datum bodies are spooled while hashed (default os.tmpdir()). */
  tmpDir?: string;
  /** Check that every file of a new version names an existing datum of that size and hash (default true). */
  verifyVersionFiles?: boolean;
}

const INGEST_CONCURRENCY = 16;
const INGEST_BATCH = 500;

export class Catalog {
  /** Batch objects being fetched, so concurrent lookups of one batch's datums share one get. */
  private readonly batchReads = new Map<string, Promise<number>>();

  private constructor(
    readonly store: ObjectStore,
    readonly db: CatalogDb,
    private readonly tmpDir: string,
    private readonly verifyVersionFiles: boolean,
  ) {}

  static async open(opts: CatalogOptions): Promise<Catalog> {
    if (opts.dbPath !== ':memory:') await fs.mkdir(path.dirname(path.resolve(opts.dbPath)), { recursive: true });
    const db = new CatalogDb(opts.dbPath);
    return new Catalog(opts.store, db, opts.tmpDir ?? os.tmpdir(), opts.verifyVersionFiles ?? true);
  }

  close(): void {
    this.db.close();
  }

  // ---- datums ----

  async putDatum(body: DatumBody, meta: DatumMeta): Promise<DatumRecord> {
    checkDatumMeta(meta);
    const digest = await this.uploadBlob(body, meta.name);
    if (meta.size !== undefined && meta.size !== digest.size) {
      throw new VhfsError('INTEGRITY', `datum "${meta.name}": expected ${meta.size} bytes, got ${digest.size}`);
    }
    const rec = datumRecord(uuidv7(), meta, digest);
    await writeDatumRecord(this.store, rec);
    this.db.insertDatums([rec]);
    return rec;
  }

  /** Many datums as one unit: batched records, rollback on failure (datum-writer.ts). */
  datumWriter(): DatumWriter {
    return new DatumWriter(this.store, this.db, checkDatumMeta);
  }

  async getDatum(id: string): Promise<DatumRecord> {
    const rec = await this.findDatum(id);
    if (!rec) throw new VhfsError('NOT_FOUND', `datum://${id} not found in ${this.store.url}`);
    return rec;
  }

  /** A datum by `datum://<id>`, `<id>`, `datum://<alias>` or `<alias>` (ids win; they cannot be alias names). */
  async resolveDatumRef(ref: string): Promise<DatumRecord> {
    const bare = ref.startsWith('datum://') ? ref.slice('datum://'.length) : ref;
    if (isUuid(bare)) return this.getDatum(bare.toLowerCase());
    checkName(bare, 'datum alias');
    const alias = await this.getAlias('datum', '', bare);
    if (!alias) throw new VhfsError('NOT_FOUND', `datum://${bare}: no datum id or alias "${bare}" in ${this.store.url}`);
    const rec = await this.findDatum(alias.target);
    if (!rec) {
      throw new VhfsError(
        'ALIAS_DANGLING',
        `datum alias "${bare}" points to datum://${alias.target} which does not exist`,
      );
    }
    return rec;
  }

  findDatums(q: DatumQuery): DatumRecord[] {
    return this.db.findDatums(q);
  }

  // ---- versions ----

  async createVersion(input: VersionInput): Promise<VersionRecord> {
    checkName(input.collection, `${input.kind} name`);
    checkName(input.version, `${input.kind} version name`);
    const where = `${input.kind}://${input.collection}/${input.version}`;
    const files = [...input.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    for (let i = 0; i < files.length; i++) {
      checkFilePath(files[i].path, `${where}: file path`);
      if (i > 0 && files[i].path === files[i - 1].path) {
        throw new VhfsError('UNSAFE_PATH', `${where}: file path "${files[i].path}" repeats`);
      }
    }
    const packages = input.packages ?? [];
    if (this.verifyVersionFiles) await this.verifyFiles(where, files, packages);
    const rec: VersionRecord = {
      kind: input.kind,
      collection: input.collection,
      version: input.version,
      ctime: input.ctime ?? new Date().toISOString(),
      ...(input.from !== undefined ? { from: input.from } : {}),
      files,
      packages,
      properties: input.properties ?? {},
      producer: input.producer,
    };
    await writeVersionRecord(this.store, rec);
    this.db.insertVersion(rec);
    return rec;
  }

  /** A version by name, else by alias (`dataset://images/prod`). */
  async getVersion(kind: CollectionKind, collection: string, versionOrAlias: string): Promise<VersionRecord> {
    const version = await this.resolveVersion(kind, collection, versionOrAlias);
    return this.db.getVersion(kind, collection, version)!;
  }

  /** Like getVersion without the file list: cheap for million-file versions. */
  async getVersionSummary(kind: CollectionKind, collection: string, versionOrAlias: string): Promise<VersionSummary> {
    const version = await this.resolveVersion(kind, collection, versionOrAlias);
    const { rowid: _r, ...summary } = this.db.getVersionSummary(kind, collection, version)!;
    return summary;
  }

  /** The files of a version in path order, streamed from SQLite. */
  async versionFiles(kind: CollectionKind, collection: string, versionOrAlias: string): Promise<IterableIterator<VersionFile>> {
    const version = await this.resolveVersion(kind, collection, versionOrAlias);
    return this.db.iterateFiles(this.db.getVersionSummary(kind, collection, version)!.rowid);
  }

  /**
   * The version name `versionOrAlias` denotes (version names win over alias names), with the version
   * ingested into SQLite. NOT_FOUND lists what exists; ALIAS_DANGLING if the alias's target is gone.
   */
  async resolveVersion(kind: CollectionKind, collection: string, versionOrAlias: string): Promise<string> {
    const uri = `${kind}://${collection}/${versionOrAlias}`;
    checkName(collection, `${kind} name`, uri);
    checkName(versionOrAlias, `${kind} version or alias`, uri);
    if (await this.ensureVersion(kind, collection, versionOrAlias)) return versionOrAlias;
    const alias = await this.getAlias(kind, collection, versionOrAlias);
    if (alias) {
      if (await this.ensureVersion(kind, collection, alias.target)) return alias.target;
      throw new VhfsError(
        'ALIAS_DANGLING',
        `${kind} alias ${collection}/${versionOrAlias} points to ${kind}://${collection}/${alias.target} which does not exist`,
      );
    }
    const [versions, aliases] = await Promise.all([this.listVersions(kind, collection), this.aliasNamesInStore(kind, collection)]);
    if (versions.length === 0 && aliases.length === 0) {
      throw new VhfsError('NOT_FOUND', `${uri}: no ${kind} "${collection}" in ${this.store.url}`);
    }
    throw new VhfsError(
      'NOT_FOUND',
      `${uri}: no such version or alias of ${kind} "${collection}" ` +
        `(versions: ${versions.join(', ') || 'none'}; aliases: ${aliases.join(', ') || 'none'})`,
    );
  }

  async listCollections(kind: CollectionKind): Promise<string[]> {
    const page = await this.store.list(keys.collectionsPrefix(kind), { delimiter: '/' });
    const prefix = keys.collectionsPrefix(kind);
    return page.prefixes.map((p) => p.slice(prefix.length, -1)).sort(naturalCompare);
  }

  /** Version names of a collection, in natural order (v2 before v10). */
  async listVersions(kind: CollectionKind, collection: string): Promise<string[]> {
    checkName(collection, `${kind} name`);
    const prefix = keys.versionsPrefix(kind, collection);
    const page = await this.store.list(prefix);
    return page.objects
      .map((o) => o.key.slice(prefix.length))
      .filter((n) => n.endsWith('.json') && !n.includes('/'))
      .map((n) => n.slice(0, -'.json'.length))
      .sort(naturalCompare);
  }

  // ---- aliases ----

  /** Point an alias at an existing version (dataset/model) or datum id (scope '' for datums). */
  async setAlias(kind: AliasKind, scope: string, name: string, target: string): Promise<AliasRecord> {
    checkAliasScope(kind, scope);
    checkName(name, `${kind} alias name`);
    if (kind === 'datum') {
      if (!isUuid(target)) throw new VhfsError('BAD_ARGUMENT', `datum alias "${name}": target "${target}" is not a datum id`);
      await this.getDatum(target.toLowerCase());
      target = target.toLowerCase();
    } else {
      checkName(target, `${kind} version name`);
      if (!(await this.ensureVersion(kind, scope, target))) {
        throw new VhfsError('NOT_FOUND', `${kind}://${scope}/${target} not found in ${this.store.url}; cannot alias it as "${name}"`);
      }
    }
    const { record, etag } = await casAlias(this.store, kind, scope, name, target);
    this.db.upsertAlias(record, etag);
    return record;
  }

  /** The alias as the store has it now (SQLite refreshed), or undefined. */
  async getAlias(kind: AliasKind, scope: string, name: string): Promise<AliasRecord | undefined> {
    checkAliasScope(kind, scope);
    checkName(name, `${kind} alias name`);
    const stored = await readAlias(this.store, kind, scope, name);
    if (!stored) {
      this.db.deleteAlias(kind, scope, name);
      return undefined;
    }
    if (this.db.getAlias(kind, scope, name)?.etag !== stored.etag) this.db.upsertAlias(stored.record, stored.etag);
    return stored.record;
  }

  async aliasHistory(kind: AliasKind, scope: string, name: string): Promise<AliasRecord['history']> {
    const alias = await this.getAlias(kind, scope, name);
    if (!alias) throw new VhfsError('NOT_FOUND', `${aliasLabel(kind, scope, name)} not found in ${this.store.url}`);
    return alias.history;
  }

  /** All aliases of a collection (or all datum aliases with scope ''), by name; SQLite refreshed by etag. */
  async listAliases(kind: AliasKind, scope: string): Promise<AliasRecord[]> {
    checkAliasScope(kind, scope);
    const prefix = keys.aliasesPrefix(kind, scope);
    const page = await this.store.list(prefix);
    const seen = new Set<string>();
    const out: AliasRecord[] = [];
    for (const obj of page.objects) {
      const parsed = parseKey(obj.key);
      if (parsed?.type !== 'alias' || parsed.kind !== kind || parsed.scope !== scope) continue;
      seen.add(parsed.name);
      const cached = this.db.getAlias(kind, scope, parsed.name);
      if (cached && cached.etag === obj.etag) {
        out.push(cached.record);
        continue;
      }
      const rec = await this.getAlias(kind, scope, parsed.name);
      if (rec) out.push(rec);
    }
    for (const name of this.db.aliasNames(kind, scope)) if (!seen.has(name)) this.db.deleteAlias(kind, scope, name);
    return out.sort((a, b) => naturalCompare(a.name, b.name));
  }

  // ---- sync ----

  /** Ingest every datum, version and alias of the store that SQLite lacks or has stale. Idempotent. */
  async sync(onProgress?: (p: SyncProgress) => void): Promise<SyncResult> {
    const result: SyncResult = { datums: 0, versions: 0, aliases: 0 };

    const listed = (await this.store.list(keys.datumsPrefix)).objects.map((o) => parseKey(o.key));
    const datumIds = listed.flatMap((p) => (p?.type === 'datum' && !this.db.hasDatum(p.id) ? [p.id] : []));
    const batchIds = listed.flatMap((p) => (p?.type === 'datum-batch' && !this.db.hasBatch(p.batchId) ? [p.batchId] : []));
    const units = datumIds.length + batchIds.length;
    for (let i = 0; i < datumIds.length; i += INGEST_BATCH) {
      const batch = datumIds.slice(i, i + INGEST_BATCH);
      const recs = await mapLimit(batch, INGEST_CONCURRENCY, (id) => this.readDatumRecord(id));
      result.datums += this.db.insertDatums(recs.filter((r): r is DatumRecord => r !== undefined));
      onProgress?.({ phase: 'datums', done: Math.min(i + INGEST_BATCH, datumIds.length), total: units });
    }
    let batchesDone = 0;
    await mapLimit(batchIds, INGEST_CONCURRENCY, async (batchId) => {
      const added = await this.ingestBatch(batchId); // not `+= await`: that reads the sum before waiting
      result.datums += added;
      onProgress?.({ phase: 'datums', done: datumIds.length + ++batchesDone, total: units });
    });

    const versionKeys: Array<{ kind: CollectionKind; collection: string; version: string }> = [];
    for (const kind of ['dataset', 'model'] as const) {
      for (const o of (await this.store.list(keys.collectionsPrefix(kind))).objects) {
        const p = parseKey(o.key);
        if (p?.type === 'version' && !this.db.hasVersion(p.kind, p.collection, p.version)) versionKeys.push(p);
      }
    }
    let done = 0;
    for (const v of versionKeys) {
      if (await this.ingestVersion(v.kind, v.collection, v.version)) result.versions++;
      onProgress?.({ phase: 'versions', done: ++done, total: versionKeys.length });
    }

    const known = this.db.aliasEtags();
    const aliasObjs = (await this.store.list('aliases/')).objects;
    done = 0;
    for (const o of aliasObjs) {
      const p = parseKey(o.key);
      if (p?.type !== 'alias') continue;
      const id = `${p.kind}/${p.scope}/${p.name}`;
      if (known.get(id)?.etag !== o.etag) {
        await this.getAlias(p.kind, p.scope, p.name);
        result.aliases++;
      }
      known.delete(id);
      onProgress?.({ phase: 'aliases', done: ++done, total: aliasObjs.length });
    }
    for (const gone of known.values()) this.db.deleteAlias(gone.kind, gone.scope, gone.name);
    return result;
  }

  // ---- internals ----

  private async findDatum(id: string): Promise<DatumRecord | undefined> {
    if (!isUuid(id)) throw new VhfsError('BAD_ARGUMENT', `datum://${id}: a datum id is a UUID`);
    id = id.toLowerCase();
    const cached = this.db.getDatum(id);
    if (cached) return cached;
    const rec = await this.readDatumRecord(id);
    if (rec) this.db.insertDatums([rec]);
    return rec;
  }

  /** The record of datum `id` from the store: its own object, else its batch (ingested whole), else undefined. */
  private async readDatumRecord(id: string): Promise<DatumRecord | undefined> {
    const key = keys.datum(id);
    const rec = await readJson<DatumRecord>(this.store, key);
    if (rec && (rec.id !== id || typeof rec.sha256 !== 'string' || typeof rec.size !== 'number')) {
      throw new VhfsError('INTEGRITY', `${this.store.url}/${key}: not a datum record for ${id}`);
    }
    if (rec) return rec;
    const batchId = batchIdOf(id);
    if (!this.db.hasBatch(batchId)) {
      let pending = this.batchReads.get(batchId);
      if (!pending) {
        pending = this.ingestBatch(batchId).finally(() => this.batchReads.delete(batchId));
        this.batchReads.set(batchId, pending);
      }
      await pending;
    }
    return this.db.getDatum(id);
  }

  /** Ingest every record of batch object `batchId` (absent: nothing); returns how many were new. */
  private async ingestBatch(batchId: string): Promise<number> {
    const batch = await readDatumBatch(this.store, batchId);
    if (!batch) return 0;
    const added = this.db.insertDatums(batch.records);
    this.db.markBatchIngested(batchId);
    return added;
  }

  /** True if the version exists (ingesting it from the store if SQLite lacks it). */
  private async ensureVersion(kind: CollectionKind, collection: string, version: string): Promise<boolean> {
    if (this.db.hasVersion(kind, collection, version)) return true;
    return this.ingestVersion(kind, collection, version);
  }

  private async ingestVersion(kind: CollectionKind, collection: string, version: string): Promise<boolean> {
    const key = keys.version(kind, collection, version);
    let buf: Buffer;
    try {
      buf = await this.store.get(key);
    } catch (err) {
      if (isVhfsError(err, 'NOT_FOUND')) return false;
      throw err;
    }
    const rec = parseJson<VersionRecord>(this.store, key, buf);
    if (rec.kind !== kind || rec.collection !== collection || rec.version !== version || !Array.isArray(rec.files)) {
      throw new VhfsError('INTEGRITY', `${this.store.url}/${key}: not the version record of ${kind}://${collection}/${version}`);
    }
    this.db.insertVersion(rec);
    return true;
  }

  private async aliasNamesInStore(kind: CollectionKind, collection: string): Promise<string[]> {
    const prefix = keys.aliasesPrefix(kind, collection);
    const page = await this.store.list(prefix);
    return page.objects
      .map((o) => o.key.slice(prefix.length))
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length))
      .sort(naturalCompare);
  }

  /**
   * Every file and package must name an existing datum with the same size and hash; an unpackaged
   * version's files must have standalone blobs (the read path serves them from `blobs/sha256/<hex>`).
   */
  private async verifyFiles(where: string, files: VersionFile[], packages: PackageRef[]): Promise<void> {
    const missing: Array<{ id: string; label: string; size: number; sha256?: string; file: boolean }> = [];
    /** Files of an unpackaged version whose datums are packed: their standalone blob must exist too. */
    const packedOnly: Array<{ id: string; label: string; sha256: string }> = [];
    const check = (label: string, d: { size: number; sha256: string; packed: boolean }, id: string, size: number, sha256: string | undefined, file: boolean) => {
      if (d.size !== size || (sha256 !== undefined && d.sha256 !== sha256)) {
        throw new VhfsError('INTEGRITY', `${where}: ${label}: size/sha256 differ from datum://${id}`);
      }
      if (file && d.packed && packages.length === 0) packedOnly.push({ id, label, sha256: d.sha256 });
    };
    const first = (label: string, id: string, size: number, sha256: string | undefined, file: boolean) => {
      if (!isUuid(id)) throw new VhfsError('BAD_ARGUMENT', `${where}: ${label}: datum id "${id}" is not a UUID`);
      const d = this.db.datumDigest(id);
      if (!d) missing.push({ id, label, size, sha256, file });
      else check(label, d, id, size, sha256, file);
    };
    for (const f of files) first(`file "${f.path}"`, f.datumId, f.size, f.sha256, true);
    for (const p of packages) first(`package "${p.name}"`, p.datumId, p.size, undefined, false);
    // Ingesting one batch answers for up to 4096 ids: look in SQLite again before asking the store.
    const fetched = await mapLimit(missing, INGEST_CONCURRENCY, async (m) => this.db.getDatum(m.id) ?? (await this.readDatumRecord(m.id)));
    const found: DatumRecord[] = [];
    missing.forEach((m, i) => {
      const d = fetched[i];
      if (!d) throw new VhfsError('NOT_FOUND', `${where}: ${m.label}: datum://${m.id} not found in ${this.store.url}`);
      check(m.label, { size: d.size, sha256: d.sha256, packed: d.packed !== undefined }, m.id, m.size, m.sha256, m.file);
      found.push(d);
    });
    if (found.length) this.db.insertDatums(found);
    await mapLimit(packedOnly, INGEST_CONCURRENCY, async (p) => {
      if (await this.store.head(keys.blob(p.sha256))) return;
      throw new VhfsError(
        'BAD_ARGUMENT',
        `${where}: ${p.label}: datum://${p.id} is stored only inside a package; an unpackaged version needs its own copy ` +
          '(createVersion in create-version.ts makes one)',
      );
    });
  }

  /** Hash the body and make sure `blobs/sha256/<hex>` holds it (with its chunk table); returns the digest. */
  private async uploadBlob(body: DatumBody, name: string): Promise<BodyDigest> {
    const label = `datum "${name}"`;
    if (body instanceof Uint8Array) {
      const digest = digestBytes(body, { chunks: true });
      await storeContentBlob(this.store, digest, body, label);
      return digest;
    }
    if (isPathBody(body)) return storeFileBlob(this.store, body.path, { label: `${label}: ${body.path}`, followLink: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
    const spool = path.join(this.tmpDir, `vhfs-upload-${uuidv7()}`);
    try {
      await pipeline(body, createWriteStream(spool, { flags: 'wx' }));
      return await storeFileBlob(this.store, spool, { label });
    } finally {
      await fs.rm(spool, { force: true });
    }
  }
}

// ---- validation and small helpers ----

export function checkName(name: string, what: string, uri?: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new VhfsError(
      'BAD_ARGUMENT',
      `${uri ? uri + ': ' : ''}bad ${what} ${JSON.stringify(name)}: must match ${NAME_RE.source}`,
    );
  }
}

function checkDatumMeta(meta: DatumMeta): void {
  checkFilePath(meta.name, `datum name`);
  for (const t of meta.tags ?? []) {
    if (typeof t !== 'string' || t === '' || t.includes('\0')) {
      throw new VhfsError('BAD_ARGUMENT', `datum "${meta.name}": bad tag ${JSON.stringify(t)}`);
    }
  }
}

function checkAliasScope(kind: AliasKind, scope: string): void {
  if (kind === 'datum') {
    if (scope !== '') throw new VhfsError('BAD_ARGUMENT', `datum aliases have no scope (got "${scope}")`);
  } else {
    checkName(scope, `${kind} name`);
  }
}

/** The relative-path rules of src/util/path-rules.ts. */
function checkFilePath(p: string, what: string): void {
  const bad = relativePathProblem(p);
  if (bad) throw new VhfsError('UNSAFE_PATH', `${what} ${JSON.stringify(p)} is unsafe: it ${bad}`);
}

function aliasLabel(kind: AliasKind, scope: string, name: string): string {
  return kind === 'datum' ? `datum alias "${name}"` : `${kind} alias ${scope}/${name}`;
}

function isPathBody(body: DatumBody): body is { path: string } {
  return typeof (body as { path?: unknown }).path === 'string' && !(Symbol.asyncIterator in body);
}

const collator = new Intl.Collator('en', { numeric: true });
function naturalCompare(a: string, b: string): number {
  return collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}
