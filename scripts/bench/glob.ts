/**
 * Wildcard matching cost (src/uri/glob.ts): the matcher is meant to be linear in the key, so a
 * pathological pattern (many `**`) on a long key must cost about as much per character as a simple one.
 * Moved here from test/uri/glob.test.ts, which keeps the correctness half: speed is measured, not asserted.
 *
 *   node dist/scripts/bench/glob.js [--key-length N] [--runs N]
 *
 * Prints µs per match for each pattern and key length (doubling lengths show whether the cost grows
 * linearly: the ratio column stays near 2).
 */
import { compileGlob } from '../../src/uri/glob.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : def);
const maxLength = opt('--key-length', 20_000);
const runs = opt('--runs', 20);

const cases: Array<{ pattern: string; key: (n: number) => string; want: boolean }> = [
  { pattern: '**a**a**a**a**a**a**a**a**b', key: (n) => 'a'.repeat(n), want: false },
  { pattern: '**a**a**a**a**a**a**a**a**b', key: (n) => `${'a'.repeat(n - 1)}b`, want: true },
  { pattern: 'data/**/*.jpg', key: (n) => `data/${'d/'.repeat(Math.max(0, Math.floor((n - 10) / 2)))}x.jpg`, want: true },
];

console.log('| pattern | key length | µs per match | ratio to half the length |');
console.log('|---|---|---|---|');
let failed = false;
for (const c of cases) {
  const m = compileGlob(c.pattern);
  let previous: number | undefined;
  for (let n = Math.max(1250, Math.floor(maxLength / 16)); n <= maxLength; n *= 2) {
    const key = c.key(n);
    if (m.match(key) !== c.want) failed = true; // also warms up the matcher before timing
    const t0 = process.hrtime.bigint();
    for (let r = 0; r < runs; r++) m.match(key);
    const us = Number(process.hrtime.bigint() - t0) / 1000 / runs;
    console.log(`| \`${c.pattern}\` | ${key.length} | ${us.toFixed(1)} | ${previous ? (us / previous).toFixed(2) : '–'} |`);
    previous = us;
  }
}
if (failed) {
  console.error('a pattern matched wrongly');
  process.exitCode = 1;
}
