/**
 * The object-store contract every backend (local directory, S3, GCS, Azure, HTTPS) implements.
 *
 * It is deliberately the intersection of what real object stores offer, so that code written and tested
 * against the local directory store behaves the same on a bucket:
 *  - keys are `/`-separated strings with no leading `/`; there are no directories, only prefixes;
 *  - a put is atomic: readers see the whole old object or the whole new one, never a partial write;
 *  - conditional puts give create-if-absent (`ifNoneMatch: '*'`) and compare-and-swap (`ifMatch: etag`),
 *    the only coordination primitive hosts sharing a bucket have (used for alias pointers);
 *  - reads are by byte range, so package members are served without fetching whole packages.
 *
 * Network stores (`remote.ts`; docs/STORES.md) keep this contract and add, without changing the interface:
 * TIMEOUT when the `signal` of `getRange`/`get` aborts (the request in flight is aborted too);
 * INTEGRITY when an object changes under a ranged read or stream (its version is pinned at `head` or the
 * first read); UNSUPPORTED from a server that ignores `Range`, and from every write of a read-only store.
 */
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Opaque version tag; changes whenever the object is replaced. Feed it back to `ifMatch`. */
  etag: string;
  mtimeMs: number;
}

export interface PutOptions {
  /** `'*'`: fail with CONFLICT if the key already exists (create-if-absent). */
  ifNoneMatch?: '*';
  /** Fail with CONFLICT unless the current object's etag equals this (compare-and-swap). */
  ifMatch?: string;
  contentType?: string;
  /** Size hint for streaming bodies, lets backends pick single vs multipart upload. */
  sizeHint?: number;
}

export type PutBody = Buffer | Uint8Array | Readable | AsyncIterable<Uint8Array>;

export interface ListOptions {
  /** With `'/'`, keys below the next `/` after the prefix are rolled up into `prefixes`. */
  delimiter?: '/';
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Common prefixes (ending in the delimiter) when a delimiter was given. */
  prefixes: string[];
}

/** Counters every store keeps, so tests and `--stats` can assert exactly what crossed the wire. */
export interface StoreStats {
  gets: number;
  bytesRead: number;
  puts: number;
  bytesWritten: number;
  heads: number;
  lists: number;
}

export interface ObjectStore {
  /** Human-readable location (`file:///…`, `s3://bucket/prefix`), used in messages. */
  readonly url: string;
  readonly stats: StoreStats;

  /** Metadata of one object, or undefined if absent. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /**
   * Exactly `length` bytes starting at `offset`. Throws NOT_FOUND if the object is absent and
   * BAD_ARGUMENT if the range extends past the end (callers know sizes from `head` or an index).
   */
  getRange(key: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer>;
  /** Whole object into memory; for small objects (manifests, pointers). */
  get(key: string, signal?: AbortSignal): Promise<Buffer>;
  /** Whole object (or a range) as a stream; for large downloads. */
  getStream(key: string, range?: { offset: number; length: number }): Promise<Readable>;
  /** Atomic put. Throws CONFLICT when a condition in `opts` fails. */
  put(key: string, body: PutBody, opts?: PutOptions): Promise<ObjectInfo>;
  /** All objects (and with a delimiter, common prefixes) under `prefix`, in key order. */
  list(prefix: string, opts?: ListOptions): Promise<ListPage>;
  /** Delete; absent keys are not an error. */
  delete(key: string): Promise<void>;
  /** Release connections and cached handles; the store is not used afterwards. */
  close?(): Promise<void>;
  /**
   * Load now what the first request would (an SDK, a client with its credentials), so that the first real
   * request does not pay for it: a mount calls it while the kernel mount is still being made.
   */
  warmUp?(): void;
  /**
   * The file holding `key` on a local disk, for a store that keeps objects as files: what lets the native
   * read path (native/vhfs-fuse.c) `pread` an object without a hop to JavaScript. Other stores omit it.
   */
  localPath?(key: string): string;
}

/**
 * One immutable object that holds bytes a reader wants (a package, a blob, a local file): what an index
 * entry points into and what the block cache fetches from. Immutability is what lets every layer cache it.
 */
export interface ObjectRef {
  /** Key of the object in its store. */
  key: string;
  /** URL of the store holding it, when not the catalog's own store (e.g. a local-path input). */
  store?: string;
  /** Object size, for range checks and the last block's length. */
  size: number;
  /** How bytes read from it are checked; absent: they are not (local files, objects of other tools). */
  integrity?: ObjectIntegrity;
}

/** What an immutable object's bytes can be checked against (see src/cache/block-cache.ts for how). */
export interface ObjectIntegrity {
  /**
   * A chunk table (src/util/chunk-hashes.ts) covering the object: where to read it (in the same store) and
   * the bytes it must cover; for a package's own table also its CRC-32 from the central directory, so a
   * damaged table is caught too (a blob's `.chunks` object has no such record: a damaged one fails the
   * blocks it no longer matches, which is EIO, never wrong bytes).
   */
  chunkTable?: { key: string; offset: number; length: number; covered: number; crc32?: number };
  /** SHA-256 (hex) of the whole object: a content-addressed blob. */
  sha256?: string;
  /** The index's per-file CRC-32 values are the members' CRC-32s (a zip package). */
  memberCrc32?: boolean;
}

export function newStoreStats(): StoreStats {
  return { gets: 0, bytesRead: 0, puts: 0, bytesWritten: 0, heads: 0, lists: 0 };
}
