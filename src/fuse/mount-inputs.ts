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
import path from 'node:path';
import type Fuse from 'fuse-native';
import type { Catalog } from '../catalog/catalog.js';
import type { BlockCache } from '../cache/block-cache.js';
import { ReadPath, type ReadPathOptions } from '../inputs/read-path.js';
import { InputSet } from '../inputs/input-set.js';
import { writeInputsJson } from '../inputs/inputs-json.js';
import type { InputSpec } from '../inputs/config.js';
import { inputsOps } from './inputs-fs.js';
import { mountFuse, unmountFuse } from './mountpoint.js';
import { DEFAULTS } from '../config/options.js';
import { describeError } from '../util/errors.js';

export interface KernelCacheOptions {
  entryTimeout: number;
  attrTimeout: number;
  negativeTimeout: number;
  kernelCache: boolean;
}

export const DEFAULT_KERNEL_CACHE: KernelCacheOptions = {
  entryTimeout: DEFAULTS.cacheTimeoutSeconds,
  attrTimeout: DEFAULTS.cacheTimeoutSeconds,
  negativeTimeout: DEFAULTS.cacheTimeoutSeconds,
  kernelCache: true,
};

export interface InputsMountOptions extends Omit<ReadPathOptions, 'readaheadLimit' | 'log'> {
  /** Where the inputs are mounted (`<root>/inputs`). */
  mountpoint: string;
  /** Where inputs.json is written (`<root>/config`). */
  configDir: string;
  specs: InputSpec[];
  catalog: Catalog;
  force?: boolean;
  kernel?: Partial<KernelCacheOptions>;
  log?: (line: string) => void;
}

export interface InputsMount {
  mountpoint: string;
  inputsJsonPath: string;
  inputs: InputSet;
  cache: BlockCache;
  /** Resolves once inputs.json is written, with the inputs that failed to resolve (name → error). */
  inputsJson: Promise<Map<string, unknown>>;
  unmount(): Promise<void>;
}

export async function mountInputs(opts: InputsMountOptions): Promise<InputsMount> {
  const log = opts.log ?? (() => {});
  const mountpoint = path.resolve(opts.mountpoint);
  const { specs, configDir, force, kernel, mountpoint: _m, ...readOptions } = opts;
  const readPath = new ReadPath({ ...readOptions, log });
  const inputs = new InputSet(specs, readPath.resolver, { log });
  const k = { ...DEFAULT_KERNEL_CACHE, ...kernel };
  let fuse: Fuse;
  try {
    fuse = await mountFuse(mountpoint, inputsOps(inputs, readPath, { log }), {
      force: force ?? false,
      fsname: 'vhfs',
      subtype: 'vhfs',
      entryTimeout: k.entryTimeout,
      attrTimeout: k.attrTimeout,
      kernelCache: k.kernelCache,
      extraOptions: [`negative_timeout=${k.negativeTimeout}`, 'ro'],
      onHandlerError: (op, err) => log(`error: FUSE ${op} handler threw: ${describeError(err)}`),
    });
  } catch (err) {
    await readPath.close();
    throw err;
  }
  log(`mounted ${mountpoint} (${specs.length} inputs, resolved on first use)`);

  const inputsJsonPath = path.join(path.resolve(configDir), 'inputs.json');
  const inputsJson = (async () => {
    const failures = await inputs.ensureAll();
    const reasons = new Map([...failures].map(([name, err]) => [name, describeError(err)]));
    await writeInputsJson(inputsJsonPath, mountpoint, inputs, reasons);
    for (const [name, why] of reasons) log(`error: input "${name}" could not be resolved: ${why}`);
    log(`wrote ${inputsJsonPath}${failures.size ? ` (${failures.size} input(s) failed to resolve and are listed with an "error": ${[...failures.keys()].join(', ')})` : ''}`);
    return failures;
  })();
  inputsJson.catch((err: unknown) => log(`error: could not write ${inputsJsonPath}: ${describeError(err)}`));

  let unmounted = false;
  return {
    mountpoint, inputsJsonPath, inputs, cache: readPath.cache, inputsJson,
    async unmount() {
      if (unmounted) return;
      unmounted = true;
      try {
        await unmountFuse(fuse);
        log(`unmounted ${mountpoint}`);
      } finally {
        await readPath.close();
      }
    },
  };
}
