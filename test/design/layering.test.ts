import test from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { layeringProblems, parseDependencyTable } from './layering.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('docs/DESIGN.md\'s dependency table is exactly what src/ imports', async (t) => {
  const table = parseDependencyTable(await fs.readFile(path.join(REPO, 'docs', 'DESIGN.md'), 'utf8'));
  t.true(table.size >= 10, `found only ${table.size} rows in DESIGN.md's table`);
  t.deepEqual(await layeringProblems(path.join(REPO, 'src'), table), []);
});

test('a forbidden import, a missing row and a stale dependency are each reported', async (t) => {
  const src = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-layering-'));
  t.teardown(() => fs.rm(src, { recursive: true, force: true }));
  const write = async (rel: string, text: string) => {
    await fs.mkdir(path.dirname(path.join(src, rel)), { recursive: true });
    await fs.writeFile(path.join(src, rel), text);
  };
  await write('util/errors.ts', 'export const x = 1;\n');
  await write('store/local.ts', "import { x } from '../util/errors.js';\nexport const y = x;\n");
  // The forbidden one: the store layer reaching up into the cache.
  await write('store/bad.ts', "import type { Cache } from '../cache/block-cache.js';\nexport type C = Cache;\n");
  await write('cache/block-cache.ts', "export type { ObjectStore } from '../store/types.js';\nexport interface Cache { n: number }\n");
  await write('extra/thing.ts', "const m = await import('../util/errors.js');\nexport default m;\n");
  const table = parseDependencyTable([
    '| folder | layer | depends on |',
    '|---|---|---|',
    '| `src/util` | errors | – |',
    '| `src/store` | stores | util |',
    '| `src/cache` | cache | store, uri |',
  ].join('\n'));
  t.deepEqual((await layeringProblems(src, table)).sort(), [
    'src/extra has no row in the dependency table',
    'src/store/bad.ts imports src/cache, which the table does not allow for src/store',
    'the table says src/cache depends on src/uri, but nothing there imports it',
  ].sort());
});
