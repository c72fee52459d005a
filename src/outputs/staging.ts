/**
 * The staging area: where writes under `<root>/outputs` really land, on local disk, until they are uploaded.
 *
 *   <staging>/journal.sqlite        the journal (journal.ts)
 *   <staging>/runs/<run>/tree/…     the run's outputs, exactly as the job sees them through the mount
 *   <staging>/runs/<run>/live/<id>  a file a live upload moved out of the tree, until it is uploaded
 *   <staging>/runs/<run>/tmp/       spool space (dataset packages) for that run's finalize
 *
 * One tree per run keeps runs independent: a mount that finds an orphaned run (its daemon was killed)
 * starts a fresh tree at once and recovers the old one in the background. Everything of a run is on one
 * filesystem, so moving a file out of the tree for a live upload is an atomic rename.
 *
 * The default staging area is `<home>/outputs/<sha256 of the outputs mountpoint, 16 hex>`, so the next
 * mount of the same root, and `vhfs outputs status|recover` given the same root, find it.
 */
import { createHash } from 'node:crypto';
import { promises as fs, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { relativePathProblem } from '../util/path-rules.js';
import { compareNames } from '../util/utf8-order.js';

export const JOURNAL_FILE = 'journal.sqlite';

/** Files libfuse's high-level API leaves behind for an unlinked file that is still open (`hide` mode). */
export const FUSE_HIDDEN_PREFIX = '.fuse_hidden';

export class StagingArea {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = path.resolve(dir);
  }

  get journalFile(): string {
    return path.join(this.dir, JOURNAL_FILE);
  }

  runDir(run: string): string {
    return path.join(this.dir, 'runs', run);
  }

  treeDir(run: string): string {
    return path.join(this.dir, 'runs', run, 'tree');
  }

  liveFile(run: string, uploadId: string): string {
    return path.join(this.dir, 'runs', run, 'live', uploadId);
  }

  async createRunDirs(run: string): Promise<void> {
    await fs.mkdir(this.treeDir(run), { recursive: true });
    await fs.mkdir(path.dirname(this.liveFile(run, 'x')), { recursive: true });
  }
}

export function defaultStagingDir(home: string, outputsDir: string): string {
  const key = createHash('sha256').update(path.resolve(outputsDir)).digest('hex').slice(0, 16);
  return path.join(home, 'outputs', key);
}

export type TreeEntryKind = 'file' | 'symlink' | 'other';

export interface TreeEntry {
  /** Relative, `/`-separated. */
  path: string;
  kind: TreeEntryKind;
  size: number;
}

/**
 * Every non-directory under `dir` (files, symlinks, anything else), in name order, with
 * `.fuse_hidden*` left out: those are unlinked files a process still holds open, not outputs.
 */
export async function walkTree(dir: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const visit = async (rel: string): Promise<void> => {
    const abs = rel ? path.join(dir, rel) : dir;
    let entries;
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await visit(p);
      else if (e.name.startsWith(FUSE_HIDDEN_PREFIX)) continue;
      else if (e.isFile()) out.push({ path: p, kind: 'file', size: (await fs.lstat(path.join(dir, p))).size });
      else out.push({ path: p, kind: e.isSymbolicLink() ? 'symlink' : 'other', size: 0 });
    }
  };
  await visit('');
  return out.sort((a, b) => compareNames(a.path, b.path));
}

/** Remove empty directories under `dir` (deepest first), keeping `dir` itself. */
export async function pruneEmptyDirs(dir: string): Promise<void> {
  const prune = async (abs: string): Promise<boolean> => {
    let entries;
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch {
      return false;
    }
    let empty = true;
    for (const e of entries) {
      if (e.isDirectory() && (await prune(path.join(abs, e.name)))) {
        await fs.rmdir(path.join(abs, e.name)).catch(() => { empty = false; });
      } else empty = false;
    }
    return empty;
  };
  await prune(dir);
}

/**
 * The datum name for an output path: the path itself, unless it breaks the path rules every catalog path
 * and package entry follows (util/path-rules.ts); then what breaks them is percent-encoded (`a\b` → `a%5Cb`,
 * `C:x` → `C%3Ax`) and the reason is returned. FUSE never hands us empty, `.` or `..` segments, NUL or
 * names over 255 bytes, so a backslash or a leading drive letter is what this meets in practice; anything
 * else it cannot repair gets a name derived from the path's hash.
 */
export function datumNameFor(p: string): { name: string; reason?: string } {
  const reason = relativePathProblem(p);
  if (!reason) return { name: p };
  const encode = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
  let name = (p as unknown as { toWellFormed(): string }).toWellFormed()
    .replace(/[\\\0]/g, encode)
    .replace(/^([A-Za-z]):/, (_, drive: string) => `${drive}${encode(':')}`);
  if (relativePathProblem(name)) name = `unsafe-name-${createHash('sha256').update(p).digest('hex').slice(0, 16)}`;
  return { name, reason: `the path ${reason}` };
}

/** What identifies one content of a file without reading it: inode, size, mtime and ctime in ns. */
export function fingerprintOf(st: BigIntStats): string {
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
