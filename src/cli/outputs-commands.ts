/**
 * `vhfs outputs finalize|recover|status`: the commands that act on an outputs staging area (found from
 * `--root`/`--outputs-dir` and the home, or given with `--staging`). The outputs mount itself is started by
 * `vhfs mount` (mount-commands.ts; `--outputs-only` for outputs alone), which finalizes when it stops.
 *
 * `finalize` asks a live mount to finalize through the journal and waits for it; with no live mount it
 * finalizes what is staged itself, as `recover` does.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { output, type Context, type Run } from './context.js';
import { addOptions, OUTPUTS_WHERE_OPTIONS, optionValues, parseDuration, valohaiPaths, type OptionValues } from '../config/options.js';
import { recoverRuns, type FinalizeResult } from '../outputs/finalize.js';
import { Journal, ownerAlive } from '../outputs/journal.js';
import { outputsStatus, type RunStatus } from '../outputs/status.js';
import { defaultStagingDir, StagingArea } from '../outputs/staging.js';
import { VhfsError } from '../util/errors.js';
import { formatBytes } from '../util/progress.js';

type WhereFlags = OptionValues<typeof OUTPUTS_WHERE_OPTIONS>;

function outputsDirOf(o: WhereFlags): string {
  return valohaiPaths(o).outputs;
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
  return addOptions(cmd, OUTPUTS_WHERE_OPTIONS);
}

export function registerOutputsCommands(program: Command, run: Run): void {
  const outputs = program.command('outputs').description('capture <root>/outputs and upload it as datums (live uploads, metadata, dataset versions)');

  where(outputs.command('finalize'))
    .description('upload everything staged: asks a live mount to finalize and waits, or finalizes staged runs itself')
    .option('--timeout <duration>', 'how long to wait for a live mount to finish (e.g. 90s, 30m)', '360m')
    .action((parsed: Record<string, unknown> & { timeout: string }) => run(async (ctx) => {
      const o = optionValues(OUTPUTS_WHERE_OPTIONS, parsed);
      const timeoutMs = parseDuration(parsed.timeout, '--timeout');
      const { staging, journal } = openJournal(ctx, o);
      try {
        const live = journal.runs().filter((r) => r.state !== 'finalized' && ownerAlive(r.owner) && r.owner.pid !== process.pid);
        const results: FinalizeResult[] = [];
        if (live.length) {
          for (const r of live) journal.requestFinalize(r.id);
          const deadline = Date.now() + timeoutMs;
          while (live.some((r) => journal.run(r.id)?.finalizeRequested && ownerAlive(r.owner))) {
            if (Date.now() > deadline) throw new VhfsError('TIMEOUT', `the mount (pid ${live[0].owner.pid}) did not finish finalizing within ${parsed.timeout}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        results.push(...(await recoverRuns({ catalog: await ctx.catalog(), journal, staging, outputsDir: outputsDirOf(o), quiet: ctx.quiet, log: (l) => ctx.info(l) })));
        const statuses = (await outputsStatus(journal, staging)).filter((s) => live.some((r) => r.id === s.id) || results.some((r) => r.runId === s.id));
        report(ctx, statuses, results);
      } finally {
        journal.close();
      }
    }));

  where(outputs.command('recover'))
    .description('finish the runs of a killed mount: upload what is staged, never a file twice')
    .action((parsed: Record<string, unknown>) => run(async (ctx) => {
      const o = optionValues(OUTPUTS_WHERE_OPTIONS, parsed);
      const { staging, journal } = openJournal(ctx, o);
      try {
        const skipped = journal.runs().filter((r) => r.state !== 'finalized' && ownerAlive(r.owner));
        for (const r of skipped) ctx.info(`run ${r.id} belongs to a live mount (pid ${r.owner.pid}); use \`vhfs outputs finalize\``);
        const results = await recoverRuns({ catalog: await ctx.catalog(), journal, staging, outputsDir: outputsDirOf(o), quiet: ctx.quiet, log: (l) => ctx.info(l) });
        const statuses = (await outputsStatus(journal, staging)).filter((s) => results.some((r) => r.runId === s.id));
        report(ctx, statuses, results);
      } finally {
        journal.close();
      }
    }));

  where(outputs.command('status'))
    .description('runs and files: pending, uploading, done (with datum:// links), failed')
    .option('--limit <n>', 'files listed per run (human output)', '50')
    .action((parsed: Record<string, unknown> & { limit: string }) => run(async (ctx) => {
      const o = optionValues(OUTPUTS_WHERE_OPTIONS, parsed);
      const limit = Number(parsed.limit);
      if (!Number.isInteger(limit) || limit < 0) throw new VhfsError('BAD_ARGUMENT', `--limit "${parsed.limit}": expected a whole number`);
      const { staging, journal } = openJournal(ctx, o);
      try {
        const statuses = await outputsStatus(journal, staging);
        output(ctx, { staging: staging.dir, runs: statuses }, () => statuses.map((s) => describeRun(s, limit)).join('\n'));
      } finally {
        journal.close();
      }
    }));
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
