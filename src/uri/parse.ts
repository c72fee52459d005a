// Input URIs → typed `ParsedUri`: the URI kinds, wildcards and parameters of Valohai's valohai.yaml
// inputs (README.md, "URI forms").
//
// Grammar (the scheme is matched case-insensitively; everything after it is case-sensitive):
//   datum://<uuid>                       a datum by id (any 8-4-4-4-12 hex UUID; stored lower-cased)
//   datum://<alias>                      a datum alias (anything that is not a UUID and is a valid name)
//   dataset://<name>/<version-or-alias>  a dataset version, or the version an alias points to
//   model://<name>/<version>             a model version
//   s3://<bucket>/<key>                  an object (or, with `*`/`**` in the key, many; see glob.ts)
//   gs://<bucket>/<key>                  same
//   az://<account>/<container>/<blob>    Azure blob; `azure://` is the same (and the canonical spelling)
//   http(s)://[user[:password]@]host/path[?query]   exactly one file, named after its last path segment
//   /abs/path, ./rel, ../rel, file:///abs   a local file (or, with wildcards, files)
// Names (dataset, model, version, alias) match NAME_PATTERN, as in docs/DESIGN.md.
//
// Decisions:
//  - Azure keeps account and container separately (`account`, `container`) and also as
//    `bucket = "<account>/<container>"`, so code that only needs "the bucket" treats all stores alike.
//  - Object keys are taken literally (no percent-decoding): S3/GCS/Azure keys may contain `%`, `?`, `#`.
//    A key ending in `/` names a folder, not an object, and is rejected with a hint to use `/**`.
//  - Local paths must start with `/`, `./`, `../` or be `file://` URIs, so a typo such as `s3//b/k` or
//    `images/x.jpg` is an error rather than a silently relative path. Relative paths are resolved
//    against `options.cwd` (default: the process's working directory). `..` after a wildcard is rejected.
//  - `http(s)` file names are the raw last path segment, query and fragment removed, not percent-decoded
//    (what valohai-utils' `uri_to_filename` does); wildcards are only looked for in the path.
//  - A leftover `{parameter:x}` is an error: interpolate first (`interpolateParameters`).
//  - `swift://` is recognised but UNSUPPORTED; any other scheme is BAD_URI.
// Every error is a VhfsError whose message starts with the URI, passwords and signatures masked (`redact`).
import path from 'node:path';
import { VhfsError } from '../util/errors.js';
import { globProblem, hasWildcard, wildcardRoot as rootOf } from './glob.js';

export type ParsedUri = DatumUri | CollectionUri | ObjectUri | HttpUri | LocalUri;

export interface DatumUri {
  kind: 'datum';
  /** The datum id (lower-cased) when `byId`, otherwise the alias name. */
  ref: string;
  byId: boolean;
}

export interface CollectionUri {
  kind: 'dataset' | 'model';
  name: string;
  /** Version name or alias name; which one is only known when the catalog resolves it. */
  selector: string;
}

interface ObjectUriBase {
  kind: 'object';
  /** The key inside the bucket (for Azure: the blob name inside the container); never empty. */
  key: string;
  wildcard: boolean;
  /** Set iff `wildcard`: the key's prefix up to and including the last `/` before the first `*`. */
  wildcardRoot?: string;
}

export interface S3GsUri extends ObjectUriBase {
  scheme: 's3' | 'gs';
  bucket: string;
}

export interface AzureUri extends ObjectUriBase {
  scheme: 'az';
  account: string;
  container: string;
  /** `<account>/<container>`: the unit that plays the role of a bucket. */
  bucket: string;
}

export type ObjectUri = S3GsUri | AzureUri;

export interface HttpUri {
  kind: 'https';
  scheme: 'http' | 'https';
  /** The URL as given (credentials included: they are needed to fetch it). Log `redact(url)`. */
  url: string;
  /** Last path segment, query and fragment removed. */
  filename: string;
}

export interface LocalUri {
  kind: 'local';
  /** Absolute, normalised path (wildcards kept). */
  path: string;
  wildcard: boolean;
  /** Set iff `wildcard`: the absolute path's prefix up to and including the last `/` before the first `*`. */
  wildcardRoot?: string;
}

export interface ParseOptions {
  /** Directory that `./` and `../` paths are relative to. Default: `process.cwd()`. */
  cwd?: string;
}

/** Dataset, model, version and alias names (docs/DESIGN.md). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SCHEME_PATTERN = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const SCHEME_WITHOUT_SLASHES = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;
const EXPECTED = 'expected datum://, dataset://, model://, s3://, gs://, az://, https://, or a local path';
const WILDCARDS_NOT_HERE = 'wildcards are only allowed in store and local paths';

/** Parse one input URI. Throws VhfsError BAD_URI (or UNSUPPORTED for `swift://`). */
export function parseUri(input: string, options: ParseOptions = {}): ParsedUri {
  checkText(input);
  const leftover = /\{parameter:[^}]*\}/.exec(input);
  if (leftover) fail(input, `parameter reference ${leftover[0]} was not interpolated (no parameter values given)`);
  const m = SCHEME_PATTERN.exec(input);
  if (!m) return parseSchemeless(input, options);
  const scheme = m[1].toLowerCase();
  const rest = input.slice(m[0].length);
  switch (scheme) {
    case 'datum': return parseDatum(input, rest);
    case 'dataset':
    case 'model': return parseCollection(input, scheme, rest);
    case 's3':
    case 'gs': return parseBucketObject(input, scheme, rest);
    case 'az':
    case 'azure': return parseAzure(input, rest);
    case 'http':
    case 'https': return parseHttp(input, scheme);
    case 'file': return parseFile(input, rest);
    case 'swift':
      throw new VhfsError('UNSUPPORTED', `${redact(input)}: OpenStack Swift URIs are not supported by vhfs`);
    default: fail(input, `unknown URI scheme "${scheme}" (${EXPECTED})`);
  }
}

/** The URI text for `parsed`: `parseUri(formatUri(p))` deep-equals `p`. Keeps credentials; see `displayUri`. */
export function formatUri(parsed: ParsedUri): string {
  switch (parsed.kind) {
    case 'datum': return `datum://${parsed.ref}`;
    case 'dataset':
    case 'model': return `${parsed.kind}://${parsed.name}/${parsed.selector}`;
    case 'object':
      return parsed.scheme === 'az'
        ? `azure://${parsed.account}/${parsed.container}/${parsed.key}`
        : `${parsed.scheme}://${parsed.bucket}/${parsed.key}`;
    case 'https': return parsed.url;
    case 'local': return parsed.path;
  }
}

/** `formatUri` with secrets masked: for messages and logs. */
export function displayUri(parsed: ParsedUri): string {
  return redact(formatUri(parsed));
}

/**
 * Mask secrets in a URI string for messages and logs: the password of `user:password@` (or the whole
 * user info when it has no password, since that is usually a token), and the values of query
 * parameters that look like signatures or tokens (pre-signed URLs). Control characters are escaped
 * so a message stays on one line. Works on any string, parseable or not.
 */
export function redact(uri: string): string {
  let out = uri.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)@/, (_all, scheme: string, info: string) => {
    const colon = info.indexOf(':');
    return `${scheme}${colon >= 0 ? `${info.slice(0, colon)}:***` : '***'}@`;
  });
  out = out.replace(/([?&][^=&#]*(?:sig|signature|token|credential|secret|password|key)[^=&#]*=)[^&#]*/gi, '$1***');
  return out.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Replace every `{parameter:<name>}` in `uri` with the parameter's value, as Valohai does in
 * valohai.yaml input URIs. An unknown name, or an empty or unterminated reference, is a BAD_URI error
 * naming the URI and the known parameters.
 */
export function interpolateParameters(uri: string, params: Readonly<Record<string, string | number | boolean>>): string {
  const broken = /\{parameter:(?:\}|[^}]*$)/.exec(uri);
  if (broken) fail(uri, `malformed parameter reference "${broken[0]}" (expected {parameter:<name>})`);
  return uri.replace(/\{parameter:([^}]*)\}/g, (_all, name: string) => {
    if (!Object.prototype.hasOwnProperty.call(params, name)) {
      const known = Object.keys(params);
      fail(uri, `unknown parameter "${name}" in {parameter:${name}} (${known.length ? `known: ${known.join(', ')}` : 'no parameters are defined'})`);
    }
    return String(params[name]);
  });
}

function fail(uri: string, problem: string): never {
  throw new VhfsError('BAD_URI', `${redact(uri)}: ${problem}`);
}

function checkText(input: string): void {
  if (typeof input !== 'string') fail(String(input), `not a string (${EXPECTED})`);
  if (input === '') throw new VhfsError('BAD_URI', `"": empty URI (${EXPECTED})`);
  if (input.trim() === '') throw new VhfsError('BAD_URI', `${JSON.stringify(input)}: blank URI (${EXPECTED})`);
  if (input.trim() !== input) fail(JSON.stringify(input), 'leading or trailing whitespace');
  const ctl = CONTROL_CHAR.exec(input);
  if (ctl) fail(input, `control character \\u${ctl[0].charCodeAt(0).toString(16).padStart(4, '0')} at offset ${ctl.index}`);
}

function rejectWildcards(input: string, text: string = input): void {
  if (hasWildcard(text)) fail(input, WILDCARDS_NOT_HERE);
}

function checkPattern(input: string, pattern: string): void {
  const problem = globProblem(pattern);
  if (problem !== undefined) fail(input, problem);
}

function parseDatum(input: string, rest: string): DatumUri {
  rejectWildcards(input);
  if (rest === '') fail(input, 'missing datum id or alias (datum://<uuid> or datum://<alias>)');
  if (rest.includes('/')) fail(input, 'a datum URI has no path (datum://<uuid> or datum://<alias>)');
  if (UUID_PATTERN.test(rest)) return { kind: 'datum', ref: rest.toLowerCase(), byId: true };
  if (!NAME_PATTERN.test(rest)) fail(input, `"${rest}" is neither a datum id (UUID) nor a valid alias name (${NAME_PATTERN.source})`);
  return { kind: 'datum', ref: rest, byId: false };
}

function parseCollection(input: string, kind: 'dataset' | 'model', rest: string): CollectionUri {
  rejectWildcards(input);
  const form = kind === 'dataset' ? 'dataset://<name>/<version-or-alias>' : 'model://<name>/<version>';
  const what = kind === 'dataset' ? 'version or alias' : 'version';
  const parts = rest.split('/');
  const [name, selector = ''] = parts;
  if (name === '') fail(input, `missing ${kind} name (${form})`);
  if (!NAME_PATTERN.test(name)) fail(input, `invalid ${kind} name "${name}" (must match ${NAME_PATTERN.source})`);
  if (parts.length > 2) {
    fail(input, `too many path segments (${form}); a ${kind} URI names a whole version, sub-paths are not supported`);
  }
  if (selector === '') fail(input, `missing ${what} (${form})`);
  if (!NAME_PATTERN.test(selector)) fail(input, `invalid ${what} "${selector}" (must match ${NAME_PATTERN.source})`);
  return { kind, name, selector };
}

function checkBucketPart(input: string, label: string, value: string, form: string): void {
  if (value === '') fail(input, `missing ${label} (${form})`);
  if (/\s/.test(value)) fail(input, `${label} "${value}" contains whitespace`);
  if (hasWildcard(value)) fail(input, `wildcards are not allowed in the ${label}, only in the key`);
}

/** Shared key checks for s3/gs/azure; returns the wildcard fields. */
function checkKey(input: string, key: string, form: string): Pick<ObjectUriBase, 'wildcard' | 'wildcardRoot'> {
  if (key === '') fail(input, `missing object key (${form})`);
  const wildcard = hasWildcard(key);
  if (key.endsWith('/')) {
    fail(input, `key "${key}" ends with "/" and names a folder, not an object (use ${key}** to take everything under it)`);
  }
  if (!wildcard) return { wildcard };
  checkPattern(input, key);
  return { wildcard, wildcardRoot: rootOf(key) };
}

function parseBucketObject(input: string, scheme: 's3' | 'gs', rest: string): S3GsUri {
  const form = `${scheme}://<bucket>/<key>`;
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  checkBucketPart(input, 'bucket', bucket, form);
  return { kind: 'object', scheme, bucket, key, ...checkKey(input, key, form) };
}

function parseAzure(input: string, rest: string): AzureUri {
  const form = 'azure://<account>/<container>/<blob>';
  const [account, container = '', ...blob] = rest.split('/');
  const key = blob.join('/');
  checkBucketPart(input, 'storage account', account, form);
  checkBucketPart(input, 'container', container, form);
  return { kind: 'object', scheme: 'az', account, container, bucket: `${account}/${container}`, key, ...checkKey(input, key, form) };
}

function parseHttp(input: string, scheme: 'http' | 'https'): HttpUri {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    fail(input, 'not a valid URL');
  }
  if (url.hostname === '') fail(input, 'missing host name');
  // The path as written (URL.pathname would re-encode and resolve `..`): after the authority, before ? or #.
  const afterScheme = input.slice(input.indexOf('://') + 3);
  const pathStart = afterScheme.search(/[/?#]/);
  const rawPath = pathStart < 0 || afterScheme[pathStart] !== '/' ? '' : afterScheme.slice(pathStart).split(/[?#]/)[0];
  rejectWildcards(input, rawPath);
  const filename = rawPath.slice(rawPath.lastIndexOf('/') + 1);
  if (filename === '') fail(input, 'the URL path has no file name (it must end in a file name, e.g. https://host/data.csv)');
  if (filename === '.' || filename === '..') fail(input, `"${filename}" is not a usable file name`);
  return { kind: 'https', scheme, url: input, filename };
}

function parseFile(input: string, rest: string): LocalUri {
  // file:///abs and file://localhost/abs name this host; any other host cannot be read locally.
  const withoutHost = rest.startsWith('localhost/') ? rest.slice('localhost'.length) : rest;
  if (!withoutHost.startsWith('/')) fail(input, 'file URIs must name an absolute path on this host (file:///abs/path)');
  let decoded: string;
  try {
    decoded = decodeURIComponent(withoutHost.split(/[?#]/)[0]);
  } catch {
    fail(input, 'invalid percent-encoding');
  }
  if (decoded.includes('\u0000')) fail(input, 'the path contains a NUL character');
  return localUri(input, decoded, '/');
}

function parseSchemeless(input: string, options: ParseOptions): LocalUri {
  if (input.startsWith('/') || input.startsWith('./') || input.startsWith('../') || input === '.' || input === '..') {
    return localUri(input, input, options.cwd ?? process.cwd());
  }
  const m = SCHEME_WITHOUT_SLASHES.exec(input);
  if (m && m[1].length > 1) fail(input, `malformed URI: expected "${m[1]}://" after the scheme`);
  fail(input, `not a URI (${EXPECTED}); local paths must start with "/", "./" or "../"`);
}

function localUri(input: string, raw: string, base: string): LocalUri {
  const wildcard = hasWildcard(raw);
  if (wildcard) {
    checkPattern(input, raw);
    const afterStar = raw.slice(raw.indexOf('*')).split('/');
    if (afterStar.includes('..') || afterStar.includes('.')) fail(input, '"." and ".." are not allowed after a wildcard');
  }
  const abs = path.resolve(base, raw);
  return wildcard ? { kind: 'local', path: abs, wildcard, wildcardRoot: rootOf(abs) } : { kind: 'local', path: abs, wildcard };
}
