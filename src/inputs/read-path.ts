/**
 * The one way bytes of a resolved input are read, for the FUSE `read` handler and `vhfs cat` alike.
 *
 * `ReadPath` owns what reading needs: the resolver (URI → index), the block cache in front of the
 * catalog's store, and the stores that index sources name (local-path inputs read through a store rooted
 * at `/`), which it opens once each and closes in `close()`. A read maps a file of an input to a byte
 * range of its source object — `(source, offset + position, min(length, size - position))` — and asks the
 * cache for it: `readSync` answers from memory without an await (what keeps a FUSE read of a hot file
 * cheap), `read` fetches what is missing. A failure names the input, the file and the byte range.
 */
import type { Catalog } from '../catalog/catalog.js';
import { BlockCache, type FileExtent } from '../cache/block-cache.js';
import { LocalBlockDisk } from '../cache/disk-blocks.js';
import type { ObjectRef, StoreSettings } from '../store/index.js';
import { DEFAULTS } from '../config/options.js';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { InputResolver, type ResolvedInput } from './resolve.js';
import { SourceStores } from './source-stores.js';

export interface ReadPathOptions {
  catalog: Catalog;
  /** Persisted indexes and (with the disk tier) fetched blocks live here. */
  cacheDir: string;
  blockSize?: number;
  memoryBytes?: number;
  readaheadBytes?: number;
  fetchTimeoutMs?: number;
  /** Keep fetched blocks on disk: true for every source, false never; default: sources in remote stores only. */
  diskCache?: boolean;
  /** Endpoints and regions of buckets that object inputs name (environment, `<home>/stores.json`). */
  settings?: StoreSettings;
  /** Readahead never goes past this offset of a source (`vhfs cat` knows what it will read). */
  readaheadLimit?: (source: ObjectRef) => number | undefined;
  log?: (line: string) => void;
}

export class ReadPath {
  readonly resolver: InputResolver;
  readonly cache: BlockCache;
  /** Stores that index sources name: bucket and https objects, local files. */
  readonly stores: SourceStores;

  constructor(opts: ReadPathOptions) {
    const log = opts.log ?? (() => {});
    const store = opts.catalog.store;
    this.stores = new SourceStores(opts.settings);
    this.resolver = new InputResolver({ catalog: opts.catalog, cacheDir: opts.cacheDir, stores: this.stores, readTimeoutMs: opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs, log });
    this.cache = new BlockCache({
      store,
      storeFor: (name) => this.stores.get(name),
      blockSize: opts.blockSize ?? DEFAULTS.blockSize,
      memoryBytes: opts.memoryBytes ?? DEFAULTS.memoryBytes,
      readaheadBytes: opts.readaheadBytes ?? DEFAULTS.readaheadBytes,
      fetchTimeoutMs: opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs,
      ...(opts.diskCache !== false ? { disk: new LocalBlockDisk(opts.cacheDir), diskForLocal: opts.diskCache === true } : {}),
      ...(opts.readaheadLimit ? { readaheadLimit: opts.readaheadLimit } : {}),
      warn: log,
    });
  }

  /** Copy file `file`'s bytes at `position` into `into` if all are in memory: the count (0 at or past the end), or -1. */
  readSync(input: ResolvedInput, file: number, position: number, length: number, into: Buffer): number {
    const range = this.range(input, file, position, length);
    if (range === undefined) return 0;
    return this.cache.tryReadSync(range.source, range.offset, range.length, into, range.file);
  }

  /** Read file `file`'s bytes at `position` into `into`; resolves with the count (0 at or past the end). */
  async read(input: ResolvedInput, file: number, position: number, length: number, into: Buffer): Promise<number> {
    const range = this.range(input, file, position, length);
    if (range === undefined) return 0;
    try {
      return await this.cache.read(range.source, range.offset, range.length, into, range.file);
    } catch (err) {
      const what = `input "${input.spec.name}": reading "${input.index.filePath(file)}" bytes ${position}-${position + range.length - 1}`;
      if (isVhfsError(err)) throw new VhfsError(err.code, `${what}: ${err.message}`, { cause: err });
      throw new VhfsError('STORE', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** Close the stores opened for index sources (the catalog's store belongs to the caller). */
  async close(): Promise<void> {
    this.cache.close();
    await this.stores.close();
  }

  private range(input: ResolvedInput, file: number, position: number, length: number): { source: ObjectRef; offset: number; length: number; file: FileExtent } | undefined {
    const a = input.index.arrays;
    const size = a.fileSize[file];
    if (position >= size || length <= 0) return undefined;
    const source = input.index.sources[a.fileSource[file]];
    const start = a.fileOffset[file];
    return {
      source, offset: start + position, length: Math.min(length, size - position),
      file: source.integrity?.memberCrc32 ? { start, size, crc32: a.fileCrc[file] } : { start, size },
    };
  }

}
