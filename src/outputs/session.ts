/**
 * A capture session: the state behind a live outputs mount. The FUSE adapter (src/fuse/outputs-fs.ts) does
 * the I/O on the staging tree and tells the session what happened; the session keeps the bookkeeping that
 * decides uploads, off the per-write path (a write costs one map lookup here):
 *
 *  - open handles per file, so a live upload never takes a file someone is still writing: a chmod that
 *    leaves a regular file with no write bit starts the live upload at once if no write handle is open,
 *    else when the last one is released (the kernel sends RELEASE after close() returns, so a
 *    `close(); chmod()` sequence usually lands here in that second way);
 *  - live uploads: the journal row (with its datum id) is written, the file is renamed out of the tree into
 *    `live/<id>` (it disappears from outputs/ before chmod returns), then uploaded in the background;
 *  - `--eager-upload`: a file closed after writing and quiet for `quietMs` has its blob uploaded in the
 *    background and recorded with the file's fingerprint; finalize then only writes the datum record if the
 *    fingerprint still matches (a rewrite changes it, and the file is uploaded again);
 *  - the journal's `staged` index, fed in batches (create, rename, unlink) every half second;
 *  - finalize: refuse new modifications (EROFS), give open writers `closeGraceMs` to close, finalize the run
 *    (finalize.ts), then start a new run with an empty tree so the mount keeps accepting outputs;
 *  - orphaned runs of the same staging area are recovered in the background from the start; finalize waits
 *    for that, so an unmount leaves nothing pending.
 */
import { lstatSync, promises as fs, readFileSync, renameSync } from 'node:fs';
import type { Catalog } from '../catalog/catalog.js';
import type { Producer } from '../catalog/types.js';
import { describeError } from '../util/errors.js';
import { uploadBlobFile } from './datum-upload.js';
import { finalizeRun, recoverRuns, type FinalizeContext, type FinalizeResult } from './finalize.js';
import { currentOwner, type Journal, type RunRow, type StagedOp } from './journal.js';
import { SIDECAR_SUFFIX } from './metadata.js';
import { datumNameFor, fingerprintOf, type StagingArea } from './staging.js';
import { runUpload } from './uploader.js';

export interface SessionOptions {
  catalog: Catalog;
  journal: Journal;
  staging: StagingArea;
  producer: Producer;
  /** VH_ENABLE_DATASET_VERSION_PACKAGING for this execution. */
  packaging: boolean;
  /** The outputs mountpoint. */
  outputsDir: string;
  /** Upload closed files in the background after this many quiet ms (undefined: only at finalize). */
  eagerQuietMs?: number;
  concurrency?: number;
  closeGraceMs?: number;
  quiet?: boolean;
  log?: (line: string) => void;
}

interface Handle {
  path: string;
  write: boolean;
  run: string;
  /** Writes through it are refused: its run was finalized while it stayed open. */
  refused: boolean;
}

const STAGED_FLUSH_MS = 500;
const LIVE_AFTER_ATTR_MS = 200;
const FINALIZE_POLL_MS = 250;
const DEFAULT_CLOSE_GRACE_MS = 10_000;

export class OutputsSession {
  private run!: RunRow;
  private tree = '';
  private frozen = false;
  private readonly handles = new Map<number, Handle>();
  private readonly writers = new Map<string, number>();
  private readonly pendingLive = new Set<string>();
  /** Live uploads waiting for the attribute reply of their chmod (see chmodded). */
  private readonly liveAfterAttr = new Map<string, NodeJS.Timeout>();
  private readonly liveInFlight = new Set<Promise<unknown>>();
  private readonly eagerTimers = new Map<string, NodeJS.Timeout>();
  private readonly eagerInFlight = new Map<string, Promise<void>>();
  private eagerActive = 0;
  private stagedOps: StagedOp[] = [];
  private finalizing: Promise<FinalizeResult> | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private closed = false;
  /** Resolves when the orphaned runs found at start are recovered. */
  recovered: Promise<FinalizeResult[]> = Promise.resolve([]);
  private readonly log: (line: string) => void;

  private constructor(private readonly opts: SessionOptions) {
    this.log = opts.log ?? (() => {});
  }

  static async start(opts: SessionOptions): Promise<OutputsSession> {
    const session = new OutputsSession(opts);
    await session.newRun();
    // Orphaned runs (a killed daemon's) are finished in the background while this one captures.
    session.recovered = recoverRuns(session.finalizeContext(), { except: session.run.id }).catch((err: unknown) => {
      session.log(`error: recovering earlier runs failed: ${describeError(err)}; run \`vhfs outputs recover\``);
      return [];
    });
    session.timers.push(setInterval(() => session.flushStaged(), STAGED_FLUSH_MS));
    session.timers.push(setInterval(() => session.pollFinalizeRequest(), FINALIZE_POLL_MS));
    for (const t of session.timers) t.unref();
    return session;
  }

  get runId(): string {
    return this.run.id;
  }

  get treeDir(): string {
    return this.tree;
  }

  /** The staging area's root (exists for as long as the session). */
  get stagingDir(): string {
    return this.opts.staging.dir;
  }

  /** Modifications are accepted (false while a finalize runs). */
  get writable(): boolean {
    return !this.frozen && !this.closed;
  }

  /** Where an outputs path (`/a/b` as FUSE gives it) lives in the staging tree. */
  stagePath(p: string): string {
    return p === '/' ? this.tree : this.tree + p;
  }

  // ---- events from the FUSE adapter (paths as FUSE gives them: `/a/b`) ----

  opened(fd: number, p: string, write: boolean): void {
    this.handles.set(fd, { path: rel(p), write, run: this.run.id, refused: false });
    if (write) {
      const r = rel(p);
      this.writers.set(r, (this.writers.get(r) ?? 0) + 1);
      this.cancelEager(r);
    }
  }

  created(fd: number, p: string): void {
    this.opened(fd, p, true);
    this.stagedOps.push({ op: 'touch', path: rel(p) });
  }

  /** A symlink or hard link was made: a new name in the tree. */
  linked(p: string): void {
    this.stagedOps.push({ op: 'touch', path: rel(p) });
  }

  /** Whether a write through handle `fd` may proceed. */
  mayWrite(fd: number): boolean {
    const h = this.handles.get(fd);
    return h !== undefined && !h.refused && h.run === this.run.id;
  }

  released(fd: number): void {
    const h = this.handles.get(fd);
    if (!h) return;
    this.handles.delete(fd);
    if (!h.write || h.run !== this.run.id) return;
    const left = (this.writers.get(h.path) ?? 1) - 1;
    if (left > 0) return void this.writers.set(h.path, left);
    this.writers.delete(h.path);
    if (this.pendingLive.has(h.path)) this.startLive(h.path);
    else this.scheduleEager(h.path);
  }

  /** Content changed without a handle (truncate by path). */
  changed(p: string): void {
    this.scheduleEager(rel(p));
  }

  removed(p: string): void {
    const r = rel(p);
    this.pendingLive.delete(r);
    clearTimeout(this.liveAfterAttr.get(r));
    this.liveAfterAttr.delete(r);
    this.cancelEager(r);
    this.stagedOps.push({ op: 'remove', path: r });
  }

  renamed(from: string, to: string): void {
    const src = rel(from);
    const dst = rel(to);
    const moved = (x: string) => (x === src ? dst : x.startsWith(`${src}/`) ? dst + x.slice(src.length) : undefined);
    for (const h of this.handles.values()) {
      const m = h.run === this.run.id ? moved(h.path) : undefined;
      if (m !== undefined) h.path = m;
    }
    for (const [p, n] of [...this.writers]) {
      const m = moved(p);
      if (m !== undefined) { this.writers.delete(p); this.writers.set(m, n); }
    }
    for (const p of [...this.pendingLive]) {
      const m = moved(p);
      if (m !== undefined) { this.pendingLive.delete(p); this.pendingLive.add(m); }
    }
    for (const [p, timer] of [...this.liveAfterAttr]) {
      const m = moved(p);
      if (m !== undefined) { this.liveAfterAttr.delete(p); this.liveAfterAttr.set(m, timer); }
    }
    for (const p of [...this.eagerTimers.keys()]) {
      const m = moved(p);
      if (m !== undefined) { this.cancelEager(p); this.scheduleEager(m); }
    }
    this.stagedOps.push({ op: 'rename', from: src, to: dst });
  }

  /** A chmod went through; `mode` is the new mode. No write bit on a regular file means: upload it now. */
  chmodded(p: string, mode: number): void {
    const r = rel(p);
    if ((mode & 0o222) !== 0) {
      this.pendingLive.delete(r);
      clearTimeout(this.liveAfterAttr.get(r));
      this.liveAfterAttr.delete(r);
      return;
    }
    let isFile = false;
    try { isFile = lstatSync(this.stagePath(p)).isFile(); } catch { /* gone already */ }
    if (!isFile || !this.writable) return;
    if (this.writers.has(r)) return void this.pendingLive.add(r);
    // libfuse answers a chmod with the file's attributes, read by a getattr right after this handler
    // returns: the file must still be there for it, or the chmod fails with ENOENT. So the move waits
    // for that getattr (attrServed), or a moment if it never comes.
    if (this.liveAfterAttr.has(r)) return;
    const fallback = setTimeout(() => this.attrServed(`/${r}`), LIVE_AFTER_ATTR_MS);
    fallback.unref();
    this.liveAfterAttr.set(r, fallback);
  }

  /** A getattr of `p` was answered: a live upload waiting for it starts now. */
  attrServed(p: string): void {
    if (this.liveAfterAttr.size === 0) return;
    const r = rel(p);
    const timer = this.liveAfterAttr.get(r);
    if (!timer) return;
    clearTimeout(timer);
    this.liveAfterAttr.delete(r);
    if (this.writers.has(r)) this.pendingLive.add(r);
    else if (this.writable) this.startLive(r);
  }

  // ---- live uploads ----

  private startLive(r: string): void {
    this.pendingLive.delete(r);
    this.cancelEager(r);
    const staged = this.stagePath(`/${r}`);
    const { tags, properties } = this.sidecarNow(r);
    const { name, reason } = datumNameFor(r);
    if (reason) this.log(`warning: "${r}" is unsafe as a datum name (${reason}); uploaded as "${name}"`);
    // Row first (with its datum id), then the move: a crash between the two leaves a row whose bytes are
    // still at the path in the tree, which finalize knows to look for.
    const [row] = this.opts.journal.beginUploads([{ runId: this.run.id, path: r, name, source: 'live', tags, properties }]);
    const file = this.opts.staging.liveFile(this.run.id, row.id);
    try {
      renameSync(staged, file);
    } catch (err) {
      this.opts.journal.discardUpload(row.id);
      this.log(`warning: live upload of "${r}" not started (${describeError(err)}); it is uploaded at finalize if it still exists`);
      return;
    }
    this.stagedOps.push({ op: 'remove', path: r });
    this.log(`live upload: "${r}" (datum ${row.id})`);
    const producer = this.run.producer;
    const done = runUpload(this.opts.catalog, this.opts.journal, producer, { row, file, mayExist: false, removeAfter: true }, this.log)
      .then((out) => { if (out.datum) this.log(`live upload complete: "${r}" → datum://${out.datum.id}`); })
      .catch((err: unknown) => this.log(`error: live upload of "${r}": ${describeError(err)}`))
      .finally(() => this.liveInFlight.delete(done));
    this.liveInFlight.add(done);
  }

  /** Tags and properties from the file's sidecar as it is right now (aliases and versions wait for finalize). */
  private sidecarNow(r: string): { tags: string[]; properties: Record<string, unknown> } {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(this.stagePath(`/${r}${SIDECAR_SUFFIX}`), 'utf8'));
    } catch {
      return { tags: [], properties: {} };
    }
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return { tags: [], properties: {} };
    const properties: Record<string, unknown> = {};
    let tags: string[] = [];
    for (const [k, v] of Object.entries(doc)) {
      if (k === 'valohai.tags') {
        if (Array.isArray(v) && v.every((t) => typeof t === 'string' && t !== '')) tags = v as string[];
      } else if (!k.startsWith('valohai.')) properties[k] = v;
    }
    return { tags, properties };
  }

  // ---- eager uploads ----

  private scheduleEager(r: string): void {
    const quietMs = this.opts.eagerQuietMs;
    if (quietMs === undefined || !this.writable) return;
    this.cancelEager(r);
    const timer = setTimeout(() => {
      this.eagerTimers.delete(r);
      this.eagerNow(r);
    }, quietMs);
    timer.unref();
    this.eagerTimers.set(r, timer);
  }

  private cancelEager(r: string): void {
    const t = this.eagerTimers.get(r);
    if (t) clearTimeout(t);
    this.eagerTimers.delete(r);
  }

  private eagerNow(r: string): void {
    if (this.writers.has(r) || !this.writable || this.eagerInFlight.has(r)) return;
    if (this.eagerActive >= (this.opts.concurrency ?? 8)) return this.scheduleEager(r);
    const runId = this.run.id;
    const file = this.stagePath(`/${r}`);
    this.eagerActive++;
    const work = (async () => {
      const before = await fs.stat(file, { bigint: true });
      if (!before.isFile()) return;
      const fingerprint = fingerprintOf(before);
      if (this.opts.journal.eager(runId, r)?.fingerprint === fingerprint) return;
      const digest = await uploadBlobFile(this.opts.catalog.store, file, r);
      const after = await fs.stat(file, { bigint: true });
      // Written to while it was read: the blob may be of neither version; the next release reschedules.
      if (fingerprintOf(after) !== fingerprint || runId !== this.run.id) return;
      this.opts.journal.putEager(runId, r, { fingerprint, sha256: digest.sha256, size: digest.size });
    })().catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') this.log(`warning: eager upload of "${r}" failed (${describeError(err)}); it is uploaded at finalize`);
    }).finally(() => {
      this.eagerActive--;
      this.eagerInFlight.delete(r);
    });
    this.eagerInFlight.set(r, work);
  }

  // ---- journal index and requests ----

  private flushStaged(): void {
    if (this.stagedOps.length === 0) return;
    const ops = this.stagedOps;
    this.stagedOps = [];
    try {
      this.opts.journal.applyStaged(this.run.id, ops);
    } catch (err) {
      this.log(`warning: journal index update failed (${describeError(err)}); finalize rebuilds it from the tree`);
    }
  }

  private pollFinalizeRequest(): void {
    if (this.finalizing || this.closed) return;
    let requested = false;
    try { requested = this.opts.journal.run(this.run.id)?.finalizeRequested ?? false; } catch { return; }
    if (!requested) return;
    this.log(`finalize requested for run ${this.run.id}`);
    this.finalize().catch((err: unknown) => this.log(`error: finalize failed: ${describeError(err)}`));
  }

  // ---- finalize ----

  /** Upload everything captured so far (see the header); concurrent calls share one finalize. */
  finalize(): Promise<FinalizeResult> {
    this.finalizing ??= this.doFinalize().finally(() => { this.finalizing = undefined; });
    return this.finalizing;
  }

  private async doFinalize(): Promise<FinalizeResult> {
    this.frozen = true;
    const runId = this.run.id;
    try {
      for (const t of this.eagerTimers.values()) clearTimeout(t);
      this.eagerTimers.clear();
      await this.waitForWriters();
      for (const h of this.handles.values()) if (h.write && h.run === this.run.id) h.refused = true;
      await Promise.allSettled([...this.liveInFlight, ...this.eagerInFlight.values()]);
      await this.recovered;
      this.flushStaged();
      const ctx = this.finalizeContext();
      // Earlier runs of this process whose finalize failed (store down) get another try first.
      await recoverRuns(ctx, { except: this.run.id });
      const result = await finalizeRun(ctx, this.run.id);
      this.log(`outputs: run ${this.run.id}: ${result.uploaded.length} uploaded, ${result.failed.length} failed, ` +
        `${result.versions.length} dataset version(s), ${result.warnings.length} warning(s)`);
      if (!this.closed) await this.newRun();
      return result;
    } finally {
      this.opts.journal.clearFinalizeRequest(runId);
      this.frozen = false;
    }
  }

  private async waitForWriters(): Promise<void> {
    const deadline = Date.now() + (this.opts.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS);
    while (this.writers.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (this.writers.size > 0) {
      this.log(`warning: still open for writing at finalize, uploaded as they are now (further writes get EROFS): ${[...this.writers.keys()].slice(0, 5).join(', ')}`);
      this.writers.clear();
    }
  }

  /** Stop: finalize (unless told not to) and release timers; the journal stays open for the caller to close. */
  async close(opts: { finalize?: boolean } = {}): Promise<FinalizeResult | undefined> {
    let result: FinalizeResult | undefined;
    if (opts.finalize !== false) {
      this.closed = true; // no new run after this finalize
      result = await this.finalize();
    } else {
      await Promise.allSettled([...this.liveInFlight, ...this.eagerInFlight.values()]);
      await this.recovered;
    }
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    for (const t of this.eagerTimers.values()) clearTimeout(t);
    this.flushStaged();
    return result;
  }

  private async newRun(): Promise<void> {
    const run = this.opts.journal.createRun(this.opts.producer, this.opts.packaging, currentOwner());
    await this.opts.staging.createRunDirs(run.id);
    this.run = run;
    this.tree = this.opts.staging.treeDir(run.id);
    this.writers.clear();
    this.pendingLive.clear();
  }

  private finalizeContext(): FinalizeContext {
    return {
      catalog: this.opts.catalog, journal: this.opts.journal, staging: this.opts.staging, outputsDir: this.opts.outputsDir,
      concurrency: this.opts.concurrency ?? 8, quiet: this.opts.quiet ?? false, log: this.log,
    };
  }
}

/** `/a/b` → `a/b`. */
function rel(p: string): string {
  return p.startsWith('/') ? p.slice(1) : p;
}
