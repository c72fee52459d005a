import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { addOptions, GLOBAL_OPTIONS, MOUNT_OPTIONS, optionValues, parseDuration, parseSize } from '../../src/config/options.js';
import { OPTION_TABLES, withOptionTables } from '../../scripts/options-tables.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('README\'s option tables are the ones generated from src/config/options.ts', async (t) => {
  const readme = await fs.readFile(path.join(REPO, 'README.md'), 'utf8');
  for (const name of Object.keys(OPTION_TABLES)) t.true(readme.includes(`<!-- options:${name} -->`), `README has no <!-- options:${name} --> table`);
  t.is(readme, withOptionTables(readme), 'README is out of date: run node dist/scripts/options-tables.js');
});

test('flags, environment variables and defaults come out of one table with their types', (t) => {
  const cmd = addOptions(new Command('mount').exitOverride(), MOUNT_OPTIONS);
  const parse = (args: string[], env: Record<string, string> = {}) => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const c = addOptions(new Command('mount').exitOverride(), MOUNT_OPTIONS);
      c.parse(args, { from: 'user' });
      return optionValues(MOUNT_OPTIONS, c.opts());
    } finally {
      for (const k of Object.keys(env)) if (!(k in saved)) delete process.env[k];
    }
  };
  t.truthy(cmd);
  const defaults = parse([]);
  t.is(defaults.blockSize, 256 * 1024);
  t.is(defaults.memory, 32 * 1024 * 1024);
  t.is(defaults.fetchTimeout, 10_000);
  t.is(defaults.kernelCache, true);
  t.is(defaults.diskCache, undefined);
  t.is(defaults.root, '/valohai');
  const given = parse(['--block-size', '64K', '--no-kernel-cache', '--no-disk-cache', '--input', 'a=/x', '--input', 'b=/y', '--fetch-timeout', '500ms']);
  t.is(given.blockSize, 65536);
  t.is(given.kernelCache, false);
  t.is(given.diskCache, false);
  t.deepEqual(given.input, ['a=/x', 'b=/y']);
  t.is(given.fetchTimeout, 500);
  t.is(parse([], { VHFS_BLOCK_SIZE: '1M' }).blockSize, 1024 * 1024);
  t.is(parse(['--block-size', '128K'], { VHFS_BLOCK_SIZE: '1M' }).blockSize, 128 * 1024, 'a flag wins over the environment');
  t.throws(() => parse(['--memory', 'lots']), { message: /--memory \(or VHFS_MEMORY\) "lots": expected a number of bytes/ });
});

test('every spec\'s key is the attribute commander reads its flag as, in every group', (t) => {
  for (const group of [GLOBAL_OPTIONS, MOUNT_OPTIONS]) t.notThrows(() => addOptions(new Command('x'), group));
});

test('size and duration parsers', (t) => {
  t.is(parseSize('512M'), 512 * 1024 * 1024);
  t.is(parseSize('1.5G'), 1.5 * 1024 ** 3);
  t.is(parseSize('10MB'), 10_000_000);
  t.is(parseSize('4096'), 4096);
  t.throws(() => parseSize('-1'));
  t.is(parseDuration('2m'), 120_000);
  t.is(parseDuration('15'), 15_000);
  t.is(parseDuration('250ms'), 250);
  t.throws(() => parseDuration('soon'), { message: /expected a duration/ });
});
