/**
 * Who produced the outputs: the execution identity every output datum carries as its `producer`
 * (lineage: spec §5.2 "which execution produced it, when, what code and parameters").
 *
 * Sources, first match wins:
 *  1. `--execution FILE`: either Valohai's `execution.json` (flat `valohai.*` keys, spec §2.4) or a plain
 *     `{ "id", "project", "step", "parameters", "commit" }` object. A `parameters.json` next to a
 *     Valohai `execution.json` supplies the parameters (spec §2.5). An explicit file that cannot be read
 *     is an error: the user asked for it.
 *  2. A Valohai job's environment (spec §2.2): `VH_EXECUTION_ID` (or `VH_JOB_ID` = `exec-<id>`),
 *     `VH_PROJECT_ID`, and `execution.json` / `parameters.json` from `VH_CONFIG_DIR` when present (a
 *     config file that cannot be parsed there only costs that detail, with a warning).
 *  3. Neither: a local execution id (UUIDv7) is made up, so one run's outputs still share an identity.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Producer } from '../catalog/types.js';
import { VhfsError } from '../util/errors.js';
import { uuidv7 } from '../util/ids.js';

export const OUTPUTS_TOOL = 'vhfs outputs';

/**
 * Dataset packaging is on when the execution's VH_ENABLE_DATASET_VERSION_PACKAGING is truthy: "1", "yes"
 * or "true" (any case), as the seed says.
 */
export function packagingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.VH_ENABLE_DATASET_VERSION_PACKAGING;
  return value !== undefined && /^(1|yes|true)$/i.test(value.trim());
}

export interface IdentityOptions {
  /** `--execution FILE`. */
  executionFile?: string;
  env?: NodeJS.ProcessEnv;
  warn?: (line: string) => void;
}

type Json = Record<string, unknown>;

export async function loadExecutionIdentity(opts: IdentityOptions = {}): Promise<Producer> {
  const env = opts.env ?? process.env;
  const warn = opts.warn ?? (() => {});
  const base: Producer = { tool: OUTPUTS_TOOL, host: os.hostname() };

  if (opts.executionFile) {
    const file = path.resolve(opts.executionFile);
    const doc = await readJsonObject(file);
    if (doc instanceof Error) throw new VhfsError('BAD_ARGUMENT', `--execution ${file}: ${doc.message}`);
    const fromDoc = identityFromDocument(doc);
    if (!fromDoc.executionId) {
      throw new VhfsError('BAD_ARGUMENT', `--execution ${file}: no execution id ("id" or "valohai.execution-id")`);
    }
    if (fromDoc.parameters === undefined) {
      const params = await readJsonObject(path.join(path.dirname(file), 'parameters.json'));
      if (!(params instanceof Error)) fromDoc.parameters = params;
    }
    return { ...base, ...fromDoc };
  }

  const envId = env.VH_EXECUTION_ID || (env.VH_JOB_ID?.startsWith('exec-') ? env.VH_JOB_ID.slice(5) : undefined);
  if (envId || env.VH_CONFIG_DIR) {
    const out: Producer = { ...base };
    if (env.VH_CONFIG_DIR) {
      for (const [name, apply] of [
        ['execution.json', (doc: Json) => Object.assign(out, identityFromDocument(doc))],
        ['parameters.json', (doc: Json) => { out.parameters = doc; }],
      ] as const) {
        const file = path.join(env.VH_CONFIG_DIR, name);
        const doc = await readJsonObject(file);
        if (doc instanceof Error) {
          if (!/ENOENT/.test(doc.message)) warn(`warning: ${file}: ${doc.message}; the outputs' lineage goes without it`);
        } else apply(doc);
      }
    }
    if (envId) out.executionId = envId;
    if (env.VH_PROJECT_ID) out.project = env.VH_PROJECT_ID;
    if (!out.executionId) out.executionId = uuidv7();
    return out;
  }
  return { ...base, executionId: uuidv7() };
}

/** Identity fields of a Valohai `execution.json` or of a plain `{id, project, step, parameters, commit}`. */
function identityFromDocument(doc: Json): Partial<Producer> {
  const str = (...keys: string[]) => {
    for (const k of keys) if (typeof doc[k] === 'string' && doc[k] !== '') return doc[k] as string;
    if (typeof doc[keys[0]] === 'number') return String(doc[keys[0]]);
    return undefined;
  };
  const out: Partial<Producer> = {};
  const id = str('valohai.execution-id', 'id', 'executionId');
  const project = str('valohai.project-id', 'project', 'valohai.project-name');
  const step = str('valohai.execution-step', 'step');
  const commit = str('valohai.commit-identifier', 'commit');
  if (id) out.executionId = id;
  if (project) out.project = project;
  if (step) out.step = step;
  if (commit) out.commit = commit;
  if (doc.parameters && typeof doc.parameters === 'object' && !Array.isArray(doc.parameters)) {
    out.parameters = doc.parameters as Json;
  }
  return out;
}

async function readJsonObject(file: string): Promise<Json | Error> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    return new Error(`cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const doc = JSON.parse(text) as unknown;
    if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return new Error('is not a JSON object');
    return doc as Json;
  } catch (err) {
    return new Error(`is not valid JSON (${(err as Error).message})`);
  }
}
