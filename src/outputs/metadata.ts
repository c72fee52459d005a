/**
 * Output metadata (spec §3.3–§3.5, §4): `<file>.metadata.json` sidecars and the root
 * `valohai.metadata.jsonl` turned into one plan: per output its tags, alias and properties, the dataset
 * versions to build, and which metadata files were consumed.
 *
 * Decisions on the spec's open questions (§9 q3–q5, q10), documented in docs/OUTPUTS.md:
 *  - Metadata files are consumed, not uploaded, when they applied cleanly. A metadata file with any problem
 *    (invalid JSON, a bad key, metadata for a file that is not an output) is also uploaded as an ordinary
 *    output, next to the warning: the job wrote those bytes and nothing it wrote is dropped.
 *  - Precedence: jsonl lines in line order, then the sidecar; a later statement of a key replaces an
 *    earlier one (as valohai-utils' shallow merge does), except `valohai.tags` and
 *    `valohai.dataset-versions`, which accumulate (de-duplicated).
 *  - Malformed metadata never fails the run: a line or sidecar that is not a JSON object is skipped, a key
 *    with the wrong type is skipped, each with one line naming the file (and jsonl line) and what is wrong.
 *  - Two outputs claiming one datum alias: the alias is not moved at all (a wrong "production" pointer is
 *    worse than a stale one), and the warning names both files.
 *  - Unknown `valohai.*` keys are kept as properties, with a warning; `valohai.model-versions` is not
 *    built (models are not made from outputs yet) and says so.
 */
import path from 'node:path';
import { NAME_RE } from '../catalog/store-records.js';
import { relativePathProblem } from '../util/path-rules.js';
import { parseUri } from '../uri/parse.js';
import { describeError } from '../util/errors.js';

export const METADATA_JSONL = 'valohai.metadata.jsonl';
export const SIDECAR_SUFFIX = '.metadata.json';

export interface FileMetadata {
  tags: string[];
  alias?: string;
  properties: Record<string, unknown>;
  /** The dataset versions this file joins, as stated for it (one per URI). */
  versions: VersionStatement[];
  /** Where its metadata came from ("valohai.metadata.jsonl line 3", "a.csv.metadata.json"). */
  sources: string[];
}

/** What a `valohai.dataset-versions` element says about a version. */
interface VersionFields {
  uri: string;
  collection: string;
  version: string;
  /** Base version (`from`), name or alias, as given. */
  from?: { uri: string; collection: string; selector: string };
  exclude: string[];
  targetingAliases: string[];
  packaging: boolean;
}

/** One `valohai.dataset-versions` element as stated for one file. */
export interface VersionStatement extends VersionFields {
  /** Where it was stated. */
  where: string;
}

/** A version to build: the statements of every file that names it, merged. */
export interface DatasetVersionRequest extends VersionFields {
  /** Output paths that name this version. */
  files: string[];
  /** Where it was first declared. */
  source: string;
}

export interface MetadataPlan {
  byPath: Map<string, FileMetadata>;
  /** Metadata files applied cleanly: not uploaded. */
  consumed: Set<string>;
  versions: Map<string, DatasetVersionRequest>;
  warnings: string[];
}

export interface MetadataInput {
  /** Paths in the run's tree that may be outputs (regular files and symlinks), relative to outputs/. */
  files: readonly string[];
  /** Paths live-uploaded in this run (gone from the tree, still outputs). */
  live: readonly string[];
  /** Read a tree file's text (sidecars, the jsonl). */
  read: (p: string) => Promise<string>;
  /** The outputs mountpoint, so an absolute `"file": "/valohai/outputs/x"` in the jsonl is understood. */
  outputsDir?: string;
}

interface Statement {
  file: string;
  metadata: Record<string, unknown>;
  /** The metadata file it came from and, for the jsonl, the line. */
  from: string;
  where: string;
}

export async function planMetadata(input: MetadataInput): Promise<MetadataPlan> {
  const warnings: string[] = [];
  const tainted = new Set<string>();
  const warn = (file: string, line: string) => {
    tainted.add(file);
    warnings.push(line);
  };
  const inTree = new Set(input.files);
  const live = new Set(input.live);
  const exists = (p: string) => inTree.has(p) || live.has(p);

  const metadataFiles: string[] = [];
  const statements: Statement[] = [];

  if (inTree.has(METADATA_JSONL)) {
    metadataFiles.push(METADATA_JSONL);
    let text: string | undefined;
    try {
      text = await input.read(METADATA_JSONL);
    } catch (err) {
      warn(METADATA_JSONL, `warning: ${METADATA_JSONL}: cannot read (${describeError(err)}); uploaded as an ordinary output`);
    }
    if (text !== undefined) statements.push(...parseJsonl(text, input.outputsDir, warn));
  }

  for (const p of input.files) {
    if (!p.endsWith(SIDECAR_SUFFIX) || p === METADATA_JSONL) continue;
    const target = p.slice(0, -SIDECAR_SUFFIX.length);
    if (!exists(target) || target === '' || target.endsWith('/')) {
      if (inTree.has(p)) {
        // Not a sidecar of anything: an ordinary output that happens to end in .metadata.json, unless the
        // job clearly meant it as one; either way it is uploaded, so only say so.
        metadataFiles.push(p);
        warn(p, `warning: ${p}: metadata for "${target}", which is not among the outputs; uploaded as an ordinary output`);
      }
      continue;
    }
    metadataFiles.push(p);
    let doc: unknown;
    try {
      doc = JSON.parse(await input.read(p));
    } catch (err) {
      warn(p, `warning: ${p}: not valid JSON (${describeError(err)}); no metadata applied to "${target}", the sidecar is uploaded as an ordinary output`);
      continue;
    }
    if (!isObject(doc)) {
      warn(p, `warning: ${p}: expected a JSON object, got ${typeName(doc)}; no metadata applied to "${target}", the sidecar is uploaded as an ordinary output`);
      continue;
    }
    statements.push({ file: target, metadata: doc, from: p, where: p });
  }

  const metadataSet = new Set(metadataFiles);
  const byPath = new Map<string, FileMetadata>();
  for (const s of statements) {
    if (!exists(s.file)) {
      warn(s.from, `warning: ${s.where}: metadata for "${s.file}", which is not among the outputs`);
      continue;
    }
    if (metadataSet.has(s.file)) {
      warn(s.from, `warning: ${s.where}: metadata for "${s.file}", which is itself a metadata file`);
      continue;
    }
    let meta = byPath.get(s.file);
    if (!meta) byPath.set(s.file, (meta = { tags: [], properties: {}, versions: [], sources: [] }));
    meta.sources.push(s.where);
    applyStatement(meta, s, (line) => warn(s.from, line));
  }

  resolveAliasConflicts(byPath, warnings);
  const versions = collectVersions(byPath, warnings);
  const consumed = new Set(metadataFiles.filter((f) => !tainted.has(f)));
  return { byPath, consumed, versions, warnings };
}

function parseJsonl(text: string, outputsDir: string | undefined, warn: (file: string, line: string) => void): Statement[] {
  const out: Statement[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    const where = `${METADATA_JSONL} line ${i + 1}`;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (err) {
      warn(METADATA_JSONL, `warning: ${where}: not valid JSON (${describeError(err)}); line skipped`);
      return;
    }
    if (!isObject(doc) || typeof doc.file !== 'string' || !isObject(doc.metadata)) {
      warn(METADATA_JSONL, `warning: ${where}: expected {"file": "<path>", "metadata": {…}}; line skipped`);
      return;
    }
    const file = normaliseFile(doc.file, outputsDir);
    if (typeof file !== 'string') {
      warn(METADATA_JSONL, `warning: ${where}: "file" ${JSON.stringify(doc.file)} ${file.problem}; line skipped`);
      return;
    }
    out.push({ file, metadata: doc.metadata, from: METADATA_JSONL, where });
  });
  return out;
}

/** A jsonl `file` value → a path relative to outputs/, or what is wrong with it. */
function normaliseFile(file: string, outputsDir: string | undefined): string | { problem: string } {
  let p = file;
  if (outputsDir && p.startsWith(`${path.resolve(outputsDir)}/`)) p = p.slice(path.resolve(outputsDir).length + 1);
  while (p.startsWith('./')) p = p.slice(2);
  const bad = relativePathProblem(p);
  return bad ? { problem: `is not a path inside outputs/ (the path ${bad})` } : p;
}

function applyStatement(meta: FileMetadata, s: Statement, warn: (line: string) => void): void {
  for (const [key, value] of Object.entries(s.metadata)) {
    const bad = (what: string) => warn(`warning: ${s.where}: "${key}" for "${s.file}" ${what}; key ignored`);
    switch (key) {
      case 'valohai.tags':
        if (!Array.isArray(value) || !value.every((t) => typeof t === 'string' && t !== '' && !t.includes('\0'))) {
          bad(`must be a list of non-empty strings, got ${typeName(value)}`);
        } else for (const t of value as string[]) if (!meta.tags.includes(t)) meta.tags.push(t);
        break;
      case 'valohai.alias':
        if (typeof value !== 'string') bad(`must be a single alias name (a string), got ${typeName(value)}`);
        else if (!NAME_RE.test(value)) bad(`${JSON.stringify(value)} is not a valid alias name (${NAME_RE.source})`);
        else meta.alias = value;
        break;
      case 'valohai.dataset-versions':
        if (!Array.isArray(value)) bad(`must be a list of dataset version URIs or objects, got ${typeName(value)}`);
        else {
          value.forEach((item, i) => {
            const stated = datasetVersionOf(item, (what) => warn(`warning: ${s.where}: "${key}" item ${i + 1} for "${s.file}" ${what}`));
            if (stated && !meta.versions.some((v) => v.uri === stated.uri)) meta.versions.push({ ...stated, where: s.where });
          });
        }
        break;
      case 'valohai.model-versions':
        warn(`warning: ${s.where}: "${key}" for "${s.file}": model versions are not built from outputs by vhfs yet; key ignored`);
        break;
      default:
        if (key.startsWith('valohai.')) {
          warn(`warning: ${s.where}: unknown key "${key}" for "${s.file}"; kept as a custom property`);
        }
        meta.properties[key] = value;
    }
  }
}

const VERSION_OBJECT_KEYS = new Set(['uri', 'from', 'exclude', 'targeting_aliases', 'packaging', 'start_fresh']);

/** One `valohai.dataset-versions` element → a request (or undefined after a warning). */
function datasetVersionOf(item: unknown, bad: (what: string) => void): VersionFields | undefined {
  const obj: Record<string, unknown> | undefined = typeof item === 'string' ? { uri: item } : isObject(item) ? item : undefined;
  if (!obj) return void bad(`must be a "dataset://<name>/<version>" string or an object with "uri", got ${typeName(item)}; ignored`);
  if (typeof obj.uri !== 'string') return void bad(`has no "uri" string; ignored`);
  const target = parseCollection(obj.uri);
  if (typeof target === 'string') return void bad(`${JSON.stringify(obj.uri)}: ${target}; ignored`);
  const req: VersionFields = {
    uri: `dataset://${target.name}/${target.selector}`, collection: target.name, version: target.selector,
    exclude: [], targetingAliases: [], packaging: false,
  };
  for (const key of Object.keys(obj)) if (!VERSION_OBJECT_KEYS.has(key)) bad(`(${req.uri}): unknown key "${key}" ignored`);
  if (obj.from !== undefined) {
    const base = typeof obj.from === 'string' ? parseCollection(obj.from) : `must be a string, got ${typeName(obj.from)}`;
    if (typeof base === 'string') return void bad(`(${req.uri}): "from" ${typeof obj.from === 'string' ? JSON.stringify(obj.from) + ': ' : ''}${base}; version not created`);
    if (obj.start_fresh === true) bad(`(${req.uri}): "start_fresh": true, so "from" is ignored`);
    else req.from = { uri: `dataset://${base.name}/${base.selector}`, collection: base.name, selector: base.selector };
  }
  if (obj.exclude !== undefined) {
    if (Array.isArray(obj.exclude) && obj.exclude.every((e) => typeof e === 'string')) req.exclude = obj.exclude as string[];
    else bad(`(${req.uri}): "exclude" must be a list of file names, got ${typeName(obj.exclude)}; ignored`);
  }
  if (obj.targeting_aliases !== undefined) {
    const list = obj.targeting_aliases;
    if (Array.isArray(list) && list.every((a) => typeof a === 'string' && NAME_RE.test(a))) req.targetingAliases = list as string[];
    else bad(`(${req.uri}): "targeting_aliases" must be a list of alias names (${NAME_RE.source}); ignored`);
  }
  if (obj.packaging !== undefined) {
    if (typeof obj.packaging === 'boolean') req.packaging = obj.packaging;
    else bad(`(${req.uri}): "packaging" must be true or false, got ${typeName(obj.packaging)}; ignored`);
  }
  return req;
}

function parseCollection(uri: string): { name: string; selector: string } | string {
  try {
    const parsed = parseUri(uri);
    if (parsed.kind === 'dataset') return parsed;
    if (parsed.kind === 'model') return 'a model URI (model versions are not built from outputs)';
    return 'not a dataset://<name>/<version> URI';
  } catch (err) {
    return describeError(err);
  }
}

function resolveAliasConflicts(byPath: Map<string, FileMetadata>, warnings: string[]): void {
  const claims = new Map<string, string[]>();
  for (const p of [...byPath.keys()].sort()) {
    const alias = byPath.get(p)!.alias;
    if (alias) claims.set(alias, [...(claims.get(alias) ?? []), p]);
  }
  for (const [alias, paths] of claims) {
    if (paths.length < 2) continue;
    warnings.push(`warning: datum alias "${alias}" is claimed by ${paths.length} outputs (${paths.map((p) => `"${p}" (${byPath.get(p)!.sources.join(', ')})`).join(', ')}); alias not moved`);
    for (const p of paths) delete byPath.get(p)!.alias;
  }
}

function collectVersions(byPath: Map<string, FileMetadata>, warnings: string[]): Map<string, DatasetVersionRequest> {
  const versions = new Map<string, DatasetVersionRequest>();
  const paths = [...byPath.keys()].sort();
  for (const p of paths) {
    for (const stated of byPath.get(p)!.versions) {
      const { where, ...req } = stated;
      const uri = req.uri;
      const have = versions.get(uri);
      if (!have) {
        versions.set(uri, { ...req, files: [p], source: where, exclude: [...req.exclude], targetingAliases: [...req.targetingAliases] });
        continue;
      }
      have.files.push(p);
      if (req.from && have.from && req.from.uri !== have.from.uri) {
        warnings.push(`warning: ${where}: ${uri} "from" ${req.from.uri} conflicts with ${have.from.uri} (${have.source}); using ${have.from.uri}`);
      } else if (req.from && !have.from) have.from = req.from;
      for (const e of req.exclude) if (!have.exclude.includes(e)) have.exclude.push(e);
      for (const a of req.targetingAliases) if (!have.targetingAliases.includes(a)) have.targetingAliases.push(a);
      have.packaging ||= req.packaging;
    }
  }
  return versions;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}
