/**
 * Input resolution: one input's URIs → one TreeIndex of files, each pointing at a byte range of a store
 * object, plus what `inputs.json` needs to describe them. Nothing here reads file data.
 *
 *  - `dataset://` / `model://`: the version (or alias) is resolved through the catalog. A packaged version
 *    contributes its packages' central directories (tail + central directory per package: two ranged
 *    reads, never the data); an unpackaged one contributes one blob per file. Paths inside a version are
 *    kept whatever `keep-directories` says (see layout.ts).
 *  - `datum://`: one file, named by the datum's name through the layout rules.
 *  - local paths (with `*` / `**`): files on this host, read in place.
 *  - `s3://`, `gs://`, `az://`: objects of a bucket (its endpoint and region from the environment or
 *    `<home>/stores.json`, credentials from the SDK's own chain), one key, or every key a wildcard matches
 *    when the input is resolved, laid out by `keep-directories`; `https://`: one file, its credentials
 *    kept in a session store (source-stores.ts) and masked everywhere it is shown.
 *
 * Persisted indexes. Once every URI has been pinned to immutable things (a version name, its package
 * datum ids, datum ids), the finished TreeIndex is saved under `<cacheDir>/indexes/<identity hash>.idx`.
 * A later mount that pins the same identity loads it (one file read) instead of reading package tails:
 * pinning itself needs only this host's SQLite, except an alias, whose pointer is read from the store
 * because it may have moved. Inputs with local paths or bucket objects are never persisted (those can change).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import type { Catalog } from '../catalog/catalog.js';
import { keys } from '../catalog/store-records.js';
import type { CollectionKind, DatumRecord, PackageRef } from '../catalog/types.js';
import { readPackageListing } from '../package/index.js';
import { DEFAULTS } from '../config/options.js';
import { CHUNK_SIZE, chunkTableBytes } from '../util/chunk-hashes.js';
import { getRangeWithin } from '../store/deadline.js';
import { TreeIndexBuilder, type TreeIndex } from '../index/tree-index.js';
import { loadIndex, saveIndex } from '../index/persist.js';
import { layoutInput, type Layout, type ResolvedFile } from './layout.js';
import type { InputSpec } from './config.js';
import { displayUri, type ParsedUri, type LocalUri } from '../uri/parse.js';
import { compileGlob } from '../uri/glob.js';
import { VhfsError } from '../util/errors.js';
import { compareNames } from '../util/utf8-order.js';
import type { ObjectInfo, ObjectRef, ObjectStore } from '../store/index.js';
import { LOCAL_ROOT_STORE, SourceStores } from './source-stores.js';
import { collectGarbage } from '../util/gc.js';

/** Inputs of at least this many files are followed by a full garbage collection once their index is built. */
const GARBAGE_COLLECT_AFTER_FILES = 50_000;


/** What `inputs.json` says of one file, before the mount's absolute path is known. */
export interface InputFileInfo {
  name: string;
  size: number;
  uri: string;
  datumId?: string;
  sha256?: string;
}

export interface ResolvedInput {
  spec: InputSpec;
  index: TreeIndex;
  /** True when the index came from the persisted cache (no package tail was read). */
  fromCache: boolean;
  warnings: string[];
  /** Describes every file for inputs.json; streams version file lists from SQLite. */
  describe(): AsyncIterable<InputFileInfo>;
}

export interface ResolverOptions {
  catalog: Catalog;
  /** The stores object and https inputs are read from (shared with the reader). */
  stores?: SourceStores;
  /** Each store read made while resolving (package tails and directories) answers within this or fails. */
  readTimeoutMs?: number;
  /** Where persisted indexes live (`<cacheDir>/indexes/`); none → always rebuild. */
  cacheDir?: string;
  log?: (line: string) => void;
}

/** A datum or local file before the index has numbered its source. */
interface LooseData {
  key: string;
  store?: string;
  size: number;
  /** Where the file's bytes start in object `key` (a packed datum: its member's offset in the package part); default 0. */
  offset?: number;
  /** Size of object `key` (a packed datum: the package part's); default `size`. */
  objectSize?: number;
  mtimeMs: number;
  datum?: DatumRecord;
  /** The URI inputs.json gives a file that is not a datum (secrets masked). */
  display?: string;
}

type Pinned =
  | { kind: 'version'; uri: string; collectionKind: CollectionKind; collection: string; version: string; packages: PackageRef[]; fileCount: number; ctimeMs: number }
  | { kind: 'datum'; uri: string; datum: DatumRecord }
  | { kind: 'local'; uri: string; parsed: LocalUri }
  /** Objects of a bucket (one, or what a wildcard matched when the input was resolved). */
  | { kind: 'object'; uri: string; storeName: string; objects: ObjectInfo[]; wildcardRoot?: string }
  | { kind: 'url'; uri: string; storeName: string; filename: string; object: ObjectInfo };

export class InputResolver {
  private readonly stores: SourceStores;

  constructor(private readonly opts: ResolverOptions) {
    this.stores = opts.stores ?? new SourceStores();
  }

  async resolve(spec: InputSpec): Promise<ResolvedInput> {
    const pinned: Pinned[] = [];
    for (const uri of spec.uris) pinned.push(await this.pin(uri));
    const identity = this.identity(spec, pinned);
    const file = identity && this.opts.cacheDir ? path.join(this.opts.cacheDir, 'indexes', `${identity}.idx`) : undefined;
    // Datums and local files are laid out once: the index and inputs.json both come from this layout.
    const loose = await this.looseLayout(spec, pinned);
    const describe = () => this.describe(pinned, loose);
    if (file) {
      const cached = await loadIndex(file, (err) => this.opts.log?.(`discarding cached index: ${err.message}`));
      if (cached) return { spec, index: cached.index, fromCache: true, warnings: loose.warnings, describe };
    }
    const index = await this.build(spec, pinned, loose);
    if (file) {
      await saveIndex(file, index, { input: spec.name, uris: pinned.map((p) => p.uri) }).catch((err: unknown) =>
        this.opts.log?.(`could not persist the index of input "${spec.name}": ${String(err)}`));
    }
    // Building allocated several times the index's size in short-lived objects; a mount serving it may
    // allocate too little afterwards for V8 to ever collect them (see util/gc.ts).
    if (index.fileCount >= GARBAGE_COLLECT_AFTER_FILES) collectGarbage();
    return { spec, index, fromCache: false, warnings: loose.warnings, describe };
  }

  /** Turn a URI into immutable identities (the only step that may consult the store, for aliases). */
  private async pin(uri: ParsedUri): Promise<Pinned> {
    const shown = displayUri(uri);
    switch (uri.kind) {
      case 'dataset':
      case 'model': {
        const summary = await this.opts.catalog.getVersionSummary(uri.kind, uri.name, uri.selector);
        return {
          kind: 'version', uri: shown, collectionKind: uri.kind, collection: uri.name,
          version: summary.version, packages: summary.packages, fileCount: summary.fileCount, ctimeMs: Date.parse(summary.ctime),
        };
      }
      case 'datum':
        return { kind: 'datum', uri: shown, datum: await this.opts.catalog.resolveDatumRef(uri.ref) };
      case 'local':
        return { kind: 'local', uri: shown, parsed: uri };
      case 'object': {
        const { name, store } = this.stores.bucket(uri.scheme, uri.scheme === 'az' ? `${uri.account}/${uri.container}` : uri.bucket);
        return { kind: 'object', uri: shown, storeName: name, objects: await listObjects(store, uri, shown), ...(uri.wildcardRoot !== undefined ? { wildcardRoot: uri.wildcardRoot } : {}) };
      }
      case 'https': {
        const { name, store, key } = this.stores.httpObject(uri.url);
        const info = await store.head(key);
        if (!info) throw new VhfsError('NOT_FOUND', `${shown}: no such file (HTTP 404)`);
        return { kind: 'url', uri: shown, storeName: name, filename: uri.filename, object: info };
      }
    }
  }

  private identity(spec: InputSpec, pinned: Pinned[]): string | undefined {
    // Local files and bucket objects can change, and a session store cannot be reopened: never persisted.
    if (pinned.some((p) => p.kind === 'local' || p.kind === 'object' || p.kind === 'url')) return undefined;
    const parts = pinned.map((p) =>
      p.kind === 'version'
        ? { v: `${p.collectionKind}://${p.collection}/${p.version}`, p: p.packages.map((k) => k.datumId) }
        : p.kind === 'datum' ? { d: p.datum.id } : {});
    // format 4: sources carry `integrity` (what their bytes are checked against): package and blob chunk tables.
    // keep-directories and filename lay out datums only (a version keeps its paths): an input of versions
    // alone has one index whatever they say, so `vhfs cat` and a mount share it.
    const layout = pinned.every((p) => p.kind === 'version') ? {} : { keep: spec.keepDirectories, filename: spec.filename ?? null };
    const key = JSON.stringify({ format: 4, store: this.opts.catalog.store.url, parts, ...layout });
    return createHash('sha256').update(key).digest('hex');
  }

  private async build(spec: InputSpec, pinned: Pinned[], loose: Layout<LooseData>): Promise<TreeIndex> {
    const builder = new TreeIndexBuilder(`input "${spec.name}"`);
    const blobSources = new Map<string, number>();
    const sourceFor = (key: string, size: number, store?: string, sha256?: string) => {
      const id = `${store ?? ''}\n${key}`;
      let s = blobSources.get(id);
      if (s === undefined) {
        // A blob of the catalog's store larger than one chunk has its chunk table beside it.
        const chunkTable = store === undefined && sha256 !== undefined && size > CHUNK_SIZE
          ? { key: keys.chunks(key), offset: 0, length: chunkTableBytes(size), covered: size } : undefined;
        const integrity = sha256 === undefined ? undefined : { sha256, ...(chunkTable ? { chunkTable } : {}) };
        const ref: ObjectRef = { key, size, ...(store === undefined ? {} : { store }), ...(integrity ? { integrity } : {}) };
        blobSources.set(id, (s = builder.addSource(ref)));
      }
      return s;
    };
    for (const p of pinned) if (p.kind === 'version') await this.addVersion(p, builder, sourceFor);
    for (const placed of loose.files) {
      const d = placed.file.data!;
      // A packed datum is a range of its package part: the datum's sha256 is not the object's.
      const sha256 = d.datum && !d.datum.packed ? d.datum.sha256 : undefined;
      builder.add({ path: placed.path, size: d.size, source: sourceFor(d.key, d.objectSize ?? d.size, d.store, sha256), offset: d.offset ?? 0, mtimeMs: d.mtimeMs });
    }
    return builder.build();
  }

  /** Where the input's datums and local files go (layout rules, collisions); version files keep their paths. */
  private async looseLayout(spec: InputSpec, pinned: Pinned[]): Promise<Layout<LooseData>> {
    const loose: Array<ResolvedFile<LooseData>> = [];
    for (const p of pinned) {
      if (p.kind === 'datum') {
        loose.push({
          uri: p.uri, id: `datum://${p.datum.id}`, origin: 'datum', key: p.datum.name,
          data: {
            key: p.datum.packed?.key ?? p.datum.blobKey, size: p.datum.size, offset: p.datum.packed?.offset ?? 0,
            objectSize: p.datum.packed?.packageSize ?? p.datum.size, mtimeMs: Date.parse(p.datum.ctime), datum: p.datum,
          },
        });
      } else if (p.kind === 'object') {
        for (const o of p.objects) {
          loose.push({
            uri: p.uri, id: `${p.storeName}/${o.key}`, origin: 'store', key: o.key,
            ...(p.wildcardRoot !== undefined ? { wildcardRoot: p.wildcardRoot } : {}),
            data: { key: o.key, store: p.storeName, size: o.size, mtimeMs: o.mtimeMs, display: `${p.storeName}/${o.key}` },
          });
        }
      } else if (p.kind === 'url') {
        loose.push({
          uri: p.uri, id: p.uri, origin: 'url', key: p.filename,
          data: { key: p.object.key, store: p.storeName, size: p.object.size, mtimeMs: p.object.mtimeMs, display: p.uri },
        });
      } else if (p.kind === 'local') {
        for (const f of await listLocal(p.parsed, p.uri)) {
          loose.push({
            uri: p.uri, id: `file:///${f.key}`, origin: 'store', key: f.key,
            ...(p.parsed.wildcardRoot !== undefined ? { wildcardRoot: p.parsed.wildcardRoot.slice(1) } : {}),
            data: { key: f.key, store: LOCAL_ROOT_STORE, size: f.size, mtimeMs: f.mtimeMs },
          });
        }
      }
    }
    // `filename` names an input's only file, so it cannot apply when a version contributes files too.
    const versionFiles = pinned.reduce((n, p) => n + (p.kind === 'version' ? p.fileCount : 0), 0);
    return layoutInput(loose, {
      input: spec.name, keepDirectories: spec.keepDirectories,
      ...(spec.filename !== undefined && versionFiles === 0 ? { filename: spec.filename } : {}),
    });
  }

  private async addVersion(
    p: Extract<Pinned, { kind: 'version' }>,
    builder: TreeIndexBuilder,
    sourceFor: (key: string, size: number, store: undefined, sha256: string) => number,
  ): Promise<void> {
    const { catalog } = this.opts;
    if (p.packages.length > 0) {
      for (const pkg of p.packages) {
        const datum = await catalog.getDatum(pkg.datumId);
        const timeout = this.opts.readTimeoutMs ?? DEFAULTS.fetchTimeoutMs;
        const source = { size: datum.size, read: (offset: number, length: number) => getRangeWithin(catalog.store, datum.blobKey, offset, length, timeout) };
        const listing = await readPackageListing(source, `${p.uri} package ${pkg.name}`);
        this.opts.log?.(`${p.uri}: package ${pkg.name}: ${listing.count} entries from ${listing.reads} ranged reads (${listing.bytesRead} bytes)`);
        const chunkTable = listing.chunkTable ? { key: datum.blobKey, ...listing.chunkTable } : undefined;
        const sourceIndex = builder.addSource({ key: datum.blobKey, size: datum.size, integrity: { memberCrc32: true, ...(chunkTable ? { chunkTable } : {}) } });
        for (let i = 0; i < listing.count; i++) {
          builder.add({
            path: listing.paths[i], size: listing.sizes[i], source: sourceIndex, offset: listing.dataOffsets[i],
            mtimeMs: listing.mtimesMs[i], crc32: listing.crc32s[i],
          });
        }
      }
      return;
    }
    for (const f of await catalog.versionFiles(p.collectionKind, p.collection, p.version)) {
      builder.add({ path: f.path, size: f.size, source: sourceFor(keys.blob(f.sha256), f.size, undefined, f.sha256), offset: 0, mtimeMs: p.ctimeMs });
    }
  }

  private async *describe(pinned: Pinned[], loose: Layout<LooseData>): AsyncIterable<InputFileInfo> {
    const { catalog } = this.opts;
    for (const p of pinned) {
      if (p.kind !== 'version') continue;
      for (const f of await catalog.versionFiles(p.collectionKind, p.collection, p.version)) {
        yield { name: f.path, size: f.size, uri: `datum://${f.datumId}`, datumId: f.datumId, sha256: f.sha256 };
      }
    }
    for (const placed of loose.files) {
      const d = placed.file.data!;
      yield d.datum
        ? { name: placed.path, size: d.size, uri: `datum://${d.datum.id}`, datumId: d.datum.id, sha256: d.datum.sha256 }
        : { name: placed.path, size: d.size, uri: d.display ?? `file:///${d.key}` };
    }
  }
}

interface LocalFile {
  key: string;
  size: number;
  mtimeMs: number;
}

/** The regular files a local URI names, keys being absolute paths without the leading `/`. */
async function listLocal(uri: LocalUri, shown: string): Promise<LocalFile[]> {
  if (!uri.wildcard) {
    const st = await fs.stat(uri.path).catch(() => undefined);
    if (!st) throw new VhfsError('NOT_FOUND', `${shown}: no such file`);
    if (st.isDirectory()) throw new VhfsError('BAD_URI', `${shown}: is a directory; use ${shown.replace(/\/?$/, '/**')} to take every file under it`);
    return [{ key: uri.path.slice(1), size: st.size, mtimeMs: st.mtimeMs }];
  }
  const root = uri.wildcardRoot ?? '/';
  const matcher = compileGlob(uri.path.slice(1));
  const files: LocalFile[] = [];
  for await (const { key, st } of walkLocal(root, shown)) {
    if (matcher.match(key)) files.push({ key, size: st.size, mtimeMs: st.mtimeMs });
  }
  if (files.length === 0) throw new VhfsError('NOT_FOUND', `${shown}: the wildcard matches no file`);
  return files.sort((a, b) => compareNames(a.key, b.key));
}

/** A walk that meets more entries than this is refused: a wildcard root of `/` or a runaway tree. */
const MAX_WALK_ENTRIES = 10_000_000;

/**
 * Every regular file under `root` (keys: absolute paths without the leading `/`), following symbolic links
 * as `cp -rL` would (a link names a file or a directory whose content the user means), but never a link to
 * a directory already being walked above it (`a/b -> ..`): such a loop would be walked forever, and with
 * two of them (`b1 -> ..`, `b2 -> ..`) its size doubles with every level. Special files (FIFOs, sockets,
 * devices) and dangling links are skipped: a local input takes regular files only.
 */
async function* walkLocal(root: string, shown: string): AsyncGenerator<{ key: string; st: import('node:fs').Stats }> {
  let entries = 0;
  const walk = async function* (dir: string, chain: ReadonlySet<string>): AsyncGenerator<{ key: string; st: import('node:fs').Stats }> {
    const dirents = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const d of dirents) {
      if (++entries > MAX_WALK_ENTRIES) throw new VhfsError('BAD_URI', `${shown}: more than ${MAX_WALK_ENTRIES} entries under ${root}; narrow the wildcard`);
      const abs = path.join(dir, d.name);
      if (d.isFile()) {
        const st = await fs.stat(abs).catch(() => undefined);
        if (st?.isFile()) yield { key: abs.slice(1), st };
      } else if (d.isDirectory()) {
        yield* walk(abs, new Set([...chain, abs]));
      } else if (d.isSymbolicLink()) {
        const st = await fs.stat(abs).catch(() => undefined);
        if (st?.isFile()) yield { key: abs.slice(1), st };
        else if (st?.isDirectory()) {
          const real = await fs.realpath(abs).catch(() => undefined);
          if (real !== undefined && !chain.has(real)) yield* walk(abs, new Set([...chain, real]));
        }
      }
    }
  };
  const realRoot = await fs.realpath(root).catch(() => root);
  yield* walk(root.replace(/\/$/, '') || '/', new Set([realRoot]));
}

/**
 * The objects an object URI names: the one key (NOT_FOUND if absent), or every key under the wildcard
 * root that the pattern matches (NOT_FOUND if none: Valohai leaves a zero-match wildcard open; an input
 * that silently comes up empty is worse than one that says why).
 */
async function listObjects(store: ObjectStore, uri: Extract<ParsedUri, { kind: 'object' }>, shown: string): Promise<ObjectInfo[]> {
  if (!uri.wildcard) {
    const info = await store.head(uri.key);
    if (!info) throw new VhfsError('NOT_FOUND', `${shown}: no such object`);
    return [info];
  }
  const matcher = compileGlob(uri.key);
  const page = await store.list(uri.wildcardRoot ?? '');
  const objects = page.objects.filter((o) => matcher.match(o.key));
  if (objects.length === 0) throw new VhfsError('NOT_FOUND', `${shown}: the wildcard matches no object (${page.objects.length} under ${uri.wildcardRoot || 'the bucket root'})`);
  return objects;
}
