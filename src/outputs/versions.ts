/**
 * Dataset versions made of outputs that are already datums, built by `createVersion`
 * (src/catalog/create-version.ts) so that `from`/`exclude`, packaging with the seed's log lines and
 * targeting aliases work exactly as for `vhfs dataset create`.
 *
 * `createVersion` uploads each source file with `catalog.putDatum`; an output is already a datum (with its
 * own id, tags and properties), and uploading it again would give the version a second datum of the same
 * file. So createVersion gets a view of the catalog whose `putDatum`, for exactly these output files,
 * answers with the existing datum (checked by size); everything else (package parts, version records,
 * aliases) goes to the real catalog. The version's files are therefore the outputs' own datums.
 * (A `datum` field on createVersion's SourceFile would make this view unnecessary; docs/OUTPUTS.md.)
 *
 * Packaging reads member bytes from local files; a member that is no longer staged (a live upload) is
 * copied back from its blob into the run's tmp directory first.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Catalog, DatumBody, DatumMeta } from '../catalog/catalog.js';
import { createVersion, DEFAULT_MAX_PACKAGE_SIZE, type SourceFile } from '../catalog/create-version.js';
import { keys } from '../catalog/store-records.js';
import type { DatumRecord, Producer, VersionRecord } from '../catalog/types.js';
import { VhfsError } from '../util/errors.js';
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
  tmpDir: string;
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
  await fs.mkdir(opts.tmpDir, { recursive: true });
  const byFile = new Map<string, DatumRecord>();
  const files: SourceFile[] = [];
  for (const m of opts.members) {
    let file = m.file;
    if (!file || !(await fs.stat(file).then((s) => s.isFile(), () => false))) {
      file = path.join(opts.tmpDir, `member-${m.datum.id}`);
      if (opts.packaging) await restoreBlob(catalog, m.datum, file);
    }
    byFile.set(file, m.datum);
    files.push({ path: m.datum.name, file, size: m.datum.size });
  }
  return createVersion(reusingDatums(catalog, byFile), {
    kind: 'dataset', collection: req.collection, version: req.version, files,
    ...(from ? { from } : {}),
    packaging: opts.packaging ? { maxPartSize: opts.maxPackageSize ?? DEFAULT_MAX_PACKAGE_SIZE } : false,
    aliases: req.targetingAliases, producer: opts.producer,
    tmpDir: opts.tmpDir, quiet: opts.quiet, log: opts.log,
  });
}

/** The catalog, except that `putDatum` of one of `byFile`'s files returns that file's existing datum. */
function reusingDatums(catalog: Catalog, byFile: Map<string, DatumRecord>): Catalog {
  const putDatum = async (body: DatumBody, meta: DatumMeta): Promise<DatumRecord> => {
    const file = typeof (body as { path?: unknown }).path === 'string' ? (body as { path: string }).path : undefined;
    const datum = file !== undefined ? byFile.get(file) : undefined;
    if (!datum) return catalog.putDatum(body, meta);
    if (meta.size !== undefined && meta.size !== datum.size) {
      throw new VhfsError('INTEGRITY', `output "${datum.name}": version file has ${meta.size} bytes, datum://${datum.id} has ${datum.size}`);
    }
    return datum;
  };
  return new Proxy(catalog, {
    get(target, prop) {
      if (prop === 'putDatum') return putDatum;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

async function restoreBlob(catalog: Catalog, datum: DatumRecord, file: string): Promise<void> {
  await pipeline(await catalog.store.getStream(keys.blob(datum.sha256)), createWriteStream(file));
}
