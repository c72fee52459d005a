// Input definitions → `InputSpec[]`: inputs.json, valohai.yaml steps and `--input` flags (README.md,
// "Using it"), following Valohai's valohai.yaml input items.
//
// Three sources, one result:
//   JSON file      `{ "inputs": [ { "name": "x", "default": "uri" | ["uri", …], … } ] }`, a bare array of
//                  such items, or the short map `{ "<name>": "uri" | ["uri", …] | { <item without name> } }`.
//                  The list form is chosen iff the top level is an array, or an object whose only key
//                  is `inputs` holding an array of objects; anything else is the map form.
//   valohai.yaml   a list whose `- step: { name, inputs: [...], parameters: [...] }` entries are steps
//                  (other entries, e.g. `- pipeline:`, are ignored); `options.step` picks one, or the file
//                  must have exactly one. Step parameter defaults feed `{parameter:x}` interpolation.
//   CLI flags      repeated `NAME=URI[,URI…]`; a flag repeated for one name appends. A comma splits only
//                  where a new URI starts (`scheme://`, `/`, `./`, `../`), so a comma inside an URL query
//                  or an object key stays part of it. `NAME=` gives the input no URI.
// `applyInputFlags` overlays flags on file definitions (given URIs replace the defaults, as `vh exec run
// --name=URI` does); `checkRequiredInputs` rejects a non-optional input left without a URI.
//
// Input items follow valohai-yaml's schema and casting rules (valohai.yaml `inputs`): keys are `name`
// (≤ 64 characters, unique, and — because it becomes a directory — not `.`/`..`, no `/`, no control
// characters), `default`, `optional`, `description`, `filename`, `keep-directories`, `download`; any other
// key is an error naming it. `keep-directories`: true → full, false/null/missing/"" → none, strings are
// lower-cased and must be none|full|suffix. `download`: missing/null → always, strings lower-cased,
// always|on-demand. `default: ""` (or `[]`, or null) means no URI. `filename` must be one path segment.
//
// Errors are VhfsError BAD_ARGUMENT (BAD_URI for a URI, NOT_FOUND for a missing file, UNSUPPORTED when
// YAML cannot be read) with a message that starts with the file (or "command line") and the input.
//
// YAML: parsed with js-yaml 4, whose `load` is safe (it cannot construct functions or run code).
import { readFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import path from 'node:path';
import { VhfsError, isVhfsError } from '../util/errors.js';
import { interpolateParameters, parseUri, type ParsedUri } from '../uri/parse.js';
import type { KeepDirectories } from './layout.js';

export type { KeepDirectories } from './layout.js';
export type DownloadMode = 'always' | 'on-demand';
export type ParameterValues = Readonly<Record<string, string | number | boolean>>;

export interface InputSpec {
  name: string;
  uris: ParsedUri[];
  keepDirectories: KeepDirectories;
  filename?: string;
  optional: boolean;
  download: DownloadMode;
  description?: string;
}

export interface ConfigOptions {
  /** Values for `{parameter:x}`; for valohai.yaml they override the step's parameter defaults. */
  parameters?: ParameterValues;
  /** Directory relative local paths are resolved against (loadInputsFile: the file's directory). */
  cwd?: string;
  /** valohai.yaml: the step whose inputs to take. */
  step?: string;
}

const MAX_NAME = 64;
const ITEM_KEYS = ['name', 'default', 'optional', 'description', 'filename', 'keep-directories', 'download'];
const COMMAND_LINE = 'command line';

/** Read a JSON inputs file or a valohai.yaml (by extension `.yaml`/`.yml`). */
export async function loadInputsFile(file: string, options: ConfigOptions = {}): Promise<InputSpec[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new VhfsError('NOT_FOUND', `${file}: no such file`, { cause: err });
    throw new VhfsError('BAD_ARGUMENT', `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  const opts = { ...options, cwd: options.cwd ?? path.dirname(path.resolve(file)) };
  return /\.ya?ml$/i.test(file) ? parseValohaiYaml(text, file, opts) : parseInputsJson(text, file, opts);
}

/** Parse a JSON inputs file's text; `source` names the file in messages. */
export function parseInputsJson(text: string, source: string, options: ConfigOptions = {}): InputSpec[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new VhfsError('BAD_ARGUMENT', `${source}: invalid JSON: ${(err as Error).message}`, { cause: err });
  }
  const params = options.parameters ?? {};
  if (Array.isArray(doc)) return parseItems(doc, source, params, options);
  if (!isPlainObject(doc)) throw bad(source, `expected an object or an array at the top level, found ${typeName(doc)}`);
  const keys = Object.keys(doc);
  const list = doc.inputs;
  if (keys.length === 1 && Array.isArray(list) && list.every(isPlainObject)) return parseItems(list, source, params, options);
  return parseItems(keys.map((name) => mapEntry(name, doc[name], source)), source, params, options);
}

/** Parse a valohai.yaml's text and return the inputs of `options.step` (or of its only step). */
export function parseValohaiYaml(text: string, source: string, options: ConfigOptions = {}): InputSpec[] {
  const doc = loadYaml(text, source);
  if (!Array.isArray(doc)) throw bad(source, `expected a list of "- step:" entries at the top level, found ${typeName(doc)}`);
  const steps = doc.filter((e): e is { step: unknown } => isPlainObject(e) && 'step' in e).map((e, i) => {
    if (!isPlainObject(e.step) || typeof e.step.name !== 'string') throw bad(source, `step #${i + 1} has no name`);
    return e.step;
  });
  const step = pickStep(steps, source, options.step);
  const where = `${source}: step "${String(step.name)}"`;
  const inputs = step.inputs ?? [];
  if (!Array.isArray(inputs)) throw bad(where, `"inputs" must be a list, found ${typeName(inputs)}`);
  const params = { ...stepParameterDefaults(step.parameters, where), ...options.parameters };
  return parseItems(inputs, where, params, options);
}

/** Parse repeated `NAME=URI[,URI…]` flags into specs with default options. */
export function parseInputFlags(flags: readonly string[], options: ConfigOptions = {}): InputSpec[] {
  const byName = new Map<string, string[]>();
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw bad(COMMAND_LINE, `"${flag}": expected NAME=URI[,URI…]`);
    const name = flag.slice(0, eq);
    const value = flag.slice(eq + 1);
    const uris = value === '' ? [] : value.split(/,(?=[A-Za-z][A-Za-z0-9+.-]*:\/\/|\.{0,2}\/)/);
    byName.set(name, [...(byName.get(name) ?? []), ...uris]);
  }
  const items = [...byName].map(([name, uris]) => ({ name, default: uris }));
  return parseItems(items, COMMAND_LINE, options.parameters ?? {}, options);
}

/**
 * Overlay command-line specs on file definitions: a flag's URIs replace that input's defaults and keep
 * its options. A flag for an input the file does not define is an error, unless there are no definitions.
 */
export function applyInputFlags(definitions: readonly InputSpec[], flags: readonly InputSpec[]): InputSpec[] {
  if (definitions.length === 0) return [...flags];
  const byName = new Map(flags.map((f) => [f.name, f]));
  for (const f of flags) {
    if (!definitions.some((d) => d.name === f.name)) {
      throw bad(COMMAND_LINE, `unknown input "${f.name}" (defined inputs: ${definitions.map((d) => d.name).join(', ')})`);
    }
  }
  return definitions.map((d) => (byName.has(d.name) ? { ...d, uris: byName.get(d.name)!.uris } : d));
}

/** Throw for the first non-optional input without any URI. */
export function checkRequiredInputs(specs: readonly InputSpec[], source: string): void {
  const missing = specs.find((s) => !s.optional && s.uris.length === 0);
  if (missing) throw bad(source, `input "${missing.name}" is required but has no URI (no default, and none given)`);
}

/** valohai-yaml's cast for `keep-directories`. */
export function castKeepDirectories(value: unknown, where: string): KeepDirectories {
  if (value === true) return 'full';
  if (value === false || value === null || value === undefined || value === '') return 'none';
  if (typeof value === 'string') {
    const v = value.toLowerCase();
    if (v === 'none' || v === 'full' || v === 'suffix') return v;
  }
  throw bad(where, `keep-directories must be none, full, suffix, true or false, not ${JSON.stringify(value)}`);
}

/** valohai-yaml's cast for `download`. */
export function castDownload(value: unknown, where: string): DownloadMode {
  if (value === null || value === undefined) return 'always';
  if (typeof value === 'string') {
    const v = value.toLowerCase();
    if (v === 'always' || v === 'on-demand') return v;
  }
  throw bad(where, `download must be always or on-demand, not ${JSON.stringify(value)}`);
}

function parseItems(items: readonly unknown[], source: string, params: ParameterValues, options: ConfigOptions): InputSpec[] {
  const specs = items.map((item, i) => parseItem(item, source, i, params, options));
  const seen = new Set<string>();
  for (const s of specs) {
    if (seen.has(s.name)) throw bad(source, `input "${s.name}" is defined more than once`);
    seen.add(s.name);
  }
  return specs;
}

function parseItem(item: unknown, source: string, index: number, params: ParameterValues, options: ConfigOptions): InputSpec {
  if (!isPlainObject(item)) throw bad(source, `input #${index + 1} must be an object, found ${typeName(item)}`);
  const name = checkName(item.name, `${source}: input #${index + 1}`);
  const where = `${source}: input "${name}"`;
  for (const key of Object.keys(item)) {
    if (!ITEM_KEYS.includes(key)) {
      const alt = key.replace(/_/g, '-');
      const hint = alt !== key && ITEM_KEYS.includes(alt) ? ` (did you mean "${alt}"?)` : ` (allowed: ${ITEM_KEYS.join(', ')})`;
      throw bad(where, `unknown key "${key}"${hint}`);
    }
  }
  const spec: InputSpec = {
    name,
    uris: parseDefaults(item.default, where, params, options),
    keepDirectories: castKeepDirectories(item['keep-directories'], where),
    optional: optionalBoolean(item.optional, 'optional', where),
    download: castDownload(item.download, where),
  };
  if (item.filename !== undefined && item.filename !== null) spec.filename = checkFilename(item.filename, where);
  if (item.description !== undefined && item.description !== null) {
    if (typeof item.description !== 'string') throw bad(where, `description must be a string, not ${typeName(item.description)}`);
    spec.description = item.description;
  }
  return spec;
}

function checkName(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '') throw bad(where, `"name" must be a non-empty string, found ${typeName(value)}`);
  const q = JSON.stringify(value);
  if (value.length > MAX_NAME) throw bad(where, `name ${q} is longer than ${MAX_NAME} characters`);
  // The name becomes /valohai/inputs/<name>: it must be one safe path segment.
  if (value === '.' || value === '..' || value.includes('/') || /[\u0000-\u001f\u007f]/.test(value)) {
    throw bad(where, `name ${q} cannot be a directory name (no "/", ".", ".." or control characters)`);
  }
  return value;
}

function checkFilename(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '') throw bad(where, `filename must be a non-empty string, found ${typeName(value)}`);
  if (value === '.' || value === '..' || value.includes('/') || value.includes('\u0000') || Buffer.byteLength(value) > 255) {
    throw bad(where, `filename ${JSON.stringify(value)} must be a single file name (no "/", ".", "..", NUL; at most 255 bytes)`);
  }
  return value;
}

function optionalBoolean(value: unknown, key: string, where: string): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw bad(where, `${key} must be true or false, not ${JSON.stringify(value)}`);
  return value;
}

function parseDefaults(value: unknown, where: string, params: ParameterValues, options: ConfigOptions): ParsedUri[] {
  if (value === undefined || value === null || value === '') return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list)) throw bad(where, `default must be a URI or a list of URIs, not ${typeName(value)}`);
  return list.map((uri, i) => {
    if (typeof uri !== 'string') throw bad(where, `default[${i}] must be a URI string, not ${typeName(uri)}`);
    try {
      return parseUri(interpolateParameters(uri, params), { cwd: options.cwd });
    } catch (err) {
      if (isVhfsError(err)) throw new VhfsError(err.code, `${where}: ${err.message}`, { cause: err });
      throw err;
    }
  });
}

function mapEntry(name: string, value: unknown, source: string): Record<string, unknown> {
  if (typeof value === 'string' || Array.isArray(value) || value === null) return { name, default: value };
  if (!isPlainObject(value)) throw bad(`${source}: input "${name}"`, `expected a URI, a list of URIs or an input object, found ${typeName(value)}`);
  if (value.name !== undefined && value.name !== name) {
    throw bad(`${source}: input "${name}"`, `its "name" is ${JSON.stringify(value.name)}; leave it out or make it match`);
  }
  return { ...value, name };
}

function pickStep(steps: Array<Record<string, unknown>>, source: string, wanted: string | undefined): Record<string, unknown> {
  const names = steps.map((s) => String(s.name));
  if (wanted !== undefined) {
    const step = steps.find((s) => s.name === wanted);
    if (!step) throw bad(source, `no step named "${wanted}" (steps: ${names.join(', ') || 'none'})`);
    return step;
  }
  if (steps.length === 1) return steps[0];
  if (steps.length === 0) throw bad(source, 'no "- step:" entries');
  throw bad(source, `${steps.length} steps (${names.join(', ')}): choose one with --step NAME`);
}

function stepParameterDefaults(parameters: unknown, where: string): Record<string, string | number | boolean> {
  if (parameters === undefined || parameters === null) return {};
  if (!Array.isArray(parameters)) throw bad(where, `"parameters" must be a list, found ${typeName(parameters)}`);
  const out: Record<string, string | number | boolean> = {};
  for (const p of parameters) {
    if (!isPlainObject(p) || typeof p.name !== 'string') continue;
    const d = p.default;
    if (typeof d === 'string' || typeof d === 'number' || typeof d === 'boolean') out[p.name] = d;
  }
  return out;
}

function loadYaml(text: string, source: string): unknown {
  try {
    return yaml.load(text); // js-yaml 4: `load` is the safe loader (no JS-executing tags)
  } catch (err) {
    throw new VhfsError('BAD_ARGUMENT', `${source}: invalid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
}

function bad(where: string, problem: string): VhfsError {
  return new VhfsError('BAD_ARGUMENT', `${where}: ${problem}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}
