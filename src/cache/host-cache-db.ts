/**
 * The host cache's record: one SQLite database (`<cacheDir>/host-cache.db`, WAL) shared by every process
 * using the cache directory. It says which objects have a sparse file, which of their blocks are present
 * and checked (with each block's CRC-32), who is fetching which block (leases), who is reading which object
 * (holds), how many bytes each object takes and when it was last used, and the host-wide counters.
 *
 * Tables (schema version 1; `PRAGMA user_version`):
 *   objects  id (AUTOINCREMENT: never reused, so a file name never comes back), source (store URL + key),
 *            size, block_size, bytes (space reserved in its file: counts toward the quota), last_use (ms),
 *            label (the input URI it was first read for), evictor (owner while its file is being removed)
 *   blocks   (object, block) → state 0 = space reserved but not present (a fetch failed or its process
 *            died), 1 = leased (owner, expires), 2 = present (length, crc); alloc = bytes reserved for it
 *   holds    (object, owner, expires): the owner is reading the object's file; it is not evicted meanwhile
 *   counters name → value: `used` (sum of objects.bytes) and the statistics `vhfs cache stats` shows
 *
 * WAL lets readers in other processes read while one writes; every change is one short `BEGIN IMMEDIATE`
 * transaction, so writers queue on `busy_timeout` instead of failing; `synchronous=NORMAL` is enough
 * because a block lost with the last transactions on power loss is only fetched again. Checkpoints are
 * frequent (every 64 pages) and the WAL file is cut back to 256 KiB: the record's files count toward the quota.
 */
import type Database from 'better-sqlite3';
import { openSharedDb } from '../util/sqlite.js';

const SCHEMA = `
  CREATE TABLE objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    size INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    last_use INTEGER NOT NULL,
    label TEXT,
    evictor TEXT,
    UNIQUE (source, size, block_size)
  );
  CREATE INDEX objects_lru ON objects (last_use);
  CREATE TABLE blocks (
    object INTEGER NOT NULL,
    block INTEGER NOT NULL,
    state INTEGER NOT NULL,
    alloc INTEGER NOT NULL DEFAULT 0,
    length INTEGER,
    crc INTEGER,
    owner TEXT,
    expires INTEGER,
    PRIMARY KEY (object, block)
  ) WITHOUT ROWID;
  CREATE INDEX blocks_leased ON blocks (object) WHERE state = 1;
  CREATE TABLE holds (
    object INTEGER NOT NULL,
    owner TEXT NOT NULL,
    expires INTEGER NOT NULL,
    PRIMARY KEY (object, owner)
  ) WITHOUT ROWID;
  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) WITHOUT ROWID;
`;

export const BLOCK_RESERVED = 0;
export const BLOCK_LEASED = 1;
export const BLOCK_PRESENT = 2;

export interface ObjectRow {
  id: number;
  source: string;
  size: number;
  block_size: number;
  bytes: number;
  last_use: number;
  label: string | null;
  evictor: string | null;
}

export interface BlockRow {
  block: number;
  state: number;
  alloc: number;
  length: number | null;
  crc: number | null;
  owner: string | null;
  expires: number | null;
}

/** The counters `vhfs cache stats` reports (besides `used`), all cumulative since the cache was made. */
export const COUNTER_NAMES = [
  'diskBlocks', 'diskBytes', 'storeBlocks', 'storeBytes', 'waits', 'leasesTakenOver', 'evictions', 'evictedBytes',
  'notKept', 'noSpace', 'corruptBlocks',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];

/** The record's file name in the cache directory. */
export const DB_FILE = 'host-cache.db';

export function openRecord(file: string): Database.Database {
  return openSharedDb(file, {
    busyTimeoutMs: 2000, migrations: [SCHEMA], label: `host cache record ${file}`,
    pragmas: ['wal_autocheckpoint = 64', 'journal_size_limit = 262144'],
  });
}

/** The prepared statements of the record, named by what they do. */
export function statements(db: Database.Database) {
  return {
    object: db.prepare<[string, number, number], ObjectRow>('SELECT * FROM objects WHERE source = ? AND size = ? AND block_size = ?'),
    objectById: db.prepare<[number], ObjectRow>('SELECT * FROM objects WHERE id = ?'),
    insertObject: db.prepare<[string, number, number, number, string | null], { id: number }>(
      'INSERT INTO objects (source, size, block_size, last_use, label) VALUES (?, ?, ?, ?, ?) RETURNING id'),
    touchObject: db.prepare<[number, number]>('UPDATE objects SET last_use = max(last_use, ?) WHERE id = ?'),
    blocks: db.prepare<[number, number, number], BlockRow>(
      'SELECT block, state, alloc, length, crc, owner, expires FROM blocks WHERE object = ? AND block BETWEEN ? AND ?'),
    block: db.prepare<[number, number], BlockRow>('SELECT block, state, alloc, length, crc, owner, expires FROM blocks WHERE object = ? AND block = ?'),
    newLease: db.prepare<[number, number, string, number]>('INSERT INTO blocks (object, block, state, owner, expires) VALUES (?, ?, 1, ?, ?)'),
    lease: db.prepare<[string, number, number, number]>('UPDATE blocks SET state = 1, owner = ?, expires = ? WHERE object = ? AND block = ?'),
    /** A lease given back: the row goes if no space was reserved for it, else it keeps the reservation. */
    dropLease: db.prepare<[number, number, string]>('DELETE FROM blocks WHERE object = ? AND block = ? AND state = 1 AND owner = ? AND alloc = 0'),
    endLease: db.prepare<[number, number, string]>(
      'UPDATE blocks SET state = 0, owner = NULL, expires = NULL WHERE object = ? AND block = ? AND state = 1 AND owner = ?'),
    reserveBlock: db.prepare<[number, number, number]>('UPDATE blocks SET alloc = ? WHERE object = ? AND block = ?'),
    addBytes: db.prepare<[number, number]>('UPDATE objects SET bytes = bytes + ? WHERE id = ?'),
    present: db.prepare<[number, number, number, number, string]>(
      'UPDATE blocks SET state = 2, length = ?, crc = ?, owner = NULL, expires = NULL WHERE object = ? AND block = ? AND state = 1 AND owner = ?'),
    unpresent: db.prepare<[number, number]>('UPDATE blocks SET state = 0, length = NULL, crc = NULL WHERE object = ? AND block = ? AND state = 2'),
    /** Least recently used objects that nobody reads or fills, oldest first. */
    victims: db.prepare<[number, number, number, number], ObjectRow>(`
      SELECT * FROM objects o
      WHERE o.evictor IS NULL AND o.last_use < ?
        AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.object = o.id AND h.expires > ?)
        AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.object = o.id AND b.state = 1 AND b.expires > ?)
      ORDER BY o.last_use LIMIT ?`),
    markEvicting: db.prepare<[string, number]>('UPDATE objects SET evictor = ? WHERE id = ? AND evictor IS NULL'),
    deleteBlocks: db.prepare<[number]>('DELETE FROM blocks WHERE object = ?'),
    deleteHolds: db.prepare<[number]>('DELETE FROM holds WHERE object = ?'),
    deleteObject: db.prepare<[number]>('DELETE FROM objects WHERE id = ?'),
    evicting: db.prepare<[string], ObjectRow>('SELECT * FROM objects WHERE evictor = ?'),
    takeEviction: db.prepare<[string, number, string]>('UPDATE objects SET evictor = ? WHERE id = ? AND evictor = ?'),
    hold: db.prepare<[number, string, number]>('INSERT OR REPLACE INTO holds (object, owner, expires) VALUES (?, ?, ?)'),
    unhold: db.prepare<[number, string]>('DELETE FROM holds WHERE object = ? AND owner = ?'),
    owners: db.prepare<[], { owner: string }>(`
      SELECT owner FROM holds UNION SELECT owner FROM blocks WHERE state = 1
      UNION SELECT evictor AS owner FROM objects WHERE evictor IS NOT NULL`),
    dropHoldsOf: db.prepare<[string]>('DELETE FROM holds WHERE owner = ?'),
    dropLeasesOf: db.prepare<[string]>('DELETE FROM blocks WHERE state = 1 AND owner = ? AND alloc = 0'),
    endLeasesOf: db.prepare<[string]>('UPDATE blocks SET state = 0, owner = NULL, expires = NULL WHERE state = 1 AND owner = ?'),
    expiredLeases: db.prepare<[number]>('UPDATE blocks SET state = 0, owner = NULL, expires = NULL WHERE state = 1 AND expires <= ? AND alloc > 0'),
    dropExpiredLeases: db.prepare<[number]>('DELETE FROM blocks WHERE state = 1 AND expires <= ? AND alloc = 0'),
    dropExpiredHolds: db.prepare<[number]>('DELETE FROM holds WHERE expires <= ?'),
    addCounter: db.prepare<[string, number]>(
      'INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value'),
    setCounter: db.prepare<[string, number]>('INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)'),
    counters: db.prepare<[], { name: string; value: number }>('SELECT name, value FROM counters'),
    counter: db.prepare<[string], { value: number }>('SELECT value FROM counters WHERE name = ?'),
    allObjects: db.prepare<[], ObjectRow>('SELECT * FROM objects ORDER BY id'),
    presentBlocks: db.prepare<[number], BlockRow>(
      'SELECT block, state, alloc, length, crc, owner, expires FROM blocks WHERE object = ? AND state = 2 ORDER BY block'),
    usage: db.prepare<[], { objects: number; bytes: number; presentBlocks: number; presentBytes: number; leased: number; holds: number }>(`
      SELECT (SELECT count(*) FROM objects) AS objects, (SELECT coalesce(sum(bytes), 0) FROM objects) AS bytes,
             (SELECT count(*) FROM blocks WHERE state = 2) AS presentBlocks,
             (SELECT coalesce(sum(length), 0) FROM blocks WHERE state = 2) AS presentBytes,
             (SELECT count(*) FROM blocks WHERE state = 1) AS leased, (SELECT count(*) FROM holds) AS holds`),
    byLabel: db.prepare<[], { label: string | null; objects: number; bytes: number; lastUse: number }>(`
      SELECT label, count(*) AS objects, sum(bytes) AS bytes, max(last_use) AS lastUse FROM objects GROUP BY label ORDER BY bytes DESC`),
    allocOf: db.prepare<[number], { alloc: number }>('SELECT coalesce(sum(alloc), 0) AS alloc FROM blocks WHERE object = ?'),
    setBytes: db.prepare<[number, number]>('UPDATE objects SET bytes = ? WHERE id = ?'),
  };
}

export type Statements = ReturnType<typeof statements>;
