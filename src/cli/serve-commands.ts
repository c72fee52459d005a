/**
 * `vhfs serve MOUNTPOINT`: the whole catalog, read-only, at MOUNTPOINT (src/fuse/serve-fs.ts), served by a
 * daemon like `vhfs mount`'s (src/fuse/daemon.ts: detached, arguments over IPC, run file, one log per
 * daemon); `--foreground` serves in this process; `--stop` stops it (as `vhfs unmount --inputs-dir` does).
 */
import path from 'node:path';
import type { Command } from 'commander';
import { output, type Context, type Run } from './context.js';
import { daemonCounters, readPathOptions, unmountPaths } from './mount-commands.js';
import { addOptions, optionValues, SERVE_OPTIONS, type OptionValues } from '../config/options.js';
import { mountServe } from '../fuse/mount-serve.js';
import { RateLimitedLog, serveDaemon, spawnDaemon } from '../fuse/daemon.js';

type ServeFlags = OptionValues<typeof SERVE_OPTIONS>;

export function registerServeCommands(program: Command, run: Run): void {
  const serve = program
    .command('serve')
    .description('mount everything the catalog knows, read-only, at MOUNTPOINT: datasets/NAME/VERSION/…, datasets/NAME/@ALIAS, models/…, datums/ID')
    .argument('<mountpoint>', 'an empty directory (created if missing)');
  addOptions(serve, SERVE_OPTIONS);
  serve.action((mountpointArg: string, parsed: Record<string, unknown>) => run(async (ctx) => {
    const o = optionValues(SERVE_OPTIONS, parsed);
    const mountpoint = path.resolve(mountpointArg);
    if (o.stop) {
      await unmountPaths(ctx, { inputs: mountpoint });
      return;
    }
    if (o.foreground) {
      ctx.exitWhenDone = true;
      process.exitCode = await serveCatalog(ctx, o, mountpoint);
      return;
    }
    const started = await spawnDaemon({ home: ctx.home, mountpoint, args: process.argv.slice(2), script: process.argv[1] });
    output(ctx, { ...started.info, pid: started.pid, log: started.log }, () =>
      `serving ${mountpoint} (daemon pid ${started.pid}, log ${started.log}); browse ${path.join(mountpoint, 'datasets')}; stop with: vhfs serve --stop ${mountpoint}`);
  }));
}

/** Serve the catalog in this process until SIGINT/SIGTERM; the exit code. */
async function serveCatalog(ctx: Context, o: ServeFlags, mountpoint: string): Promise<number> {
  const catalog = await ctx.catalog();
  const log = new RateLimitedLog((line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)).line;
  return serveDaemon({
    home: ctx.home,
    mountpoint,
    log,
    statsFile: o.statsFile,
    start: async () => {
      catalog.store.warmUp?.();
      const mount = await mountServe({
        mountpoint, catalog, ...readPathOptions(ctx, o),
        listingTtlSeconds: o.listingTtl, allowOther: o.allowOther, force: Boolean(o.force), log,
        kernel: { kernelCache: o.kernelCache, entryTimeout: o.cacheTimeout, attrTimeout: o.cacheTimeout },
      });
      return {
        watch: [mount.mountpoint],
        // One listing before saying ready: a store that cannot be read fails the start, not every `ls`.
        ready: async () => {
          const datasets = await catalog.listCollections('dataset');
          const models = await catalog.listCollections('model');
          return { mountpoint: mount.mountpoint, pid: process.pid, datasets: datasets.length, models: models.length, allowOther: o.allowOther };
        },
        stop: () => mount.unmount(),
        snapshot: () => daemonCounters(catalog, mount.cache),
      };
    },
    onReady: (info) => output(ctx, info, () => `ready: ${mountpoint}`),
  });
}
