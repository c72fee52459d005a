/**
 * `vhfs outputs mount|finalize|recover|status`: the outputs mount on its own, and the commands that act on
 * a staging area (found from `--root`/`--outputs-dir` and the home, or given with `--staging`).
 *
 * `mount` serves in the foreground (the `vhfs mount` daemon is where backgrounding lives) and finalizes on
 * SIGTERM/SIGINT before unmounting. `finalize` asks a live mount to finalize through the journal and waits
 * for it; with no live mount it finalizes what is staged itself, as `recover` does.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Context, Run } from './context.js';
import { output } from './main.js';
import { mountOutputs } from '../fuse/mount-outputs.js';
import { recoverRuns, type FinalizeResult } from '../outputs/finalize.js';
import { Journal, ownerAlive } from '../outputs/journal.js';
import { outputsStatus, type RunStatus } from '../outputs/status.js';
import { defaultStagingDir, StagingArea } from '../outputs/staging.js';
import { describeError, VhfsError } from '../util/errors.js';
import { formatBytes } from '../util/progress.js';

interface WhereFlags {
  root: string;
  outputsDir?: string;
  staging?: string;
}

interface MountFlags extends WhereFlags {
  execution?: string;
  eagerUpload?: string | boolean;
  concurrency?: string;
  force?: boolean;
  allowOther?: boolean;
}

const DEFAULT_EAGER_QUIET_MS = 1000;

function outputsDirOf(o: WhereFlags): string {
  return path.resolve(o.outputsDir ?? path.join(o.root, 'outputs'));
}

function stagingOf(ctx: Context, o: WhereFlags): StagingArea {
  return new StagingArea(o.staging ?? defaultStagingDir(ctx.home, outputsDirOf(o)));
}

function openJournal(ctx: Context, o: WhereFlags): { staging: StagingArea; journal: Journal } {
  const staging = stagingOf(ctx, o);
  if (!existsSync(staging.journalFile)) {
    throw new VhfsError('NOT_FOUND', `no outputs staged for ${outputsDirOf(o)} (no journal at ${staging.journalFile})`);
  }
  return { staging, journal: Journal.open(staging.journalFile) };
}

function where(cmd: Command): Command {
  return cmd
    .option('--root <dir>', 'Valohai root directory', '/valohai')
    .option('--outputs-dir <dir>', 'outputs mountpoint (default <root>/outputs)')
    .option('--staging <dir>', 'staging directory (default <home>/outputs/<hash of the mountpoint>)');
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new VhfsError('BAD_ARGUMENT', `${flag} "${text}": expected a whole number of 1 or more`);
  return n;
}

export function registerOutputsCommands(program: Command, run: Run): void {
  const outputs = program.command('outputs').description('capture <root>/outputs and upload it as datums (live uploads, metadata, dataset versions)');

  where(outputs.command('mount'))
    .description('mount <root>/outputs (writable) and serve in the foreground; SIGTERM/SIGINT finalize, then unmount')
    .option('--execution <file>', 'execution identity: Valohai execution.json or {"id","project","step","parameters","commit"} (default: VH_* environment)')
    .option('--eager-upload [quiet-ms]', `upload files in the background once closed and quiet (default ${DEFAULT_EAGER_QUIET_MS} ms)`)
    .option('--concurrency <n>', 'parallel uploads at finalize', '8')
    .option('--force', 'replace a live mount or mount over a non-empty directory')
    .option('--allow-other', 'let other users use the mount (non-root needs user_allow_other in /etc/fuse.conf)')
    .action((o: MountFlags) => run(async (ctx) => serveOutputs(ctx, o)));

  where(outputs.command('finalize'))
    .description('upload everything staged: asks a live mount to finalize and waits, or finalizes staged runs itself')
    .option('--timeout <seconds>', 'how long to wait for a live mount', '3600')
    .action((o: WhereFlags & { timeout: string }) => run(async (ctx) => {
      const { staging, journal } = openJournal(ctx, o);
      try {
        const live = journal.runs().filter((r) => r.state !== 'finalized' && ownerAlive(r.owner) && r.owner.pid !== process.pid);
        const results: FinalizeResult[] = [];
        if (live.length) {
          for (const r of live) journal.requestFinalize(r.id);
          const deadline = Date.now() + positiveInt(o.timeout, '--timeout') * 1000;
          while (live.some((r) => journal.run(r.id)?.finalizeRequested && ownerAlive(r.owner))) {
            if (Date.now() > deadline) throw new VhfsError('TIMEOUT', `the mount (pid ${live[0].owner.pid}) did not finish finalizing within ${o.timeout} s`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        results.push(...(await recoverRuns({ catalog: await ctx.catalog(), journal, staging, outputsDir: outputsDirOf(o), quiet: quietOf(ctx), log: (l) => ctx.info(l) })));
        const statuses = (await outputsStatus(journal, staging)).filter((s) => live.some((r) => r.id === s.id) || results.some((r) => r.runId === s.id));
        report(ctx, statuses, results);
      } finally {
        journal.close();
      }
    }));

  where(outputs.command('recover'))
    .description('finish the runs of a killed mount: upload what is staged, never a file twice')
    .action((o: WhereFlags) => run(async (ctx) => {
      const { staging, journal } = openJournal(ctx, o);
      try {
        const skipped = journal.runs().filter((r) => r.state !== 'finalized' && ownerAlive(r.owner));
        for (const r of skipped) ctx.info(`run ${r.id} belongs to a live mount (pid ${r.owner.pid}); use \`vhfs outputs finalize\``);
        const results = await recoverRuns({ catalog: await ctx.catalog(), journal, staging, outputsDir: outputsDirOf(o), quiet: quietOf(ctx), log: (l) => ctx.info(l) });
        const statuses = (await outputsStatus(journal, staging)).filter((s) => results.some((r) => r.runId === s.id));
        report(ctx, statuses, results);
      } finally {
        journal.close();
      }
    }));

  where(outputs.command('status'))
    .description('runs and files: pending, uploading, done (with datum:// links), failed')
    .option('--limit <n>', 'files listed per run (human output)', '50')
    .action((o: WhereFlags & { limit: string }) => run(async (ctx) => {
      const { staging, journal } = openJournal(ctx, o);
      try {
        const statuses = await outputsStatus(journal, staging);
        const limit = positiveInt(o.limit, '--limit');
        output(ctx, { staging: staging.dir, runs: statuses }, () => statuses.map((s) => describeRun(s, limit)).join('\n'));
      } finally {
        journal.close();
      }
    }));
}

function quietOf(ctx: Context): boolean {
  return Boolean(ctx.opts.quiet || ctx.opts.json);
}

/** Print the outcome of finalize/recover; fail (exit 6) if anything is still not uploaded. */
function report(ctx: Context, statuses: RunStatus[], results: FinalizeResult[]): void {
  const failed = statuses.reduce((n, s) => n + s.counts.failed + s.counts.pending + s.counts.uploading, 0) +
    results.reduce((n, r) => n + r.failed.filter((f) => f.path.startsWith('dataset://')).length, 0);
  output(ctx, { runs: statuses, results }, () => statuses.length === 0 ? 'nothing to finalize' : statuses.map((s) => describeRun(s, 50)).join('\n'));
  if (failed > 0) {
    throw new VhfsError('STORE', `${failed} output(s) or version(s) are not uploaded yet; they stay staged (run \`vhfs outputs recover\` to retry)`);
  }
}

function describeRun(s: RunStatus, limit: number): string {
  const c = s.counts;
  const owner = s.state === 'finalized' ? '' : s.owner.alive ? `, owner pid ${s.owner.pid}` : ', no live owner';
  const head = `run ${s.id} (${s.state}${owner}${s.executionId ? `, execution ${s.executionId}` : ''}): ` +
    `${c.pending} pending, ${c.uploading} uploading, ${c.done} done, ${c.failed} failed`;
  const lines = s.files.slice(0, limit).map((f) =>
    `  ${f.state.padEnd(9)} ${f.path}${f.size !== undefined ? ` (${formatBytes(f.size)})` : ''}` +
    `${f.datum ? `  ${f.datum}` : ''}${f.via ? '  [live]' : ''}${f.error ? `  ${f.error}` : ''}`);
  if (s.files.length > limit) lines.push(`  … ${s.files.length - limit} more (--limit, or --json)`);
  return [head, ...lines].join('\n');
}

/** `vhfs outputs mount`: serve until SIGTERM/SIGINT, then finalize and unmount. */
async function serveOutputs(ctx: Context, o: MountFlags): Promise<void> {
  const catalog = await ctx.catalog();
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  const eagerQuietMs = o.eagerUpload === undefined || o.eagerUpload === false ? undefined
    : o.eagerUpload === true ? DEFAULT_EAGER_QUIET_MS : Number(o.eagerUpload);
  if (eagerQuietMs !== undefined && (!Number.isFinite(eagerQuietMs) || eagerQuietMs < 0)) {
    throw new VhfsError('BAD_ARGUMENT', `--eager-upload "${String(o.eagerUpload)}": expected milliseconds`);
  }
  // Signal handlers go in before the mount reports ready (a SIGTERM racing ahead of them would leave it stale).
  let stop: ((why: string) => void) | undefined;
  let stopReason: string | undefined;
  const onSignal = (sig: string) => (stop ? stop(sig) : (stopReason = sig));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  const mount = await mountOutputs({
    root: o.root, ...(o.outputsDir ? { outputsDir: o.outputsDir } : {}), home: ctx.home,
    ...(o.staging ? { staging: o.staging } : {}), catalog,
    ...(o.execution ? { executionFile: o.execution } : {}),
    ...(eagerQuietMs !== undefined ? { eagerQuietMs } : {}),
    concurrency: positiveInt(o.concurrency ?? '8', '--concurrency'),
    force: Boolean(o.force), allowOther: Boolean(o.allowOther), quiet: quietOf(ctx), log,
  });
  const done = new Promise<FinalizeResult | undefined>((resolve) => {
    let stopping = false;
    stop = (why) => {
      if (stopping) return;
      stopping = true;
      log(`${why}: finalizing and unmounting ${mount.mountpoint}`);
      mount.unmount().then(resolve, (err: unknown) => {
        log(`error: ${describeError(err)}`);
        resolve(undefined);
      });
    };
    if (stopReason) stop(stopReason);
  });
  process.send?.({ ready: mount.mountpoint, staging: mount.staging });
  output(ctx, { mountpoint: mount.mountpoint, staging: mount.staging, pid: process.pid }, () => `ready: ${mount.mountpoint} (staging ${mount.staging})`);
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const result = await done;
  clearInterval(keepAlive);
  if (!result?.complete) {
    throw new VhfsError('STORE', `finalize of ${mount.mountpoint} left outputs staged in ${mount.staging}; run \`vhfs outputs recover\``);
  }
  log(`finalized: ${result.uploaded.length} file(s), ${formatBytes(result.bytes)}; exiting`);
}
