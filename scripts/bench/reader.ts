/**
 * Bench reader: reads every file named in a list (one absolute path per line) to the end with 1 MiB
 * read() calls and reports {start, end, files, bytes} as JSON, times in epoch ms with sub-ms precision.
 * It is a separate process so that N of them can run truly in parallel, and it waits for a "go" line on
 * stdin so process start-up is not part of the measurement.
 *
 *   node dist/scripts/bench/reader.js LIST_FILE   (then write "go\n" to its stdin)
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

const list = readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean);
const buf = Buffer.allocUnsafe(1 << 20);
const clock = () => performance.timeOrigin + performance.now();

function readAll(): { files: number; bytes: number } {
  let bytes = 0;
  for (const path of list) {
    const fd = openSync(path, 'r');
    try {
      for (let n = readSync(fd, buf, 0, buf.length, null); n > 0; n = readSync(fd, buf, 0, buf.length, null)) bytes += n;
    } finally {
      closeSync(fd);
    }
  }
  return { files: list.length, bytes };
}

process.stdin.once('data', () => {
  const start = clock();
  try {
    const r = readAll();
    process.stdout.write(JSON.stringify({ start, end: clock(), ...r }) + '\n');
    process.exit(0);
  } catch (err) {
    process.stdout.write(JSON.stringify({ error: (err as Error).message }) + '\n');
    process.exit(1);
  }
});
process.stdout.write('waiting\n');
