/**
 * Directories and files that the job must be able to read whatever user it runs as (`/valohai/inputs`,
 * `/valohai/config/inputs.json`), in a process whose umask keeps its own state private (the CLI runs with
 * umask 077: everything under VHFS_HOME is 0700/0600). The umask applies to every create, so these are
 * opened up explicitly afterwards.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

/** `mkdir -p dir`, then mode 0755 on every directory it created (existing ones are left as they are). */
export async function mkdirShared(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true });
  if (first === undefined) return;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await fs.chmod(d, 0o755);
    if (d === path.resolve(first) || d === path.dirname(d)) break;
  }
}

/** Mode 0644 for a file a job reads. */
export async function shareFile(file: string): Promise<void> {
  await fs.chmod(file, 0o644);
}
