/**
 * Rewrite README.md's option tables from src/config/options.ts (between `<!-- options:NAME -->` and
 * `<!-- /options -->`). Run after changing an option: `node dist/scripts/options-tables.js`; the test
 * test/config/options.test.ts fails while README disagrees with the table.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GLOBAL_OPTIONS, MOUNT_OPTIONS, optionsMarkdown, type OptionGroup } from '../src/config/options.js';

export const OPTION_TABLES: Record<string, OptionGroup> = { global: GLOBAL_OPTIONS, mount: MOUNT_OPTIONS };

/** `readme` with every marked table replaced by the current one. */
export function withOptionTables(readme: string): string {
  return readme.replace(/<!-- options:([a-z]+) -->\n(?:[\s\S]*?\n)??<!-- \/options -->/g, (whole, name: string) => {
    const group = OPTION_TABLES[name];
    return group ? `<!-- options:${name} -->\n${optionsMarkdown(group)}\n<!-- /options -->` : whole;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');
  const text = await fs.readFile(file, 'utf8');
  await fs.writeFile(file, withOptionTables(text));
  console.log(`updated the option tables in ${file}`);
}
