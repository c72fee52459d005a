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
import type { BlockCache } from '../cache/block-cache.js';
import { ReadPath, type ReadPathOptions } from '../inputs/read-path.js';
import { DEFAULTS } from '../config/options.js';
import { mountReadOnly } from './read-only-mount.js';
import { CatalogTree, serveOps } from './serve-fs.js';

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
  const readPath = new ReadPath({ ...readOptions, log });
  const tree = new CatalogTree({
    catalog: opts.catalog, readPath, listingTtlMs: listingTtlSeconds * 1000, fetchTimeoutMs: opts.fetchTimeoutMs ?? DEFAULTS.fetchTimeoutMs,
    ...(maxIndexEntries !== undefined ? { maxIndexEntries } : {}), log,
  });
  const timeout = kernel?.entryTimeout ?? DEFAULTS.cacheTimeoutSeconds;
  const mounted = await mountReadOnly(mountpoint, serveOps(tree, readPath, { log }), readPath, {
    force: force ?? false,
    kernel: { entryTimeout: timeout, attrTimeout: kernel?.attrTimeout ?? timeout, negativeTimeout: listingTtlSeconds, kernelCache: kernel?.kernelCache ?? true },
    allowOther: allowOther ?? true, ownOnly: '--no-allow-other', log,
  });
  log(`serving the catalog of ${opts.catalog.store.url} at ${mountpoint} (listings refreshed after ${listingTtlSeconds} s${mounted.shared ? ', readable by every user' : ''})`);
  return { mountpoint, tree, cache: readPath.cache, unmount: () => mounted.unmount() };
}
