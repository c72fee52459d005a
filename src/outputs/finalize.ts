/**
 * Finalize: turn one run's staged outputs into datums, aliases and dataset versions, then drop the staging.
 * The same code finishes a run after a crash (`recoverRuns`): every step is idempotent against the journal.
 *
 *  1. The run is marked `finalizing`; its tree is walked and the `staged` index rebuilt from it.
 *  2. Live uploads that were interrupted (row written, datum maybe not) are completed first.
 *  3. Metadata (sidecars, valohai.metadata.jsonl) is planned (metadata.ts); symlinks are resolved (a link
 *     to a regular file inside outputs/ uploads that file's bytes under the link's name; anything else is
 *     skipped with a warning).
 *  4. Every output without an upload row gets one, in one transaction, with its datum id, before any
 *     upload starts; then all pending rows are uploaded, bounded parallel, with a progress line.
 *  5. Datum aliases (`valohai.alias`) and dataset versions are actions: a finished one is never repeated.
 *     A version is created only once every file naming it is uploaded.
 *  6. Only when nothing failed: the run's staging directory is deleted, then the run is marked finalized.
 *     With failures the run stays `finalizing` with its files staged, for `vhfs outputs recover`.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Catalog } from '../catalog/catalog.js';
import type { DatumRecord } from '../catalog/types.js';
import { describeError, isVhfsError } from '../util/errors.js';
import { formatBytes } from '../util/progress.js';
import { existingDatum } from './datum-upload.js';
import { currentOwner, ownerAlive, type Journal, type NewUpload, type RunRow, type RunSummary, type UploadRow } from './journal.js';
import { planMetadata, type MetadataPlan } from './metadata.js';
import { datumNameFor, fingerprintOf, StagingArea, walkTree, type TreeEntry } from './staging.js';
import { runUploads, type UploadJob } from './uploader.js';
import { createVersionFromOutputs } from './versions.js';

export interface FinalizeContext {
  catalog: Catalog;
  journal: Journal;
  staging: StagingArea;
  /** The outputs mountpoint (absolute symlink targets and jsonl paths under it are understood). */
  outputsDir?: string;
  concurrency?: number;
  quiet?: boolean;
  log?: (line: string) => void;
  maxPackageSize?: number;
  /** Waits between upload attempts (default uploader.ts RETRY_DELAYS_MS). */
  retryDelaysMs?: readonly number[];
}

export interface FinalizeResult {
  runId: string;
  uploaded: Array<{ path: string; name: string; datumId: string; size: number }>;
  failed: Array<{ path: string; error: string }>;
  versions: string[];
  aliases: string[];
  warnings: string[];
  bytes: number;
  /** True when the run is finalized (nothing failed). */
  complete: boolean;
}

const SYMLINK_HOPS = 16;

export async function finalizeRun(ctx: FinalizeContext, runId: string): Promise<FinalizeResult> {
  const { catalog, journal, staging } = ctx;
  const log = ctx.log ?? (() => {});
  const run = journal.run(runId);
  if (!run) throw new Error(`no run ${runId} in ${journal.file}`);
  const result: FinalizeResult = { runId, uploaded: [], failed: [], versions: [], aliases: [], warnings: [], bytes: 0, complete: false };
  const warn = (line: string) => {
    result.warnings.push(line);
    log(line);
  };
  if (run.state === 'finalized') return { ...result, complete: true };
  journal.setRunState(runId, 'finalizing');

  const tree = staging.treeDir(runId);
  const entries = await walkTree(tree);
  journal.replaceStaged(runId, entries.map((e) => e.path));
  const rowsAtStart = journal.uploadsOf(runId);

  // Interrupted live uploads: the row is there, the bytes are in live/<id> (or, if the process died
  // between writing the row and moving the file, still at the path in the tree).
  const liveJobs: UploadJob[] = [];
  const treePaths = new Set(entries.map((e) => e.path));
  for (const row of rowsAtStart) {
    if (row.source !== 'live' || row.state === 'uploaded') continue;
    const file = staging.liveFile(runId, row.id);
    if (!(await isFile(file))) {
      if (treePaths.has(row.path) && (await isFile(path.join(tree, row.path)))) {
        await fs.rename(path.join(tree, row.path), file);
        treePaths.delete(row.path);
      } else if (await existingDatum(catalog, row.id).then((d) => d && (journal.markUploaded(row.id, d.size, d.sha256), true))) {
        continue;
      } else {
        journal.markFailed(row.id, 'staged bytes are missing');
        warn(`error: live upload of "${row.path}" (datum ${row.id}) lost its staged bytes`);
        continue;
      }
    }
    liveJobs.push({ row, file, mayExist: true, removeAfter: true });
  }

  const liveRows = rowsAtStart.filter((r) => r.source === 'live');
  const candidates = entries.filter((e) => treePaths.has(e.path));
  const plan = await planMetadata({
    files: candidates.filter((e) => e.kind !== 'other').map((e) => e.path),
    live: liveRows.map((r) => r.path),
    read: (p) => fs.readFile(path.join(tree, p), 'utf8'),
    ...(ctx.outputsDir ? { outputsDir: ctx.outputsDir } : {}),
  });
  for (const w of plan.warnings) warn(w);

  // Outputs in the tree: regular files, and symlinks that lead to one inside outputs/.
  const outputs: Array<{ path: string; file: string }> = [];
  for (const e of candidates) {
    if (plan.consumed.has(e.path)) continue;
    if (e.kind === 'file') outputs.push({ path: e.path, file: path.join(tree, e.path) });
    else if (e.kind === 'symlink') {
      const target = await resolveLink(tree, e.path, ctx.outputsDir);
      if (typeof target === 'string') outputs.push({ path: e.path, file: path.join(tree, target) });
      else warn(`warning: ${e.path}: symlink ${target.why}; not uploaded`);
    } else warn(`warning: ${e.path}: not a regular file; not uploaded`);
  }

  // Datum names: the path, made safe if it must be, never two alike within this batch.
  const names = new Set<string>();
  const nameOf = (p: string): string => {
    const { name, reason } = datumNameFor(p);
    let unique = name;
    for (let n = 2; names.has(unique); n++) unique = `${name}~${n}`;
    names.add(unique);
    if (reason || unique !== name) warn(`warning: "${p}" ${reason ? `is unsafe as a datum name (${reason})` : 'collides with another name'}; uploaded as "${unique}"`);
    return unique;
  };

  const treeRows = new Map(rowsAtStart.filter((r) => r.source === 'tree').map((r) => [r.path, r]));
  const fresh: NewUpload[] = [];
  const retry: UploadRow[] = [];
  for (const o of outputs) {
    const meta = plan.byPath.get(o.path);
    const name = nameOf(o.path);
    const tags = meta?.tags ?? [];
    const properties = meta?.properties ?? {};
    const row = treeRows.get(o.path);
    if (!row) fresh.push({ runId, path: o.path, name, source: 'tree', tags, properties });
    else if (row.state !== 'uploaded') {
      journal.retryUpload(row.id, name, tags, properties);
      retry.push({ ...row, name, tags, properties });
    }
  }
  const started = journal.beginUploads(fresh);
  const fileOf = new Map(outputs.map((o) => [o.path, o.file]));
  const treeJobs: UploadJob[] = [];
  const retried = new Set(retry);
  for (const row of [...retry, ...started]) {
    const file = fileOf.get(row.path)!;
    const job: UploadJob = { row, file, mayExist: retried.has(row) };
    const eager = journal.eager(runId, row.path);
    if (eager) {
      const st = await fs.stat(file, { bigint: true }).catch(() => undefined);
      if (st && fingerprintOf(st) === eager.fingerprint) job.known = { sha256: eager.sha256, md5: '', size: eager.size };
    }
    treeJobs.push(job);
  }

  const jobs = [...liveJobs, ...treeJobs];
  const sizes = new Map(entries.map((e) => [path.join(tree, e.path), e.size]));
  const bytes = jobs.reduce((n, j) => n + (sizes.get(j.file) ?? 0), 0);
  if (jobs.length) log(`outputs: uploading ${jobs.length} file(s) of run ${runId}${bytes ? ` (${formatBytes(bytes)})` : ''}`);
  const outcomes = await runUploads(catalog, journal, run.producer, jobs, {
    concurrency: ctx.concurrency ?? 8, quiet: ctx.quiet ?? false, log, label: 'outputs: uploading',
    ...(ctx.retryDelaysMs ? { retryDelaysMs: ctx.retryDelaysMs } : {}),
  });
  for (const o of outcomes) {
    if (o.datum) {
      result.uploaded.push({ path: o.job.row.path, name: o.datum.name, datumId: o.datum.id, size: o.datum.size });
      result.bytes += o.datum.size;
    } else result.failed.push({ path: o.job.row.path, error: o.error ?? 'failed' });
  }

  // Every output's datum as of now: the tree upload of a path, else its latest live upload (rows come in
  // datum id order, which is time order).
  const rows = journal.uploadsOf(runId);
  const fromTree = new Map<string, UploadRow>();
  const lastLive = new Map<string, UploadRow>();
  for (const r of rows) (r.source === 'tree' ? fromTree : lastLive).set(r.path, r);
  const datumFor = (p: string): UploadRow | undefined => fromTree.get(p) ?? lastLive.get(p);
  checkLiveMetadata(plan, fromTree, lastLive, warn);
  await applyDatumAliases(ctx, run, plan, datumFor, result, warn);
  await applyVersions(ctx, run, plan, datumFor, fileOf, result, warn);

  const stillFailed = journal.uploadsOf(runId).filter((r) => r.state !== 'uploaded');
  if (stillFailed.length === 0 && result.failed.length === 0) {
    await fs.rm(staging.runDir(runId), { recursive: true, force: true });
    const summary: RunSummary = {
      uploaded: rows.length, bytes: rows.reduce((n, r) => n + (r.size ?? 0), 0), failed: 0,
      versions: result.versions, warnings: result.warnings.length,
    };
    journal.finishRun(runId, summary);
    result.complete = true;
  }
  return result;
}

/** Finalize every run of this staging area whose owner is gone (claimed first, so two recoverers never race). */
export async function recoverRuns(ctx: FinalizeContext, opts: { except?: string } = {}): Promise<FinalizeResult[]> {
  const me = currentOwner();
  const results: FinalizeResult[] = [];
  for (const run of ctx.journal.runs()) {
    if (run.state === 'finalized' || run.id === opts.except) continue;
    const mine = run.owner.pid === me.pid && run.owner.start === me.start;
    if (!mine && (ownerAlive(run.owner) || !ctx.journal.claimRun(run.id, run.owner, me))) continue;
    ctx.log?.(`outputs: recovering run ${run.id} (${run.state}${mine ? '' : `, owner pid ${run.owner.pid} is gone`})`);
    results.push(await finalizeRun(ctx, run.id));
  }
  return results;
}

async function isFile(p: string): Promise<boolean> {
  return fs.lstat(p).then((s) => s.isFile(), () => false);
}

/** Follow a symlink inside the tree: the relative path of the regular file it leads to, or why not. */
async function resolveLink(tree: string, linkPath: string, outputsDir: string | undefined): Promise<string | { why: string }> {
  let current = linkPath;
  for (let hop = 0; hop < SYMLINK_HOPS; hop++) {
    const target = await fs.readlink(path.join(tree, current)).catch(() => undefined);
    if (target === undefined) return { why: 'cannot be read' };
    let next: string;
    if (path.isAbsolute(target)) {
      const root = outputsDir ? path.resolve(outputsDir) : undefined;
      if (!root || !(target === root || target.startsWith(`${root}/`))) return { why: `points outside outputs/ (${target})` };
      next = path.posix.normalize(target.slice(root.length + 1));
    } else next = path.posix.normalize(path.posix.join(path.posix.dirname(current), target));
    if (next === '.' || next === '' || next.startsWith('../') || next === '..') return { why: `points outside outputs/ (${target})` };
    const st = await fs.lstat(path.join(tree, next)).catch(() => undefined);
    if (!st) return { why: `is dangling (${target})` };
    if (st.isFile()) return next;
    if (!st.isSymbolicLink()) return { why: `points to a directory or special file (${target})` };
    current = next;
  }
  return { why: 'has too many levels of links' };
}

/** A live upload's datum was made when it turned read-only: metadata found only now cannot be added to it. */
function checkLiveMetadata(plan: MetadataPlan, fromTree: Map<string, UploadRow>, lastLive: Map<string, UploadRow>, warn: (line: string) => void): void {
  for (const [p, meta] of plan.byPath) {
    const live = lastLive.get(p);
    if (fromTree.has(p) || !live) continue;
    const missingTags = meta.tags.filter((t) => !live.tags.includes(t));
    const changedProps = Object.keys(meta.properties).filter((k) => JSON.stringify(meta.properties[k]) !== JSON.stringify(live.properties[k]));
    if (missingTags.length || changedProps.length) {
      warn(`warning: "${p}" was live-uploaded (datum://${live.id}) before ${meta.sources.join(', ')} was read: ` +
        `its ${[missingTags.length ? `tags ${missingTags.join(', ')}` : '', changedProps.length ? `properties ${changedProps.join(', ')}` : ''].filter(Boolean).join(' and ')} ` +
        `cannot be added to the immutable datum; aliases and dataset versions still apply`);
    }
  }
}

async function applyDatumAliases(
  ctx: FinalizeContext, run: RunRow, plan: MetadataPlan, datumFor: (p: string) => UploadRow | undefined,
  result: FinalizeResult, warn: (line: string) => void,
): Promise<void> {
  for (const [p, meta] of plan.byPath) {
    if (!meta.alias) continue;
    const key = `alias:datum:${meta.alias}`;
    if (ctx.journal.action(run.id, key)?.state === 'done') continue;
    const row = datumFor(p);
    if (!row || row.state !== 'uploaded') continue; // its upload failed: retried with the run
    try {
      await ctx.catalog.setAlias('datum', '', meta.alias, row.id);
      ctx.journal.setAction(run.id, key, 'done', row.id);
      result.aliases.push(meta.alias);
      ctx.log?.(`datum alias ${meta.alias} → datum://${row.id} ("${p}")`);
    } catch (err) {
      warn(`warning: ${meta.sources.join(', ')}: datum alias "${meta.alias}" for "${p}" not set: ${describeError(err)}`);
      if (!isVhfsError(err, 'STORE') && !isVhfsError(err, 'TIMEOUT')) ctx.journal.setAction(run.id, key, 'skipped', describeError(err));
    }
  }
}

async function applyVersions(
  ctx: FinalizeContext, run: RunRow, plan: MetadataPlan, datumFor: (p: string) => UploadRow | undefined,
  fileOf: Map<string, string>, result: FinalizeResult, warn: (line: string) => void,
): Promise<void> {
  const log = ctx.log ?? (() => {});
  dropConflictingTargetAliases(plan, warn);
  for (const req of plan.versions.values()) {
    const key = `version:${req.uri}`;
    const before = ctx.journal.action(run.id, key);
    if (before?.state === 'done' || before?.state === 'skipped') {
      if (before.state === 'done') result.versions.push(req.uri);
      continue;
    }
    const rows = req.files.map((p) => [p, datumFor(p)] as const);
    const pending = rows.filter(([, r]) => !r || r.state !== 'uploaded').map(([p]) => p);
    if (pending.length) {
      warn(`warning: ${req.uri} not created yet: ${pending.length} of its files did not upload (${pending.slice(0, 3).join(', ')}${pending.length > 3 ? ', …' : ''})`);
      result.failed.push({ path: req.uri, error: 'files not uploaded' });
      continue;
    }
    if (req.packaging && !run.packaging) {
      log(`${req.uri}: "packaging": true, but VH_ENABLE_DATASET_VERSION_PACKAGING is not set for this execution; not packaged`);
    }
    const members: Array<{ datum: DatumRecord; file?: string }> = [];
    for (const [p, r] of rows) members.push({ datum: await ctx.catalog.getDatum(r!.id), ...(fileOf.has(p) ? { file: fileOf.get(p)! } : {}) });
    ctx.journal.setAction(run.id, key, 'started');
    try {
      const rec = await createVersionFromOutputs(ctx.catalog, {
        request: req, members, packaging: req.packaging && run.packaging, producer: run.producer,
        quiet: ctx.quiet ?? false, log,
        ...(ctx.maxPackageSize ? { maxPackageSize: ctx.maxPackageSize } : {}),
      });
      ctx.journal.setAction(run.id, key, 'done');
      result.versions.push(req.uri);
      log(`created ${req.uri}: ${rec.files.length} files${rec.packages.length ? `, ${rec.packages.length} package(s)` : ''}${rec.from ? ` (from ${rec.from})` : ''}`);
    } catch (err) {
      if (isVhfsError(err, 'CONFLICT') && before?.state === 'started' && (await madeByRun(ctx, req.collection, req.version, run))) {
        // An earlier attempt of this run created it and died before recording so: finish its aliases.
        for (const alias of req.targetingAliases) await ctx.catalog.setAlias('dataset', req.collection, alias, req.version);
        ctx.journal.setAction(run.id, key, 'done');
        result.versions.push(req.uri);
        continue;
      }
      const retryable = isVhfsError(err, 'STORE') || isVhfsError(err, 'TIMEOUT');
      warn(`warning: ${req.source}: ${req.uri} not created: ${describeError(err)}`);
      if (retryable) result.failed.push({ path: req.uri, error: describeError(err) });
      else ctx.journal.setAction(run.id, key, 'skipped', describeError(err));
    }
  }
}

async function madeByRun(ctx: FinalizeContext, collection: string, version: string, run: RunRow): Promise<boolean> {
  const rec = await ctx.catalog.getVersion('dataset', collection, version).catch(() => undefined);
  return rec !== undefined && rec.producer.executionId === run.producer.executionId && rec.producer.tool === run.producer.tool;
}

/** Two versions of one dataset in one run pointing the same alias: neither moves it. */
function dropConflictingTargetAliases(plan: MetadataPlan, warn: (line: string) => void): void {
  const claims = new Map<string, string[]>();
  for (const req of plan.versions.values()) {
    for (const a of req.targetingAliases) {
      const k = `${req.collection}/${a}`;
      claims.set(k, [...(claims.get(k) ?? []), req.uri]);
    }
  }
  for (const [k, uris] of claims) {
    if (uris.length < 2) continue;
    warn(`warning: dataset alias ${k} is targeted by ${uris.join(' and ')}; alias not moved`);
    const alias = k.slice(k.indexOf('/') + 1);
    for (const req of plan.versions.values()) if (uris.includes(req.uri)) req.targetingAliases = req.targetingAliases.filter((a) => a !== alias);
  }
}
