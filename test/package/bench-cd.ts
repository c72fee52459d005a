/**
 * Manual benchmark (not an ava test): write a package of N members and time listing it.
 *   node dist/test/package/bench-cd.js [N=1000000]
 * Members are empty so the file stays small (~170 bytes a member); the central directory is the
 * same shape as for real members (every record carries the UT and VH extra fields).
 */
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readPackageListing } from '../../src/package/reader.js';
import { bufferSource, fileSource } from '../../src/package/source.js';
import { writePackage, type PackageEntry } from '../../src/package/writer.js';
import { tempDir } from './helpers.js';

const n = Number(process.argv[2] ?? 1_000_000);

function* entries(): Generator<PackageEntry> {
  for (let i = 0; i < n; i++) {
    const dir = String(Math.floor(i / 1000)).padStart(4, '0');
    yield { path: `train/c${dir}/img_${String(i).padStart(8, '0')}.jpg`, size: 0, open: () => [] };
  }
}

const tmp = tempDir('vhpkg-bench-');
try {
  const file = join(tmp.dir, 'bench.vhpkgzip');
  let t = performance.now();
  const parts = await writePackage(entries(), { openPart: () => createWriteStream(file) });
  console.log(`write: ${n} entries, ${parts[0].size} bytes in ${(performance.now() - t).toFixed(0)} ms`);
  const src = await fileSource(file);
  for (let r = 0; r < 3; r++) {
    t = performance.now();
    const listing = await readPackageListing(src, file);
    const ms = performance.now() - t;
    console.log(`list (file): ${listing.count} entries, ${listing.reads} reads, ${listing.bytesRead} bytes, ${ms.toFixed(0)} ms`);
  }
  await src.close();
  const mem = bufferSource(readFileSync(file));
  for (let r = 0; r < 3; r++) {
    t = performance.now();
    const listing = await readPackageListing(mem, file);
    console.log(`list (in memory): ${listing.count} entries, ${(performance.now() - t).toFixed(0)} ms`);
  }
  console.log(`rss ${process.memoryUsage().rss >> 20} MiB`);
} finally {
  tmp.cleanup();
}
