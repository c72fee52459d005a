/**
 * This host's SQLite index of the catalog (the object store holds the truth; this file can be deleted
 * and rebuilt with `Catalog.sync()`).
 *
 * - better-sqlite3 (synchronous, one connection per process), WAL so readers in other processes (CLI,
 *   FUSE daemon) never block on a writer, `busy_timeout` so concurrent writers wait instead of failing.
 *   `synchronous=NORMAL` is enough: losing the last transaction on power loss only means a re-sync.
 * - Schema changes are numbered migrations; `PRAGMA user_version` records how many ran.
 * - Records are normalised so queries are indexed: tags and top-level properties get their own tables
 *   (property values compared as canonical JSON text), version files one row per file, inserted with one
 *   prepared statement inside one transaction (a million rows in seconds).
 * - Immutable records are inserted with INSERT OR IGNORE, so re-ingesting (sync, two processes
 *   racing) is harmless. Alias rows are replaced wholesale together with their history.
 */
import Database from 'better-sqlite3';
import { VhfsError } from '../util/errors.js';
import { openSharedDb } from '../util/sqlite.js';
import type {
  AliasKind,
  AliasRecord,
  CollectionKind,
  DatumRecord,
  PackageRef,
  Producer,
  VersionFile,
  VersionRecord,
} from './types.js';

const FILE_BATCH = 64;

const MIGRATIONS: string[] = [
  `
  CREATE TABLE datums (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    ctime TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    producer_json TEXT NOT NULL,
    properties_json TEXT NOT NULL,
    tags_json TEXT NOT NULL,
    package_json TEXT
  ) WITHOUT ROWID;
  CREATE INDEX datums_name ON datums(name);
  CREATE INDEX datums_sha256 ON datums(sha256);
  CREATE TABLE datum_tags (
    tag TEXT NOT NULL,
    datum_id TEXT NOT NULL,
    PRIMARY KEY (tag, datum_id)
  ) WITHOUT ROWID;
  CREATE TABLE datum_props (
    key TEXT NOT NULL,
    value_json TEXT NOT NULL,
    datum_id TEXT NOT NULL,
    PRIMARY KEY (key, value_json, datum_id)
  ) WITHOUT ROWID;
  CREATE TABLE collections (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (kind, name)
  ) WITHOUT ROWID;
  CREATE TABLE versions (
    rowid INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    collection TEXT NOT NULL,
    version TEXT NOT NULL,
    ctime TEXT NOT NULL,
    from_uri TEXT,
    properties_json TEXT NOT NULL,
    producer_json TEXT NOT NULL,
    file_count INTEGER NOT NULL,
    total_size INTEGER NOT NULL,
    UNIQUE (kind, collection, version)
  );
  CREATE TABLE version_files (
    version_rowid INTEGER NOT NULL,
    path TEXT NOT NULL,
    datum_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (version_rowid, path)
  ) WITHOUT ROWID;
  CREATE TABLE packages (
    version_rowid INTEGER NOT NULL,
    part INTEGER NOT NULL,
    datum_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    PRIMARY KEY (version_rowid, part)
  ) WITHOUT ROWID;
  CREATE TABLE aliases (
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (kind, scope, name)
  ) WITHOUT ROWID;
  CREATE INDEX aliases_target ON aliases(kind, scope, target);
  CREATE TABLE alias_history (
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (kind, scope, name, seq)
  ) WITHOUT ROWID;
  `,
  // 2: datums stored as members of a package part; batch objects already ingested (so sync skips them).
  `
  ALTER TABLE datums ADD COLUMN packed_json TEXT;
  CREATE TABLE datum_batches (
    batch_id TEXT PRIMARY KEY
  ) WITHOUT ROWID;
  `,
];

export interface DatumQuery {
  tag?: string;
  name?: string;
  property?: { key: string; value: unknown };
  limit?: number;
}

interface DatumRow {
  id: string;
  name: string;
  size: number;
  sha256: string;
  ctime: string;
  blob_key: string;
  producer_json: string;
  properties_json: string;
  tags_json: string;
  package_json: string | null;
  packed_json: string | null;
}

interface VersionRow {
  rowid: number;
  kind: CollectionKind;
  collection: string;
  version: string;
  ctime: string;
  from_uri: string | null;
  properties_json: string;
  producer_json: string;
  file_count: number;
  total_size: number;
}

/** A version without its file list (cheap to load for million-file versions). */
export interface VersionSummary {
  kind: CollectionKind;
  collection: string;
  version: string;
  ctime: string;
  from?: string;
  fileCount: number;
  totalSize: number;
  packages: PackageRef[];
  properties: Record<string, unknown>;
  producer: Producer;
}

/** SQLite `cache_size` while a version's file list is scanned (negative: KiB). */
export const SCAN_CACHE_SIZE = -2048;

export class CatalogDb {
  readonly db: Database.Database;
  private readonly st: ReturnType<CatalogDb['prepare']>;

  constructor(readonly path: string) {
    try {
      this.db = openSharedDb(path, {
        busyTimeoutMs: 10_000, migrations: MIGRATIONS, label: `catalog database ${path}`,
        // 64 MiB: million-row version inserts stay in cache. Foreign keys off: records arrive in any order.
        pragmas: ['foreign_keys = OFF', 'cache_size = -65536'],
      });
    } catch (err) {
      if (err instanceof VhfsError) throw err;
      throw new VhfsError('STORE', `catalog database ${path}: cannot open (${(err as Error).message})`, { cause: err });
    }
    this.st = this.prepare();
  }

  close(): void {
    this.db.close();
  }

  private prepare() {
    const d = this.db;
    return {
      insDatum: d.prepare(
        `INSERT OR IGNORE INTO datums (id, name, size, sha256, ctime, blob_key, producer_json, properties_json, tags_json, package_json, packed_json)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      delDatum: d.prepare('DELETE FROM datums WHERE id = ?'),
      delTags: d.prepare('DELETE FROM datum_tags WHERE datum_id = ? AND tag = ?'),
      delProp: d.prepare('DELETE FROM datum_props WHERE key = ? AND value_json = ? AND datum_id = ?'),
      insBatch: d.prepare('INSERT OR IGNORE INTO datum_batches (batch_id) VALUES (?)'),
      hasBatch: d.prepare('SELECT 1 FROM datum_batches WHERE batch_id = ?').pluck(),
      delBatch: d.prepare('DELETE FROM datum_batches WHERE batch_id = ?'),
      insTag: d.prepare('INSERT OR IGNORE INTO datum_tags (tag, datum_id) VALUES (?, ?)'),
      insProp: d.prepare('INSERT OR IGNORE INTO datum_props (key, value_json, datum_id) VALUES (?, ?, ?)'),
      getDatum: d.prepare('SELECT * FROM datums WHERE id = ?'),
      hasDatum: d.prepare('SELECT 1 FROM datums WHERE id = ?').pluck(),
      datumDigest: d.prepare('SELECT size, sha256, packed_json IS NOT NULL AS packed FROM datums WHERE id = ?'),
      insCollection: d.prepare('INSERT OR IGNORE INTO collections (kind, name) VALUES (?, ?)'),
      insVersion: d.prepare(
        `INSERT OR IGNORE INTO versions (kind, collection, version, ctime, from_uri, properties_json, producer_json, file_count, total_size)
         VALUES (@kind, @collection, @version, @ctime, @from_uri, @properties_json, @producer_json, @file_count, @total_size)`,
      ),
      insFile: d.prepare('INSERT INTO version_files (version_rowid, path, datum_id, size, sha256) VALUES (?, ?, ?, ?, ?)'),
      insFiles: d.prepare(
        'INSERT INTO version_files (version_rowid, path, datum_id, size, sha256) VALUES ' +
          Array(FILE_BATCH).fill('(?, ?, ?, ?, ?)').join(', '),
      ),
      insPackage: d.prepare(
        'INSERT INTO packages (version_rowid, part, datum_id, name, size, entries) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getVersion: d.prepare('SELECT * FROM versions WHERE kind = ? AND collection = ? AND version = ?'),
      files: d.prepare('SELECT path, datum_id, size, sha256 FROM version_files WHERE version_rowid = ? ORDER BY path'),
      packages: d.prepare('SELECT datum_id, name, size, entries FROM packages WHERE version_rowid = ? ORDER BY part'),
      versionNames: d.prepare('SELECT version FROM versions WHERE kind = ? AND collection = ?').pluck(),
      collections: d.prepare('SELECT name FROM collections WHERE kind = ? ORDER BY name').pluck(),
      upAlias: d.prepare(
        `INSERT INTO aliases (kind, scope, name, target, etag) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (kind, scope, name) DO UPDATE SET target = excluded.target, etag = excluded.etag`,
      ),
      delHistory: d.prepare('DELETE FROM alias_history WHERE kind = ? AND scope = ? AND name = ?'),
      insHistory: d.prepare(
        'INSERT INTO alias_history (kind, scope, name, seq, target, at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      delAlias: d.prepare('DELETE FROM aliases WHERE kind = ? AND scope = ? AND name = ?'),
      getAlias: d.prepare('SELECT target, etag FROM aliases WHERE kind = ? AND scope = ? AND name = ?'),
      history: d.prepare(
        'SELECT target, at FROM alias_history WHERE kind = ? AND scope = ? AND name = ? ORDER BY seq',
      ),
      aliasesIn: d.prepare('SELECT name FROM aliases WHERE kind = ? AND scope = ? ORDER BY name').pluck(),
      allAliases: d.prepare('SELECT kind, scope, name, etag FROM aliases'),
    };
  }

  // ---- datums ----

  /**
   * Insert datums not yet known (one transaction). Returns how many were new. Positional parameters and
   * the JSON of shared objects (one producer for a whole version) made once: a 500,000-datum version is
   * inserted here in one go.
   */
  insertDatums(recs: readonly DatumRecord[]): number {
    let added = 0;
    const json = new Map<unknown, string>();
    const shared = (v: unknown) => {
      let text = json.get(v);
      if (text === undefined) json.set(v, (text = JSON.stringify(v)));
      return text;
    };
    this.db.transaction(() => {
      for (const r of recs) {
        const res = this.st.insDatum.run(
          r.id, r.name, r.size, r.sha256, r.ctime, r.blobKey,
          shared(r.producer ?? {}),
          r.properties && Object.keys(r.properties).length > 0 ? JSON.stringify(r.properties) : '{}',
          r.tags && r.tags.length > 0 ? JSON.stringify(r.tags) : '[]',
          r.package ? JSON.stringify(r.package) : null,
          r.packed ? JSON.stringify(r.packed) : null,
        );
        if (res.changes === 0) continue;
        added++;
        for (const tag of r.tags ?? []) this.st.insTag.run(tag, r.id);
        for (const [k, v] of Object.entries(r.properties ?? {})) this.st.insProp.run(k, canonicalJson(v), r.id);
      }
    })();
    return added;
  }

  /**
   * Forget datums (a failed creation rolling back what it recorded), with their tags and properties.
   * Only for datums whose store records are being deleted too: SQLite must never know more than the store.
   */
  deleteDatums(recs: readonly DatumRecord[]): void {
    this.db.transaction(() => {
      for (const r of recs) {
        this.st.delDatum.run(r.id);
        for (const tag of r.tags ?? []) this.st.delTags.run(r.id, tag);
        for (const [k, v] of Object.entries(r.properties ?? {})) this.st.delProp.run(k, canonicalJson(v), r.id);
      }
    })();
  }

  /** Record that every datum of batch object `batchId` has been ingested (sync then skips it). */
  markBatchIngested(batchId: string): void {
    this.st.insBatch.run(batchId);
  }

  forgetBatch(batchId: string): void {
    this.st.delBatch.run(batchId);
  }

  hasBatch(batchId: string): boolean {
    return this.st.hasBatch.get(batchId) !== undefined;
  }

  getDatum(id: string): DatumRecord | undefined {
    const row = this.st.getDatum.get(id) as DatumRow | undefined;
    return row && datumOf(row);
  }

  hasDatum(id: string): boolean {
    return this.st.hasDatum.get(id) !== undefined;
  }

  /** Size, hash and whether the bytes live only inside a package part (no standalone blob). */
  datumDigest(id: string): { size: number; sha256: string; packed: boolean } | undefined {
    const row = this.st.datumDigest.get(id) as { size: number; sha256: string; packed: number } | undefined;
    return row && { size: row.size, sha256: row.sha256, packed: row.packed === 1 };
  }

  findDatums(q: DatumQuery): DatumRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.tag !== undefined) {
      where.push('d.id IN (SELECT datum_id FROM datum_tags WHERE tag = ?)');
      args.push(q.tag);
    }
    if (q.name !== undefined) {
      where.push('d.name = ?');
      args.push(q.name);
    }
    if (q.property !== undefined) {
      where.push('d.id IN (SELECT datum_id FROM datum_props WHERE key = ? AND value_json = ?)');
      args.push(q.property.key, canonicalJson(q.property.value));
    }
    const sql =
      `SELECT d.* FROM datums d ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY d.id` +
      (q.limit !== undefined ? ` LIMIT ${Math.max(0, Math.floor(q.limit))}` : '');
    return (this.db.prepare(sql).all(...args) as DatumRow[]).map(datumOf);
  }

  // ---- versions ----

  /** Insert a version and its files in one transaction; false if it was already there. */
  insertVersion(rec: VersionRecord): boolean {
    return this.db.transaction(() => {
      this.st.insCollection.run(rec.kind, rec.collection);
      let total = 0;
      for (const f of rec.files) total += f.size;
      const res = this.st.insVersion.run({
        kind: rec.kind,
        collection: rec.collection,
        version: rec.version,
        ctime: rec.ctime,
        from_uri: rec.from ?? null,
        properties_json: JSON.stringify(rec.properties ?? {}),
        producer_json: JSON.stringify(rec.producer ?? {}),
        file_count: rec.files.length,
        total_size: total,
      });
      if (res.changes === 0) return false;
      const rowid = Number(res.lastInsertRowid);
      this.insertFiles(rowid, rec.files);
      (rec.packages ?? []).forEach((p, i) => this.st.insPackage.run(rowid, i, p.datumId, p.name, p.size, p.entries));
      return true;
    }).immediate();
  }

  /** Rows in batches of FILE_BATCH per statement: per-call overhead dominates single-row inserts. */
  private insertFiles(rowid: number, files: VersionFile[]): void {
    const args = new Array<string | number>(FILE_BATCH * 5);
    let i = 0;
    for (; i + FILE_BATCH <= files.length; i += FILE_BATCH) {
      for (let j = 0; j < FILE_BATCH; j++) {
        const f = files[i + j];
        args[j * 5] = rowid;
        args[j * 5 + 1] = f.path;
        args[j * 5 + 2] = f.datumId;
        args[j * 5 + 3] = f.size;
        args[j * 5 + 4] = f.sha256;
      }
      this.st.insFiles.run(args);
    }
    for (; i < files.length; i++) this.st.insFile.run(rowid, files[i].path, files[i].datumId, files[i].size, files[i].sha256);
  }

  getVersionSummary(kind: CollectionKind, collection: string, version: string): (VersionSummary & { rowid: number }) | undefined {
    const row = this.st.getVersion.get(kind, collection, version) as VersionRow | undefined;
    if (!row) return undefined;
    const packages = (this.st.packages.all(row.rowid) as Array<{ datum_id: string; name: string; size: number; entries: number }>).map(
      (p) => ({ datumId: p.datum_id, name: p.name, size: p.size, entries: p.entries }),
    );
    return {
      rowid: row.rowid,
      kind: row.kind,
      collection: row.collection,
      version: row.version,
      ctime: row.ctime,
      ...(row.from_uri !== null ? { from: row.from_uri } : {}),
      fileCount: row.file_count,
      totalSize: row.total_size,
      packages,
      properties: JSON.parse(row.properties_json),
      producer: JSON.parse(row.producer_json),
    };
  }

  /**
   * A version's files in path order, one row at a time (no array of a million objects). The scan reads every
   * page of the version once, so it runs with a small page cache: with the connection's 64 MiB (there for bulk
   * inserts) a million-row scan (inputs.json of a mount) left 64 MiB resident in the mount daemon for nothing.
   * The cache size is given back after.
   */
  *iterateFiles(rowid: number): IterableIterator<VersionFile> {
    const cacheSize = this.db.pragma('cache_size', { simple: true }) as number;
    this.db.pragma(`cache_size = ${SCAN_CACHE_SIZE}`);
    try {
      for (const r of this.st.files.iterate(rowid) as IterableIterator<{ path: string; datum_id: string; size: number; sha256: string }>) {
        yield { path: r.path, datumId: r.datum_id, size: r.size, sha256: r.sha256 };
      }
    } finally {
      this.db.pragma(`cache_size = ${cacheSize}`);
    }
  }

  getVersion(kind: CollectionKind, collection: string, version: string): VersionRecord | undefined {
    const s = this.getVersionSummary(kind, collection, version);
    if (!s) return undefined;
    const { rowid, fileCount: _c, totalSize: _t, ...rest } = s;
    return { ...rest, files: [...this.iterateFiles(rowid)] };
  }

  hasVersion(kind: CollectionKind, collection: string, version: string): boolean {
    return this.st.getVersion.get(kind, collection, version) !== undefined;
  }

  versionNames(kind: CollectionKind, collection: string): string[] {
    return this.st.versionNames.all(kind, collection) as string[];
  }

  collections(kind: CollectionKind): string[] {
    return this.st.collections.all(kind) as string[];
  }

  // ---- aliases ----

  upsertAlias(rec: AliasRecord, etag: string): void {
    this.db.transaction(() => {
      this.st.upAlias.run(rec.kind, rec.scope, rec.name, rec.target, etag);
      this.st.delHistory.run(rec.kind, rec.scope, rec.name);
      rec.history.forEach((h, i) => this.st.insHistory.run(rec.kind, rec.scope, rec.name, i, h.target, h.at));
    }).immediate();
  }

  deleteAlias(kind: AliasKind, scope: string, name: string): void {
    this.db.transaction(() => {
      this.st.delAlias.run(kind, scope, name);
      this.st.delHistory.run(kind, scope, name);
    })();
  }

  getAlias(kind: AliasKind, scope: string, name: string): { record: AliasRecord; etag: string } | undefined {
    const row = this.st.getAlias.get(kind, scope, name) as { target: string; etag: string } | undefined;
    if (!row) return undefined;
    const history = this.st.history.all(kind, scope, name) as Array<{ target: string; at: string }>;
    return { record: { kind, scope, name, target: row.target, history }, etag: row.etag };
  }

  aliasNames(kind: AliasKind, scope: string): string[] {
    return this.st.aliasesIn.all(kind, scope) as string[];
  }

  /** Every known alias with the etag it was read at, keyed `kind/scope/name`. */
  aliasEtags(): Map<string, { kind: AliasKind; scope: string; name: string; etag: string }> {
    const out = new Map<string, { kind: AliasKind; scope: string; name: string; etag: string }>();
    for (const r of this.st.allAliases.all() as Array<{ kind: AliasKind; scope: string; name: string; etag: string }>) {
      out.set(`${r.kind}/${r.scope}/${r.name}`, r);
    }
    return out;
  }
}

/** JSON with object keys sorted, so equal values compare equal as text. */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) => {
    if (val && typeof val === 'object' && !Array.isArray(val)) {
      const obj = val as Record<string, unknown>;
      return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
    }
    return val;
  });
}

function datumOf(row: DatumRow): DatumRecord {
  const rec: DatumRecord = {
    id: row.id,
    name: row.name,
    size: row.size,
    sha256: row.sha256,
    ctime: row.ctime,
    blobKey: row.blob_key,
    producer: JSON.parse(row.producer_json),
    tags: JSON.parse(row.tags_json),
    properties: JSON.parse(row.properties_json),
  };
  if (row.package_json !== null) rec.package = JSON.parse(row.package_json);
  if (row.packed_json !== null) rec.packed = JSON.parse(row.packed_json);
  return rec;
}
