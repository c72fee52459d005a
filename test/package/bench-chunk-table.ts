/**
 * Manual benchmark (not an ava test): what the chunk hash table costs.
 *   node dist/test/package/bench-chunk-table.js [entries=100000] [smallFiles=1000000]
 *
 *  1. Table size for one 1 GiB member, and the write time with and without the table (the writer
 *     checksums every byte it writes into the table).
 *  2. Table size for a package of `smallFiles` small files (1–8 KiB, uniform), written to a sink that
 *     only counts bytes.
 *  3. Listing a package of `entries` small files with and without a table (median of 9 listings from a
 *     file), and the one read that loads and checks its table.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { readPackageListing } from '../../src/package/reader.js';
import { fileSource } from '../../src/package/source.js';
import { loadChunkTable } from '../../src/package/verify.js';
import { writePackage, type PackageEntry } from '../../src/package/writer.js';
import { rng, tempDir, zeroEntry } from './helpers.js';

const entriesArg = Number(process.argv[2] ?? 100_000);
const smallFilesArg = Number(process.argv[3] ?? 1_000_000);
const KiB = 1024;
const FILL = Buffer.alloc(8 * KiB, 0x5a);

function nullSink(): Writable {
  return new Writable({ write: (_chunk, _enc, cb) => cb() });
}

function smallFiles(n: number, seed: number): PackageEntry[] {
  const rand = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const size = KiB + Math.floor(rand() * 7 * KiB);
    const dir = String(Math.floor(i / 1000)).padStart(4, '0');
    return { path: `train/c${dir}/img_${String(i).padStart(8, '0')}.jpg`, size, open: () => [FILL.subarray(0, size)] };
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
}

// 1. one 1 GiB member
for (const chunkHashes of [false, true]) {
  const [parts, ms] = await timed(() => writePackage([zeroEntry('big.bin', 1024 ** 3)], { openPart: nullSink, chunkHashes }));
  const table = parts[0].chunkTable;
  console.log(`1 GiB member, table ${chunkHashes ? 'on ' : 'off'}: part ${parts[0].size} bytes, table ${table?.length ?? 0} bytes, write ${ms.toFixed(0)} ms`);
}

// 2. many small files
{
  const [parts, ms] = await timed(() => writePackage(smallFiles(smallFilesArg, 1), { openPart: nullSink }));
  const p = parts[0];
  console.log(`${smallFilesArg} small files (1-8 KiB): part ${p.size} bytes, table ${p.chunkTable!.length} bytes (${((p.chunkTable!.length / p.size) * 100).toFixed(4)}%), write ${ms.toFixed(0)} ms`);
}

// 3. listing cost
const tmp = tempDir('vhpkg-bench-table-');
try {
  for (const chunkHashes of [false, true]) {
    const file = join(tmp.dir, `p-${chunkHashes}.vhpkgzip`);
    await writePackage(smallFiles(entriesArg, 2), { openPart: () => createWriteStream(file), chunkHashes });
    const src = await fileSource(file);
    const times: number[] = [];
    let last;
    for (let r = 0; r < 9; r++) {
      const [listing, ms] = await timed(() => readPackageListing(src, file));
      times.push(ms);
      last = listing;
    }
    const listing = last!;
    let tableLine = '';
    if (listing.chunkTable !== undefined) {
      const [, loadMs] = await timed(() => loadChunkTable(src, listing));
      tableLine = `; loading the table: 1 read of ${listing.chunkTable.length} bytes, ${loadMs.toFixed(1)} ms`;
    }
    console.log(
      `list ${entriesArg} entries, table ${chunkHashes ? 'on ' : 'off'}: ${listing.reads} reads, ${listing.bytesRead} bytes, ` +
        `median ${median(times).toFixed(1)} ms (${times.map((t) => t.toFixed(0)).join('/')})${tableLine}`,
    );
    await src.close();
  }
} finally {
  tmp.cleanup();
}
