/**
 * The inputs mount: `<root>/inputs` served by FUSE, `<root>/config/inputs.json` written beside it.
 *
 * The mount is up before any input is resolved (each input resolves on first touch). Right after mounting,
 * every input is resolved in the background as well, because `inputs.json` must list every file with its
 * final path (valohai-utils reads it to find inputs); it is written atomically once all listings are known.
 * Resolving lists only (package tails, version file lists): no file data is read for it.
 *
 * Kernel caching: inputs are immutable, so entries and attributes are cached for a day and page-cache
 * contents are kept across opens (`kernel_cache`); negative lookups are cached too (`negative_timeout`).
 * `max_read` is left alone: libfuse 2.9 never negotiates more than 128 KiB per request, so bigger fetches
 * are the block cache's readahead's job. The figures behind these choices are in native-notes/.
 */
import { promises as fs, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type Fuse from 'fuse-native';
import type { Catalog } from '../catalog/catalog.js';
import { BlockCache, DEFAULT_BLOCK_SIZE } from '../cache/block-cache.js';
import { LocalBlockDisk } from '../cache/disk-blocks.js';
import { InputResolver, openSourceStore } from '../inputs/resolve.js';
import { InputSet } from '../inputs/input-set.js';
import type { InputSpec } from '../inputs/config.js';
import { inputsOps } from './inputs-fs.js';
import { mountFuse, unmountFuse } from './mountpoint.js';
import type { ObjectStore } from '../store/index.js';
import { describeError } from '../util/errors.js';

export interface KernelCacheOptions {
  entryTimeout: number;
  attrTimeout: number;
  negativeTimeout: number;
  kernelCache: boolean;
}

export const DEFAULT_KERNEL_CACHE: KernelCacheOptions = {
  entryTimeout: 86400,
  attrTimeout: 86400,
  negativeTimeout: 86400,
  kernelCache: true,
};

export interface InputsMountOptions {
  /** The Valohai root (default /valohai): inputs mount at `<root>/inputs`, config at `<root>/config`. */
  root: string;
  inputsDir?: string;
  configDir?: string;
  specs: InputSpec[];
  catalog: Catalog;
  cacheDir: string;
  blockSize?: number;
  memoryBytes?: number;
  /** Keep fetched blocks on disk (default: only when the store is not a local directory). */
  diskCache?: boolean;
  fetchTimeoutMs?: number;
  readaheadBytes?: number;
  force?: boolean;
  kernel?: Partial<KernelCacheOptions>;
  log?: (line: string) => void;
}

export interface InputsMount {
  mountpoint: string;
  inputsJsonPath: string;
  inputs: InputSet;
  cache: BlockCache;
  /** Resolves once inputs.json is written (with the names of inputs that failed to resolve). */
  inputsJson: Promise<string[]>;
  unmount(): Promise<void>;
}

export async function mountInputs(opts: InputsMountOptions): Promise<InputsMount> {
  const log = opts.log ?? (() => {});
  const mountpoint = path.resolve(opts.inputsDir ?? path.join(opts.root, 'inputs'));
  const configDir = path.resolve(opts.configDir ?? path.join(opts.root, 'config'));
  const store = opts.catalog.store;
  const resolver = new InputResolver({ catalog: opts.catalog, cacheDir: opts.cacheDir, log });
  const inputs = new InputSet(opts.specs, resolver, { log });
  const localStores = new Map<string, ObjectStore>();
  const useDisk = opts.diskCache ?? !store.url.startsWith('file:');
  const cache = new BlockCache({
    store,
    storeFor: (url) => {
      let s = localStores.get(url);
      if (!s) localStores.set(url, (s = openSourceStore(url)));
      return s;
    },
    blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE,
    ...(opts.memoryBytes !== undefined ? { memoryBytes: opts.memoryBytes } : {}),
    ...(useDisk ? { disk: new LocalBlockDisk(opts.cacheDir) } : {}),
    fetchTimeoutMs: opts.fetchTimeoutMs ?? 10_000,
    ...(opts.readaheadBytes !== undefined ? { readaheadBytes: opts.readaheadBytes } : {}),
    warn: log,
  });
  const k = { ...DEFAULT_KERNEL_CACHE, ...opts.kernel };
  const fuse: Fuse = await mountFuse(mountpoint, inputsOps(inputs, cache, { log }), {
    force: opts.force ?? false,
    fsname: 'vhfs',
    subtype: 'vhfs',
    entryTimeout: k.entryTimeout,
    attrTimeout: k.attrTimeout,
    kernelCache: k.kernelCache,
    extraOptions: [`negative_timeout=${k.negativeTimeout}`, 'ro'],
    onHandlerError: (op, err) => log(`error: FUSE ${op} handler threw: ${describeError(err)}`),
  });
  log(`mounted ${mountpoint} (${opts.specs.length} inputs, resolved on first use)`);

  const inputsJsonPath = path.join(configDir, 'inputs.json');
  const inputsJson = (async () => {
    const failures = await inputs.ensureAll();
    await writeInputsJson(inputsJsonPath, mountpoint, inputs);
    log(`wrote ${inputsJsonPath}${failures.size ? ` (inputs that failed to resolve are listed with no files: ${[...failures.keys()].join(', ')})` : ''}`);
    return [...failures.keys()];
  })();
  inputsJson.catch((err: unknown) => log(`error: could not write ${inputsJsonPath}: ${describeError(err)}`));

  let unmounted = false;
  return {
    mountpoint, inputsJsonPath, inputs, cache, inputsJson,
    async unmount() {
      if (unmounted) return;
      unmounted = true;
      await unmountFuse(fuse);
      log(`unmounted ${mountpoint}`);
    },
  };
}

/**
 * inputs.json in the shape valohai-utils reads (spec §2.3): `{ "<input>": { "files": [ { name, path, size,
 * uri, datum_id, checksums, metadata } ] } }`. Streamed, since a version may have millions of files.
 */
export async function writeInputsJson(file: string, mountpoint: string, inputs: InputSet): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    // pipeline() owns the stream's errors: an unwritable config dir rejects here instead of an unhandled
    // 'error' event that would take the whole mount down.
    // Small chunks, one at a time, with a turn of the event loop between them: FUSE requests are served on
    // this same thread, and a million-file inputs.json (~300 MB) must not stall them while it is written.
    await pipeline(Readable.from(batched(inputsJsonChunks(mountpoint, inputs), 16 * 1024), { highWaterMark: 1 }), createWriteStream(tmp));
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Join small strings into chunks of about `bytes` (one stream write per entry kept the event loop busy), yielding the loop after each. */
async function* batched(chunks: AsyncIterable<string>, bytes: number): AsyncGenerator<string> {
  let parts: string[] = [];
  let size = 0;
  for await (const c of chunks) {
    parts.push(c);
    size += c.length;
    if (size >= bytes) {
      yield parts.join('');
      parts = [];
      size = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  if (parts.length) yield parts.join('');
}

async function* inputsJsonChunks(mountpoint: string, inputs: InputSet): AsyncGenerator<string> {
  yield '{';
  let firstInput = true;
  for (const name of inputs.names) {
    yield `${firstInput ? '' : ','}\n  ${JSON.stringify(name)}: {"files": [`;
    firstInput = false;
    const input = inputs.get(name);
    let first = true;
    if (input) {
      for await (const f of input.describe()) {
        const entry = {
          name: f.name,
          path: path.join(mountpoint, name, f.name),
          size: f.size,
          uri: f.uri,
          ...(f.datumId ? { datum_id: f.datumId } : {}),
          checksums: f.sha256 ? { sha256: f.sha256 } : {},
          metadata: [],
        };
        yield `${first ? '' : ','}\n    ${JSON.stringify(entry)}`;
        first = false;
      }
    }
    yield first ? ']}' : '\n  ]}';
  }
  yield '\n}\n';
}
