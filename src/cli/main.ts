/**
 * `vhfs` command line. Each command is a thin wrapper over a library call; output is human-readable by
 * default and JSON with `--json`. Errors print one line, `vhfs: <message>`, and exit with the code of the
 * error's kind (docs in README: 2 bad input, 3 not found, 4 conflict, 5 bad package/data, 6 store, 7 unsupported).
 */
import { Command, CommanderError } from 'commander';
import { Context, type GlobalOptions } from './context.js';
import { describeError, isVhfsError, VhfsError } from '../util/errors.js';
import { registerCacheCommands, registerDataCommands } from './data-commands.js';
import { registerMountCommands } from './mount-commands.js';
import { registerOutputsCommands } from './outputs-commands.js';

export function buildProgram(run: (fn: (ctx: Context) => Promise<void>) => Promise<void>): Command {
  const program = new Command('vhfs')
    .description('Versioned, lazily mounted ML data: datums, datasets, .vhpkgzip packages, FUSE inputs')
    .option('--home <dir>', 'state directory: store, catalog, cache (env VHFS_HOME, default ~/.vhfs)')
    .option('--store <url>', 'object store URL or directory (env VHFS_STORE, default <home>/store)')
    .option('--json', 'machine-readable output on stdout')
    .option('-q, --quiet', 'no progress or informational lines')
    .option('-v, --verbose', 'also say how URIs were resolved and what was read')
    .option('--stats', 'print the object store request counters to stderr when done')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride();
  registerDataCommands(program, run);
  registerCacheCommands(program, run);
  registerMountCommands(program, run);
  registerOutputsCommands(program, run);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  let program: Command;
  const run = async (fn: (ctx: Context) => Promise<void>) => {
    const ctx = new Context(program.opts<GlobalOptions>());
    try {
      await fn(ctx);
    } finally {
      if (ctx.opts.stats && ctx.storeOpened) process.stderr.write(`store stats: ${JSON.stringify(ctx.store.stats)}\n`);
      await ctx.close();
    }
  };
  program = buildProgram(run);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    exitCode = isVhfsError(err) ? err.exitCode : 1;
    const json = program.opts<GlobalOptions>().json;
    if (json) {
      process.stdout.write(`${JSON.stringify({ error: { code: isVhfsError(err) ? err.code : 'INTERNAL', message: describeError(err) } })}\n`);
    }
    process.stderr.write(`vhfs: ${describeError(err)}\n`);
    if (!isVhfsError(err) && process.env.VHFS_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
  }
  return exitCode;
}

/** Parse `10G`, `512MiB`, `1000000` into bytes. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?$/i.exec(text.trim());
  if (!m) throw new VhfsError('BAD_ARGUMENT', `${what} "${text}": expected a number of bytes like 512M, 16G or 1048576`);
  const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  const base = m[3]?.toLowerCase() === 'b' && m[2] ? 1000 : 1024;
  return Math.round(Number(m[1]) * base ** power);
}

/** Print a value: JSON with --json, else the human text. */
export function output(ctx: Context, value: unknown, human: () => string): void {
  if (ctx.opts.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else {
    const text = human();
    if (text !== '') process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

