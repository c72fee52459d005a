/**
 * Building a dataset (or model) version from files: every file becomes a datum, the version is recorded
 * immutably, and with packaging its files are also bundled into `.vhpkgzip` package datums.
 *
 * Order of writes, so that a crash at any point leaves nothing half-made visible: datums (blobs + records)
 * first, then package parts (spooled to local temp files, then uploaded as datums once the part count —
 * and so every part's name — is known), then the version record (create-if-absent: the commit point), then
 * aliases (compare-and-swap). A crash before the version record leaves only unreferenced datums.
 *
 * `from` (Valohai's inheritance): the new version starts with the base version's files minus `exclude`;
 * a new file with the same path replaces the base's (spec §4.3 leaves this open; replacing is what a user
 * who re-uploads a file expects, and `exclude` still works for removals).
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Catalog } from './catalog.js';
import type { CollectionKind, PackageRef, Producer, VersionFile, VersionRecord } from './types.js';
import { writePackage, packagePartName, type PackageEntry } from '../package/index.js';
import { unsafePathReason } from '../index/tree-index.js';
import { compareNames } from '../util/utf8-order.js';
import { VhfsError } from '../util/errors.js';
import { keys } from './store-records.js';
import { Progress } from '../util/progress.js';
import { mapLimit } from '../util/concurrency.js';

export interface SourceFile {
  /** Path inside the version. */
  path: string;
  /** Absolute local path of the content. */
  file: string;
  size: number;
}

export interface CreateVersionOptions {
  kind?: CollectionKind;
  collection: string;
  version: string;
  files: SourceFile[];
  from?: { collection: string; version: string; exclude?: string[] };
  packaging?: boolean | { maxPartSize?: number };
  aliases?: string[];
  producer: Producer;
  properties?: Record<string, unknown>;
  tags?: string[];
  concurrency?: number;
  quiet?: boolean;
  /** Where package parts are spooled before upload (default: os.tmpdir()). */
  tmpDir?: string;
  log?: (line: string) => void;
}

export const DEFAULT_MAX_PACKAGE_SIZE = 16 * 1024 ** 3;

/** Every regular file under `dir`, with paths relative to it, in UTF-8 byte order; unsafe names rejected. */
export async function listDirectory(dir: string): Promise<SourceFile[]> {
  const root = path.resolve(dir);
  const st = await fs.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) throw new VhfsError('NOT_FOUND', `${dir}: not a directory`);
  const names = await fs.readdir(root, { recursive: true });
  const files: SourceFile[] = [];
  for (const rel of names) {
    const abs = path.join(root, rel);
    const s = await fs.stat(abs);
    if (!s.isFile()) continue;
    const p = rel.split(path.sep).join('/');
    const bad = unsafePathReason(p);
    if (bad) throw new VhfsError('UNSAFE_PATH', `${abs}: cannot be a dataset file: ${bad}`);
    files.push({ path: p, file: abs, size: s.size });
  }
  return files.sort((a, b) => compareNames(a.path, b.path));
}

export async function createVersion(catalog: Catalog, opts: CreateVersionOptions): Promise<VersionRecord> {
  const kind = opts.kind ?? 'dataset';
  const uri = `${kind}://${opts.collection}/${opts.version}`;
  // One creation time for the whole version: it is every file's mtime in packages and in the mount.
  const ctime = new Date();
  const log = opts.log ?? (() => {});

  // Refuse early (before uploading anything) if the version exists: versions are immutable.
  const existing = await catalog.listVersions(kind, opts.collection).catch(() => [] as string[]);
  if (existing.includes(opts.version)) {
    throw new VhfsError('CONFLICT', `${uri} already exists; versions are immutable (pick a new version name)`);
  }

  const byPath = new Map<string, VersionFile>();
  if (opts.from) {
    const exclude = new Set(opts.from.exclude ?? []);
    for (const f of await catalog.versionFiles(kind, opts.from.collection, opts.from.version)) {
      if (!exclude.has(f.path)) byPath.set(f.path, f);
    }
  }

  const progress = new Progress(`${uri}: uploading files`, opts.files.length, { quiet: opts.quiet, unit: 'files' });
  const uploaded = await mapLimit(opts.files, opts.concurrency ?? 8, async (f) => {
    const rec = await catalog.putDatum({ path: f.file }, {
      name: f.path, size: f.size, producer: opts.producer, tags: opts.tags ?? [], properties: {},
    });
    progress.tick(1, f.size);
    return { path: f.path, datumId: rec.id, size: rec.size, sha256: rec.sha256 } satisfies VersionFile;
  });
  progress.finish();
  for (const f of uploaded) byPath.set(f.path, f);
  const files = [...byPath.values()].sort((a, b) => compareNames(a.path, b.path));
  if (files.length === 0) throw new VhfsError('BAD_ARGUMENT', `${uri}: a version needs at least one file`);

  let packages: PackageRef[] = [];
  if (opts.packaging) {
    const maxPartSize = typeof opts.packaging === 'object' ? opts.packaging.maxPartSize : undefined;
    const local = new Map(opts.files.map((f) => [f.path, f.file]));
    packages = await buildPackages(catalog, {
      kind, collection: opts.collection, version: opts.version, files, local,
      maxPartSize: maxPartSize ?? DEFAULT_MAX_PACKAGE_SIZE, producer: opts.producer, mtime: ctime,
      tmpDir: opts.tmpDir ?? os.tmpdir(), quiet: opts.quiet ?? false, log,
    });
  }

  const record = await catalog.createVersion({
    kind, collection: opts.collection, version: opts.version, files, packages,
    ...(opts.from ? { from: `${kind}://${opts.from.collection}/${opts.from.version}` } : {}),
    properties: opts.properties ?? {}, producer: opts.producer, ctime: ctime.toISOString(),
  });
  for (const alias of opts.aliases ?? []) {
    await catalog.setAlias(kind, opts.collection, alias, opts.version);
    log(`${kind} alias ${opts.collection}/${alias} → ${opts.version}`);
  }
  return record;
}

interface PackageJob {
  kind: CollectionKind;
  collection: string;
  version: string;
  files: VersionFile[];
  /** Local copies of files uploaded in this run; others are streamed back from the store. */
  local: Map<string, string>;
  maxPartSize: number;
  producer: Producer;
  mtime: Date;
  tmpDir: string;
  quiet: boolean;
  log: (line: string) => void;
}

/** Write the version's files as package parts into temp files, then upload each part as a datum. */
async function buildPackages(catalog: Catalog, job: PackageJob): Promise<PackageRef[]> {
  const spool = path.join(job.tmpDir, `vhfs-package-${process.pid}-${randomBytes(4).toString('hex')}`);
  await fs.mkdir(spool, { recursive: true });
  try {
    const partFile = (part: number) => path.join(spool, `part-${part}`);
    const progress = new Progress(`${job.collection}/${job.version}: packaging`, job.files.length, { quiet: job.quiet });
    let lastEntries = 0;
    let lastBytes = 0;
    const entries = job.files.map((f): PackageEntry => ({
      path: f.path,
      size: f.size,
      mtime: job.mtime,
      open: () => {
        const localFile = job.local.get(f.path);
        return localFile ? createReadStream(localFile) : catalog.store.getStream(keys.blob(f.sha256));
      },
    }));
    const parts = await writePackage(entries, {
      name: `${job.kind}://${job.collection}/${job.version}`,
      maxPartSize: job.maxPartSize,
      openPart: (part) => createWriteStream(partFile(part)),
      onProgress: (bytes, done) => {
        progress.tick(done - lastEntries, bytes - lastBytes);
        lastEntries = done;
        lastBytes = bytes;
      },
    });
    progress.finish();
    const refs: PackageRef[] = [];
    for (const part of parts) {
      const name = packagePartName(job.collection, job.version, part.part, parts.length);
      const tag = `(dataset version package ${part.part}/${parts.length})`;
      job.log(`${tag} uploading ${name} (${formatSize(part.size)})`);
      job.log(`${tag} uploading to ${catalog.store.url}`);
      const rec = await catalog.putDatum({ path: partFile(part.part) }, {
        name, size: part.size, producer: { ...job.producer, tool: `${job.producer.tool} (packaging)` },
        package: { kind: job.kind, collection: job.collection, version: job.version, part: part.part, parts: parts.length },
      });
      job.log(`${tag} upload complete (datum ${rec.id})`);
      refs.push({ datumId: rec.id, name, size: part.size, entries: part.entries });
    }
    return refs;
  } finally {
    await fs.rm(spool, { recursive: true, force: true });
  }
}

function formatSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) { n /= 1000; u++; }
  return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
}
