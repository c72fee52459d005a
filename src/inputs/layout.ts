// Where each resolved file of one input appears under `/valohai/inputs/<input>/`: valohai.yaml's
// `keep-directories` and `filename` input options.
//
// The resolver turns an input's URIs into files; this module only decides their relative local paths,
// so it is pure and needs no store. For each file, by `origin`:
//   store    (s3/gs/azure object or local file; `key` = object key, or for local files the absolute
//             path without its leading `/`)
//              none   → basename(key)
//              full   → key (the bucket, or account/container, is never part of the path)
//              suffix → key minus `wildcardRoot` for a wildcard URI; basename(key) without one
//   version  (a file of a dataset or model version; `key` = its path inside the version)
//              → key, whatever the mode. DECISION (Valohai's docs leave it open): a version is a
//                tree, and the seeds show it kept as one (`/valohai/inputs/training-images/cats/cats_00000.jpg`);
//                flattening class folders would silently merge them.
//   datum    (`key` = the datum's name, which may contain `/`)
//              none, suffix → basename(name); full → name. DECISION (left open too): a single datum
//                behaves like a single object without wildcards.
//   url      (`key` = the URL's file name) → key.
// `filename`, when set, replaces the path of the input's only file; with several files it is ignored
// (as in Valohai) and a warning says so.
//
// Collisions. DECISION (Valohai's docs leave it open): two different sources mapping to one local path
// is an error (UNSAFE_PATH) naming the input, the path and both URIs — Valohai silently lets one overwrite the
// other, and a training job reading the wrong file is worse than one that does not start. The first
// collision in input order is reported. Entries with the same `id` (the same object reached through two
// overlapping wildcards or a repeated URI) are one file, not a collision: the first is kept. A path
// that is a file for one source and a directory for another (`a` and `a/b`) is also an error.
//
// Every resulting path is checked against the relative-path rules (src/util/path-rules.ts). Output is sorted by path (code-unit order) so that listings
// and inputs.json do not depend on the order in which a store listed its keys.
import { VhfsError } from '../util/errors.js';
import { relativePathProblem } from '../util/path-rules.js';

export type KeepDirectories = 'none' | 'full' | 'suffix';

export interface ResolvedFile<T = unknown> {
  /** The URI the file came from, as shown to users (redacted); named in collision errors. */
  uri: string;
  /** Identity of the bytes' source, e.g. `s3://bucket/key` or `datum://<id>`; equal ids are one file. */
  id: string;
  origin: 'store' | 'version' | 'datum' | 'url';
  /** See the module comment for what the key is for each origin. */
  key: string;
  /** For store files matched by a wildcard: the wildcard root, in the same terms as `key`. */
  wildcardRoot?: string;
  /** Carried through untouched (size, datum id, package member, …). */
  data?: T;
}

export interface LayoutOptions {
  /** Input name, for messages. */
  input: string;
  keepDirectories: KeepDirectories;
  filename?: string;
}

export interface PlacedFile<T = unknown> {
  /** Path relative to the input directory (inputs.json's `name`). */
  path: string;
  file: ResolvedFile<T>;
}

export interface Layout<T = unknown> {
  files: PlacedFile<T>[];
  /** Things a user should hear about that are not errors (e.g. `filename` ignored). */
  warnings: string[];
}


/** Lay out one input's files. Throws VhfsError UNSAFE_PATH on an unsafe path or a collision. */
export function layoutInput<T>(files: readonly ResolvedFile<T>[], options: LayoutOptions): Layout<T> {
  const warnings: string[] = [];
  const unique = dedupeById(files);
  let placed = unique.map((file) => ({ path: localPath(file, options), file }));
  if (options.filename !== undefined) {
    if (placed.length === 1) {
      placed = [{ path: options.filename, file: placed[0].file }];
    } else if (placed.length > 1) {
      warnings.push(`input "${options.input}": filename "${options.filename}" ignored: the input has ${placed.length} files, not one`);
    }
  }
  for (const p of placed) checkPath(p.path, p.file, options.input);
  checkCollisions(placed, options.input);
  placed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files: placed, warnings };
}

/** The relative local path of one file, before `filename` and safety checks. */
export function localPath(file: ResolvedFile, options: Pick<LayoutOptions, 'keepDirectories' | 'input'>): string {
  switch (file.origin) {
    case 'version':
    case 'url':
      return file.key;
    case 'datum':
      return options.keepDirectories === 'full' ? file.key : basename(file.key);
    case 'store':
      return storePath(file, options);
  }
}

function storePath(file: ResolvedFile, options: Pick<LayoutOptions, 'keepDirectories' | 'input'>): string {
  switch (options.keepDirectories) {
    case 'none': return basename(file.key);
    case 'full': return file.key;
    case 'suffix': {
      const root = file.wildcardRoot;
      if (root === undefined) return basename(file.key);
      if (!file.key.startsWith(root)) {
        throw new VhfsError('BAD_ARGUMENT', `input "${options.input}": ${file.uri}: key "${file.key}" is not under its wildcard root "${root}"`);
      }
      return file.key.slice(root.length);
    }
  }
}

function basename(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

function dedupeById<T>(files: readonly ResolvedFile<T>[]): ResolvedFile<T>[] {
  const seen = new Set<string>();
  return files.filter((f) => (seen.has(f.id) ? false : (seen.add(f.id), true)));
}

/** What is unsafe about a relative path, or undefined when it is fine. */
export function pathProblem(p: string): string | undefined {
  const problem = relativePathProblem(p);
  return problem === undefined ? undefined : `the path ${problem}`;
}

function checkPath(p: string, file: ResolvedFile, input: string): void {
  const problem = pathProblem(p);
  if (problem !== undefined) {
    throw new VhfsError('UNSAFE_PATH', `input "${input}": ${file.uri}: local path ${JSON.stringify(p)} (from "${file.key}") is unsafe: ${problem}`);
  }
}

function checkCollisions(placed: readonly PlacedFile[], input: string): void {
  const files = new Map<string, PlacedFile>();
  const dirs = new Map<string, PlacedFile>();  // directory path → the first file that made it one
  for (const p of placed) {
    const sameFile = files.get(p.path);
    if (sameFile) throw collision(input, `local path "${p.path}" would come from both`, sameFile, p);
    const dirOwner = dirs.get(p.path);
    if (dirOwner) throw collision(input, `local path "${p.path}" would be a directory for`, dirOwner, p, 'and a file for');
    const segs = p.path.split('/');
    for (let i = 1; i < segs.length; i++) {
      const dir = segs.slice(0, i).join('/');
      const asFile = files.get(dir);
      if (asFile) throw collision(input, `local path "${dir}" would be a file for`, asFile, p, 'and a directory for');
      if (!dirs.has(dir)) dirs.set(dir, p);
    }
    files.set(p.path, p);
  }
}

function collision(input: string, what: string, first: PlacedFile, second: PlacedFile, and = 'and'): VhfsError {
  const describe = (p: PlacedFile) => (p.file.uri === p.file.id ? p.file.uri : `${p.file.uri} (${p.file.id})`);
  const hint = 'set keep-directories to full or suffix, or split the input';
  return new VhfsError('UNSAFE_PATH',
    `input "${input}": ${what} ${describe(first)} ${and} ${describe(second)} (${hint})`);
}
