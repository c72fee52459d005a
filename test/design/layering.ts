/**
 * The layering rule of docs/DESIGN.md, checked against the code: every `src/<folder>` may import only the
 * folders its row of the dependency table lists, and the table lists nothing the folder does not import, so
 * the document stays true. Imports are read as text (static `import … from`, `export … from`, dynamic
 * `import()`), resolved relative to the importing file; type-only imports count too (they are still a
 * dependency of the design). `src/types` holds ambient declarations and is not a layer.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

export type DependencyTable = Map<string, Set<string>>;

/** The dependency table of a DESIGN.md: rows `| \`src/<folder>\` | … | <deps, comma-separated, or –> |`. */
export function parseDependencyTable(markdown: string): DependencyTable {
  const table: DependencyTable = new Map();
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`src\/([a-z-]+)`\s*\|[^|]*\|\s*([^|]*?)\s*\|\s*$/.exec(line);
    if (!m) continue;
    const deps = m[2] === '–' || m[2] === '-' || m[2] === '' ? [] : m[2].split(',').map((d) => d.trim().replace(/`/g, ''));
    table.set(m[1], new Set(deps));
  }
  return table;
}

const IMPORT_RE = /(?:^|\s)(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** folder → (imported folder → first file that imports it), for every .ts file under `srcDir`. */
export async function actualDependencies(srcDir: string): Promise<Map<string, Map<string, string>>> {
  const out = new Map<string, Map<string, string>>();
  const files = (await fs.readdir(srcDir, { recursive: true })).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  for (const rel of files.sort()) {
    const folder = rel.split(path.sep)[0];
    if (!out.has(folder)) out.set(folder, new Map());
    const text = await fs.readFile(path.join(srcDir, rel), 'utf8');
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2];
      if (!spec.startsWith('.')) continue;
      const target = path.relative(srcDir, path.resolve(path.dirname(path.join(srcDir, rel)), spec));
      const targetFolder = target.split(path.sep)[0];
      if (targetFolder === folder || targetFolder.startsWith('..') || targetFolder === 'types') continue;
      const deps = out.get(folder)!;
      if (!deps.has(targetFolder)) deps.set(targetFolder, rel);
    }
  }
  return out;
}

/** Every way the code and the table disagree, one line each (empty when they agree). */
export async function layeringProblems(srcDir: string, table: DependencyTable): Promise<string[]> {
  const problems: string[] = [];
  const actual = await actualDependencies(srcDir);
  for (const [folder, deps] of actual) {
    if (folder === 'types') continue;
    const allowed = table.get(folder);
    if (!allowed) {
      problems.push(`src/${folder} has no row in the dependency table`);
      continue;
    }
    for (const [dep, file] of deps) {
      if (!allowed.has(dep)) problems.push(`src/${file} imports src/${dep}, which the table does not allow for src/${folder}`);
    }
    for (const dep of allowed) {
      if (!deps.has(dep)) problems.push(`the table says src/${folder} depends on src/${dep}, but nothing there imports it`);
    }
  }
  for (const folder of table.keys()) if (!actual.has(folder)) problems.push(`the table lists src/${folder}, which does not exist`);
  return problems;
}
