/**
 * Local files that become datums: finding them (`listDirectory`) and reading each exactly once.
 *
 * Walking a tree. Only regular files become dataset files. A symbolic link is refused with a one-line
 * error naming it and its target, unless `followSymlinks` is set; then a link is followed only when its
 * target (resolved with realpath) lies inside the tree, and a link to a directory that is one of its own
 * parents (`a/b1 -> ..`) is a loop and refused. Every followed link grows the chain of real directories
 * being walked and a directory already in that chain is never entered again, so a walk is bounded by the
 * tree itself, whatever the links. A dangling link, a FIFO, a socket or a device is an error too: a
 * version must not silently lose a file a user thought was in it. The root itself may be a link (the
 * user named it).
 *
 * Reading once. The bytes that are hashed are the bytes that are packaged or uploaded: a file is read
 * into memory whole (or streamed once, for large ones) and every consumer works on those bytes. A file
 * that changed since it was listed (size, inode, mtime or ctime differ; checked with fstat after the
 * read, against the listing's lstat) fails with INTEGRITY naming it, so no version ever records a hash
 * that its bytes do not match. Files are opened with O_NOFOLLOW (a file swapped for a link after the
 * listing is refused, never followed out of the tree) and O_NONBLOCK (a FIFO swapped in cannot hang the
 * read; on regular files the flag does nothing).
 */
import * as fsSync from 'node:fs';
import { constants as fsc, type BigIntStats, type Dirent } from 'node:fs';
import * as fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { VhfsError } from '../util/errors.js';
import { mapLimit } from '../util/concurrency.js';
import { relativePathProblem } from '../util/path-rules.js';
import { compareNames } from '../util/utf8-order.js';

/** What a file was when it was listed; a read that finds anything else fails with INTEGRITY. */
export interface FileIdentity {
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface SourceFile {
  /** Path inside the version. */
  path: string;
  /** Absolute local path of the content (for a followed link: its target). */
  file: string;
  size: number;
  /** The file as listed; without it, the read's own first fstat is the reference. */
  identity?: FileIdentity;
}

export interface ListDirectoryOptions {
  /** Follow symbolic links whose targets are inside the tree (default: refuse every link). */
  followSymlinks?: boolean;
}

const STAT_CONCURRENCY = 64;
const READ_CHUNK = 1 << 20;
const READ_FLAGS = fsc.O_RDONLY | fsc.O_NONBLOCK;

/** Every regular file under `dir`, paths relative to it, in UTF-8 byte order (rules: module comment). */
export async function listDirectory(dir: string, opts: ListDirectoryOptions = {}): Promise<SourceFile[]> {
  const follow = opts.followSymlinks ?? false;
  let root: string;
  try {
    root = await fs.realpath(path.resolve(dir));
  } catch (err) {
    throw new VhfsError('NOT_FOUND', `${dir}: no such directory (${errnoOf(err) ?? String(err)})`, { cause: err });
  }
  if (!(await fs.stat(root)).isDirectory()) throw new VhfsError('NOT_FOUND', `${dir}: not a directory`);
  const shown = (rel: string) => path.join(dir, rel);
  const files: SourceFile[] = [];

  const addFile = (rel: string, file: string, st: BigIntStats) => {
    const bad = relativePathProblem(rel);
    if (bad) throw new VhfsError('UNSAFE_PATH', `${shown(rel)}: cannot be a dataset file: ${bad}`);
    files.push({ path: rel, file, size: Number(st.size), identity: identityOf(st) });
  };

  /** `chain`: the real paths of the directories from the root down to `real` (loop detection). */
  const walk = async (rel: string, real: string, chain: readonly string[]): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(real, { withFileTypes: true });
    } catch (err) {
      throw sourceError(err, rel === '' ? dir : shown(rel));
    }
    const subdirs: Array<[string, string, readonly string[]]> = [];
    const plain: Array<[string, string]> = [];
    for (const e of entries) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      const childAbs = path.join(real, e.name);
      if (e.isDirectory()) subdirs.push([childRel, childAbs, [...chain, childAbs]]);
      else if (e.isFile()) plain.push([childRel, childAbs]);
      else if (e.isSymbolicLink()) {
        const link = await resolveLink(childRel, childAbs, chain);
        if (link.dir) subdirs.push([childRel, link.real, [...chain, link.real]]);
        else addFile(childRel, link.real, link.st);
      } else throw specialFile(shown(childRel), e);
    }
    await mapLimit(plain, STAT_CONCURRENCY, async ([childRel, childAbs]) => {
      let st: BigIntStats;
      try {
        st = await fs.lstat(childAbs, { bigint: true });
      } catch (err) {
        throw sourceError(err, shown(childRel));
      }
      if (!st.isFile()) throw new VhfsError('INTEGRITY', `${shown(childRel)}: changed while the directory was being listed`);
      addFile(childRel, childAbs, st);
    });
    await mapLimit(subdirs, 8, ([childRel, childReal, childChain]) => walk(childRel, childReal, childChain));
  };

  const resolveLink = async (rel: string, abs: string, chain: readonly string[]): Promise<{ real: string; dir: boolean; st: BigIntStats }> => {
    const where = shown(rel);
    const target = await fs.readlink(abs).catch(() => '?');
    let real: string;
    try {
      real = await fs.realpath(abs);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT') throw new VhfsError('NOT_FOUND', `${where}: dangling symbolic link (→ ${target})`, { cause: err });
      if (code === 'ELOOP') throw new VhfsError('UNSAFE_PATH', `${where}: symbolic link loop (→ ${target})`, { cause: err });
      throw sourceError(err, where);
    }
    if (!follow) {
      throw new VhfsError(
        'UNSAFE_PATH',
        `${where}: is a symbolic link (→ ${target}); links are not followed unless --follow-symlinks, which takes those whose targets are inside ${dir}`,
      );
    }
    if (real !== root && !real.startsWith(root + path.sep)) {
      throw new VhfsError('UNSAFE_PATH', `${where}: symbolic link to ${real}, which is outside ${dir}; only links within the tree are followed`);
    }
    const st = await fs.stat(real, { bigint: true });
    if (st.isDirectory()) {
      if (chain.includes(real)) {
        throw new VhfsError('UNSAFE_PATH', `${where}: symbolic link loop (→ ${target} is one of its own parent directories)`);
      }
      return { real, dir: true, st };
    }
    if (!st.isFile()) throw specialFile(where, st);
    return { real, dir: false, st };
  };

  await walk('', root, [root]);
  return files.sort((a, b) => compareNames(a.path, b.path));
}

export interface ReadOptions {
  /** Names the file in errors (e.g. its path in the version and on disk). */
  label: string;
  /** The size the caller expects (from the listing); a different size is INTEGRITY. */
  size?: number;
  identity?: FileIdentity;
  /** Follow a link at the last path component (only for files a user named one by one). */
  followLink?: boolean;
}

/** The whole file, read once; INTEGRITY if it is not the file that was listed (size, inode, times). */
export async function readFileOnce(file: string, opts: ReadOptions): Promise<Buffer> {
  const fh = await openSource(file, opts);
  try {
    const before = opts.identity ?? identityOf(await fh.stat({ bigint: true }));
    const size = opts.size ?? Number(before.size);
    const buf = Buffer.allocUnsafe(size + 1); // one spare byte: a file that grew shows as an over-long read
    let got = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got).catch((err: unknown) => {
        throw sourceError(err, opts.label);
      });
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) break;
    }
    checkUnchanged(before, await fh.stat({ bigint: true }), size, got, opts.label);
    return buf.subarray(0, size);
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * `readFileOnce` with blocking calls, for worker threads (read-pool.ts): there a read costs its system
 * calls only, and several workers keep the disk busy in parallel. The buffer owns its ArrayBuffer (it
 * can be transferred) and holds `size` bytes plus one spare.
 */
export function readFileOnceSync(file: string, opts: ReadOptions): Buffer {
  let fd: number;
  try {
    fd = fsSync.openSync(file, READ_FLAGS | (opts.followLink ? 0 : fsc.O_NOFOLLOW));
  } catch (err) {
    throw sourceError(err, opts.label);
  }
  try {
    const before = opts.identity ?? identityOf(fsSync.fstatSync(fd, { bigint: true }));
    const size = opts.size ?? Number(before.size);
    const buf = Buffer.allocUnsafeSlow(size + 1);
    let got = 0;
    for (;;) {
      let bytesRead: number;
      try {
        bytesRead = fsSync.readSync(fd, buf, got, buf.length - got, got);
      } catch (err) {
        throw sourceError(err, opts.label);
      }
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) break;
    }
    checkUnchanged(before, fsSync.fstatSync(fd, { bigint: true }), size, got, opts.label);
    return buf.subarray(0, size);
  } finally {
    fsSync.closeSync(fd);
  }
}

/**
 * The file's bytes in order, read once, in fresh 1 MiB buffers (consumers may keep them). Throws
 * INTEGRITY once the end is reached if the file changed; a consumer must use the bytes only after the
 * stream ended without error.
 */
export async function* streamFileOnce(file: string, opts: ReadOptions): AsyncGenerator<Buffer, void, undefined> {
  const fh = await openSource(file, opts);
  try {
    const before = opts.identity ?? identityOf(await fh.stat({ bigint: true }));
    const size = opts.size ?? Number(before.size);
    let got = 0;
    for (;;) {
      const want = Math.min(READ_CHUNK, size + 1 - got);
      const buf = Buffer.allocUnsafe(Math.max(want, 1));
      const { bytesRead } = await fh.read(buf, 0, buf.length, got).catch((err: unknown) => {
        throw sourceError(err, opts.label);
      });
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got > size) break; // grew: reported below
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
    checkUnchanged(before, await fh.stat({ bigint: true }), size, got, opts.label);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Identity of a file by path, following a link only with `followLink` (a file a user named). */
export async function identityAt(file: string, opts: ReadOptions): Promise<FileIdentity> {
  let st: BigIntStats;
  try {
    st = opts.followLink ? await fs.stat(file, { bigint: true }) : await fs.lstat(file, { bigint: true });
  } catch (err) {
    throw sourceError(err, opts.label);
  }
  if (st.isSymbolicLink()) throw new VhfsError('UNSAFE_PATH', `${opts.label}: is a symbolic link; not followed`);
  if (!st.isFile()) throw specialFile(opts.label, st);
  return identityOf(st);
}

export function identityOf(st: BigIntStats): FileIdentity {
  return { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

async function openSource(file: string, opts: ReadOptions): Promise<FileHandle> {
  try {
    return await fs.open(file, READ_FLAGS | (opts.followLink ? 0 : fsc.O_NOFOLLOW));
  } catch (err) {
    throw sourceError(err, opts.label);
  }
}

function checkUnchanged(before: FileIdentity, after: BigIntStats, size: number, got: number, label: string): void {
  if (got !== size || !after.isFile()) {
    throw new VhfsError('INTEGRITY', `${label}: changed while it was being read (${size} bytes when listed, ${after.isFile() ? `${after.size} now` : 'no longer a regular file'})`);
  }
  if (after.ino !== before.ino || after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs) {
    throw new VhfsError('INTEGRITY', `${label}: changed while it was being read (modified since it was listed)`);
  }
}

/** A failed open/read/readdir of a source, as one line naming the file. */
export function sourceError(err: unknown, label: string): VhfsError {
  if (err instanceof VhfsError) return err;
  const code = errnoOf(err);
  switch (code) {
    case 'ENOENT':
      return new VhfsError('NOT_FOUND', `${label}: no such file (removed while the version was being created?)`, { cause: err });
    case 'ELOOP':
      return new VhfsError('UNSAFE_PATH', `${label}: is a symbolic link (replaced since it was listed?); not followed`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new VhfsError('BAD_ARGUMENT', `${label}: cannot be read: permission denied`, { cause: err });
    case 'EISDIR':
      return new VhfsError('INTEGRITY', `${label}: is now a directory (replaced since it was listed?)`, { cause: err });
    default:
      return new VhfsError('BAD_ARGUMENT', `${label}: cannot be read (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

function specialFile(
  where: string,
  st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean },
): VhfsError {
  const kind = st.isDirectory() ? 'directory' : st.isFIFO() ? 'named pipe (FIFO)' : st.isSocket() ? 'socket' : st.isBlockDevice() || st.isCharacterDevice() ? 'device' : 'special file';
  return new VhfsError('BAD_ARGUMENT', `${where}: is a ${kind}; a version holds regular files only`);
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
