/**
 * The read-only FUSE tree of `vhfs serve`: everything the catalog knows, by URI path.
 *
 *   /datasets/<name>/<version>/…   the files of dataset://<name>/<version>, read like an input's
 *   /datasets/<name>/@<alias>      a symlink to `<version>` (names cannot start with `@`, so no clash)
 *   /models/…                      the same for model://
 *   /datums/<id>                   the bytes of datum://<id> (the lower-case id, as vhfs prints it)
 *   /datums/@<alias>               a symlink to `<id>`
 *
 * Two kinds of state with opposite lifetimes:
 *  - Listings change as people create versions and move aliases: the collections of a kind, a collection's
 *    versions and aliases, the datum aliases. Each is loaded from the catalog when asked for and reused for
 *    the listing TTL, one load at a time however many ask (`Listing`). A refresh that fails keeps serving
 *    the last good listing (and says so in the log): a store hiccup must not empty an `ls`.
 *  - What a name denotes never changes once it exists: versions are immutable, datums too, and aliases can
 *    move but not disappear. A version is resolved (package central directories, or its file list) on first
 *    touch of its directory, through the inputs' own `InputResolver` and `InputSet` (single flight, a failure
 *    remembered for a few seconds), and its bytes are read through the same `ReadPath` and block cache as an
 *    input's. Only a version's contents resolve it: `ls -l datasets/x` shows versions without reading any.
 *
 * `datums/` is lookup-only: `ls` shows the datum aliases, and any datum id can be opened, but ids are not
 * listed. A store holds millions of datums; listing them would mean one store listing of every datum record
 * per `ls` (minutes, and a reply the size of the listing held by libfuse), and a directory nobody can read
 * is worse than one that answers what was asked. `vhfs ls` and the catalog's queries find datums.
 *
 * Kernel caching, as far as libfuse 2's high-level API allows. Entry and attribute timeouts are per mount,
 * not per node (fuse.c gives every lookup the mount's own), so "short for the browse levels, long inside
 * versions" cannot be said directly; what a browse level shows that can change is served by requests the
 * kernel never caches instead:
 *  - entries and attributes: long (`--cache-timeout`), since a name's meaning never changes (see above);
 *  - negative lookups: the listing TTL, so a version or alias created later appears within it, or within
 *    twice it when the kernel had just cached a miss answered from a listing about to expire;
 *  - readdir: never cached with libfuse 2 (no FOPEN_CACHE_DIR), so listings follow the listing TTL;
 *  - readlink: never cached (protocol 7.19 has no FUSE_CACHE_SYMLINKS), so a moved alias is followed to
 *    its new version within the listing TTL. Only its `st_size` (the target's length) may stay stale.
 * Browse-level directories report `st_nlink` 1 ("not counted"): their subdirectory counts change.
 *
 * Memory: resolved versions are kept least recently used first and dropped past `maxIndexEntries` index
 * entries (a dropped version resolves again, from its persisted index, on its next touch; an open file keeps
 * its own reference).
 */
import Fuse, { type Ops, type Stat } from 'fuse-native';
import type { Catalog } from '../catalog/catalog.js';
import type { AliasRecord, CollectionKind } from '../catalog/types.js';
import type { InputSpec } from '../inputs/config.js';
import { InputSet } from '../inputs/input-set.js';
import type { ReadPath } from '../inputs/read-path.js';
import { InputResolver, type ResolvedInput } from '../inputs/resolve.js';
import { NOT_FOUND, dirIndex, isFile, type NodeRef } from '../index/tree-index.js';
import { describeError, isVhfsError } from '../util/errors.js';
import { isUuid } from '../util/ids.js';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const EPOCH = new Date(0);
const DIR_ENTRY: Stat = { mode: S_IFDIR | 0o555, size: 0, uid: 0, gid: 0, mtime: EPOCH, atime: EPOCH, ctime: EPOCH };
const FILE_ENTRY: Stat = { mode: S_IFREG | 0o444, size: 0, uid: 0, gid: 0, mtime: EPOCH, atime: EPOCH, ctime: EPOCH };
const LINK_ENTRY: Stat = { mode: S_IFLNK | 0o777, size: 0, uid: 0, gid: 0, mtime: EPOCH, atime: EPOCH, ctime: EPOCH };

/** The top-level directories and the collection kind each holds (`datums` holds none). */
const TOP_DIRS: Record<string, CollectionKind | 'datum'> = { datasets: 'dataset', datums: 'datum', models: 'model' };
const TOP_NAMES = Object.keys(TOP_DIRS).sort();

/** Index entries (files + directories) of resolved versions kept in memory: ~47 bytes each, so ~200 MB. */
export const DEFAULT_MAX_INDEX_ENTRIES = 4_000_000;
/** Resolved (or failed) datums kept in memory. */
const MAX_DATUMS = 100_000;

type Answer<T> = T | Promise<T>;

/** `f(a)`, synchronously when `a` is already there: FUSE handlers answer cached state without a turn of the loop. */
function then<T, U>(a: Answer<T>, f: (value: T) => Answer<U>): Answer<U> {
  return a instanceof Promise ? a.then(f) : f(a);
}

// ------------------------------------------------------------------------------------------- listings

/** A catalog listing reused for `ttlMs` after it was asked for; one load at a time; a failed refresh keeps the last good one. */
export class Listing<T> {
  private value: T | undefined;
  private loadedAt = 0;
  private loading: Promise<T> | undefined;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly onStale: (err: unknown) => void,
  ) {}

  /** The listing, without waiting when it is fresh. */
  current(): Answer<T> {
    if (this.value !== undefined && performance.now() - this.loadedAt < this.ttlMs) return this.value;
    if (this.loading) return this.loading;
    // The listing is as old as the moment it was asked for, not the moment the answer came back.
    const asked = performance.now();
    const loading = this.load().then(
      (value) => {
        this.value = value;
        this.loadedAt = asked;
        return value;
      },
      (err: unknown) => {
        if (this.value === undefined) throw err;
        this.onStale(err);
        return this.value;
      },
    ).finally(() => { this.loading = undefined; });
    this.loading = loading;
    return loading;
  }
}

interface CollectionListing {
  names: Set<string>;
  /** Sorted, for readdir. */
  sorted: string[];
}

interface CollectionContents {
  versions: Set<string>;
  aliases: Map<string, string>;
  /** readdir's answer: versions (directories), then `@alias` (symlinks). */
  entries: string[];
  types: Stat[];
}

// ----------------------------------------------------------------------------------- resolved indexes

/**
 * Versions (or datums) resolved on first touch, each through a one-input `InputSet` (single flight; a failed
 * resolution remembered for a few seconds, then retried), least recently used dropped past the bounds.
 */
class ResolvedIndexes {
  private readonly sets = new Map<string, InputSet>();
  private readonly sizes = new Map<string, number>();
  private readonly resolving = new Set<string>();
  private held = 0;

  constructor(
    private readonly resolver: InputResolver,
    private readonly limits: { maxEntries: number; maxKeys: number },
    private readonly log: (line: string) => void,
  ) {}

  /** The resolved index if it is ready (and marked as recently used), without waiting. */
  get(key: string): ResolvedInput | undefined {
    const set = this.sets.get(key);
    const input = set?.get(key);
    if (input) {
      this.sets.delete(key);
      this.sets.set(key, set!);
    }
    return input;
  }

  ensure(key: string, spec: () => InputSpec): Promise<ResolvedInput> {
    let set = this.sets.get(key);
    if (!set) {
      set = new InputSet([spec()], this.resolver, { log: this.log });
      this.sets.set(key, set);
    }
    this.resolving.add(key);
    const done = set.ensure(key);
    done.then((input) => {
      this.resolving.delete(key);
      if (this.sizes.has(key) || this.sets.get(key) !== set) return;
      const size = input.index.fileCount + input.index.dirCount;
      this.sizes.set(key, size);
      this.held += size;
      this.evict(key);
    }, () => { this.resolving.delete(key); this.evict(key); });
    return done;
  }

  /** Drop the least recently used until within the limits; never `keep` (just resolved) or one being resolved. */
  private evict(keep: string): void {
    for (const key of this.sets.keys()) {
      if (this.held <= this.limits.maxEntries && this.sets.size <= this.limits.maxKeys) return;
      if (key === keep || this.resolving.has(key)) continue;
      this.sets.delete(key);
      this.held -= this.sizes.get(key) ?? 0;
      this.sizes.delete(key);
    }
  }
}

// ------------------------------------------------------------------------------------------------ tree

/** What a path names. */
export type ServeNode =
  | { kind: 'dir' }
  | { kind: 'link'; target: string }
  /** A file or directory inside a version, or a datum (file 0 of its one-file index). */
  | { kind: 'entry'; input: ResolvedInput; ref: NodeRef };

const DIR: ServeNode = { kind: 'dir' };

/** A path split into its first three components and the rest (`depth` counts the components, 4 = deeper). */
interface ServePath {
  depth: number;
  top: string;
  name: string;
  entry: string;
  rest: string;
}

export function splitServePath(p: string): ServePath {
  const out: ServePath = { depth: 0, top: '', name: '', entry: '', rest: '' };
  if (p === '/' || p === '') return out;
  const a = p.indexOf('/', 1);
  if (a === -1) return { ...out, depth: 1, top: p.slice(1) };
  const b = p.indexOf('/', a + 1);
  if (b === -1) return { ...out, depth: 2, top: p.slice(1, a), name: p.slice(a + 1) };
  const c = p.indexOf('/', b + 1);
  if (c === -1) return { ...out, depth: 3, top: p.slice(1, a), name: p.slice(a + 1, b), entry: p.slice(b + 1) };
  return { depth: 4, top: p.slice(1, a), name: p.slice(a + 1, b), entry: p.slice(b + 1, c), rest: p.slice(c + 1) };
}

export interface CatalogTreeOptions {
  catalog: Catalog;
  /** Its resolver resolves versions (persisting their indexes); its stores are shared. */
  readPath: ReadPath;
  listingTtlMs: number;
  fetchTimeoutMs: number;
  maxIndexEntries?: number;
  log?: (line: string) => void;
}

/** The catalog as a tree of paths: listings with a TTL, versions and datums resolved on first touch. */
export class CatalogTree {
  private readonly catalog: Catalog;
  private readonly log: (line: string) => void;
  private readonly ttlMs: number;
  private readonly collections: Record<CollectionKind, Listing<CollectionListing>>;
  private readonly contents = new Map<string, Listing<CollectionContents>>();
  private readonly datumAliases: Listing<Map<string, string>>;
  private readonly versions: ResolvedIndexes;
  private readonly datums: ResolvedIndexes;

  constructor(opts: CatalogTreeOptions) {
    this.catalog = opts.catalog;
    this.log = opts.log ?? (() => {});
    this.ttlMs = opts.listingTtlMs;
    const collectionsOf = (kind: CollectionKind) => this.listing(`${kind} names`, async () => {
      const sorted = await this.catalog.listCollections(kind);
      return { names: new Set(sorted), sorted };
    });
    this.collections = { dataset: collectionsOf('dataset'), model: collectionsOf('model') };
    this.datumAliases = this.listing('datum aliases', async () => aliasTargets(await this.catalog.listAliases('datum', '')));
    this.versions = new ResolvedIndexes(opts.readPath.resolver, { maxEntries: opts.maxIndexEntries ?? DEFAULT_MAX_INDEX_ENTRIES, maxKeys: Infinity }, this.log);
    // A datum's index is one entry built from its record: persisting it would cost a file per datum and save nothing.
    const datumResolver = new InputResolver({ catalog: opts.catalog, stores: opts.readPath.stores, readTimeoutMs: opts.fetchTimeoutMs, log: this.log });
    this.datums = new ResolvedIndexes(datumResolver, { maxEntries: Infinity, maxKeys: MAX_DATUMS }, this.log);
  }

  /** What `path` names; undefined if nothing. Rejects when the catalog or a resolution fails. */
  node(path: string): Answer<ServeNode | undefined> {
    const p = splitServePath(path);
    if (p.depth === 0) return DIR;
    const kind = TOP_DIRS[p.top];
    if (kind === undefined) return undefined;
    if (p.depth === 1) return DIR;
    if (kind === 'datum') return p.depth === 2 ? this.datumNode(p.name) : undefined;
    if (p.depth === 2) return then(this.collections[kind].current(), (c) => (c.names.has(p.name) ? DIR : undefined));
    if (p.entry.startsWith('@')) {
      // The kernel follows a symlink itself: it never asks for a path below one.
      if (p.depth > 3) return undefined;
      return then(this.collectionContents(kind, p.name), (c) => {
        const target = c?.aliases.get(p.entry.slice(1));
        return target === undefined ? undefined : { kind: 'link', target };
      });
    }
    if (p.depth === 3) return then(this.collectionContents(kind, p.name), (c) => (c?.versions.has(p.entry) ? DIR : undefined));
    return then(this.version(kind, p.name, p.entry), (input) => (input ? entryNode(input, p.rest) : undefined));
  }

  /** The names in directory `path` with their types; undefined if there is no such directory. */
  list(path: string): Answer<{ names: string[]; types: Stat[] } | undefined> {
    const p = splitServePath(path);
    if (p.depth === 0) return { names: TOP_NAMES, types: TOP_NAMES.map(() => DIR_ENTRY) };
    const kind = TOP_DIRS[p.top];
    if (kind === undefined) return undefined;
    if (kind === 'datum') {
      if (p.depth > 1) return undefined;
      return then(this.datumAliases.current(), (aliases) => {
        const names = [...aliases.keys()].map((a) => `@${a}`);
        return { names, types: names.map(() => LINK_ENTRY) };
      });
    }
    if (p.depth === 1) return then(this.collections[kind].current(), (c) => ({ names: c.sorted, types: c.sorted.map(() => DIR_ENTRY) }));
    if (p.depth === 2) return then(this.collectionContents(kind, p.name), (c) => (c ? { names: c.entries, types: c.types } : undefined));
    if (p.entry.startsWith('@')) return undefined;
    return then(this.version(kind, p.name, p.entry), (input) => {
      if (!input) return undefined;
      const ref = input.index.lookup(p.rest);
      if (ref === NOT_FOUND || isFile(ref)) return undefined;
      const d = dirIndex(ref);
      const names = input.index.list(d);
      const dirs = input.index.subdirCount(d);
      return { names, types: names.map((_, i) => (i < dirs ? DIR_ENTRY : FILE_ENTRY)) };
    });
  }

  /** A resolved version, if `version` is one of the collection's (resolved now on first touch). */
  private version(kind: CollectionKind, collection: string, version: string): Answer<ResolvedInput | undefined> {
    const key = `${kind}://${collection}/${version}`;
    // Resolved once means listed once, for good: versions are immutable and never deleted.
    const ready = this.versions.get(key);
    if (ready) return ready;
    return then(this.collectionContents(kind, collection), (c) => {
      if (!c?.versions.has(version)) return undefined;
      return this.versions.ensure(key, () => ({
        name: key, uris: [{ kind, name: collection, selector: version }],
        keepDirectories: 'none', optional: false, download: 'on-demand',
      }));
    });
  }

  private datumNode(entry: string): Answer<ServeNode | undefined> {
    if (entry.startsWith('@')) {
      return then(this.datumAliases.current(), (aliases) => {
        const id = aliases.get(entry.slice(1));
        return id === undefined ? undefined : { kind: 'link', target: id };
      });
    }
    // Only the canonical (lower-case) id: one name per datum keeps the kernel's caches and `find` honest.
    if (!isUuid(entry) || entry !== entry.toLowerCase()) return undefined;
    const key = `datum://${entry}`;
    const ready = this.datums.get(key);
    if (ready) return { kind: 'entry', input: ready, ref: 0 };
    return this.datums.ensure(key, () => ({
      name: key, uris: [{ kind: 'datum', ref: entry, byId: true }],
      keepDirectories: 'none', optional: false, download: 'on-demand',
    })).then(
      (input): ServeNode => ({ kind: 'entry', input, ref: 0 }),
      (err: unknown) => {
        if (isVhfsError(err, 'NOT_FOUND')) return undefined;
        throw err;
      },
    );
  }

  /** A collection's versions and aliases, if it is a collection (no listing is kept for names that are not). */
  private collectionContents(kind: CollectionKind, collection: string): Answer<CollectionContents | undefined> {
    const key = `${kind}://${collection}`;
    const known = this.contents.get(key);
    if (known) return known.current();
    return then(this.collections[kind].current(), (c) => {
      if (!c.names.has(collection)) return undefined;
      let listing = this.contents.get(key);
      if (!listing) {
        listing = this.listing(`${key} versions and aliases`, async () => {
          const [versions, aliases] = await Promise.all([this.catalog.listVersions(kind, collection), this.catalog.listAliases(kind, collection)]);
          const entries = [...versions, ...aliases.map((a) => `@${a.name}`)];
          return {
            versions: new Set(versions), aliases: aliasTargets(aliases), entries,
            types: entries.map((_, i) => (i < versions.length ? DIR_ENTRY : LINK_ENTRY)),
          };
        });
        this.contents.set(key, listing);
      }
      return listing.current();
    });
  }

  private listing<T>(what: string, load: () => Promise<T>): Listing<T> {
    return new Listing(load, this.ttlMs, (err) => this.log(`error: refreshing the listing of ${what} failed, serving the previous one: ${describeError(err)}`));
  }
}

function aliasTargets(aliases: AliasRecord[]): Map<string, string> {
  return new Map(aliases.map((a) => [a.name, a.target]));
}

function entryNode(input: ResolvedInput, rest: string): ServeNode | undefined {
  const ref = input.index.lookup(rest);
  return ref === NOT_FOUND ? undefined : { kind: 'entry', input, ref };
}

// ------------------------------------------------------------------------------------------------- ops

export interface ServeFsOptions {
  uid?: number;
  gid?: number;
  log?: (line: string) => void;
}

/**
 * The FUSE handlers over a `CatalogTree`. As thin as the inputs' (inputs-fs.ts explains each absent
 * handler), plus `readlink` for the aliases.
 */
export function serveOps(tree: CatalogTree, reader: ReadPath, opts: ServeFsOptions = {}): Ops {
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  const gid = opts.gid ?? process.getgid?.() ?? 0;
  const log = opts.log ?? (() => {});
  const mountTime = new Date();
  const owned = { uid, gid, mtime: mountTime, atime: mountTime, ctime: mountTime };
  const browseDir: Stat = { ...owned, size: 4096, mode: S_IFDIR | 0o555, nlink: 1 };

  const stat = (node: ServeNode): Stat => {
    if (node.kind === 'dir') return browseDir;
    if (node.kind === 'link') return { ...owned, size: Buffer.byteLength(node.target), mode: S_IFLNK | 0o777, nlink: 1 };
    const { index } = node.input;
    if (!isFile(node.ref)) return { ...owned, size: 4096, mode: S_IFDIR | 0o555, nlink: 2 + index.subdirCount(dirIndex(node.ref)) };
    const mtime = new Date(index.arrays.fileMtime[node.ref] * 1000);
    const size = index.arrays.fileSize[node.ref];
    return { uid, gid, mtime, atime: mtime, ctime: mtime, size, mode: S_IFREG | 0o444, nlink: 1, blocks: Math.ceil(size / 512), blksize: 65536 };
  };

  /** Errno for a failed listing, resolution or read, with the reason logged. */
  const failure = (path: string, err: unknown): number => {
    log(`error: ${path}: ${describeError(err)}`);
    return isVhfsError(err, 'TIMEOUT') ? Fuse.ETIMEDOUT : Fuse.EIO;
  };

  /** Answer `cb` with what `answer` holds, synchronously when it can. */
  function settle<T>(path: string, answer: Answer<T>, fail: (errno: number) => void, fn: (value: T) => void): void {
    if (answer instanceof Promise) answer.then(fn, (err: unknown) => fail(failure(path, err)));
    else fn(answer);
  }

  let lastReadPath = '';
  let lastRead: Extract<ServeNode, { kind: 'entry' }> | undefined;
  const readNode = (input: ResolvedInput, file: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void, path: string) => {
    const copied = reader.readSync(input, file, pos, len, buf);
    if (copied >= 0) return cb(copied);
    reader.read(input, file, pos, len, buf).then(cb, (err: unknown) => cb(failure(path, err)));
  };

  return {
    getattr(path, cb) {
      settle(path, tree.node(path), cb, (node) => (node ? cb(0, stat(node)) : cb(Fuse.ENOENT)));
    },

    // Entries carry their type (see inputs-fs.ts): `find` and `ls -R` need no lookup per entry.
    readdir(path, cb) {
      settle(path, tree.list(path), cb, (listed) => (listed ? cb(0, listed.names, listed.types) : cb(Fuse.ENOENT)));
    },

    readlink(path, cb) {
      settle(path, tree.node(path), cb, (node) => {
        if (!node) return cb(Fuse.ENOENT);
        if (node.kind !== 'link') return cb(Fuse.EINVAL);
        cb(0, node.target);
      });
    },

    read(path, _fd, buf, len, pos, cb) {
      // Found by path (no open handler, as in inputs-fs.ts), memoised: what a path names never changes.
      if (path === lastReadPath && lastRead) return readNode(lastRead.input, lastRead.ref, buf, len, pos, cb, path);
      settle(path, tree.node(path), cb, (node) => {
        if (!node || node.kind !== 'entry' || !isFile(node.ref)) return cb(node ? Fuse.EISDIR : Fuse.ENOENT);
        lastReadPath = path;
        lastRead = node;
        readNode(node.input, node.ref, buf, len, pos, cb, path);
      });
    },

    statfs(_path, cb) {
      cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 1, namemax: 255 });
    },
  };
}
