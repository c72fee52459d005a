// Wildcard patterns for store keys and local paths (Valohai input wildcards and `keep-directories`;
// README.md, "URI forms").
//
// Grammar — a pattern is a `/`-separated key in which `*` is the only special character:
//   `*`   matches any run of characters except `/` (zero or more): one path level;
//   `**`  matches any run of characters including `/` (zero or more): any depth;
//   `**/` at the start of the pattern or right after a `/` matches zero or more whole directories,
//         so `**/*.json` matches `a.json` as well as `x/y/a.json` (what shells with globstar do, and
//         what users of Valohai's `**/*.json` examples expect);
//   `***` and longer runs are rejected: they have no meaning and are almost always a typo.
// Everything else, `?`, `[`, `{`, `.`, `\` included, is literal: S3 keys may contain any of them.
// There is no dot-file rule: `*` matches `.hidden` (object stores have no hidden files).
// Examples: `foo/bar/**.jpg` matches `foo/bar/x.jpg` and `foo/bar/d1/a.jpg`; `img/*.jpg` matches
// `img/a.jpg` but not `img/d/a.jpg`.
//
// Matching is a direct NFA simulation over the pattern's tokens, not a RegExp: it runs in
// O(key length × pattern length) whatever the pattern, so a pattern such as `**a**a**a**b` cannot
// make a listing of millions of keys backtrack exponentially, and no character of the pattern can
// ever be interpreted as regex syntax.
//
// Two prefixes serve the layers above:
//   `listPrefix`   — the literal text before the first `*` (`foo/ba*` → `foo/ba`): the narrowest
//                    prefix to list the store with;
//   `wildcardRoot` — that prefix cut after its last `/` (`foo/ba*` → `foo/`): what
//                    `keep-directories: suffix` strips (valohai.yaml input option).
// Folder-marker keys (ending in `/`) are the resolver's to skip; the matcher treats keys as text.

/** One token of a compiled pattern. */
type Token =
  | { t: 'char'; c: string }  // one literal UTF-16 code unit
  | { t: 'star' }             // `*`: any run without '/'
  | { t: 'globstar' }         // `**` inside a segment: any run
  | { t: 'globdir' };         // `**` starting a segment and followed by '/': the next token is that '/'

export interface GlobMatcher {
  readonly pattern: string;
  readonly listPrefix: string;
  readonly wildcardRoot: string;
  /** True when the whole key matches the whole pattern. */
  match(key: string): boolean;
}

/** True when `text` contains a wildcard. */
export function hasWildcard(text: string): boolean {
  return text.includes('*');
}

/** The literal text before the first `*` (the whole pattern when it has none). */
export function listPrefix(pattern: string): string {
  const star = pattern.indexOf('*');
  return star < 0 ? pattern : pattern.slice(0, star);
}

/**
 * The prefix up to and including the last `/` before the first `*` (what Valohai's `keep-directories:
 * suffix` strips); `''` when the first `*` is in the first segment. For a pattern without wildcards,
 * the part up to its last `/`.
 */
export function wildcardRoot(pattern: string): string {
  const prefix = listPrefix(pattern);
  return prefix.slice(0, prefix.lastIndexOf('/') + 1);
}

/** What is wrong with `pattern` as a wildcard pattern, or undefined when it is fine. */
export function globProblem(pattern: string): string | undefined {
  if (/\*{3,}/.test(pattern)) return `"${pattern.match(/\*{3,}/)![0]}" is not a wildcard (use * for one level or ** for any depth)`;
  return undefined;
}

/** Compile `pattern` (see the grammar above). Throws a plain Error for an invalid pattern. */
export function compileGlob(pattern: string): GlobMatcher {
  const problem = globProblem(pattern);
  if (problem !== undefined) throw new Error(`${pattern}: ${problem}`);
  const tokens = tokenize(pattern);
  return {
    pattern,
    listPrefix: listPrefix(pattern),
    wildcardRoot: wildcardRoot(pattern),
    match: (key: string) => simulate(tokens, key),
  };
}

function tokenize(pattern: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c !== '*') {
      tokens.push({ t: 'char', c });
    } else if (pattern[i + 1] !== '*') {
      tokens.push({ t: 'star' });
    } else {
      const segmentStart = i === 0 || pattern[i - 1] === '/';
      tokens.push({ t: segmentStart && pattern[i + 2] === '/' ? 'globdir' : 'globstar' });
      i++;
    }
  }
  return tokens;
}

// Run the pattern's NFA over `key`. State i means "tokens[0..i) have matched the text so far".
// Wildcard tokens may match nothing (an epsilon move to i+1); a `globdir` may also skip its
// following '/' (epsilon to i+2), which is what lets `**/x` match `x`.
function simulate(tokens: readonly Token[], key: string): boolean {
  const n = tokens.length;
  const start = new Uint8Array(n + 1);
  start[0] = 1;
  let active = closure(tokens, start);
  for (let k = 0; k < key.length; k++) {
    const c = key[k];
    const next = new Uint8Array(n + 1);
    let any = false;
    for (let i = 0; i < n; i++) {
      if (!active[i]) continue;
      const tok = tokens[i];
      if (tok.t === 'char') {
        if (tok.c === c) { next[i + 1] = 1; any = true; }
      } else if (tok.t === 'star') {
        if (c !== '/') { next[i] = 1; any = true; }
      } else {
        next[i] = 1; any = true;
      }
    }
    if (!any) return false;
    active = closure(tokens, next);
  }
  return active[n] === 1;
}

/** Add every state reachable by epsilon moves; states only move forward, so one pass suffices. */
function closure(tokens: readonly Token[], states: Uint8Array): Uint8Array {
  for (let i = 0; i < tokens.length; i++) {
    if (!states[i]) continue;
    const tok = tokens[i];
    if (tok.t === 'char') continue;
    states[i + 1] = 1;
    if (tok.t === 'globdir') states[i + 2] = 1;
  }
  return states;
}
