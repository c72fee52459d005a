/**
 * `vhfs mount` / `vhfs unmount`: flags in, library calls out. The daemon itself (spawning, run files,
 * signals, outside-unmount detection, stats file) lives in `src/fuse/daemon.ts`; the inputs mount in
 * `src/fuse/mount-inputs.ts`; every option in `src/config/options.ts`.
 */
import type { Command } from 'commander';
import { output, type Context, type Run } from './context.js';
import { addOptions, MOUNT_OPTIONS, optionValues, valohaiPaths, type OptionValues, type READ_OPTIONS } from '../config/options.js';
import type { ReadPathOptions } from '../inputs/read-path.js';
import { applyInputFlags, checkRequiredInputs, loadInputsFile, parseInputFlags, type InputSpec } from '../inputs/config.js';
import type { Catalog } from '../catalog/catalog.js';
import { mountInputs, type InputsMount } from '../fuse/mount-inputs.js';
import { clearStaleMount, mountState } from '../fuse/mountpoint.js';
import { RateLimitedLog, serveDaemon, spawnDaemon, stopDaemon } from '../fuse/daemon.js';
import { describeError, isVhfsError, VhfsError } from '../util/errors.js';
import { prefetchMountedInputs } from './cache-commands.js';
import type { ResolvedInput } from '../inputs/resolve.js';

type MountFlags = OptionValues<typeof MOUNT_OPTIONS>;

/** How long `vhfs unmount` waits for a daemon to stop before detaching its mount lazily. */
const STOP_TIMEOUT_MS = 15_000;

async function loadSpecs(o: MountFlags): Promise<InputSpec[]> {
  let specs: InputSpec[] = [];
  if (o.inputs) specs = await loadInputsFile(o.inputs, { ...(o.step ? { step: o.step } : {}) });
  else if (o.step) throw new VhfsError('BAD_ARGUMENT', '--step needs --inputs valohai.yaml');
  if (o.input?.length) {
    const flags = parseInputFlags(o.input, { cwd: process.cwd() });
    specs = o.inputs ? applyInputFlags(specs, flags) : flags;
  }
  checkRequiredInputs(specs, o.inputs ?? '--input');
  return specs.filter((s) => s.uris.length > 0 || s.optional);
}

export function registerMountCommands(program: Command, run: Run): void {
  const mount = program
    .command('mount')
    .description('mount the inputs read-only at <root>/inputs (each resolved on first use) and write <root>/config/inputs.json');
  addOptions(mount, MOUNT_OPTIONS);
  mount.action((parsed: Record<string, unknown>) => run(async (ctx) => {
    const o = optionValues(MOUNT_OPTIONS, parsed);
    const specs = await loadSpecs(o);
    const paths = valohaiPaths(o);
    if (o.foreground) {
      ctx.exitWhenDone = true;
      process.exitCode = await serveMount(ctx, o, specs, paths);
      return;
    }
    const started = await spawnDaemon({ home: ctx.home, mountpoint: paths.inputs, args: process.argv.slice(2), script: process.argv[1] });
    output(ctx, { ...started.info, pid: started.pid, log: started.log }, () =>
      `mounted ${paths.inputs} (daemon pid ${started.pid}, log ${started.log}); stop with: vhfs unmount --inputs-dir ${paths.inputs}`);
  }));

  const unmount = program
    .command('unmount')
    .description('unmount inputs: stop the daemon; detach lazily a mount whose daemon is dead, hung or gone');
  addOptions(unmount, { root: MOUNT_OPTIONS.root, inputsDir: MOUNT_OPTIONS.inputsDir });
  unmount.action((parsed: Record<string, unknown>) => run(async (ctx) => {
    await unmountPath(ctx, valohaiPaths(optionValues({ root: MOUNT_OPTIONS.root, inputsDir: MOUNT_OPTIONS.inputsDir }, parsed)).inputs);
  }));
}

/**
 * Stop the daemon serving `mountpoint` (its run file names it) and detach the mount lazily if it is still
 * there (daemon dead, hung or gone); prints what was done. `vhfs unmount` and `vhfs serve --stop`.
 */
export async function unmountPath(ctx: Context, mountpoint: string): Promise<void> {
  const stop = await stopDaemon(ctx.home, mountpoint, STOP_TIMEOUT_MS);
  const said: string[] = [];
  if (stop.kind === 'stopped') said.push(`stopped daemon ${stop.pid}`);
  if (stop.kind === 'unresponsive') said.push(stop.paused ? `daemon ${stop.pid} is stopped (SIGSTOP?) and cannot act on SIGTERM` : `daemon ${stop.pid} did not stop within ${STOP_TIMEOUT_MS / 1000} s`);
  const state = await mountState(mountpoint);
  if (state !== 'not-mounted') {
    const cleared = await clearStaleMount(mountpoint, { force: true });
    said.push(`detached the mount lazily with ${cleared.action} (it was ${cleared.was})`);
  }
  if (stop.kind === 'unresponsive') said.push(`the daemon is still running; if it does not exit, stop it with: kill -9 ${stop.pid}`);
  const result = said.length ? said.join('; ') : 'not mounted';
  output(ctx, { mountpoint, result, ...(stop.kind === 'not-running' ? {} : { pid: stop.pid, daemon: stop.kind }) }, () => `${mountpoint}: ${result}`);
}

/** How a mount reads (block cache, deadlines, disk tier), from the READ_OPTIONS flags: `vhfs mount` and `vhfs serve`. */
export function readPathOptions(ctx: Context, o: OptionValues<typeof READ_OPTIONS>): Omit<ReadPathOptions, 'catalog'> {
  return {
    cacheDir: ctx.cacheDir, cacheSize: ctx.opts.cacheSize, settings: ctx.storeSettings,
    blockSize: o.blockSize, memoryBytes: o.memory, readaheadBytes: o.readahead, fetchTimeoutMs: o.fetchTimeout,
    ...(o.diskCache !== undefined ? { diskCache: o.diskCache } : {}),
  };
}

/** What a daemon's `--stats-file` holds: store and cache counters, process memory (`vhfs mount` and `vhfs serve`). */
export function daemonCounters(catalog: Catalog, cache: InputsMount['cache']): Record<string, unknown> {
  return { store: catalog.store.stats, cache: cache.stats, cacheMemory: cache.memoryStats, process: process.memoryUsage() };
}

/** Serve the mount in this process until SIGINT/SIGTERM; the exit code. */
async function serveMount(ctx: Context, o: MountFlags, specs: InputSpec[], paths: { inputs: string; config: string; jobInputs: string }): Promise<number> {
  const catalog = await ctx.catalog();
  const log = new RateLimitedLog((line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)).line;
  return serveDaemon({
    home: ctx.home,
    mountpoint: paths.inputs,
    log,
    statsFile: o.statsFile,
    start: async () => {
      catalog.store.warmUp?.();
      const mount = await mountInputs({
        mountpoint: paths.inputs, configDir: paths.config, specs, catalog, ...readPathOptions(ctx, o),
        force: Boolean(o.force), allowOther: Boolean(o.allowOther), jobInputsDir: paths.jobInputs, log,
        kernel: { kernelCache: o.kernelCache, entryTimeout: o.cacheTimeout, attrTimeout: o.cacheTimeout, negativeTimeout: o.cacheTimeout },
      });
      if (o.prefetch) {
        // Once every input is resolved (inputs.json is written then), fill the cache with them behind the job's reads.
        void mount.inputsJson.then(() => prefetchMountedInputs(
          mount.cache, mount.inputs.names.map((n) => mount.inputs.get(n)).filter((i): i is ResolvedInput => i !== undefined), log));
      }
      return {
        watch: [mount.mountpoint],
        ready: async () => {
          if (o.wait) {
            const failures = await mount.inputsJson;
            if (failures.size > 0) {
              const first = failures.values().next().value;
              throw new VhfsError(isVhfsError(first) ? first.code : 'STORE',
                [...failures].map(([name, err]) => `input "${name}": ${describeError(err)}`).join('; '));
            }
          }
          return {
            mountpoint: mount.mountpoint, inputsJson: mount.inputsJsonPath, pid: process.pid,
            ...(mount.jobInputsDir !== mount.mountpoint ? { jobInputsDir: mount.jobInputsDir } : {}),
          };
        },
        stop: () => mount.unmount(),
        snapshot: () => daemonCounters(catalog, mount.cache),
      };
    },
    onReady: (info) => output(ctx, info, () => `ready: ${paths.inputs}`),
  });
}
