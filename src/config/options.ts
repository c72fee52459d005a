/**
 * Every option vhfs takes, declared once: its flag, environment variable, default, parser and help.
 *
 * Commander options are derived from these specs (`addOptions`), library defaults read the same
 * `DEFAULTS`, and README's option tables are checked against them by a test, so a default can never
 * say one thing in `--help` and do another (the lesson of gcsfuse's single parameter table). Values
 * are typed: `OptionValues<typeof MOUNT_OPTIONS>` is what a command receives after parsing.
 *
 * Precedence: command-line flag, then the environment variable, then the default. Environment values
 * go through the same parser as flags, so `VHFS_BLOCK_SIZE=64K` and `--block-size 64K` cannot differ.
 */
import os from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { VhfsError } from '../util/errors.js';

export interface OptionSpec<T> {
  /** Commander flag syntax; the attribute name commander derives from it must equal the spec's key. */
  flags: string;
  help: string;
  env?: string;
  /** Typed default; `undefined` = unset unless given. */
  default?: T;
  /** How `--help` shows the default, when the value itself reads badly (sizes, paths). */
  defaultText?: string;
  /** Turns a flag's or variable's text into the value; absent for plain switches. */
  parse?: (text: string, where: string) => T;
  /** Every occurrence is parsed (into a one-element array) and the arrays are concatenated. */
  repeatable?: boolean;
  /** Also accept `--no-<name>` (for switches whose default is decided elsewhere, e.g. `auto`). */
  negatable?: boolean;
}

export type OptionGroup = Record<string, OptionSpec<unknown>>;

/** A spec's value type: its default's type when it has one, else what its parser returns (or a switch), possibly unset. */
type ValueOf<S> = S extends { default: infer D }
  ? D
  : S extends { parse: (text: string, where: string) => infer T } ? T | undefined : boolean | undefined;
export type OptionValues<G extends OptionGroup> = { [K in keyof G]: ValueOf<G[K]> };

// ---------------------------------------------------------------------------------------------- parsers

/** `10G`, `512MiB`, `1000000` → bytes (K/M/G/T are powers of 1024; `kB`, `MB`… powers of 1000). */
export function parseSize(text: string, where = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)?$/i.exec(text.trim());
  if (!m) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": expected a number of bytes like 512M, 16G or 1048576`);
  const power = ' kmgt'.indexOf((m[2] || ' ').toLowerCase());
  const base = m[3]?.toLowerCase() === 'b' && m[2] ? 1000 : 1024;
  return Math.round(Number(m[1]) * base ** power);
}

/** Seconds (a non-negative number, fractions allowed). */
export function parseSeconds(text: string, where = 'seconds'): number {
  const s = Number(text);
  if (text.trim() === '' || !Number.isFinite(s) || s < 0) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": expected seconds (0 or more)`);
  return s;
}

/** `500ms`, `10s`, `2m`, or plain seconds → milliseconds. */
export function parseDuration(text: string, where = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/i.exec(text.trim());
  if (!m) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": expected a duration like 500ms, 10s or 2m`);
  const unit = (m[2] ?? 's').toLowerCase();
  return Math.round(Number(m[1]) * (unit === 'ms' ? 1 : unit === 's' ? 1000 : 60_000));
}

/** The host cache's quota: bytes, or a share of the filesystem that holds the cache directory. */
export type CacheQuota = { bytes: number } | { percent: number };

/** `50G`, `512M` (see parseSize) or `80%` (of the cache directory's filesystem). */
export function parseCacheSize(text: string, where = 'cache size'): CacheQuota {
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(text.trim());
  if (!pct) return { bytes: parseSize(text, where) };
  const percent = Number(pct[1]);
  if (!(percent > 0 && percent <= 100)) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": a share of the filesystem must be more than 0% and at most 100%`);
  return { percent };
}

const parsePath = (text: string): string => path.resolve(text);
const parseText = (text: string): string => text;

/** A path as another mount namespace sees it (a job's container): absolute, never resolved against our cwd. */
function parseJobPath(text: string, where: string): string {
  if (!path.isAbsolute(text)) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": expected an absolute path as the job sees it, e.g. /valohai`);
  return path.normalize(text).replace(/(.)\/$/, '$1');
}

// ------------------------------------------------------------------------------------------------ tables

/**
 * The host cache (src/cache/host-cache.ts): every vhfs process given the same directory shares it. Part of
 * the global options, since mounts, `cat`, `prefetch` and the `cache` commands all use it.
 */
export const CACHE_OPTIONS = {
  cacheDir: {
    flags: '--cache-dir <dir>', env: 'VHFS_CACHE_DIR', parse: parsePath, defaultText: '<home>/cache',
    help: 'host cache directory (fetched blocks, persisted indexes), shared by every vhfs process given it',
  },
  cacheSize: {
    flags: '--cache-size <size>', env: 'VHFS_CACHE_SIZE', parse: parseCacheSize, default: { percent: 50 } as CacheQuota, defaultText: '50%',
    help: 'host cache quota: a size (50G) or a share of its filesystem (80%); least recently used objects are evicted',
  },
} satisfies OptionGroup;

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  home: {
    flags: '--home <dir>', env: 'VHFS_HOME', parse: parsePath, default: path.join(os.homedir(), '.vhfs'), defaultText: '~/.vhfs',
    help: 'state directory: store, catalog, cache, logs',
  },
  store: {
    flags: '--store <url>', env: 'VHFS_STORE', parse: parseText, defaultText: '<home>/store',
    help: 'object store: a directory, file://…, s3://bucket/prefix, gs://bucket/prefix, az://account/container/prefix',
  },
  json: { flags: '--json', help: 'machine-readable output on stdout' },
  quiet: { flags: '-q, --quiet', help: 'no progress or informational lines' },
  verbose: { flags: '-v, --verbose', help: 'also say how URIs were resolved and what was read' },
  stats: { flags: '--stats', help: 'print the object store request counters to stderr when done' },
  debug: { flags: '--debug', env: 'VHFS_DEBUG', help: 'print the stack of an unexpected error (for bug reports)' },
  ...CACHE_OPTIONS,
} satisfies OptionGroup;

/** How a mount reads: block cache, deadlines, kernel caching. Also used by `vhfs cat`, which reads the same way. */
export const READ_OPTIONS = {
  blockSize: {
    flags: '--block-size <size>', env: 'VHFS_BLOCK_SIZE', parse: parseSize, default: 256 * 1024, defaultText: '256K',
    help: 'block cache block size (a power of two, at least 4K)',
  },
  // 32M: readahead may hold half of it (16 MiB, twice the largest window), and a long-running mount fills
  // whatever budget it has (stray readahead of random readers stays until evicted), so the budget is
  // paid in RSS: 64M put the daemon at 156-161 MiB after the peers benchmark, 32M at 124 MiB, reads no slower.
  memory: {
    flags: '--memory <size>', env: 'VHFS_MEMORY', parse: parseSize, default: 32 * 1024 * 1024, defaultText: '32M',
    help: 'block cache memory budget (data read ahead, and a little of what the kernel already caches)',
  },
  readahead: {
    flags: '--readahead <size>', env: 'VHFS_READAHEAD', parse: parseSize, default: 8 * 1024 * 1024, defaultText: '8M',
    help: 'largest readahead window for sequential reads (0: none)',
  },
  fetchTimeout: {
    flags: '--fetch-timeout <duration>', env: 'VHFS_FETCH_TIMEOUT', parse: parseDuration, default: 10_000, defaultText: '10s',
    help: 'a store read that has not answered by then fails (EIO/ETIMEDOUT); FUSE itself gives up at 15s',
  },
  diskCache: {
    flags: '--disk-cache', negatable: true, defaultText: 'on for remote stores',
    help: 'keep fetched blocks on disk (--no-disk-cache: never)',
  },
} satisfies OptionGroup;

/** Whole numbers of 1 or more. */
function parseCount(text: string, where = 'count'): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new VhfsError('BAD_ARGUMENT', `${where} "${text}": expected a whole number of 1 or more`);
  return n;
}

const ROOT_OPTION = {
  flags: '--root <dir>', env: 'VHFS_ROOT', parse: parsePath, default: '/valohai',
  help: 'Valohai root: inputs at <root>/inputs, inputs.json at <root>/config, outputs at <root>/outputs',
} satisfies OptionSpec<string>;

const OUTPUTS_DIR_OPTIONS = {
  outputsDir: { flags: '--outputs-dir <dir>', parse: parsePath, defaultText: '<root>/outputs', help: 'mountpoint for outputs' },
  staging: {
    flags: '--staging <dir>', env: 'VHFS_STAGING', parse: parsePath, defaultText: '<home>/outputs/<hash of the outputs mountpoint>',
    help: 'local directory where outputs are kept, with their journal, until uploaded',
  },
} satisfies OptionGroup;

/** Where the outputs are and their staging area: every `vhfs outputs` command. */
export const OUTPUTS_WHERE_OPTIONS = { root: ROOT_OPTION, ...OUTPUTS_DIR_OPTIONS } satisfies OptionGroup;

/** How the outputs mount captures and uploads (see docs/OUTPUTS.md); part of `vhfs mount`. */
export const OUTPUTS_OPTIONS = {
  ...OUTPUTS_DIR_OPTIONS,
  execution: {
    flags: '--execution <file>', parse: parsePath, defaultText: 'the VH_* environment',
    help: 'execution identity the outputs carry: Valohai execution.json, or {"id","project","step","parameters","commit"}',
  },
  eagerUpload: { flags: '--eager-upload', help: 'upload outputs in the background once closed and quiet, so finalize mostly waits for the last ones' },
  eagerQuiet: {
    flags: '--eager-quiet <duration>', parse: parseDuration, default: 1000, defaultText: '1s',
    help: 'with --eager-upload: how long a closed file stays untouched before it is uploaded',
  },
  uploadConcurrency: {
    flags: '--upload-concurrency <n>', env: 'VHFS_UPLOAD_CONCURRENCY', parse: parseCount, default: 8,
    help: 'outputs uploaded in parallel',
  },
} satisfies OptionGroup;

/** `vhfs mount`. */
export const MOUNT_OPTIONS = {
  root: ROOT_OPTION,
  inputsDir: { flags: '--inputs-dir <dir>', parse: parsePath, defaultText: '<root>/inputs', help: 'mountpoint for inputs' },
  configDir: { flags: '--config-dir <dir>', parse: parsePath, defaultText: '<root>/config', help: 'where inputs.json is written' },
  inputs: { flags: '--inputs <file>', parse: parseText, help: 'inputs from a JSON file or a valohai.yaml' },
  step: { flags: '--step <name>', parse: parseText, help: 'the valohai.yaml step whose inputs to mount' },
  input: {
    flags: '--input <name=uri[,uri…]>', parse: (text: string) => [text], repeatable: true,
    help: 'an input (repeatable; overrides the file\'s URIs for that name)',
  },
  force: { flags: '--force', help: 'replace a live or hung mount, or mount over a non-empty directory' },
  allowOther: {
    flags: '--allow-other',
    help: 'let every user read the mount (allow_other, default_permissions), e.g. a job running as another uid; as non-root needs user_allow_other in /etc/fuse.conf',
  },
  jobRoot: {
    flags: '--job-root <dir>', parse: parseJobPath,
    help: 'where the job sees --root (e.g. /valohai in its container, --root bind-mounted there): inputs.json lists paths under it',
  },
  ...READ_OPTIONS,
  kernelCache: {
    flags: '--no-kernel-cache', default: true, defaultText: 'on',
    help: 'do not keep file pages in the kernel page cache across opens (for measurements)',
  },
  nativeReads: {
    flags: '--no-native-reads', default: true, defaultText: 'on where built',
    help: 'answer every request in JavaScript (the native read path answers lookups, listings and local reads of resolved inputs on libfuse threads)',
  },
  cacheTimeout: {
    flags: '--cache-timeout <seconds>', parse: parseSeconds, default: 86400,
    help: 'kernel entry/attribute/negative cache timeout (inputs are immutable)',
  },
  foreground: { flags: '--foreground', help: 'serve in this process until SIGINT/SIGTERM' },
  wait: { flags: '--wait', help: 'return only once every input is resolved and inputs.json written; fail if one cannot be' },
  statsFile: {
    flags: '--stats-file <file>', parse: parsePath,
    help: 'keep store and cache counters in this JSON file (rewritten each second while they change, and on SIGUSR1)',
  },
  prefetch: {
    flags: '--prefetch',
    help: 'fill the host cache with every input in the background, below reads in priority (as vhfs prefetch does)',
  },
  outputs: { flags: '--no-outputs', default: true, defaultText: 'on', help: 'do not mount <root>/outputs (inputs only)' },
  outputsOnly: { flags: '--outputs-only', help: 'mount only <root>/outputs (no inputs)' },
  ...OUTPUTS_OPTIONS,
} satisfies OptionGroup;

/** `vhfs serve MOUNTPOINT`: the whole catalog, read-only, for browsing and for containers to bind-mount. */
export const SERVE_OPTIONS = {
  force: MOUNT_OPTIONS.force,
  allowOther: {
    flags: '--no-allow-other', default: true, defaultText: 'on',
    help: 'only the serving user may read the mount (default: every user, with default_permissions; as non-root that needs user_allow_other in /etc/fuse.conf)',
  },
  listingTtl: {
    flags: '--listing-ttl <seconds>', parse: parseSeconds, default: 10,
    help: 'reuse listings of datasets, versions and aliases this long: moved aliases and new versions show within it (twice it for a name looked up while missing)',
  },
  ...READ_OPTIONS,
  kernelCache: MOUNT_OPTIONS.kernelCache,
  cacheTimeout: {
    flags: '--cache-timeout <seconds>', parse: parseSeconds, default: 86400,
    help: 'kernel entry/attribute cache timeout (what a name denotes never changes: versions are immutable, alias targets are read each time)',
  },
  foreground: MOUNT_OPTIONS.foreground,
  stop: { flags: '--stop', help: 'stop the daemon serving MOUNTPOINT and unmount it (same as vhfs unmount --inputs-dir MOUNTPOINT)' },
  statsFile: MOUNT_OPTIONS.statsFile,
} satisfies OptionGroup;

/** The defaults libraries fall back on when a caller passes nothing (tests, `vhfs cat`). */
export const DEFAULTS = {
  blockSize: READ_OPTIONS.blockSize.default,
  memoryBytes: READ_OPTIONS.memory.default,
  readaheadBytes: READ_OPTIONS.readahead.default,
  fetchTimeoutMs: READ_OPTIONS.fetchTimeout.default,
  cacheTimeoutSeconds: MOUNT_OPTIONS.cacheTimeout.default,
  cacheSize: CACHE_OPTIONS.cacheSize.default,
} as const;

// ------------------------------------------------------------------------------------------- commander

/** Add a group's options to a command. */
export function addOptions(command: Command, group: OptionGroup): Command {
  for (const [key, s] of Object.entries(group)) {
    const option = new Option(s.flags, s.help);
    if (option.attributeName() !== key) throw new Error(`option table: ${s.flags} is read as "${option.attributeName()}", not "${key}"`);
    if (s.env) option.env(s.env);
    const parse = s.parse;
    if (parse) {
      const where = s.env ? `${option.long} (or ${s.env})` : option.long ?? key;
      option.argParser(s.repeatable
        ? (text: string, previous: unknown) => [...((previous as unknown[] | undefined) ?? []), ...(parse(text, where) as unknown[])]
        : (text: string) => parse(text, where));
    }
    if (s.default !== undefined && !option.negate) option.default(s.default, s.defaultText);
    else if (s.defaultText && !option.negate) option.default(undefined, s.defaultText);
    command.addOption(option);
    if (s.negatable) command.addOption(new Option(`--no-${option.long!.slice(2)}`, `(see ${option.long})`).hideHelp());
  }
  return command;
}

/** The typed values of `group` from commander's parsed options (defaults already applied by commander). */
export function optionValues<G extends OptionGroup>(group: G, parsed: Record<string, unknown>): OptionValues<G> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(group)) out[key] = parsed[key];
  return out as OptionValues<G>;
}

/** A Markdown table of a group's options (README's option sections are generated from it and checked by a test). */
export function optionsMarkdown(group: OptionGroup): string {
  const rows = Object.values(group).map((s) => {
    const flags = s.negatable ? `${s.flags}, --no-${s.flags.replace(/^--/, '').split(' ')[0]}` : s.flags;
    const def = s.defaultText ?? (s.default === undefined ? '' : String(s.default));
    return `| \`${flags}\` | ${s.env ? `\`${s.env}\`` : ''} | ${def ? `\`${def}\`` : ''} | ${s.help} |`;
  });
  return ['| option | environment | default | what it does |', '|---|---|---|---|', ...rows].join('\n');
}

/**
 * The Valohai directories a mount uses, from `--root` and the per-directory overrides, and where the job sees
 * the inputs (`jobInputs`): the mountpoint itself, or with `--job-root` the same place under the job's root
 * (the host's `--root` bind-mounted at `--job-root` in the job's container).
 */
export function valohaiPaths(o: { root: string; inputsDir?: string | undefined; configDir?: string | undefined; outputsDir?: string | undefined; jobRoot?: string | undefined }): { inputs: string; config: string; outputs: string; jobInputs: string } {
  const inputs = path.resolve(o.inputsDir ?? path.join(o.root, 'inputs'));
  const config = path.resolve(o.configDir ?? path.join(o.root, 'config'));
  const outputs = path.resolve(o.outputsDir ?? path.join(o.root, 'outputs'));
  if (o.jobRoot === undefined) return { inputs, config, outputs, jobInputs: inputs };
  const inside = path.relative(path.resolve(o.root), inputs);
  if (inside.startsWith('..') || path.isAbsolute(inside)) {
    throw new VhfsError('BAD_ARGUMENT', `--job-root ${o.jobRoot} stands for --root ${o.root}, but the inputs dir ${inputs} is not under it; mount under --root or drop --inputs-dir`);
  }
  return { inputs, config, outputs, jobInputs: path.posix.join(o.jobRoot, inside) };
}
