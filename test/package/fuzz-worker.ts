/**
 * Worker thread of fuzz.test.ts: runs cases `[from, to)` of run `seed` through a leg and reports each
 * case before starting it, so the parent can stop a case that hangs (a loop that never yields cannot be
 * interrupted from inside) and name it. Messages: `{ type: 'case', index }`, `{ type: 'failure', index,
 * base, mutations, problems }`, `{ type: 'done', stats }`.
 *
 * The reader leg: list the package; then read and verify every listed member (`verifyMember`), every
 * chunk-aligned block the chunk hash table covers (`ChunkTable.verify`) and the whole package
 * (`verifyPackage`). Any error must be a one-line VhfsError with an allowed code, and whatever
 * verification passes must be the original bytes (`servedBytesProblem`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readPackageListing, type PackageListing } from '../../src/package/reader.js';
import { bufferSource } from '../../src/package/source.js';
import { loadChunkTable, verifyMember, verifyPackage } from '../../src/package/verify.js';
import { isReservedName } from '../../src/package/entry-names.js';
import { relativePathProblem } from '../../src/util/path-rules.js';
import { errorProblem, fuzzCase, makeBases, servedBytesProblem, type FuzzCase } from './fuzz-corpus.js';

export interface FuzzWorkerData {
  /** Marks a worker started by fuzz.test.ts (this module is also imported by the test itself). */
  fuzzWorker: true;
  seed: number;
  from: number;
  to: number;
}

export interface FuzzStats {
  cases: number;
  listed: number;
  rejectedAtListing: Record<string, number>;
  membersVerified: number;
  membersRejected: number;
  blocksVerified: number;
  blocksRejected: number;
  packagesVerified: number;
  slowestCaseMs: number;
}

const BLOCK = 256 << 10;

/** Everything wrong with how the reader handled case `c` (empty when it behaved). */
export async function readerLeg(c: FuzzCase, stats: FuzzStats): Promise<string[]> {
  const problems: string[] = [];
  const rejected = (stage: string, err: unknown): void => {
    const p = errorProblem(err);
    if (p !== undefined) problems.push(`${stage}: ${p}`);
  };
  const src = bufferSource(c.zip);
  let listing: PackageListing;
  try {
    listing = await readPackageListing(src, `fuzz#${c.index}`);
  } catch (err) {
    rejected('listing', err);
    const code = (err as { code?: string }).code ?? 'other';
    stats.rejectedAtListing[code] = (stats.rejectedAtListing[code] ?? 0) + 1;
    return problems;
  }
  stats.listed++;
  for (let i = 0; i < listing.count; i++) {
    const path = listing.paths[i];
    const bad = relativePathProblem(path);
    if (bad !== undefined) problems.push(`listed unsafe path ${JSON.stringify(path)}: ${bad}`);
    const bytes = Buffer.from(path);
    if (isReservedName(bytes, 0, bytes.length)) problems.push(`listed reserved name ${JSON.stringify(path)}`);
    if (listing.dataOffsets[i] < 0 || listing.dataOffsets[i] + listing.sizes[i] > c.zip.length) {
      problems.push(`entry ${JSON.stringify(path)} lies outside the package`);
    }
  }
  if (new Set(listing.paths).size !== listing.count) problems.push('listed duplicate paths');
  for (let i = 0; i < listing.count; i++) {
    try {
      await verifyMember(src, listing, i);
      stats.membersVerified++;
      const off = listing.dataOffsets[i];
      const p = servedBytesProblem(c, listing.paths[i], off, c.zip.subarray(off, off + listing.sizes[i]));
      if (p !== undefined) problems.push(`verifyMember: ${p}`);
    } catch (err) {
      stats.membersRejected++;
      rejected(`verifyMember #${i}`, err);
    }
  }
  try {
    const table = await loadChunkTable(src, listing);
    for (let at = 0; table !== undefined && at < table.covered; at += BLOCK) {
      const length = Math.min(BLOCK, table.covered - at);
      if (!table.covers(at, length)) problems.push(`block ${at}+${length} not covered by its own table`);
      if (table.verify(at, c.zip.subarray(at, at + length)) !== undefined) {
        stats.blocksRejected++;
        continue;
      }
      stats.blocksVerified++;
      if (at + length > c.base.zip.length || !c.zip.subarray(at, at + length).equals(c.base.zip.subarray(at, at + length))) {
        problems.push(`block ${at}+${length} verified by the chunk hash table but differs from the original`);
      }
    }
  } catch (err) {
    rejected('chunk table', err);
  }
  try {
    await verifyPackage(src, listing);
    stats.packagesVerified++;
    for (let i = 0; i < listing.count; i++) {
      const off = listing.dataOffsets[i];
      const p = servedBytesProblem(c, listing.paths[i], off, c.zip.subarray(off, off + listing.sizes[i]));
      if (p !== undefined) problems.push(`verifyPackage: ${p}`);
    }
  } catch (err) {
    rejected('verifyPackage', err);
  }
  return problems;
}

if (parentPort !== null && (workerData as Partial<FuzzWorkerData> | null)?.fuzzWorker === true) {
  const port = parentPort;
  const { seed, from, to } = workerData as FuzzWorkerData;
  const stats: FuzzStats = {
    cases: 0, listed: 0, rejectedAtListing: {}, membersVerified: 0, membersRejected: 0,
    blocksVerified: 0, blocksRejected: 0, packagesVerified: 0, slowestCaseMs: 0,
  };
  const bases = await makeBases();
  for (let index = from; index < to; index++) {
    port.postMessage({ type: 'case', index });
    const c = fuzzCase(bases, seed, index);
    const started = performance.now();
    let problems: string[];
    try {
      problems = await readerLeg(c, stats);
    } catch (err) {
      problems = [`the leg itself threw: ${err instanceof Error ? err.stack : String(err)}`];
    }
    stats.slowestCaseMs = Math.max(stats.slowestCaseMs, performance.now() - started);
    stats.cases++;
    if (problems.length > 0) port.postMessage({ type: 'failure', index, base: c.base.name, mutations: c.mutations, problems });
  }
  port.postMessage({ type: 'done', stats });
}
