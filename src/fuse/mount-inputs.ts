/**
 * The inputs mount: `<root>/inputs` served by FUSE, `<root>/config/inputs.json` written beside it.
 *
 * The mount is up before any input is resolved (each input resolves on first touch). Right after mounting,
 * every input is resolved in the background as well, because `inputs.json` must list every file with its
 * final path (valohai-utils reads it to find inputs); it is written atomically once all listings are known.
 * Resolving lists only (package tails, version file lists): no file data is read for it.
 *
 * Sharing: with `allowOther` every user may read the mount (sharing.ts), e.g. jobs in containers that
 * bind-mount it; `jobInputsDir` is where those jobs see the mountpoint, and what inputs.json's paths start with.
 *
 * Kernel caching: inputs are immutable, so entries and attributes are cached for a day and page-cache
 * contents are kept across opens (`kernel_cache`); negative lookups are cached too (`negative_timeout`).
 * `max_read` is left alone: libfuse 2.9 never negotiates more than 128 KiB per request, so bigger fetches
 * are the block cache's readahead's job. The figures behind these choices are in native-notes/.
 */
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.js';
import type { BlockCache } from '../cache/block-cache.js';
import { ReadPath, type ReadPathOptions } from '../inputs/read-path.js';
import { InputSet } from '../inputs/input-set.js';
import { writeInputsJson } from '../inputs/inputs-json.js';
import type { InputSpec } from '../inputs/config.js';
import { inputsOps } from './inputs-fs.js';
import { DEFAULT_KERNEL_CACHE, mountReadOnly, type KernelCacheOptions } from './read-only-mount.js';
import { describeError } from '../util/errors.js';

export { DEFAULT_KERNEL_CACHE, type KernelCacheOptions };

export interface InputsMountOptions extends Omit<ReadPathOptions, 'readaheadLimit' | 'log'> {
  /** Where the inputs are mounted (`<root>/inputs`). */
  mountpoint: string;
  /** Where inputs.json is written (`<root>/config`). */
  configDir: string;
  specs: InputSpec[];
  catalog: Catalog;
  force?: boolean;
  kernel?: Partial<KernelCacheOptions>;
  /** Every user may read the mount (allow_other + default_permissions). */
  allowOther?: boolean;
  /** Where the job sees the mountpoint (inside its container); inputs.json's paths start here. Default: the mountpoint. */
  jobInputsDir?: string;
  /** Answer resolved inputs' lookups and local reads natively when the native binding is built (default true). */
  nativeReads?: boolean;
  log?: (line: string) => void;
}

export interface InputsMount {
  mountpoint: string;
  /** Where the job sees the mountpoint (inputs.json's paths). */
  jobInputsDir: string;
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
  const { specs, configDir, force, kernel, allowOther, jobInputsDir: jobDir, mountpoint: _m, nativeReads: _n, ...readOptions } = opts;
  const jobInputsDir = jobDir ?? mountpoint;
  const readPath = new ReadPath({ ...readOptions, log });
  const inputs = new InputSet(specs, readPath.resolver, { log });
  const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, mountTime: new Date() };
  const mounted = await mountReadOnly(mountpoint, inputsOps(inputs, readPath, { ...owner, log }), readPath, {
    force: force ?? false, kernel: { ...DEFAULT_KERNEL_CACHE, ...kernel }, allowOther: allowOther ?? false, ownOnly: 'leave out --allow-other',
    ...(opts.nativeReads === false ? {} : { native: owner }), log,
  });
  const native = mounted.native;
  if (native) inputs.onReady((input) => native.addInput(input));
  const how = native ? 'native read path on' : 'reads through JavaScript only';
  log(`mounted ${mountpoint} (${specs.length} inputs, resolved on first use, ${how}${mounted.shared ? ', readable by every user' : ''}${jobInputsDir !== mountpoint ? `; jobs see it as ${jobInputsDir}` : ''})`);

  const inputsJsonPath = path.join(path.resolve(configDir), 'inputs.json');
  const inputsJson = (async () => {
    const failures = await inputs.ensureAll();
    const reasons = new Map([...failures].map(([name, err]) => [name, describeError(err)]));
    await writeInputsJson(inputsJsonPath, jobInputsDir, inputs, reasons);
    for (const [name, why] of reasons) log(`error: input "${name}" could not be resolved: ${why}`);
    log(`wrote ${inputsJsonPath}${failures.size ? ` (${failures.size} input(s) failed to resolve and are listed with an "error": ${[...failures.keys()].join(', ')})` : ''}`);
    return failures;
  })();
  inputsJson.catch((err: unknown) => log(`error: could not write ${inputsJsonPath}: ${describeError(err)}`));

  return {
    mountpoint, jobInputsDir, inputsJsonPath, inputs, cache: readPath.cache, inputsJson,
    unmount: () => mounted.unmount(),
  };
}
