import test from 'ava';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { openSharedDb } from '../../src/util/sqlite.js';
import { isVhfsError } from '../../src/util/errors.js';

const MODULE = fileURLToPath(new URL('../../src/util/sqlite.js', import.meta.url));
const MIGRATIONS = ['CREATE TABLE a (x INTEGER)', 'CREATE TABLE b (y INTEGER)', 'INSERT INTO a VALUES (1)'];

test('processes opening a new database at once all succeed, and each migration runs once', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-sqlite-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'shared.db');
  // Each child waits for the same wall-clock moment, then opens the file: the race the catalog, the host
  // cache and the outputs journal each met ("table already exists", SQLITE_BUSY on the switch to WAL).
  const at = Date.now() + 1500;
  const script = `
    const { openSharedDb } = await import(${JSON.stringify(MODULE)});
    while (Date.now() < ${at}) {}
    const db = openSharedDb(${JSON.stringify(file)}, { busyTimeoutMs: 5000, migrations: ${JSON.stringify(MIGRATIONS)}, label: 'test db' });
    db.close();`;
  const results = await Promise.all(Array.from({ length: 6 }, () => new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], (err, _out, stderr) => resolve({ code: err ? 1 : 0, stderr }));
  })));
  for (const r of results) t.is(r.code, 0, r.stderr);
  const db = new Database(file, { readonly: true });
  t.teardown(() => db.close());
  t.is(db.pragma('user_version', { simple: true }), 3);
  t.is(db.pragma('journal_mode', { simple: true }), 'wal');
  t.deepEqual(db.prepare('SELECT x FROM a').all(), [{ x: 1 }], 'the data migration ran exactly once');
});

test('a database whose schema is newer than this build is refused with UNSUPPORTED naming it', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-sqlite-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'new.db');
  openSharedDb(file, { busyTimeoutMs: 100, migrations: MIGRATIONS, label: 'test db' }).close();
  const err = t.throws(() => openSharedDb(file, { busyTimeoutMs: 100, migrations: MIGRATIONS.slice(0, 2), label: 'test db at X' }));
  t.true(isVhfsError(err, 'UNSUPPORTED'));
  t.regex(err!.message, /^test db at X: schema version 3 is newer than this vhfs \(2\)/);
});
