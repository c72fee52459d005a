/**
 * `vhfs cache info|stats|prune|verify|clear` and `vhfs prefetch`: see and steer this host's cache
 * (src/cache/host-cache.ts), the directory every vhfs process given the same `--cache-dir` shares.
 *
 * `prefetch` resolves each URI as a mount would and brings the byte ranges its files occupy into the cache,
 * in ranged GETs of 2 MiB, `--parallel` at a time, through the same block cache and queue as reads (at the
 * queue's Background priority, so a mount's own readers always go first: `vhfs mount --prefetch` uses the
 * same code with 2 in flight). Blocks already cached, or being fetched by another process, are skipped.
 * It stops at the quota: it may evict objects last used before it started, never what it brought in itself.
 */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { output, type Context, type Run } from './context.js';
import { addOptions, optionValues, parseSize, READ_OPTIONS } from '../config/options.js';
import { parseUri } from '../uri/parse.js';
import { ReadPath } from '../inputs/read-path.js';
import type { ResolvedInput } from '../inputs/resolve.js';
import { HostCache, type HostCacheCounters, type HostCacheUsage } from '../cache/host-cache.js';
import { mapLimit } from '../util/concurrency.js';
import { describeError, VhfsError } from '../util/errors.js';
import { formatBytes, formatDuration, Progress } from '../util/progress.js';

/** Prefetch ranges: one ranged GET each (the block cache's default run). */
const PREFETCH_RUN_BYTES = 2 * 1024 * 1024;

export interface PrefetchReport {
  /** Bytes the input's files occupy in their sources, rounded out to blocks. */
  bytes: number;
  fetchedBytes: number;
  /** Already cached (or being fetched by another process). */
  presentBytes: number;
  stoppedAtQuota: boolean;
  /** Sources with no disk tier (local directory stores, unless --disk-cache): read in place, not cached. */
  uncachedSources: number;
}

/**
 * Bring an input's bytes into the host cache: per source, the blocks its files occupy, in runs of 2 MiB,
 * `parallel` at a time. `evictBefore`: room is made only from objects last used before then.
 */
export async function prefetchInput(
  cache: ReadPath['cache'], input: ResolvedInput, opts: { parallel: number; evictBefore: number; onRun?: (bytes: number) => void },
): Promise<PrefetchReport> {
  const report: PrefetchReport = { bytes: 0, fetchedBytes: 0, presentBytes: 0, stoppedAtQuota: false, uncachedSources: 0 };
  const runs = prefetchRuns(input, cache.blockSize);
  const uncached = new Set<number>();
  report.bytes = runs.reduce((n, r) => n + r.bytes, 0);
  await mapLimit(runs, opts.parallel, async (run) => {
    if (report.stoppedAtQuota || uncached.has(run.source)) return;
    const r = await cache.warm(input.index.sources[run.source], run.first, run.last, { evictBefore: opts.evictBefore });
    report.fetchedBytes += r.fetchedBytes;
    report.presentBytes += r.presentBytes;
    if (r.stopped === 'full') report.stoppedAtQuota = true;
    if (r.stopped === 'no-disk-tier') uncached.add(run.source);
    opts.onRun?.(run.bytes);
  });
  report.uncachedSources = uncached.size;
  return report;
}

/**
 * `vhfs mount --prefetch`: once the mount's inputs are resolved, bring each into the cache, one at a time
 * with 2 ranged GETs in flight at Background priority, so the job's own reads are never queued behind it.
 * Inputs marked `download: on-demand` are left alone. Problems are logged; reads are never affected.
 */
export async function prefetchMountedInputs(cache: ReadPath['cache'], inputs: readonly ResolvedInput[], log: (line: string) => void): Promise<void> {
  const started = Date.now();
  for (const input of inputs) {
    if (input.spec.download === 'on-demand') continue;
    const t0 = Date.now();
    try {
      const r = await prefetchInput(cache, input, { parallel: 2, evictBefore: started });
      log(`prefetch: input "${input.spec.name}": ${formatBytes(r.fetchedBytes)} fetched, ${formatBytes(r.presentBytes)} already cached, of ${formatBytes(r.bytes)}, in ${formatDuration((Date.now() - t0) / 1000)}` +
        (r.uncachedSources ? `; ${r.uncachedSources} sources in local directory stores are read in place` : ''));
      if (r.stoppedAtQuota) {
        log('prefetch: stopped at the cache quota (--cache-size)');
        return;
      }
    } catch (err) {
      log(`prefetch: input "${input.spec.name}": ${describeError(err)}; reads go on as without prefetch`);
    }
  }
}

/** The block runs (≤ 2 MiB) covering every file of an input, per source, in source order. */
function prefetchRuns(input: ResolvedInput, blockSize: number): Array<{ source: number; first: number; last: number; bytes: number }> {
  const a = input.index.arrays;
  const perSource = new Map<number, Array<[number, number]>>();
  for (let f = 0; f < input.index.fileCount; f++) {
    if (a.fileSize[f] === 0) continue;
    const first = Math.floor(a.fileOffset[f] / blockSize);
    const last = Math.floor((a.fileOffset[f] + a.fileSize[f] - 1) / blockSize);
    const list = perSource.get(a.fileSource[f]) ?? [];
    list.push([first, last]);
    perSource.set(a.fileSource[f], list);
  }
  const perRun = Math.max(1, Math.floor(PREFETCH_RUN_BYTES / blockSize));
  const runs: Array<{ source: number; first: number; last: number; bytes: number }> = [];
  for (const [source, spans] of [...perSource].sort((x, y) => x[0] - y[0])) {
    const size = input.index.sources[source].size;
    spans.sort((x, y) => x[0] - y[0]);
    const merged: Array<[number, number]> = [];
    for (const [f, l] of spans) {
      const top = merged[merged.length - 1];
      if (top && f <= top[1] + 1) top[1] = Math.max(top[1], l);
      else merged.push([f, l]);
    }
    for (const [f, l] of merged) {
      for (let first = f; first <= l; first += perRun) {
        const last = Math.min(l, first + perRun - 1);
        runs.push({ source, first, last, bytes: Math.min((last + 1) * blockSize, size) - first * blockSize });
      }
    }
  }
  return runs;
}

/** The host cache of this command's `--cache-dir` and `--cache-size`, closed after `fn`. */
async function withHostCache<T>(ctx: Context, fn: (cache: HostCache) => Promise<T>): Promise<T> {
  const cache = new HostCache({ dir: ctx.cacheDir, quota: ctx.opts.cacheSize, warn: (line) => ctx.info(line) });
  try {
    return await fn(cache);
  } finally {
    await cache.close();
  }
}

/** Files and bytes directly in a directory (0/0 if it does not exist). */
async function directoryUsage(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
    if (st?.isFile()) { files++; bytes += st.size; }
  }
  return { files, bytes };
}

/** What the per-block cache of vhfs before the host cache left (`<cacheDir>/blocks`): garbage now. */
const LEGACY_BLOCKS = 'blocks';

export function registerCacheCommands(program: Command, run: Run): void {
  const cache = program.command('cache').description('this host\'s cache (--cache-dir): fetched blocks and persisted indexes, shared by every vhfs process');

  cache
    .command('info')
    .description('what is cached, how much room it takes against the quota, per dataset')
    .action(() => run(async (ctx) => {
      const [indexes, usage] = await Promise.all([
        directoryUsage(path.join(ctx.cacheDir, 'indexes')),
        withHostCache(ctx, async (c) => c.usage()),
      ]);
      const info = { ...usage, indexes };
      output(ctx, info, () => describeUsage(usage, indexes));
    }));

  cache
    .command('stats')
    .description('what the cache has done for every process using it: hit ratio, bytes from the store and from disk, evictions')
    .action(() => run(async (ctx) => {
      const counters = await withHostCache(ctx, async (c) => c.counters());
      const stats = statsOf(counters);
      output(ctx, stats, () => [
        `${ctx.cacheDir}: hit ratio ${(stats.hitRatio * 100).toFixed(1)}% (bytes served from disk / all bytes served)`,
        `  served:      ${formatBytes(stats.servedBytes)} (${formatBytes(stats.diskBytes)} from disk in ${stats.diskBlocks} blocks, ${formatBytes(stats.storeBytes)} from the store in ${stats.storeBlocks} blocks)`,
        `  single flight: ${stats.waits} blocks waited for another process's fetch; ${stats.leasesTakenOver} fetches taken over from dead or stuck processes`,
        `  evictions:   ${stats.evictions} objects, ${formatBytes(stats.evictedBytes)}; ${stats.notKept} blocks not kept (quota full of data in use)`,
        `  problems:    ${stats.noSpace} times the disk was full; ${stats.corruptBlocks} damaged blocks dropped`,
      ].join('\n'));
    }));

  cache
    .command('prune')
    .description('evict least recently used objects (none that a process is reading or filling) down to a size')
    .option('--to <size>', 'the size to prune to (default: the quota, --cache-size)')
    .action((o: { to?: string }) => run(async (ctx) => {
      const result = await withHostCache(ctx, async (c) => {
        const target = o.to !== undefined ? parseSize(o.to, '--to') : c.quotaBytes;
        return { target, ...(await c.prune(target)) };
      });
      output(ctx, result, () => `${ctx.cacheDir}: evicted ${result.evicted} objects (${formatBytes(result.evictedBytes)}); it now takes ${formatBytes(result.bytes)}` +
        (result.bytes > result.target ? ` (more than ${formatBytes(result.target)}: the rest is in use or is the record and indexes)` : ''));
    }));

  cache
    .command('verify')
    .description('read every cached block back and check it against its CRC-32; drop the bad ones (exit 5 if there were any)')
    .action(() => run(async (ctx) => {
      const report = await withHostCache(ctx, async (c) => {
        let progress: Progress | undefined;
        let seen = { objects: 0, bytes: 0 };
        const r = await c.verify((done, total, bytes) => {
          progress ??= new Progress(`verifying ${ctx.cacheDir}`, total, { quiet: ctx.quiet });
          progress.tick(done - seen.objects, bytes - seen.bytes);
          seen = { objects: done, bytes };
        });
        progress?.finish();
        return r;
      });
      if (report.bad.length > 0) {
        const first = report.bad[0];
        throw new VhfsError('INTEGRITY', `${ctx.cacheDir}: ${report.bad.length} of ${report.blocks + report.bad.length} cached blocks were bad and have been dropped ` +
          `(first: block ${first.block} of ${first.source}: ${first.why}); they are fetched again when read`);
      }
      output(ctx, report, () => `${ctx.cacheDir}: ${report.blocks} blocks (${formatBytes(report.bytes)}) in ${report.objects} objects checked, all good` +
        (report.orphans ? `; removed ${report.orphans} files no record named` : ''));
    }));

  cache
    .command('clear')
    .description('delete cached blocks and indexes (safe: all is fetched again on demand; what a process is reading stays)')
    .option('--indexes', 'only the persisted indexes')
    .option('--blocks', 'only the fetched blocks')
    .action((o: { indexes?: boolean; blocks?: boolean }) => run(async (ctx) => {
      const both = !o.indexes && !o.blocks;
      const cleared: string[] = [];
      let kept = 0;
      if (both || o.blocks) {
        kept = await withHostCache(ctx, async (c) => {
          await c.prune(0);
          return c.usage().objects;
        });
        await fs.rm(path.join(ctx.cacheDir, LEGACY_BLOCKS), { recursive: true, force: true });
        cleared.push('blocks');
      }
      if (both || o.indexes) {
        await fs.rm(path.join(ctx.cacheDir, 'indexes'), { recursive: true, force: true });
        cleared.push('indexes');
      }
      output(ctx, { cleared, keptObjects: kept }, () => `cleared ${cleared.join(' and ')} in ${ctx.cacheDir}` +
        (kept ? ` (${kept} objects in use by running processes stay)` : ''));
    }));

  const prefetch = program
    .command('prefetch')
    .description('bring the data of URIs into this host\'s cache before jobs start (stops at the quota)')
    .argument('<uris...>', 'dataset://NAME/VERSION, datum://ID, model://…, s3://…, … (as an input would name them)')
    .option('--parallel <n>', 'ranged GETs in flight', '16');
  addOptions(prefetch, PREFETCH_OPTIONS);
  prefetch.action((uris: string[], o: { parallel: string } & Record<string, unknown>) => run(async (ctx) => {
    const parallel = Number(o.parallel);
    if (!Number.isInteger(parallel) || parallel < 1) throw new VhfsError('BAD_ARGUMENT', `--parallel "${o.parallel}": expected a whole number of 1 or more`);
    const read = optionValues(PREFETCH_OPTIONS, o);
    const started = Date.now();
    const reader = new ReadPath({
      catalog: await ctx.catalog(), cacheDir: ctx.cacheDir, cacheSize: ctx.opts.cacheSize, settings: ctx.storeSettings,
      blockSize: read.blockSize, fetchTimeoutMs: read.fetchTimeout, log: (l) => ctx.info(l),
      ...(read.diskCache !== undefined ? { diskCache: read.diskCache } : {}),
    });
    const reports: Array<PrefetchReport & { uri: string }> = [];
    try {
      for (const uri of uris) {
        const input = await reader.resolver.resolve({ name: uri, uris: [parseUri(uri)], keepDirectories: 'full', optional: false, download: 'always' });
        const total = prefetchRuns(input, reader.cache.blockSize).length;
        const progress = new Progress(`prefetching ${uri}`, total, { quiet: ctx.quiet });
        const report = await prefetchInput(reader.cache, input, { parallel, evictBefore: started, onRun: (bytes) => progress.tick(1, bytes) });
        progress.finish();
        reports.push({ uri, ...report });
        if (report.stoppedAtQuota) break;
      }
    } finally {
      await reader.close();
    }
    const seconds = (Date.now() - started) / 1000;
    const stopped = reports.some((r) => r.stoppedAtQuota);
    output(ctx, { uris: reports, seconds, stoppedAtQuota: stopped }, () => reports.map((r) => {
      const parts = [`${r.uri}: ${formatBytes(r.fetchedBytes)} fetched, ${formatBytes(r.presentBytes)} already cached, of ${formatBytes(r.bytes)}`];
      if (r.stoppedAtQuota) parts.push(`stopped at the cache quota (--cache-size; see vhfs cache info)`);
      if (r.uncachedSources) parts.push(`${r.uncachedSources} sources in local directory stores are read in place, not cached (--disk-cache caches them too)`);
      return parts.join('; ');
    }).join('\n') + `\n(${formatDuration(seconds)})`);
  }));
}

/** The read options `vhfs prefetch` shares with the mount (the block size must match the mounts' to be of use to them). */
const PREFETCH_OPTIONS = { blockSize: READ_OPTIONS.blockSize, fetchTimeout: READ_OPTIONS.fetchTimeout, diskCache: READ_OPTIONS.diskCache };

function statsOf(c: HostCacheCounters & { used: number }) {
  const servedBytes = c.diskBytes + c.storeBytes;
  return { hitRatio: servedBytes > 0 ? c.diskBytes / servedBytes : 0, servedBytes, ...c };
}

function describeUsage(u: HostCacheUsage, indexes: { files: number; bytes: number }): string {
  const total = u.blockBytes + u.overheadBytes;
  const lines = [
    `${u.dir}: ${formatBytes(total)} of its ${formatBytes(u.quotaBytes)} quota (filesystem ${formatBytes(u.filesystem.bytes)}, ${formatBytes(u.filesystem.freeBytes)} free)`,
    `  blocks:  ${u.presentBlocks} present (${formatBytes(u.presentBytes)}) in ${u.objects} objects, ${formatBytes(u.blockBytes)} reserved`,
    `  indexes: ${indexes.files} files, ${formatBytes(indexes.bytes)} (one per resolved input; a mount with one needs no package tail)`,
    `  record and indexes on disk: ${formatBytes(u.overheadBytes)}`,
  ];
  if (u.leased || u.holds) lines.push(`  in use now: ${u.leased} blocks being fetched, ${u.holds} objects being read`);
  if (u.datasets.length > 0) {
    lines.push('  per dataset (the input URI an object was first cached for):');
    for (const d of u.datasets) lines.push(`    ${formatBytes(d.bytes).padStart(10)}  ${String(d.objects).padStart(6)} objects  last used ${d.lastUse}  ${d.label ?? '(unknown)'}`);
  }
  return lines.join('\n');
}
