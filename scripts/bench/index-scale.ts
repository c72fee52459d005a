/**
 * TreeIndex at scale: build time, persisted bytes per entry, load time and lookup cost for N files.
 *
 *   node --expose-gc dist/scripts/bench/index-scale.js [N]      (default 1,000,000 files in 1,000 dirs)
 */
import { TreeIndexBuilder } from '../../src/index/tree-index.js';
import { deserializeIndex, serializeIndex } from '../../src/index/persist.js';

const n = Number(process.argv[2] ?? 1_000_000);
const name = (i: number) => `class${i % 1000}/img_${String(i).padStart(7, '0')}.jpg`;

const builder = new TreeIndexBuilder('index-scale');
const source = builder.addSource({ key: 'package', size: Number.MAX_SAFE_INTEGER });
for (let i = 0; i < n; i++) builder.add({ path: name(i), size: 16384, source, offset: i * 20480 });
let t0 = performance.now();
const built = builder.build();
const buildMs = performance.now() - t0;

const bytes = serializeIndex(built);
(globalThis as { gc?: () => void }).gc?.();
const heapBefore = process.memoryUsage().heapUsed;
t0 = performance.now();
const { index } = deserializeIndex(bytes, 'index-scale');
const loadMs = performance.now() - t0;
const heapAfter = process.memoryUsage().heapUsed;

const lookups = 200_000;
const paths = Array.from({ length: lookups }, (_, k) => name((k * 7919) % n));
t0 = performance.now();
let found = 0;
for (const p of paths) if (index.lookup(p) >= 0) found++;
const lookupUs = ((performance.now() - t0) * 1000) / lookups;
if (found !== lookups) throw new Error(`only ${found} of ${lookups} lookups found their file`);

console.log(`| files | build (s) | persisted bytes per file | load (ms) | JS heap added by load | lookup (µs) |`);
console.log(`|---|---|---|---|---|---|`);
console.log(`| ${n.toLocaleString('en')} | ${(buildMs / 1000).toFixed(2)} | ${(bytes.length / n).toFixed(1)} | ${loadMs.toFixed(1)} | ${((heapAfter - heapBefore) / 1024).toFixed(0)} KiB | ${lookupUs.toFixed(2)} |`);
