/**
 * Opening a SQLite database that several processes share (the catalog index, the host cache's record, the
 * outputs journal): WAL, a busy timeout, and numbered migrations that run once however many processes
 * open a new file at the same moment.
 *
 * Order matters: `busy_timeout` is set before the switch to WAL, since every opener of a new file makes that
 * switch and, without a timeout, all but one fail at once with SQLITE_BUSY. Each migration runs in an
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
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.synchronous ?? 'NORMAL'}`);
    for (const p of opts.pragmas ?? []) db.pragma(p);
    migrate(db, opts);
    return db;
  } catch (err) {
    db.close();
    throw err;
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
