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
  blobKey: string;              // store key of the bytes: blobs/sha256/<hex>
  producer: Producer;
  tags: string[];
  properties: Record<string, unknown>;
  /** Set for package datums: which version they package and which part they are. */
  package?: { kind: CollectionKind; collection: string; version: string; part: number; parts: number };
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
