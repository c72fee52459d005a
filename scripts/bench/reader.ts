/**
 * Bench reader: reads every file named in a list (one absolute path per line) to the end with 1 MiB
 * read() calls and reports {start, end, files, bytes, p50Ms, p99Ms} as JSON, times in epoch ms with sub-ms
 * precision; p50Ms/p99Ms are percentiles of each file's open-to-close time.
 * It is a separate process so that N of them can run truly in parallel, and it waits for a "go" line on
 * stdin so process start-up is not part of the measurement.
 *
 * A time budget (ms, 0 = none) stops it early on very slow targets; it then reports what it did read.
 *
 *   node dist/scripts/bench/reader.js LIST_FILE [BUDGET_MS]   (then write "go\n" to its stdin)
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const list = readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean);
const buf = Buffer.allocUnsafe(1 << 20);
const budgetMs = Number(process.argv[3] ?? 0);
const clock = () => performance.timeOrigin + performance.now();

/** Per-file open-to-close times (ms), for the latency percentiles. */
const latencies: number[] = [];

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0;
}

function readAll(deadline: number): { files: number; bytes: number; truncated: boolean } {
  let bytes = 0;
  let files = 0;
  for (const path of list) {
    if (clock() > deadline) return { files, bytes, truncated: true };
    const t0 = performance.now();
    const fd = openSync(path, 'r');
    try {
      for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) {
        bytes += n;
        if (list.length === 1 && clock() > deadline) return { files: 1, bytes, truncated: true };
      }
    } finally {
      closeSync(fd);
    }
    latencies.push(performance.now() - t0);
    files++;
  }
  return { files, bytes, truncated: false };
}

process.stdin.once('data', () => {
  const start = clock();
  try {
    const r = readAll(budgetMs > 0 ? start + budgetMs : Infinity);
    const end = clock();
    const sorted = latencies.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ start, end, ...r, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) }) + '\n');
    process.exit(0);
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: (err as Error).message }) + '\n');
    process.exit(1);
  }
});
process.stdout.write('waiting\n');
