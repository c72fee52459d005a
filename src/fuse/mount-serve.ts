/**
 * The `vhfs serve` mount: the catalog tree of serve-fs.ts on one mountpoint, read through the same `ReadPath`
 * (resolver, block cache, source stores) as an inputs mount.
 *
 * Shared by default: the point of a host mount is that jobs running as other users (containers that
 * bind-mount one version directory) can read it, so it is mounted `allow_other` + `default_permissions`
 * unless told otherwise (sharing.ts). Kernel caching as serve-fs.ts explains: long entry/attribute timeouts,
 * negative lookups for the listing TTL, page cache kept across opens (what a file holds never changes).
 */
import path from 'node:path';
import type Fuse from 'fuse-native';
import type { BlockCache } from '../cache/block-cache.js';
import { ReadPath, type ReadPathOptions } from '../inputs/read-path.js';
import { DEFAULTS } from '../config/options.js';
import { describeError } from '../util/errors.js';
import { mountFuse, unmountFuse } from './mountpoint.js';
import { CatalogTree, serveOps } from './serve-fs.js';
import { sharingOptions } from './sharing.js';

export interface ServeMountOptions extends Omit<ReadPathOptions, 'readaheadLimit' | 'log'> {
  mountpoint: string;
  /** Reuse catalog listings this long (and the kernel's negative lookups). */
  listingTtlSeconds: number;
  /** Every user may read the mount (default true). */
  allowOther?: boolean;
  force?: boolean;
  kernel?: { entryTimeout?: number; attrTimeout?: number; kernelCache?: boolean };
  maxIndexEntries?: number;
  log?: (line: string) => void;
}

export interface ServeMount {
  mountpoint: string;
  tree: CatalogTree;
  cache: BlockCache;
  unmount(): Promise<void>;
}

export async function mountServe(opts: ServeMountOptions): Promise<ServeMount> {
  const log = opts.log ?? (() => {});
  const mountpoint = path.resolve(opts.mountpoint);
  const { listingTtlSeconds, allowOther, force, kernel, maxIndexEntries, mountpoint: _m, ...readOptions } = opts;
  const sharing = await sharingOptions(allowOther ?? true, '--no-allow-other');
  const readPath = new ReadPath({ ...readOptions, log });
  const tree = new CatalogTree({
    catalog: opts.catalog, readPath, listingTtlMs: listingTtlSeconds * 1000, fetchTimeoutMs: opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs,
    ...(maxIndexEntries !== undefined ? { maxIndexEntries } : {}), log,
  });
  const timeout = kernel?.entryTimeout ?? DEFAULTS.cacheTimeoutSeconds;
  let fuse: Fuse;
  try {
    fuse = await mountFuse(mountpoint, serveOps(tree, readPath, { log }), {
      force: force ?? false,
      fsname: 'vhfs',
      subtype: 'vhfs',
      entryTimeout: timeout,
      attrTimeout: kernel?.attrTimeout ?? timeout,
      kernelCache: kernel?.kernelCache ?? true,
      extraOptions: [`negative_timeout=${listingTtlSeconds}`, 'ro', ...sharing],
      onHandlerError: (op, err) => log(`error: FUSE ${op} handler threw: ${describeError(err)}`),
    });
  } catch (err) {
    await readPath.close();
    throw err;
  }
  log(`serving the catalog of ${opts.catalog.store.url} at ${mountpoint} (listings refreshed after ${listingTtlSeconds} s${sharing.length ? ', readable by every user' : ''})`);

  let unmounted = false;
  return {
    mountpoint, tree, cache: readPath.cache,
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
