/**
 * Commands over the catalog and packages, usable without a mount: put, dataset, alias, ls, cat, package,
 * catalog. `ls` and `cat` resolve a URI exactly as the mount would (same resolver, same block cache), so
 * what they show is what a job would see under /valohai/inputs.
 */
import type { Command } from 'commander';
import os from 'node:os';
import path from 'node:path';
import { promises as fs, createReadStream, createWriteStream } from 'node:fs';
import { collect, output, type Context, type Run } from './context.js';
import { addOptions, optionValues, parseSize, READ_OPTIONS } from '../config/options.js';
import { parseUri, type ParsedUri } from '../uri/parse.js';
import { createVersion, listDirectory, DEFAULT_MAX_PACKAGE_SIZE } from '../catalog/create-version.js';
import type { CollectionKind, DatumRecord, Producer } from '../catalog/types.js';
import type { ResolvedInput } from '../inputs/resolve.js';
import { ReadPath } from '../inputs/read-path.js';
import type { KeepDirectories } from '../inputs/layout.js';
import { castKeepDirectories } from '../inputs/config.js';
import { NOT_FOUND, isFile, dirIndex } from '../index/tree-index.js';
import type { ObjectRef } from '../store/types.js';
import {
  writePackage, readPackageListing, verifyPackage, withFileSource, storeSource, partFileName, type PackageEntry, type RandomAccessSource,
} from '../package/index.js';
import { isVhfsError, VhfsError } from '../util/errors.js';
import { formatBytes, Progress } from '../util/progress.js';



function producer(tool: string): Producer {
  return {
    tool,
    host: os.hostname(),
    ...(process.env.VH_EXECUTION_ID ? { executionId: process.env.VH_EXECUTION_ID } : {}),
    ...(process.env.VH_PROJECT_ID ? { project: process.env.VH_PROJECT_ID } : {}),
  };
}

/** `name/version` or `dataset://name/version` → parts. */
function collectionVersion(text: string, kind: CollectionKind): { collection: string; version: string } {
  const uri = text.includes('://') ? text : `${kind}://${text}`;
  const parsed = parseUri(uri);
  if (parsed.kind !== 'dataset' && parsed.kind !== 'model') {
    throw new VhfsError('BAD_ARGUMENT', `${text}: expected NAME/VERSION or ${kind}://NAME/VERSION`);
  }
  return { collection: parsed.name, version: parsed.selector };
}

export function registerDataCommands(program: Command, run: Run): void {
  program
    .command('put')
    .description('store files as immutable datums; prints their datum:// URIs')
    .argument('<files...>', 'local files')
    .option('--name <name>', 'datum name (one file only; default: the file name)')
    .option('--tag <tag>', 'tag (repeatable)', collect)
    .option('--alias <alias>', 'point this datum alias at the datum (one file only)')
    .action((files: string[], o: { name?: string; tag?: string[]; alias?: string }) => run(async (ctx) => {
      if ((o.name || o.alias) && files.length !== 1) throw new VhfsError('BAD_ARGUMENT', '--name and --alias take exactly one file');
      const catalog = await ctx.catalog();
      const out: Array<DatumRecord & { uri: string }> = [];
      for (const file of files) {
        const st = await fs.stat(file).catch(() => undefined);
        if (!st?.isFile()) throw new VhfsError('NOT_FOUND', `${file}: no such file`);
        const rec = await catalog.putDatum({ path: path.resolve(file) }, {
          name: o.name ?? path.basename(file), size: st.size, producer: producer('vhfs put'), tags: o.tag ?? [],
        });
        if (o.alias) await catalog.setAlias('datum', '', o.alias, rec.id);
        out.push({ uri: `datum://${rec.id}`, ...rec });
      }
      output(ctx, out, () => out.map((d) => `${d.uri}\t${d.name}\t${d.size}`).join('\n'));
    }));

  const dataset = program.command('dataset').description('dataset versions: create, list');
  dataset
    .command('create')
    .description('create an immutable dataset version from the files under DIR')
    .argument('<name/version>', 'e.g. images/v1 or dataset://images/v1')
    .argument('<dir>', 'directory whose files (recursively) become the version')
    .option('--from <version>', 'start from this version\'s files (NAME/VERSION, alias allowed)')
    .option('--exclude <path>', 'with --from: drop this path of the base version (repeatable)', collect)
    .option('--package', 'also bundle the files into .vhpkgzip package(s)')
    .option('--max-package-size <size>', `split packages past this size (default ${formatBytes(DEFAULT_MAX_PACKAGE_SIZE)})`)
    .option('--alias <alias>', 'point this alias at the new version (repeatable)', collect)
    .option('--tag <tag>', 'tag every datum (repeatable)', collect)
    .option('--model', 'create a model version (model://) instead of a dataset version')
    .action((nv: string, dir: string, o: {
      from?: string; exclude?: string[]; package?: boolean; maxPackageSize?: string; alias?: string[]; tag?: string[]; model?: boolean;
    }) => run(async (ctx) => {
      const kind: CollectionKind = o.model ? 'model' : 'dataset';
      const { collection, version } = collectionVersion(nv, kind);
      const catalog = await ctx.catalog();
      const files = await listDirectory(dir);
      if (files.length === 0) throw new VhfsError('BAD_ARGUMENT', `${dir}: no files to put in ${kind}://${collection}/${version}`);
      let from: { collection: string; version: string; exclude?: string[] } | undefined;
      if (o.from) {
        const base = collectionVersion(o.from, kind);
        from = { collection: base.collection, version: await catalog.resolveVersion(kind, base.collection, base.version), exclude: o.exclude ?? [] };
      } else if (o.exclude) throw new VhfsError('BAD_ARGUMENT', '--exclude needs --from');
      const rec = await createVersion(catalog, {
        kind, collection, version, files,
        ...(from ? { from } : {}),
        packaging: o.package ? { maxPartSize: o.maxPackageSize ? parseSize(o.maxPackageSize, '--max-package-size') : DEFAULT_MAX_PACKAGE_SIZE } : false,
        aliases: o.alias ?? [], tags: o.tag ?? [], producer: producer('vhfs dataset create'),
        quiet: Boolean(ctx.opts.quiet || ctx.opts.json), tmpDir: path.join(ctx.home, 'tmp'),
        log: (line) => ctx.info(line),
      });
      const total = rec.files.reduce((n, f) => n + f.size, 0);
      const summary = {
        uri: `${kind}://${collection}/${version}`, files: rec.files.length, bytes: total,
        packages: rec.packages, aliases: o.alias ?? [], from: rec.from ?? null,
      };
      output(ctx, summary, () => `created ${summary.uri}: ${rec.files.length} files, ${formatBytes(total)}` +
        (rec.packages.length ? `, ${rec.packages.length} package(s): ${rec.packages.map((p) => p.name).join(', ')}` : ''));
    }));
  dataset
    .command('ls')
    .description('list datasets, or the versions and aliases of one')
    .argument('[name]', 'dataset name')
    .option('--model', 'models instead of datasets')
    .action((name: string | undefined, o: { model?: boolean }) => run(async (ctx) => {
      await listCollections(ctx, o.model ? 'model' : 'dataset', name);
    }));

  const alias = program.command('alias').description('datum and dataset aliases (moving pointers, with history)');
  alias
    .command('set')
    .description('point an alias: `alias set dataset://NAME/ALIAS VERSION` or `alias set datum://ALIAS DATUM_ID`')
    .argument('<alias-uri>')
    .argument('<target>')
    .action((aliasUri: string, target: string) => run(async (ctx) => {
      const catalog = await ctx.catalog();
      const parsed = parseUri(aliasUri);
      let rec;
      if (parsed.kind === 'datum') {
        if (parsed.byId) throw new VhfsError('BAD_ARGUMENT', `${aliasUri}: an alias name cannot be a datum id`);
        const datum = await catalog.resolveDatumRef(target);
        rec = await catalog.setAlias('datum', '', parsed.ref, datum.id);
      } else if (parsed.kind === 'dataset' || parsed.kind === 'model') {
        const version = await catalog.resolveVersion(parsed.kind, parsed.name, target);
        rec = await catalog.setAlias(parsed.kind, parsed.name, parsed.selector, version);
      } else throw new VhfsError('BAD_ARGUMENT', `${aliasUri}: aliases are datum://ALIAS or dataset://NAME/ALIAS`);
      output(ctx, rec, () => `${aliasUri} → ${rec.target}`);
    }));
  alias
    .command('history')
    .description('every target an alias has had, oldest first')
    .argument('<alias-uri>')
    .action((aliasUri: string) => run(async (ctx) => {
      const catalog = await ctx.catalog();
      const parsed = parseUri(aliasUri);
      const history = parsed.kind === 'datum'
        ? await catalog.aliasHistory('datum', '', parsed.ref)
        : parsed.kind === 'dataset' || parsed.kind === 'model'
          ? await catalog.aliasHistory(parsed.kind, parsed.name, parsed.selector)
          : undefined;
      if (!history) throw new VhfsError('BAD_ARGUMENT', `${aliasUri}: not an alias URI`);
      output(ctx, history, () => history.map((h) => `${h.at}\t${h.target}`).join('\n'));
    }));

  program
    .command('ls')
    .description('list what a URI resolves to (as it would appear under /valohai/inputs/<input>/)')
    .argument('<uri>', 'datum://…, dataset://NAME/VERSION, dataset://NAME, dataset://, model://…, a local path')
    .argument('[path]', 'a directory inside it')
    .option('-l, --long', 'sizes and times')
    .option('-R, --recursive', 'every file below, as relative paths')
    .option('--keep-directories <mode>', 'none | full | suffix (as in valohai.yaml)', 'none')
    .action((uri: string, sub: string | undefined, o: { long?: boolean; recursive?: boolean; keepDirectories: string }) => run(async (ctx) => {
      const listing = /^(dataset|model):\/\/([^/]*)\/?$/.exec(uri);
      if (listing) return listCollections(ctx, listing[1] as CollectionKind, listing[2] || undefined);
      await withResolved(ctx, uri, castKeepDirectories(o.keepDirectories, '--keep-directories'), {}, async (input) => {
      const index = input.index;
      const ref = index.lookup(sub ?? '');
      if (ref === NOT_FOUND) throw new VhfsError('NOT_FOUND', `${uri}: no "${sub}" in it`);
      const rows: Array<{ path: string; type: 'file' | 'dir'; size: number; mtime: string }> = [];
      const fileRow = (i: number, p: string) => ({ path: p, type: 'file' as const, size: index.arrays.fileSize[i], mtime: new Date(index.arrays.fileMtime[i] * 1000).toISOString() });
      if (isFile(ref)) rows.push(fileRow(ref, sub!));
      else if (o.recursive) {
        const prefix = index.dirPath(dirIndex(ref));
        for (const { index: i, path: p } of index.walk()) {
          if (prefix === '' || p.startsWith(`${prefix}/`)) rows.push(fileRow(i, prefix === '' ? p : p.slice(prefix.length + 1)));
        }
        rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      } else {
        const d = dirIndex(ref);
        const base = index.dirPath(d);
        for (const name of index.list(d)) {
          const child = index.lookup(base === '' ? name : `${base}/${name}`);
          rows.push(isFile(child) ? fileRow(child, name) : { path: `${name}/`, type: 'dir', size: 0, mtime: '' });
        }
      }
      output(ctx, rows, () => rows.map((r) => (o.long ? `${r.type === 'dir' ? '-' : String(r.size).padStart(12)}  ${r.mtime.padEnd(24)}  ${r.path}` : r.path)).join('\n'));
      });
    }));

  const cat = program
    .command('cat')
    .description('write files\' bytes to stdout, in order (read by byte range through the block cache, as the mount does)')
    .argument('<uri>', 'datum://ID, or a multi-file URI followed by PATHs')
    .argument('[paths...]', 'paths of files inside the URI')
    .option('-o, --output <file>', 'write to a file instead of stdout');
  addOptions(cat, CAT_OPTIONS);
  cat.action((uri: string, paths: string[], o: { output?: string } & Record<string, unknown>) => run(async (ctx) => {
      const read = optionValues(CAT_OPTIONS, o);
      const out = o.output ? createWriteStream(o.output) : process.stdout;
      await withResolved(ctx, uri, 'full', read, (input, reader, ends) => catFiles(uri, input, reader, ends, paths, out));
      if (o.output) await new Promise<void>((r, j) => (out as ReturnType<typeof createWriteStream>).end((e?: Error | null) => (e ? j(e) : r())));
    }));

  const pkg = program.command('package').description('.vhpkgzip packages: build from a directory, inspect');
  pkg
    .command('build')
    .description('write the files under DIR as a .vhpkgzip package (split into parts past --max-part-size)')
    .argument('<dir>')
    .requiredOption('-o, --output <file>', 'output file (NAME.vhpkgzip; parts get .part-0001-of-000N)')
    .option('--max-part-size <size>', 'split past this size')
    .action((dir: string, o: { output: string; maxPartSize?: string }) => run(async (ctx) => {
      const files = await listDirectory(dir);
      const out = path.resolve(o.output);
      const stem = path.basename(out).replace(/\.vhpkgzip$/, '');
      const tmp = (part: number) => `${out}.part${part}.tmp`;
      const progress = new Progress(`packaging ${dir}`, files.length, { quiet: Boolean(ctx.opts.quiet || ctx.opts.json) });
      let doneEntries = 0;
      let doneBytes = 0;
      const partStreams: Array<ReturnType<typeof createWriteStream>> = [];
      const parts = await writePackage(files.map((f): PackageEntry => ({ path: f.path, size: f.size, open: () => createReadStream(f.file) })), {
        name: out,
        ...(o.maxPartSize ? { maxPartSize: parseSize(o.maxPartSize, '--max-part-size') } : {}),
        openPart: (part) => { const s = createWriteStream(tmp(part)); partStreams.push(s); return s; },
        onProgress: (bytes, entries) => { progress.tick(entries - doneEntries, bytes - doneBytes); doneEntries = entries; doneBytes = bytes; },
      }).catch(async (err: unknown) => {
        // The writer has destroyed the open part's stream: wait until its descriptor is closed, then remove
        // the half-written temp files, which are of no use.
        for (const [i, s] of partStreams.entries()) {
          if (!s.closed) await new Promise<void>((resolve) => s.once('close', () => resolve()));
          await fs.rm(tmp(i + 1), { force: true });
        }
        throw err;
      });
      progress.finish();
      const written: Array<{ file: string; entries: number; size: number; zip64: boolean }> = [];
      for (const part of parts) {
        const dest = path.join(path.dirname(out), parts.length === 1 ? path.basename(out) : partFileName(stem, part.part, parts.length));
        await fs.rename(tmp(part.part), dest);
        written.push({ file: dest, entries: part.entries, size: part.size, zip64: part.zip64 });
      }
      output(ctx, written, () => written.map((w) => `${w.file}\t${w.entries} entries\t${formatBytes(w.size)}${w.zip64 ? '\tZIP64' : ''}`).join('\n'));
    }));
  pkg
    .command('inspect')
    .description('read a package\'s central directory (tail + directory only) and summarise it')
    .argument('<package>', 'a .vhpkgzip file, or dataset://NAME/VERSION for its registered packages')
    .option('--entries', 'list every entry (path, offset, size, crc)')
    .option('--verify', 'also read the package: every member against its CRC-32, every chunk against the chunk hash table')
    .action((target: string, o: { entries?: boolean; verify?: boolean }) => run(async (ctx) => {
      // Each source is used through `use`, which closes whatever it opened however the work ends.
      const sources: Array<{ name: string; use<T>(fn: (src: RandomAccessSource) => Promise<T>): Promise<T> }> = [];
      if (/^(dataset|model):\/\//.test(target)) {
        const parsed = parseUri(target);
        if (parsed.kind !== 'dataset' && parsed.kind !== 'model') throw new VhfsError('BAD_URI', `${target}: expected dataset://NAME/VERSION`);
        const catalog = await ctx.catalog();
        const summary = await catalog.getVersionSummary(parsed.kind, parsed.name, parsed.selector);
        if (summary.packages.length === 0) throw new VhfsError('NOT_FOUND', `${target}: version ${summary.version} has no packages`);
        for (const p of summary.packages) {
          sources.push({ name: p.name, use: async (fn) => { const d = await catalog.getDatum(p.datumId); return fn(storeSource(catalog.store, d.blobKey, d.size)); } });
        }
      } else sources.push({ name: target, use: (fn) => withFileSource(target, fn) });
      type Report = {
        package: string; size: number; entries: number; dataBytes: number; centralDirectoryReads: number; bytesRead: number;
        chunkTable: { offset: number; length: number; covered: number } | null;
        verified?: number; members?: Array<{ path: string; offset: number; size: number; crc32: number }>;
      };
      const reports: Report[] = [];
      for (const s of sources) {
        reports.push(await s.use(async (src): Promise<Report> => {
          const listing = await readPackageListing(src, s.name);
          let verified = 0;
          if (o.verify) {
            const progress = new Progress(`verifying ${s.name}`, listing.count, { quiet: Boolean(ctx.opts.quiet || ctx.opts.json) });
            await verifyPackage(src, listing, (i) => { verified++; progress.tick(1, listing.sizes[i]); });
            progress.finish();
          }
          const table = listing.chunkTable;
          return {
            package: s.name, size: listing.size, entries: listing.count, dataBytes: listing.sizes.reduce((n, x) => n + x, 0),
            centralDirectoryReads: listing.reads, bytesRead: listing.bytesRead,
            chunkTable: table ? { offset: table.offset, length: table.length, covered: table.covered } : null,
            ...(o.verify ? { verified } : {}),
            ...(o.entries ? { members: Array.from({ length: listing.count }, (_, i) => ({ path: listing.paths[i], offset: listing.dataOffsets[i], size: listing.sizes[i], crc32: listing.crc32s[i] })) } : {}),
          };
        }));
      }
      const verifiedText = (r: Report): string => !o.verify ? ''
        : `; ${r.verified} members verified (CRC-32${r.chunkTable ? ` and chunk hashes of all ${formatBytes(r.chunkTable.covered)} before the table` : ', no chunk hash table: written by another tool'})`;
      output(ctx, reports, () => reports.map((r) => [
        `${r.package}: ${r.entries} entries, ${formatBytes(r.dataBytes)} of data in ${formatBytes(r.size)}; index read with ${r.centralDirectoryReads} ranged reads (${formatBytes(r.bytesRead)})${verifiedText(r)}`,
        ...(r.members ?? []).map((m) => `${String(m.offset).padStart(14)} ${String(m.size).padStart(12)} ${m.crc32.toString(16).padStart(8, '0')}  ${m.path}`),
      ].join('\n')).join('\n'));
    }));

  program
    .command('catalog')
    .description('this host\'s catalog')
    .command('sync')
    .description('index every datum, version and alias of the store into this host\'s SQLite catalog')
    .action(() => run(async (ctx) => {
      const catalog = await ctx.catalog();
      const result = await catalog.sync();
      output(ctx, result, () => `synced from ${ctx.store.url}: ${result.datums} datums, ${result.versions} versions, ${result.aliases} aliases`);
    }));
}

async function listCollections(ctx: Context, kind: CollectionKind, name: string | undefined): Promise<void> {
  const catalog = await ctx.catalog();
  if (!name) {
    const names = await catalog.listCollections(kind);
    return output(ctx, names, () => names.map((n) => `${kind}://${n}/`).join('\n'));
  }
  const [versions, aliases] = await Promise.all([catalog.listVersions(kind, name), catalog.listAliases(kind, name)]);
  if (versions.length === 0 && aliases.length === 0) throw new VhfsError('NOT_FOUND', `${kind}://${name}: no such ${kind} in ${ctx.store.url}`);
  const rows = versions.map((v) => ({ version: v, aliases: aliases.filter((a) => a.target === v).map((a) => a.name) }));
  const dangling = aliases.filter((a) => !versions.includes(a.target));
  output(ctx, { versions: rows, aliases }, () => [
    ...rows.map((r) => `${kind}://${name}/${r.version}${r.aliases.length ? `\t(aliases: ${r.aliases.join(', ')})` : ''}`),
    ...dangling.map((a) => `${kind}://${name}/${a.name}\t→ ${a.target} (missing version)`),
  ].join('\n'));
}

/** The read options `vhfs cat` shares with the mount. */
const CAT_OPTIONS = { blockSize: READ_OPTIONS.blockSize, fetchTimeout: READ_OPTIONS.fetchTimeout };

/**
 * Resolve `uri` as an input named after it, as the mount would, and run `fn` with it and a `ReadPath` to
 * read it (closed afterwards). `ends` lets `fn` tell the cache where reading stops in each source.
 */
async function withResolved<T>(
  ctx: Context, uri: string, keepDirectories: KeepDirectories, read: { blockSize?: number; fetchTimeout?: number },
  fn: (input: ResolvedInput, reader: ReadPath, ends: Map<ObjectRef, number>) => Promise<T>,
): Promise<T> {
  const parsed: ParsedUri = parseUri(uri);
  const ends = new Map<ObjectRef, number>();
  const reader = new ReadPath({
    catalog: await ctx.catalog(), cacheDir: ctx.cacheDir, diskCache: false, settings: ctx.storeSettings,
    readaheadLimit: (s) => ends.get(s), log: (l) => ctx.debug(l),
    ...(read.blockSize ? { blockSize: read.blockSize } : {}), ...(read.fetchTimeout ? { fetchTimeoutMs: read.fetchTimeout } : {}),
  });
  try {
    const input = await reader.resolver.resolve({ name: uri, uris: [parsed], keepDirectories, optional: false, download: 'always' });
    return await fn(input, reader, ends);
  } finally {
    await reader.close();
  }
}

/** Stream the files at `paths` of a resolved URI (or its only file) to `out`, read exactly as the mount reads them. */
async function catFiles(
  uri: string, input: ResolvedInput, reader: ReadPath, ends: Map<ObjectRef, number>, paths: readonly string[], out: NodeJS.WritableStream,
): Promise<void> {
  const index = input.index;
  const refs: number[] = [];
  if (paths.length === 0) {
    if (index.fileCount !== 1) throw new VhfsError('BAD_ARGUMENT', `${uri} has ${index.fileCount} files; name one: vhfs cat ${uri} PATH`);
    refs.push(0);
  }
  for (const p of paths) {
    const ref = index.lookup(p);
    if (ref === NOT_FOUND) throw new VhfsError('NOT_FOUND', `${uri}: no file "${p}" in it`);
    if (!isFile(ref)) throw new VhfsError('BAD_ARGUMENT', `${uri}: "${p}" is a directory`);
    refs.push(ref);
  }
  const a = index.arrays;
  // Readahead stops where the last requested byte of each source is: cat knows what it will read.
  for (const ref of refs) {
    const source = index.sources[a.fileSource[ref]];
    ends.set(source, Math.max(ends.get(source) ?? 0, a.fileOffset[ref] + a.fileSize[ref]));
  }
  const chunk = Buffer.alloc(reader.cache.blockSize);
  for (const ref of refs) {
    const size = a.fileSize[ref];
    for (let pos = 0; pos < size; pos += chunk.length) {
      const n = await reader.read(input, ref, pos, chunk.length, chunk);
      if (!out.write(Buffer.from(chunk.subarray(0, n)))) await new Promise((r) => out.once('drain', r));
    }
  }
}

/** Files and bytes under a directory (0/0 if it does not exist). */
async function directoryUsage(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const names = await fs.readdir(dir, { recursive: true }).catch(() => [] as string[]);
  for (const name of names) {
    const st = await fs.stat(path.join(dir, name)).catch(() => undefined);
    if (st?.isFile()) { files++; bytes += st.size; }
  }
  return { files, bytes };
}

export function registerCacheCommands(program: Command, run: Run): void {
  const cache = program.command('cache').description('this host\'s cache: persisted package indexes and fetched blocks');
  cache
    .command('info')
    .description('what is cached and how much room it takes')
    .action(() => run(async (ctx) => {
      const [indexes, blocks] = await Promise.all([
        directoryUsage(path.join(ctx.cacheDir, 'indexes')), directoryUsage(path.join(ctx.cacheDir, 'blocks')),
      ]);
      const info = { dir: ctx.cacheDir, indexes, blocks };
      output(ctx, info, () => [
        `${ctx.cacheDir}`,
        `  indexes: ${indexes.files} files, ${formatBytes(indexes.bytes)} (one per resolved input; a mount with one needs no package tail)`,
        `  blocks:  ${blocks.files} files, ${formatBytes(blocks.bytes)} (fetched data of remote stores)`,
      ].join('\n'));
    }));
  cache
    .command('clear')
    .description('delete cached indexes and blocks (safe: everything is refetched on demand)')
    .option('--indexes', 'only the persisted indexes')
    .option('--blocks', 'only the fetched blocks')
    .action((o: { indexes?: boolean; blocks?: boolean }) => run(async (ctx) => {
      const both = !o.indexes && !o.blocks;
      const cleared: string[] = [];
      for (const [what, wanted] of [['indexes', both || o.indexes], ['blocks', both || o.blocks]] as const) {
        if (!wanted) continue;
        await fs.rm(path.join(ctx.cacheDir, what), { recursive: true, force: true });
        cleared.push(what);
      }
      output(ctx, { cleared }, () => `cleared ${cleared.join(' and ')} in ${ctx.cacheDir}`);
    }));
}
