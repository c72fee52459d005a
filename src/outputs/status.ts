/**
 * `vhfs outputs status`: every run of a staging area and every file's state, from the journal plus the
 * staging tree (pending = in the tree or the journal's staged index, and not uploaded from the tree).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ownerAlive, type Journal, type RunRow } from './journal.js';
import { walkTree, type StagingArea } from './staging.js';

export type FileState = 'pending' | 'uploading' | 'done' | 'failed';

export interface FileStatus {
  path: string;
  state: FileState;
  /** 'live' for a file uploaded when it turned read-only. */
  via?: 'live';
  size?: number;
  datum?: string;
  error?: string;
}

export interface RunStatus {
  id: string;
  state: RunRow['state'];
  executionId?: string;
  owner: { pid: number; alive: boolean };
  createdAt: string;
  finalizedAt?: string;
  counts: Record<FileState, number>;
  files: FileStatus[];
}

export async function outputsStatus(journal: Journal, staging: StagingArea): Promise<RunStatus[]> {
  const out: RunStatus[] = [];
  for (const run of journal.runs()) {
    const files: FileStatus[] = [];
    const uploadedFromTree = new Set<string>();
    for (const u of journal.uploadsOf(run.id)) {
      if (u.source === 'tree' && u.state === 'uploaded') uploadedFromTree.add(u.path);
      files.push({
        path: u.path,
        state: u.state === 'uploaded' ? 'done' : u.state === 'failed' ? 'failed' : 'uploading',
        ...(u.source === 'live' ? { via: 'live' as const } : {}),
        ...(u.size !== undefined ? { size: u.size } : {}),
        ...(u.state === 'uploaded' ? { datum: `datum://${u.id}` } : {}),
        ...(u.error ? { error: u.error } : {}),
      });
    }
    if (run.state !== 'finalized') {
      const tree = staging.treeDir(run.id);
      const pending = new Map<string, number | undefined>();
      for (const e of await walkTree(tree)) pending.set(e.path, e.size);
      for (const s of journal.staged(run.id)) {
        if (!pending.has(s.path)) {
          const size = await fs.lstat(path.join(tree, s.path)).then((st) => st.size, () => undefined);
          if (size !== undefined) pending.set(s.path, size);
        }
      }
      const inUpload = new Set(files.filter((f) => f.state !== 'done' && !f.via).map((f) => f.path));
      for (const [p, size] of pending) {
        if (uploadedFromTree.has(p) || inUpload.has(p)) continue;
        files.push({ path: p, state: 'pending', ...(size !== undefined ? { size } : {}) });
      }
    }
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const counts: Record<FileState, number> = { pending: 0, uploading: 0, done: 0, failed: 0 };
    for (const f of files) counts[f.state]++;
    out.push({
      id: run.id, state: run.state,
      ...(run.producer.executionId ? { executionId: run.producer.executionId } : {}),
      owner: { pid: run.owner.pid, alive: ownerAlive(run.owner) },
      createdAt: run.createdAt, ...(run.finalizedAt ? { finalizedAt: run.finalizedAt } : {}),
      counts, files,
    });
  }
  return out;
}
