/**
 * The outputs mount: `<root>/outputs` served by FUSE as a passthrough to a staging directory, with a
 * capture session (src/outputs/session.ts) deciding live uploads, eager uploads and finalize.
 *
 * What a host process (the `vhfs mount` daemon, src/cli/mount-commands.ts) does with it:
 *  - call `mountOutputs` once; it resolves when the mount is up (orphaned runs of the same staging area
 *    are being recovered in the background by then);
 *  - on SIGTERM / SIGINT / `vhfs unmount`: `await mount.unmount()`, which finalizes (uploads everything,
 *    metadata, dataset versions) and then unmounts; a failed upload leaves its file staged and the run
 *    pending for `vhfs outputs recover`, and is reported in the returned result;
 *  - nothing else: `vhfs outputs finalize` from another process reaches the session through the journal.
 *
 * Kernel options, measured (docs/OUTPUTS.md, scripts/bench/outputs.ts):
 *  - `big_writes` + `max_write=131072`: without big_writes libfuse 2.9 gets every write in 4 KiB pieces;
 *    128 KiB is the most it negotiates (protocol 7.19 has no max_pages);
 *  - entry timeout 0: a live upload and a finalize remove files behind the kernel's back (fuse-native has
 *    no invalidation call), and a cached positive entry would then make `open(O_TRUNC)` of the same name
 *    fail with ENOENT; the cost is a LOOKUP per path component. Attribute timeout 1 s: every name is
 *    revalidated by that LOOKUP anyway, and nothing changes a file's attributes behind the kernel (only a
 *    hard link's other name can show a size up to 1 s old); it saves the GETATTR a program's fstat() after
 *    open() would cost. Negative entries are not cached: a job creates each name once, nothing to gain;
 *  - `kernel_cache`: pages written through the mount stay valid (nothing changes a file's bytes behind
 *    the kernel), so reading outputs back (sqlite, checkpoints) is served from the page cache.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type Fuse from 'fuse-native';
import type { Catalog } from '../catalog/catalog.js';
import type { Producer } from '../catalog/types.js';
import type { FinalizeResult } from '../outputs/finalize.js';
import { loadExecutionIdentity, packagingEnabled } from '../outputs/identity.js';
import { Journal } from '../outputs/journal.js';
import { OutputsSession } from '../outputs/session.js';
import { defaultStagingDir, StagingArea } from '../outputs/staging.js';
import { describeError } from '../util/errors.js';
import { mountFuse, unmountFuse } from './mountpoint.js';
import { outputsOps } from './outputs-fs.js';

export interface OutputsMountOptions {
  /** Where the outputs are mounted (`<root>/outputs`). */
  mountpoint: string;
  /** vhfs home: the default staging area is under `<home>/outputs/`. */
  home: string;
  /** Staging directory (default: `<home>/outputs/<hash of the mountpoint>`). */
  staging?: string;
  catalog: Catalog;
  /** The execution identity; else from `executionFile`, else from `env` (VH_*), else a local id. */
  producer?: Producer;
  executionFile?: string;
  env?: NodeJS.ProcessEnv;
  /** Upload closed files in the background after this many quiet ms. */
  eagerQuietMs?: number;
  /** Parallel uploads at finalize (default 8). */
  concurrency?: number;
  closeGraceMs?: number;
  force?: boolean;
  allowOther?: boolean;
  /** Kernel options (defaults DEFAULT_OUTPUTS_KERNEL); the others exist to measure the defaults against. */
  kernel?: Partial<typeof DEFAULT_OUTPUTS_KERNEL>;
  quiet?: boolean;
  log?: (line: string) => void;
}

export interface OutputsMount {
  mountpoint: string;
  staging: string;
  journalFile: string;
  session: OutputsSession;
  /** Orphaned runs recovered at start. */
  recovered: Promise<FinalizeResult[]>;
  /** Upload what was written so far (the mount keeps capturing afterwards, into a new run). */
  finalize(): Promise<FinalizeResult>;
  /** Finalize (unless `finalize: false`), then unmount. */
  unmount(opts?: { finalize?: boolean }): Promise<FinalizeResult | undefined>;
}

export const DEFAULT_OUTPUTS_KERNEL = { entryTimeout: 0, attrTimeout: 1, kernelCache: true, bigWrites: true };
/** The largest write request libfuse 2.9 negotiates. */
export const MAX_WRITE = 128 * 1024;

export async function mountOutputs(opts: OutputsMountOptions): Promise<OutputsMount> {
  const log = opts.log ?? (() => {});
  const env = opts.env ?? process.env;
  const mountpoint = path.resolve(opts.mountpoint);
  const staging = new StagingArea(opts.staging ?? defaultStagingDir(opts.home, mountpoint));
  const producer = opts.producer ?? (await loadExecutionIdentity({
    ...(opts.executionFile ? { executionFile: opts.executionFile } : {}), env, warn: log,
  }));
  // Private, like the daemon's run and log directories: it holds the job's outputs until they are uploaded.
  await fs.mkdir(staging.dir, { recursive: true, mode: 0o700 });
  const journal = Journal.open(staging.journalFile);
  let session: OutputsSession | undefined;
  let fuse: Fuse | undefined;
  try {
    session = await OutputsSession.start({
      catalog: opts.catalog, journal, staging, producer, packaging: packagingEnabled(env), outputsDir: mountpoint,
      ...(opts.eagerQuietMs !== undefined ? { eagerQuietMs: opts.eagerQuietMs } : {}),
      ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
      ...(opts.closeGraceMs !== undefined ? { closeGraceMs: opts.closeGraceMs } : {}),
      quiet: opts.quiet ?? false, log,
    });
    const k = { ...DEFAULT_OUTPUTS_KERNEL, ...opts.kernel };
    fuse = await mountFuse(mountpoint, outputsOps(session), {
      force: opts.force ?? false,
      fsname: 'vhfs-outputs',
      subtype: 'vhfs',
      entryTimeout: k.entryTimeout,
      attrTimeout: k.attrTimeout,
      kernelCache: k.kernelCache,
      allowOther: opts.allowOther ?? false,
      extraOptions: [...(k.bigWrites ? ['big_writes', `max_write=${MAX_WRITE}`] : []), 'negative_timeout=0'],
      onHandlerError: (op, err) => log(`error: FUSE ${op} handler threw: ${describeError(err)}`),
    });
  } catch (err) {
    await session?.close({ finalize: false }).catch(() => undefined);
    journal.close();
    throw err;
  }
  log(`mounted ${mountpoint} (outputs staged in ${staging.dir}, run ${session.runId}, execution ${producer.executionId ?? '?'})`);
  const live = session;
  const mounted = fuse;

  let unmounting: Promise<FinalizeResult | undefined> | undefined;
  return {
    mountpoint,
    staging: staging.dir,
    journalFile: staging.journalFile,
    session: live,
    recovered: live.recovered,
    finalize: () => live.finalize(),
    unmount(o = {}) {
      unmounting ??= (async () => {
        let result: FinalizeResult | undefined;
        try {
          result = await live.close({ finalize: o.finalize !== false });
        } finally {
          await unmountFuse(mounted);
          journal.close();
          log(`unmounted ${mountpoint}`);
        }
        return result;
      })();
      return unmounting;
    },
  };
}
