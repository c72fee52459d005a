/**
 * The outputs journal: one SQLite file (better-sqlite3, WAL) per staging area recording every captured
 * output and what happened to it. docs/OUTPUTS.md has the whole crash argument; the rules this file keeps:
 *
 *  - A **run** is one batch of outputs with one execution identity (a mount session, or what was written
 *    between two finalizes). Its files live under `runs/<run>/tree/` in the staging area, and the run row
 *    names the process that owns it (pid + kernel start time, so a recycled pid is not mistaken for the
 *    owner). A run whose owner is gone is an orphan: `recover` (or the next mount) claims it with a
 *    compare-and-swap on the owner columns and finalizes it.
 *  - The staging tree is the truth for **staged** files (a file in the tree is an output not yet
 *    uploaded); the `staged` table is an index of it for `status`, written in batches and rebuilt from the
 *    tree before every finalize, so losing its last batch in a crash loses nothing.
 *  - Every upload gets its row **before** it starts, with the datum id it will create (a UUIDv7 chosen
 *    here). The datum record is written create-if-absent under that id, so after a crash anywhere between
 *    "row written" and "row marked uploaded" the next attempt finds the record (or not) and never makes a
 *    second datum: the upload is idempotent by construction.
 *  - Aliases and dataset versions are **actions** keyed by what they do; a finished action is never
 *    repeated (an alias another execution moved since must not be moved back by a late recovery).
 *
 * WAL with `synchronous=NORMAL`: a committed transaction survives the process being killed (SIGKILL); only
 * a power loss can drop the last commits, and staged file data is not fsynced either (docs/OUTPUTS.md).
 */
import type Database from 'better-sqlite3';
import { openSharedDb } from '../util/sqlite.js';
import { readFileSync } from 'node:fs';
import type { Producer } from '../catalog/types.js';
import { uuidv7 } from '../util/ids.js';

export type RunState = 'capturing' | 'finalizing' | 'finalized';
export type UploadState = 'uploading' | 'uploaded' | 'failed';
/** Where an upload's bytes are: the run's tree (finalize) or `live/<id>` (moved out by a live upload). */
export type UploadSource = 'tree' | 'live';
export type ActionState = 'started' | 'done' | 'skipped';

/** A process, identified so that a recycled pid is not taken for the one that wrote the row. */
export interface Owner {
  pid: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22). */
  start: string;
}

export interface RunRow {
  id: string;
  state: RunState;
  producer: Producer;
  /** VH_ENABLE_DATASET_VERSION_PACKAGING as it was when the run started. */
  packaging: boolean;
  owner: Owner;
  finalizeRequested: boolean;
  createdAt: string;
  finalizedAt?: string;
  summary?: RunSummary;
}

export interface RunSummary {
  uploaded: number;
  bytes: number;
  failed: number;
  versions: string[];
  warnings: number;
}

export interface UploadRow {
  /** The datum id this upload creates (chosen before the upload starts). */
  id: string;
  runId: string;
  /** Path under outputs/ as the job wrote it. */
  path: string;
  /** Datum name (the path, made safe if it had to be). */
  name: string;
  source: UploadSource;
  state: UploadState;
  size?: number;
  sha256?: string;
  tags: string[];
  properties: Record<string, unknown>;
  error?: string;
  startedAt: string;
  finishedAt?: string;
}

export interface NewUpload {
  id?: string;
  runId: string;
  path: string;
  name: string;
  source: UploadSource;
  tags?: string[];
  properties?: Record<string, unknown>;
}

/** An eager upload: the blob of `path` as it was when its fingerprint was taken is in the store. */
export interface EagerBlob {
  fingerprint: string;
  sha256: string;
  size: number;
}

export type StagedOp =
  | { op: 'touch'; path: string }
  | { op: 'remove'; path: string }
  | { op: 'rename'; from: string; to: string };

const MIGRATIONS = [
  `
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    producer_json TEXT NOT NULL,
    packaging INTEGER NOT NULL,
    owner_pid INTEGER NOT NULL,
    owner_start TEXT NOT NULL,
    finalize_requested INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    finalized_at TEXT,
    summary_json TEXT
  ) WITHOUT ROWID;
  CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER,
    sha256 TEXT,
    tags_json TEXT NOT NULL,
    properties_json TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
  ) WITHOUT ROWID;
  CREATE INDEX uploads_run ON uploads(run_id, path);
  CREATE TABLE staged (
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
  ) WITHOUT ROWID;
  CREATE TABLE eager (
    run_id TEXT NOT NULL,
    path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (run_id, path)
  ) WITHOUT ROWID;
  CREATE TABLE actions (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, key)
  ) WITHOUT ROWID;
  `,
];

interface RunDbRow {
  id: string;
  state: RunState;
  producer_json: string;
  packaging: number;
  owner_pid: number;
  owner_start: string;
  finalize_requested: number;
  created_at: string;
  finalized_at: string | null;
  summary_json: string | null;
}

interface UploadDbRow {
  id: string;
  run_id: string;
  path: string;
  name: string;
  source: UploadSource;
  state: UploadState;
  size: number | null;
  sha256: string | null;
  tags_json: string;
  properties_json: string;
  error: string | null;
  started_at: string;
  finished_at: string | null;
}

/** This process, as an owner. */
export function currentOwner(): Owner {
  return { pid: process.pid, start: processStart(process.pid) ?? '' };
}

/** Start time of `pid` in clock ticks since boot, or undefined if there is no such process. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined; // a zombie is gone for our purposes
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: Owner): boolean {
  return owner.pid > 0 && processStart(owner.pid) === owner.start;
}

export class Journal {
  private readonly db: Database.Database;
  private readonly st;

  private constructor(readonly file: string) {
    this.db = openSharedDb(file, { busyTimeoutMs: 10_000, migrations: MIGRATIONS, label: `outputs journal ${file}` });
    this.st = {
      run: this.db.prepare('SELECT * FROM runs WHERE id = ?'),
      runs: this.db.prepare('SELECT * FROM runs ORDER BY id'),
      insRun: this.db.prepare(
        `INSERT INTO runs (id, state, producer_json, packaging, owner_pid, owner_start, created_at)
         VALUES (?, 'capturing', ?, ?, ?, ?, ?)`),
      claim: this.db.prepare(
        'UPDATE runs SET owner_pid = ?, owner_start = ? WHERE id = ? AND owner_pid = ? AND owner_start = ?'),
      setState: this.db.prepare('UPDATE runs SET state = ? WHERE id = ?'),
      finished: this.db.prepare(
        "UPDATE runs SET state = 'finalized', finalized_at = ?, summary_json = ?, finalize_requested = 0 WHERE id = ?"),
      request: this.db.prepare('UPDATE runs SET finalize_requested = ? WHERE id = ?'),
      upload: this.db.prepare('SELECT * FROM uploads WHERE id = ?'),
      uploadsOf: this.db.prepare('SELECT * FROM uploads WHERE run_id = ? ORDER BY id'),
      insUpload: this.db.prepare(
        `INSERT INTO uploads (id, run_id, path, name, source, state, tags_json, properties_json, started_at)
         VALUES (@id, @runId, @path, @name, @source, 'uploading', @tags, @properties, @at)`),
      uploaded: this.db.prepare(
        "UPDATE uploads SET state = 'uploaded', size = ?, sha256 = ?, error = NULL, finished_at = ? WHERE id = ?"),
      failed: this.db.prepare("UPDATE uploads SET state = 'failed', error = ? WHERE id = ?"),
      discard: this.db.prepare("DELETE FROM uploads WHERE id = ? AND state = 'uploading'"),
      retry: this.db.prepare("UPDATE uploads SET state = 'uploading', tags_json = ?, properties_json = ?, name = ? WHERE id = ?"),
      stagedOf: this.db.prepare('SELECT path, since FROM staged WHERE run_id = ? ORDER BY path'),
      touch: this.db.prepare('INSERT OR IGNORE INTO staged (run_id, path, since) VALUES (?, ?, ?)'),
      unstage: this.db.prepare('DELETE FROM staged WHERE run_id = ? AND path = ?'),
      unstageAll: this.db.prepare('DELETE FROM staged WHERE run_id = ?'),
      // Lengths computed by SQLite (characters), not by JS (UTF-16 units): they differ for non-BMP names.
      renameStaged: this.db.prepare(
        `UPDATE OR REPLACE staged SET path = @to || substr(path, length(@from) + 1)
         WHERE run_id = @runId AND (path = @from OR substr(path, 1, length(@prefix)) = @prefix)`),
      eager: this.db.prepare('SELECT fingerprint, sha256, size FROM eager WHERE run_id = ? AND path = ?'),
      eagerCount: this.db.prepare('SELECT count(*) AS n FROM eager WHERE run_id = ?'),
      putEager: this.db.prepare(
        'INSERT OR REPLACE INTO eager (run_id, path, fingerprint, sha256, size) VALUES (?, ?, ?, ?, ?)'),
      action: this.db.prepare('SELECT state, detail FROM actions WHERE run_id = ? AND key = ?'),
      setAction: this.db.prepare('INSERT OR REPLACE INTO actions (run_id, key, state, detail) VALUES (?, ?, ?, ?)'),
      forgetRun: [
        this.db.prepare('DELETE FROM staged WHERE run_id = ?'),
        this.db.prepare('DELETE FROM eager WHERE run_id = ?'),
      ],
    };
  }

  static open(file: string): Journal {
    return new Journal(file);
  }

  close(): void {
    this.db.close();
  }

  // ---- runs ----

  createRun(producer: Producer, packaging: boolean, owner: Owner): RunRow {
    const id = uuidv7();
    this.st.insRun.run(id, JSON.stringify(producer), packaging ? 1 : 0, owner.pid, owner.start, new Date().toISOString());
    return this.run(id)!;
  }

  run(id: string): RunRow | undefined {
    const row = this.st.run.get(id) as RunDbRow | undefined;
    return row && runOf(row);
  }

  runs(): RunRow[] {
    return (this.st.runs.all() as RunDbRow[]).map(runOf);
  }

  /** Take over `run` from `from` (its recorded owner); false if someone else changed the owner first. */
  claimRun(id: string, from: Owner, to: Owner): boolean {
    return this.st.claim.run(to.pid, to.start, id, from.pid, from.start).changes === 1;
  }

  setRunState(id: string, state: RunState): void {
    this.st.setState.run(state, id);
  }

  /** Mark a run finalized and drop its index rows (its uploads and actions stay: they are the record). */
  finishRun(id: string, summary: RunSummary): void {
    this.db.transaction(() => {
      this.st.finished.run(new Date().toISOString(), JSON.stringify(summary), id);
      for (const st of this.st.forgetRun) st.run(id);
    })();
  }

  /** Ask the owner of a live run to finalize it (the owner polls this flag and clears it when done). */
  requestFinalize(id: string): void {
    this.st.request.run(1, id);
  }

  /** The owner's finalize attempt is over (finalized, or failed and left pending). */
  clearFinalizeRequest(id: string): void {
    this.st.request.run(0, id);
  }

  // ---- uploads ----

  upload(id: string): UploadRow | undefined {
    const row = this.st.upload.get(id) as UploadDbRow | undefined;
    return row && uploadOf(row);
  }

  uploadsOf(runId: string): UploadRow[] {
    return (this.st.uploadsOf.all(runId) as UploadDbRow[]).map(uploadOf);
  }

  /** Record uploads about to start (one transaction), each with the datum id it will create. */
  beginUploads(uploads: NewUpload[]): UploadRow[] {
    const at = new Date().toISOString();
    const ids = uploads.map((u) => u.id ?? uuidv7());
    this.db.transaction(() => {
      uploads.forEach((u, i) => this.st.insUpload.run({
        id: ids[i], runId: u.runId, path: u.path, name: u.name, source: u.source,
        tags: JSON.stringify(u.tags ?? []), properties: JSON.stringify(u.properties ?? {}), at,
      }));
    })();
    return ids.map((id) => this.upload(id)!);
  }

  /** A failed (or interrupted) upload is tried again under the same datum id, with fresh metadata. */
  retryUpload(id: string, name: string, tags: string[], properties: Record<string, unknown>): void {
    this.st.retry.run(JSON.stringify(tags), JSON.stringify(properties), name, id);
  }

  markUploaded(id: string, size: number, sha256: string): void {
    this.st.uploaded.run(size, sha256, new Date().toISOString(), id);
  }

  markFailed(id: string, error: string): void {
    this.st.failed.run(error, id);
  }

  /** Forget an upload that never started (its bytes stayed where they were). */
  discardUpload(id: string): void {
    this.st.discard.run(id);
  }

  // ---- staged index ----

  staged(runId: string): Array<{ path: string; since: string }> {
    return this.st.stagedOf.all(runId) as Array<{ path: string; since: string }>;
  }

  /** Apply capture events in order, in one transaction. */
  applyStaged(runId: string, ops: readonly StagedOp[]): void {
    if (ops.length === 0) return;
    const at = new Date().toISOString();
    this.db.transaction(() => {
      for (const o of ops) {
        if (o.op === 'touch') this.st.touch.run(runId, o.path, at);
        else if (o.op === 'remove') this.st.unstage.run(runId, o.path);
        else this.st.renameStaged.run({ runId, from: o.from, to: o.to, prefix: `${o.from}/` });
      }
    })();
  }

  /** Make the index exactly the tree's file list (before finalize, after a crash). */
  replaceStaged(runId: string, paths: readonly string[]): void {
    const at = new Date().toISOString();
    this.db.transaction(() => {
      const since = new Map(this.staged(runId).map((r) => [r.path, r.since]));
      this.st.unstageAll.run(runId);
      for (const p of paths) this.st.touch.run(runId, p, since.get(p) ?? at);
    })();
  }

  // ---- eager blobs ----

  eager(runId: string, path: string): EagerBlob | undefined {
    return this.st.eager.get(runId, path) as EagerBlob | undefined;
  }

  /** How many of the run's files have an eager blob recorded. */
  eagerCount(runId: string): number {
    return (this.st.eagerCount.get(runId) as { n: number }).n;
  }

  putEager(runId: string, path: string, blob: EagerBlob): void {
    this.st.putEager.run(runId, path, blob.fingerprint, blob.sha256, blob.size);
  }

  // ---- actions ----

  action(runId: string, key: string): { state: ActionState; detail: string | null } | undefined {
    return this.st.action.get(runId, key) as { state: ActionState; detail: string | null } | undefined;
  }

  setAction(runId: string, key: string, state: ActionState, detail?: string): void {
    this.st.setAction.run(runId, key, state, detail ?? null);
  }
}

function runOf(r: RunDbRow): RunRow {
  return {
    id: r.id,
    state: r.state,
    producer: JSON.parse(r.producer_json) as Producer,
    packaging: r.packaging === 1,
    owner: { pid: r.owner_pid, start: r.owner_start },
    finalizeRequested: r.finalize_requested === 1,
    createdAt: r.created_at,
    ...(r.finalized_at ? { finalizedAt: r.finalized_at } : {}),
    ...(r.summary_json ? { summary: JSON.parse(r.summary_json) as RunSummary } : {}),
  };
}

function uploadOf(r: UploadDbRow): UploadRow {
  return {
    id: r.id,
    runId: r.run_id,
    path: r.path,
    name: r.name,
    source: r.source,
    state: r.state,
    ...(r.size !== null ? { size: r.size } : {}),
    ...(r.sha256 !== null ? { sha256: r.sha256 } : {}),
    tags: JSON.parse(r.tags_json) as string[],
    properties: JSON.parse(r.properties_json) as Record<string, unknown>,
    ...(r.error !== null ? { error: r.error } : {}),
    startedAt: r.started_at,
    ...(r.finished_at !== null ? { finishedAt: r.finished_at } : {}),
  };
}
