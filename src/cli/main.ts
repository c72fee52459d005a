/**
 * `vhfs` command line. Each command is a thin wrapper over a library call; output is human-readable by
 * default and JSON with `--json`. Errors print one line, `vhfs: <message>`, and exit with the code of the
 * error's kind (docs in README: 2 bad input, 3 not found, 4 conflict, 5 bad package/data, 6 store, 7 unsupported).
 * Options are declared in `src/config/options.ts`.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { Context, type GlobalOptions } from './context.js';
import { describeError, isVhfsError } from '../util/errors.js';
import { addOptions, GLOBAL_OPTIONS, optionValues } from '../config/options.js';
import { registerDataCommands } from './data-commands.js';
import { registerCacheCommands } from './cache-commands.js';
import { registerMountCommands } from './mount-commands.js';
import { registerServeCommands } from './serve-commands.js';
import { registerOutputsCommands } from './outputs-commands.js';
import { DAEMON_COMMAND, receiveDaemonArgs } from '../fuse/daemon.js';

/** The version in package.json (dist/src/cli/main.js → the repository's root). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(run: (fn: (ctx: Context) => Promise<void>) => Promise<void>): Command {
  const program = new Command('vhfs')
    .description('Versioned, lazily mounted ML data: datums, datasets, .vhpkgzip packages, FUSE inputs')
    .version(packageVersion(), '-V, --version', 'print the vhfs version')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride();
  addOptions(program, GLOBAL_OPTIONS);
  registerDataCommands(program, run);
  registerCacheCommands(program, run);
  registerMountCommands(program, run);
  registerServeCommands(program, run);
  registerOutputsCommands(program, run);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  // State under VHFS_HOME (blobs, catalog, logs, run files) is private: 0700 directories, 0600 files. What a
  // job must read (mountpoints, inputs.json) is opened up explicitly (src/util/shared-dirs.ts).
  process.umask(0o077);
  let exitCode = 0;
  let program: Command;
  let exitWhenDone = false;
  const globals = (): GlobalOptions => optionValues(GLOBAL_OPTIONS, program.opts());
  const run = async (fn: (ctx: Context) => Promise<void>) => {
    const ctx = new Context(globals());
    try {
      await fn(ctx);
    } finally {
      if (ctx.opts.stats && ctx.storeOpened) process.stderr.write(`store stats: ${JSON.stringify(ctx.store.stats)}\n`);
      await ctx.close();
      exitWhenDone ||= ctx.exitWhenDone;
    }
  };
  program = buildProgram(run);
  try {
    // A mount daemon gets its arguments over IPC, never on its command line (they may hold secrets).
    if (argv[2] === DAEMON_COMMAND) argv = [...argv.slice(0, 2), ...(await receiveDaemonArgs())];
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    exitCode = isVhfsError(err) ? err.exitCode : 1;
    if (program.opts().json) {
      process.stdout.write(`${JSON.stringify({ error: { code: isVhfsError(err) ? err.code : 'INTERNAL', message: describeError(err) } })}\n`);
    }
    process.stderr.write(`vhfs: ${describeError(err)}\n`);
    if (!isVhfsError(err) && program.opts().debug) process.stderr.write(`${(err as Error).stack}\n`);
  }
  // A served mount's native handle would keep the process alive after it is unmounted.
  if (exitWhenDone) process.exit(exitCode || (typeof process.exitCode === 'number' ? process.exitCode : 0));
  return exitCode;
}
