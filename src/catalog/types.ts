/** Records as they are stored (JSON) in the object store; SQLite only indexes them. */

/** Who produced a datum: the lineage carried by every output. */
export interface Producer {
  tool: string;                 // e.g. "vhfs put", "vhfs dataset create", "vhfs outputs"
  executionId?: string;
  project?: string;
  step?: string;
  parameters?: Record<string, unknown>;
  commit?: string;
  host?: string;
  /** Datum ids this one was derived from (e.g. a package's members' version). */
  sources?: string[];
}

export interface DatumRecord {
  id: string;                   // UUIDv7
  name: string;                 // file name, may contain `/` (path relative to the producer's root)
  size: number;
  sha256: string;               // hex
  ctime: string;                // ISO-8601
  /**
   * Store key of the datum's whole bytes: `blobs/sha256/<hex>` for files (content-addressed, shared by
   * equal content), `blobs/packages/<id>.vhpkgzip` for package parts. For a `packed` datum it is the
   * content address, which need not exist: its bytes are read where `packed` says.
   */
  blobKey: string;
  producer: Producer;
  tags: string[];
  properties: Record<string, unknown>;
  /** Set for package datums: which version they package and which part they are. */
  package?: { kind: CollectionKind; collection: string; version: string; part: number; parts: number };
  /** Set when the bytes are stored only as a member of a package part (no standalone blob). */
  packed?: PackedLocation;
}

/**
 * Where a packed datum's bytes are: `size` bytes (the datum's size) at `offset` of the package part
 * object `key`, whose own datum is `packageDatumId`. The part's chunk table (`<key>.chunks`) covers
 * these bytes.
 */
export interface PackedLocation {
  packageDatumId: string;
  key: string;
  /** Size of the whole part object (reads of the member are bounded by it). */
  packageSize: number;
  offset: number;
}

/**
 * Many datum records in one store object (`datums/batches/<batch id>.json`): the datums of one
 * `DatumWriter`, 4096 at most. Every member id is the batch id with its last three hex digits replaced
 * by the member's index, so any host finds the object holding a datum from the datum's id alone.
 */
export interface DatumBatchRecord {
  format: 'vhfs-datum-batch-1';
  batch: string;
  records: DatumRecord[];
}

/** What a writer says about a new datum; the store computes the rest (id, size, sha256, ctime). */
export interface DatumMeta {
  name: string;
  /** Expected size; INTEGRITY if the body differs. */
  size?: number;
  producer: Producer;
  tags?: string[];
  properties?: Record<string, unknown>;
  package?: DatumRecord['package'];
}

export type CollectionKind = 'dataset' | 'model';

export interface VersionFile {
  path: string;                 // relative path inside the version
  datumId: string;
  size: number;
  sha256: string;
}

export interface PackageRef {
  datumId: string;
  name: string;                 // <dataset>.<version>[.part-0001-of-0002].vhpkgzip
  size: number;
  entries: number;
}

export interface VersionRecord {
  kind: CollectionKind;
  collection: string;           // dataset or model name
  version: string;
  ctime: string;
  from?: string;                // the version it was started from (`dataset://name/version`), if any
  files: VersionFile[];
  packages: PackageRef[];
  properties: Record<string, unknown>;
  producer: Producer;
}

export type AliasKind = 'dataset' | 'model' | 'datum';

export interface AliasRecord {
  kind: AliasKind;
  scope: string;                // dataset/model name; '' for datum aliases
  name: string;
  target: string;               // version name (dataset/model) or datum id
  history: Array<{ target: string; at: string }>;  // oldest first, includes the current target last
}
