/**
 * Dataset versions made of outputs that are already datums, built by `createVersion`
 * (src/catalog/create-version.ts) so that `from`/`exclude`, packaging with the seed's log lines and
 * targeting aliases work exactly as for `vhfs dataset create`. The outputs go in as `existing` files: the
 * version refers to the outputs' own datums (no second datum of the same file), and packaging reads their
 * bytes from the staged file while it is still there (a live upload's from its blob), checked against the
 * datum's sha256.
 */
import type { Catalog } from '../catalog/catalog.js';
import { createVersion, DEFAULT_MAX_PACKAGE_SIZE } from '../catalog/create-version.js';
import type { DatumRecord, Producer, VersionRecord } from '../catalog/types.js';
import type { DatasetVersionRequest } from './metadata.js';

export interface VersionMember {
  datum: DatumRecord;
  /** The staged file, if it is still on local disk. */
  file?: string;
}

export interface BuildVersionOptions {
  request: DatasetVersionRequest;
  members: VersionMember[];
  packaging: boolean;
  producer: Producer;
  quiet: boolean;
  log: (line: string) => void;
  maxPackageSize?: number;
}

export async function createVersionFromOutputs(catalog: Catalog, opts: BuildVersionOptions): Promise<VersionRecord> {
  const { request: req } = opts;
  let from: { collection: string; version: string; exclude: string[] } | undefined;
  if (req.from) {
    // A base named by alias is pinned to the version it points to now (as `vhfs dataset create --from` does).
    const version = await catalog.resolveVersion('dataset', req.from.collection, req.from.selector);
    from = { collection: req.from.collection, version, exclude: req.exclude };
  }
  return createVersion(catalog, {
    kind: 'dataset', collection: req.collection, version: req.version, files: [],
    existing: opts.members.map((m) => ({
      path: m.datum.name, datumId: m.datum.id, size: m.datum.size, sha256: m.datum.sha256, ...(m.file ? { file: m.file } : {}),
    })),
    ...(from ? { from } : {}),
    packaging: opts.packaging ? { maxPartSize: opts.maxPackageSize ?? DEFAULT_MAX_PACKAGE_SIZE } : false,
    aliases: req.targetingAliases, producer: opts.producer, quiet: opts.quiet, log: opts.log,
  });
}
