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
import { mountOutputs, type OutputsMount } from '../fuse/mount-outputs.js';
import { clearStaleMount, isMounted } from '../fuse/mountpoint.js';
import { RateLimitedLog, serveDaemon, spawnDaemon, stopDaemon } from '../fuse/daemon.js';
import { describeError, isVhfsError, VhfsError } from '../util/errors.js';
import { prefetchMountedInputs } from './cache-commands.js';
import type { ResolvedInput } from '../inputs/resolve.js';
import { nativeReadStats } from '../fuse/native-reads.js';

type MountFlags = OptionValues<typeof MOUNT_OPTIONS>;

/** How long `vhfs unmount` waits for a daemon to stop before detaching its mount lazily. */
const STOP_TIMEOUT_MS = 15_000;
/** With outputs mounted the daemon finalizes (uploads) before it stops: wait for that much longer. */
const FINALIZE_TIMEOUT_MS = 6 * 3600_000;

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
    if (o.outputsOnly && !o.outputs) throw new VhfsError('BAD_ARGUMENT', '--outputs-only and --no-outputs leave nothing to mount');
    const specs = o.outputsOnly ? [] : await loadSpecs(o);
    const paths = valohaiPaths(o);
    // The daemon is named (run file, log) by its inputs mountpoint, or by the outputs one when that is all it serves.
    const daemonMountpoint = o.outputsOnly ? paths.outputs : paths.inputs;
    if (o.foreground) {
      ctx.exitWhenDone = true;
      process.exitCode = await serveMount(ctx, o, specs, paths, daemonMountpoint);
      return;
    }
    const started = await spawnDaemon({ home: ctx.home, mountpoint: daemonMountpoint, args: process.argv.slice(2), script: process.argv[1] });
    const stopWith = o.outputsOnly ? `--outputs-dir ${paths.outputs}` : `--inputs-dir ${paths.inputs}`;
    output(ctx, { ...started.info, pid: started.pid, log: started.log }, () =>
      `mounted ${[o.outputsOnly ? '' : paths.inputs, o.outputs ? paths.outputs : ''].filter(Boolean).join(' and ')} ` +
      `(daemon pid ${started.pid}, log ${started.log}); stop with: vhfs unmount ${stopWith}`);
  }));

  const unmount = program
    .command('unmount')
    .description('unmount inputs: stop the daemon; detach lazily a mount whose daemon is dead, hung or gone');
  const unmountOptions = { root: MOUNT_OPTIONS.root, inputsDir: MOUNT_OPTIONS.inputsDir, outputsDir: MOUNT_OPTIONS.outputsDir };
  addOptions(unmount, unmountOptions);
  unmount.action((parsed: Record<string, unknown>) => run(async (ctx) => {
    await unmountPaths(ctx, valohaiPaths(optionValues(unmountOptions, parsed)));
  }));
}

/**
 * Stop the daemon serving these mountpoints (its run file names the inputs one, or the outputs one when it
 * serves outputs only), letting it finalize outputs first, and detach lazily what is still mounted (daemon dead,
 * hung or gone); prints what was done. `vhfs unmount` and `vhfs serve --stop`.
 */
export async function unmountPaths(ctx: Context, paths: { inputs: string; outputs?: string }): Promise<void> {
  // Outputs mounted: the daemon finalizes (uploads everything) before it exits; give it the time.
  // (mountinfo, not a statfs probe: a hung daemon would make a probe wait for its timeout.)
  const outputsMounted = paths.outputs !== undefined && await isMounted(paths.outputs);
  if (outputsMounted) ctx.info(`finalizing the outputs at ${paths.outputs} (uploading them) before unmounting…`);
  let mountpoint = paths.inputs;
  let stop = await stopDaemon(ctx.home, mountpoint, outputsMounted ? FINALIZE_TIMEOUT_MS : STOP_TIMEOUT_MS);
  if (stop.kind === 'not-running' && paths.outputs !== undefined) {
    // A daemon serving outputs only is named by them.
    const outputsStop = await stopDaemon(ctx.home, paths.outputs, outputsMounted ? FINALIZE_TIMEOUT_MS : STOP_TIMEOUT_MS);
    if (outputsStop.kind !== 'not-running') {
      stop = outputsStop;
      mountpoint = paths.outputs;
    }
  }
  const said: string[] = [];
  if (stop.kind === 'stopped') said.push(`stopped daemon ${stop.pid}`);
  if (stop.kind === 'unresponsive') {
    said.push(stop.paused ? `daemon ${stop.pid} is stopped (SIGSTOP?) and cannot act on SIGTERM`
      : `daemon ${stop.pid} did not stop within ${(outputsMounted ? FINALIZE_TIMEOUT_MS : STOP_TIMEOUT_MS) / 1000} s`);
  }
  // One after the other: probing a hung mount blocks a thread-pool thread until the connection is
  // aborted, and two at once (each probed twice) could take all four. clearStaleMount probes only once.
  for (const mp of paths.outputs === undefined ? [paths.inputs] : [paths.inputs, paths.outputs]) {
    const cleared = await clearStaleMount(mp, { force: true });
    if (cleared.action === 'none') continue;
    said.push(`detached ${mp} lazily with ${cleared.action} (it was ${cleared.was})`);
    if (mp === paths.outputs) said.push(`outputs not uploaded stay staged: run \`vhfs outputs recover --outputs-dir ${mp}\``);
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
  return { store: catalog.store.stats, cache: cache.stats, cacheMemory: cache.memoryStats, native: nativeReadStats() ?? null, process: process.memoryUsage() };
}

/** Serve the mount in this process until SIGINT/SIGTERM; the exit code. */
async function serveMount(
  ctx: Context, o: MountFlags, specs: InputSpec[], paths: { inputs: string; config: string; outputs: string; jobInputs: string }, daemonMountpoint: string,
): Promise<number> {
  const catalog = await ctx.catalog();
  const log = new RateLimitedLog((line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`)).line;
  return serveDaemon({
    home: ctx.home,
    mountpoint: daemonMountpoint,
    log,
    statsFile: o.statsFile,
    start: async () => {
      // One after the other, not at once: preparing a mountpoint probes it, and a hung one holds a thread-pool
      // thread per probe until its connection is aborted (two at once could take all four). Outputs first: a
      // job must never find inputs ready and nowhere to write. Unmounting finalizes them.
      catalog.store.warmUp?.();
      const outputs: OutputsMount | undefined = o.outputs ? await mountOutputs({
        mountpoint: paths.outputs, home: ctx.home, catalog, log, quiet: ctx.quiet,
        ...(o.staging ? { staging: o.staging } : {}), ...(o.execution ? { executionFile: o.execution } : {}),
        ...(o.eagerUpload ? { eagerQuietMs: o.eagerQuiet } : {}), concurrency: o.uploadConcurrency, force: Boolean(o.force),
      }) : undefined;
      let mount: InputsMount | undefined;
      try {
        mount = o.outputsOnly ? undefined : await mountInputs({
          mountpoint: paths.inputs, configDir: paths.config, specs, catalog, ...readPathOptions(ctx, o),
          force: Boolean(o.force), allowOther: Boolean(o.allowOther), jobInputsDir: paths.jobInputs, nativeReads: o.nativeReads !== false, log,
          kernel: { kernelCache: o.kernelCache, entryTimeout: o.cacheTimeout, attrTimeout: o.cacheTimeout, negativeTimeout: o.cacheTimeout },
        });
      } catch (err) {
        await outputs?.unmount({ finalize: false }).catch(() => undefined);
        throw err;
      }
      const stopOutputs = async () => {
        if (!outputs) return;
        const result = await outputs.unmount();
        if (result && !result.complete) {
          throw new VhfsError('STORE', `${result.failed.length} output(s) of ${outputs.mountpoint} not uploaded; ` +
            `they stay staged in ${outputs.staging}: run \`vhfs outputs recover --outputs-dir ${outputs.mountpoint}\``);
        }
      };
      const outputsInfo = outputs ? { outputs: outputs.mountpoint, staging: outputs.staging } : {};
      if (!mount) {
        return {
          watch: [outputs!.mountpoint],
          ready: async () => ({ mountpoint: outputs!.mountpoint, ...outputsInfo, pid: process.pid }),
          stop: stopOutputs,
          snapshot: () => ({ store: catalog.store.stats }),
        };
      }
      const inputs = mount;
      if (o.prefetch) {
        // Once every input is resolved (inputs.json is written then), fill the cache with them behind the job's reads.
        void inputs.inputsJson.then(() => prefetchMountedInputs(
          inputs.cache, inputs.inputs.names.map((n) => inputs.inputs.get(n)).filter((i): i is ResolvedInput => i !== undefined), log));
      }
      return {
        watch: [inputs.mountpoint, ...(outputs ? [outputs.mountpoint] : [])],
        ready: async () => {
          if (o.wait) {
            const failures = await inputs.inputsJson;
            if (failures.size > 0) {
              const first = failures.values().next().value;
              throw new VhfsError(isVhfsError(first) ? first.code : 'STORE',
                [...failures].map(([name, err]) => `input "${name}": ${describeError(err)}`).join('; '));
            }
          }
          return {
            mountpoint: inputs.mountpoint, inputsJson: inputs.inputsJsonPath, ...outputsInfo, pid: process.pid,
            ...(inputs.jobInputsDir !== inputs.mountpoint ? { jobInputsDir: inputs.jobInputsDir } : {}),
          };
        },
        stop: async () => {
          try {
            await stopOutputs();
          } finally {
            await inputs.unmount();
          }
        },
        snapshot: () => daemonCounters(catalog, inputs.cache),
      };
    },
    onReady: (info) => output(ctx, info, () => `ready: ${daemonMountpoint}${o.outputs && !o.outputsOnly ? ` and ${paths.outputs}` : ''}`),
  });
}
