/**
 * A read-only vhfs mount whose handlers read through a `ReadPath`: the inputs mount and `vhfs serve` alike.
 * One place decides how such a mount looks to the kernel (`ro`, `fsname=vhfs`, `subtype=vhfs`, the cache
 * timeouts, who may enter it) and owns the order of things: the `ReadPath` (its source stores) is closed if
 * the mount fails, and after the unmount, never while the kernel may still send reads.
 */
import type Fuse from 'fuse-native';
import type { Ops } from 'fuse-native';
import type { ReadPath } from '../inputs/read-path.js';
import { DEFAULTS } from '../config/options.js';
import { describeError } from '../util/errors.js';
import { mountFuse, setReadahead, unmountFuse } from './mountpoint.js';
import { sharingOptions } from './sharing.js';
import { NativeReads, type NativeOwner } from './native-reads.js';

/**
 * The kernel's readahead for the mount. libfuse 2 caps a request at 128 KiB, and the kernel's default window
 * (128 KiB) then keeps one request in flight: a big file is read one round trip at a time. A 1 MiB window
 * keeps several requests in flight, which libfuse's threads (the native read path) answer in parallel:
 * 1 GiB read cold at 0.98–1.1 GB/s against 0.77 GB/s with the default; 4 MiB was slower again (0.57–0.62).
 * Measurements: native-notes/README.md.
 */
const READAHEAD_KIB = 1024;

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

export interface ReadOnlyMountOptions {
  force: boolean;
  kernel: KernelCacheOptions;
  /** Every user may enter the mount (sharing.ts); `ownOnly` says how a user asks for the opposite. */
  allowOther: boolean;
  ownOnly: string;
  /** Let native/vhfs-fuse.c answer for the inputs it is handed (the inputs mount), as these owner and times. */
  native?: NativeOwner;
  log: (line: string) => void;
}

export interface ReadOnlyMount {
  /** Whether every user may read it (allow_other). */
  shared: boolean;
  /** The native read path, when asked for and built. */
  native?: NativeReads;
  /** Unmount (once; later calls do nothing), then close the ReadPath. */
  unmount(): Promise<void>;
}

export async function mountReadOnly(mountpoint: string, ops: Ops, readPath: ReadPath, opts: ReadOnlyMountOptions): Promise<ReadOnlyMount> {
  const { kernel: k, log } = opts;
  let fuse: Fuse;
  let sharing: string[];
  try {
    sharing = await sharingOptions(opts.allowOther, opts.ownOnly);
    fuse = await mountFuse(mountpoint, ops, {
      force: opts.force,
      fsname: 'vhfs',
      subtype: 'vhfs',
      entryTimeout: k.entryTimeout,
      attrTimeout: k.attrTimeout,
      kernelCache: k.kernelCache,
      extraOptions: [`negative_timeout=${k.negativeTimeout}`, 'ro', ...sharing],
      onHandlerError: (op, err) => log(`error: FUSE ${op} handler threw: ${describeError(err)}`),
    });
  } catch (err) {
    await readPath.close();
    throw err;
  }
  // Best effort: it needs root and a writable /sys (a container may have neither).
  if (opts.native) await setReadahead(mountpoint, READAHEAD_KIB);
  let unmounted = false;
  const native = opts.native ? NativeReads.attach(fuse, opts.native, readPath.cache, log) : undefined;
  return {
    shared: sharing.length > 0,
    ...(native ? { native } : {}),
    async unmount() {
      if (unmounted) return;
      unmounted = true;
      try {
        await unmountFuse(fuse);
        log(`unmounted ${mountpoint}`);
      } finally {
        // After the kernel let go and before what the native handlers read (fds, index arrays) goes away.
        native?.detach();
        await readPath.close();
      }
    },
  };
}
