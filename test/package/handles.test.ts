/**
 * No leaked descriptor (issue 11 item 8). `vhfs package inspect` over hundreds of rejected packages in
 * one process — not a zip, empty, truncated, corrupt central directory, unsafe names, a flipped data byte
 * or a damaged chunk hash table under `--verify`, a directory, a missing file — leaves the number of open
 * descriptors exactly where it was; and the real CLI prints only its one-line error for a rejected
 * package, with no "Closing file descriptor N on garbage collection" warning after it even when a
 * garbage collection runs before exit.
 *
 * Serial, alone in its file: the descriptor count is the whole process's.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { main } from '../../src/cli/main.js';
import { readPackageListing } from '../../src/package/reader.js';
import { bufferSource, fileSource, withFileSource } from '../../src/package/source.js';
import { BIN } from '../cli/helpers.js';
import { buildRawZip, centralRecords, memEntry, randomBytes, rng, tempDir, writeToBuffer } from './helpers.js';

interface BadPackage {
  file: string;
  /** Exit code of `vhfs package inspect --verify FILE`. */
  exit: number;
  /** What the one stderr line must say. */
  says: RegExp;
}

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

/** `vhfs ARGS…` in this process (its descriptors are the ones counted), with what it writes to stderr. */
async function vhfsInProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  const chunks: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(['node', 'vhfs', ...args]);
    return { code, stderr: chunks.join('') };
  } finally {
    process.stderr.write = write;
  }
}

/** `copies` of each kind of rejected package, each a little different. */
async function badPackages(dir: string, copies: number): Promise<BadPackage[]> {
  const rand = rng(11);
  const out: BadPackage[] = [];
  const add = async (name: string, bytes: Buffer | undefined, exit: number, says: RegExp): Promise<void> => {
    const file = path.join(dir, name);
    if (bytes !== undefined) await fs.writeFile(file, bytes);
    out.push({ file, exit, says });
  };
  for (let i = 0; i < copies; i++) {
    const entries = Array.from({ length: 5 + (i % 4) }, (_, k) => memEntry(`d/f${k}`, randomBytes(rand, 100 + k * 3000 + i)));
    const good = (await writeToBuffer(entries)).buffers[0];
    const recs = centralRecords(good);
    const listing = await readPackageListing(bufferSource(good), 'good');
    const table = listing.chunkTable!;
    const flip = (at: number): Buffer => {
      const b = Buffer.from(good);
      b[at] ^= 0x40;
      return b;
    };
    await add(`not-a-zip-${i}`, randomBytes(rand, 50 + i * 7), 5, /no end-of-central-directory record/);
    await add(`empty-${i}`, Buffer.alloc(0), 5, /too small to be a zip/);
    await add(`truncated-${i}`, good.subarray(0, good.length - 1 - i), 5, /no end-of-central-directory record|truncated/);
    await add(`corrupt-cd-${i}`, flip(recs[i % recs.length]), 5, /central directory does not match the CRC-32/);
    await add(`unsafe-name-${i}`, buildRawZip([{ name: 'ok', data: Buffer.from('x') }, { name: `../evil-${i}`, data: Buffer.from('y') }]), 5, /the path has a "\.\." segment/);
    await add(`flipped-data-${i}`, flip(listing.dataOffsets[1] + i), 5, /do not match the package's chunk hash table/);
    await add(`bad-table-${i}`, flip(table.offset + 24 + (i % (table.length - 24))), 5, /chunk hash table: CRC-32/);
    await fs.mkdir(path.join(dir, `directory-${i}`));
    await add(`directory-${i}`, undefined, 2, /not a regular file/);
    await add(`missing-${i}`, undefined, 3, /no such file/);
  }
  return out;
}

test.serial('hundreds of rejected packages through `vhfs package inspect --verify` in one process leave no descriptor open', async (t) => {
  const tmp = tempDir('vhpkg-handles-');
  t.teardown(tmp.cleanup);
  const bad = await badPackages(tmp.dir, 40);
  const home = path.join(tmp.dir, 'home');
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.message); };
  process.on('warning', onWarning);
  const before = openDescriptors();
  const results: Array<{ pkg: BadPackage; code: number; lines: string[] }> = [];
  for (const pkg of bad) {
    const { code, stderr } = await vhfsInProcess(['--home', home, 'package', 'inspect', '--verify', pkg.file]);
    results.push({ pkg, code, lines: stderr.split('\n').filter((l) => l !== '') });
  }
  const after = openDescriptors();
  process.off('warning', onWarning);
  t.is(after, before, `${after - before} descriptors left open by ${bad.length} rejected packages`);
  t.deepEqual(warnings.filter((w) => /file descriptor|FileHandle/i.test(w)), []);
  for (const { pkg, code, lines } of results) {
    t.is(code, pkg.exit, `${pkg.file}: ${lines.join(' | ')}`);
    t.is(lines.length, 1, `${pkg.file}: ${lines.join(' | ')}`);
    t.true(lines[0].startsWith(`vhfs: ${pkg.file}: `), lines[0]);
    t.regex(lines[0], pkg.says);
  }
});

test.serial('withFileSource closes the file whether the work succeeds or throws', async (t) => {
  const tmp = tempDir('vhpkg-handles-');
  t.teardown(tmp.cleanup);
  const file = path.join(tmp.dir, 'x');
  await fs.writeFile(file, 'hello');
  const before = openDescriptors();
  for (let i = 0; i < 200; i++) {
    t.is(await withFileSource(file, async (src) => (await src.read(0, 5)).toString()), 'hello');
    await t.throwsAsync(withFileSource(file, async () => { throw new Error('boom'); }), { message: 'boom' });
    await t.throwsAsync(fileSource(tmp.dir), { message: /not a regular file/ });
  }
  t.is(openDescriptors(), before);
});

/** Forces a full garbage collection once the CLI's work is done, so a leaked FileHandle would be reported. */
const GC_AT_EXIT = `let done = false;
process.on('beforeExit', () => { if (!done) { done = true; globalThis.gc(); setTimeout(() => {}, 100); } });
`;

function runCli(args: string[], preload: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--expose-gc', '--import', preload, BIN, ...args], { encoding: 'utf8' }, (err, _stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stderr });
    });
  });
}

test.serial('the CLI prints only its one-line error for a rejected package, even after a garbage collection', async (t) => {
  const tmp = tempDir('vhpkg-handles-');
  t.teardown(tmp.cleanup);
  const preload = path.join(tmp.dir, 'gc-at-exit.mjs');
  await fs.writeFile(preload, GC_AT_EXIT);
  const bad = (await badPackages(tmp.dir, 1)).filter((p) => /not-a-zip|truncated|unsafe-name|flipped-data/.test(p.file));
  const home = path.join(tmp.dir, 'home');
  for (const pkg of bad) {
    const { code, stderr } = await runCli(['--home', home, 'package', 'inspect', '--verify', pkg.file], preload);
    t.is(code, pkg.exit, stderr);
    t.regex(stderr, new RegExp(`^vhfs: ${pkg.file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: [^\n]*\n$`), `${path.basename(pkg.file)}: ${stderr}`);
    t.regex(stderr, pkg.says);
  }
});

test.serial('`vhfs package build` that fails leaves no temp part and no open descriptor', async (t) => {
  const tmp = tempDir('vhpkg-handles-');
  t.teardown(tmp.cleanup);
  const src = path.join(tmp.dir, 'src');
  await fs.mkdir(path.join(src, 'a'), { recursive: true });
  await fs.writeFile(path.join(src, 'a', 'one.bin'), Buffer.alloc(100_000, 1));
  await fs.writeFile(path.join(src, '-first.bin'), Buffer.alloc(5000, 2)); // "-" sorts before ".": part 1 is open…
  await fs.writeFile(path.join(src, '.vhpkgzip'), 'a file with the reserved name'); // …when this is refused
  const out = path.join(tmp.dir, 'out');
  await fs.mkdir(out);
  const before = openDescriptors();
  const { code, stderr } = await vhfsInProcess(['--home', path.join(tmp.dir, 'home'), '--quiet', 'package', 'build', src, '-o', path.join(out, 'p.vhpkgzip')]);
  t.is(openDescriptors(), before);
  t.is(code, 5);
  t.regex(stderr, /^vhfs: .*p\.vhpkgzip: entry "\.vhpkgzip": the name is reserved for package metadata[^\n]*\n$/);
  t.deepEqual(await fs.readdir(out), []);
});
