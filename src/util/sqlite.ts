/**
 * Opening a SQLite database that several processes share (the catalog index, the host cache's record, the
 * outputs journal): WAL, a busy timeout, and numbered migrations that run once however many processes
 * open a new file at the same moment.
 *
 * Order matters: `busy_timeout` is set before the switch to WAL, since every opener of a new file makes that
 * switch and, without a timeout, all but one fail at once with SQLITE_BUSY; the switch itself is retried
 * too, as SQLite may answer it BUSY without waiting. Each migration runs in an
 * immediate transaction that re-reads `user_version` under the write lock, so a migration another process
 * ran meanwhile is not run again ("table already exists").
 */
import Database from 'better-sqlite3';
import { VhfsError } from './errors.js';

export interface SharedDbOptions {
  busyTimeoutMs: number;
  /** 'NORMAL' unless a lost last transaction would lose more than a re-sync or a refetch. */
  synchronous?: 'NORMAL' | 'FULL';
  /** Schema steps, in order; `PRAGMA user_version` counts those that ran. */
  migrations: readonly string[];
  /** What the file is, for errors ("catalog database /x/catalog.sqlite"). */
  label: string;
  /** Extra pragmas, set after the journal mode (e.g. `cache_size = -65536`). */
  pragmas?: readonly string[];
}

export function openSharedDb(file: string, opts: SharedDbOptions): Database.Database {
  const db = new Database(file);
  try {
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs}`);
    switchToWal(db, opts.busyTimeoutMs);
    db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
    for (const p of opts.pragmas ?? []) db.pragma(p);
    migrate(db, opts);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * The switch to WAL, retried: while another connection is switching a new file, SQLite can answer
 * SQLITE_BUSY at once, without calling the busy handler (seen with six processes opening one new file).
 */
function switchToWal(db: Database.Database, timeoutMs: number): void {
  const until = Date.now() + timeoutMs;
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    try {
      if (db.pragma('journal_mode = WAL', { simple: true }) === 'wal') return;
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'SQLITE_BUSY') throw err;
    }
    if (Date.now() >= until) throw new VhfsError('STORE', `cannot switch ${db.name} to WAL: still locked by another process after ${timeoutMs} ms`);
    // Opening is rare and synchronous already (better-sqlite3): a short blocking pause is fine here.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, pause);
  }
}

function migrate(db: Database.Database, opts: SharedDbOptions): void {
  const version = () => db.pragma('user_version', { simple: true }) as number;
  const done = version();
  if (done > opts.migrations.length) {
    throw new VhfsError('UNSUPPORTED', `${opts.label}: schema version ${done} is newer than this vhfs (${opts.migrations.length})`);
  }
  for (let i = done; i < opts.migrations.length; i++) {
    db.transaction(() => {
      if (version() > i) return;
      db.exec(opts.migrations[i]);
      db.pragma(`user_version = ${i + 1}`);
    }).immediate();
  }
}
