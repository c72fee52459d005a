/**
 * Who may read a mount. By default the kernel lets only the mounting user into a FUSE mount (not even
 * root): a job running as uid 1000 in a container that bind-mounts a host mount made by root gets EACCES
 * on the mountpoint itself. `allow_other` opens it to every user; `default_permissions` then makes the
 * kernel check the mode bits vhfs reports (files 0444, directories 0555: everyone reads, nobody writes)
 * instead of trusting the daemon to check, which vhfs does not.
 *
 * As root this always works. As any other user, libfuse mounts through the setuid `fusermount`, which
 * refuses `allow_other` unless `/etc/fuse.conf` has a line `user_allow_other`, and fuse-native then reports
 * only "fuse failed". So the file is checked first and the error says what to change.
 */
import { readFile } from 'node:fs/promises';
import { VhfsError } from '../util/errors.js';

export const FUSE_CONF = '/etc/fuse.conf';

/**
 * The libfuse `-o` options for a mount every user may read (none when `allowOther` is false). `ownOnly` is
 * how the user asks for a mount only they can read (`--no-allow-other`, or leaving `--allow-other` out).
 */
export async function sharingOptions(allowOther: boolean, ownOnly: string, fuseConf = FUSE_CONF): Promise<string[]> {
  if (!allowOther) return [];
  const uid = process.getuid?.() ?? 0;
  if (uid !== 0 && !(await userAllowOther(fuseConf))) {
    throw new VhfsError('UNSUPPORTED',
      `a mount every user may read (allow_other) needs, as a non-root user (uid ${uid}), a line "user_allow_other" ` +
      `in ${fuseConf}: add it as root, run vhfs as root, or make the mount readable by uid ${uid} only (${ownOnly})`);
  }
  return ['allow_other', 'default_permissions'];
}

/** Whether fuse.conf has an uncommented `user_allow_other` line (fusermount's own test). */
export async function userAllowOther(conf = FUSE_CONF): Promise<boolean> {
  const text = await readFile(conf, 'utf8').catch(() => '');
  return text.split('\n').some((line) => line.replace(/#.*/, '').trim() === 'user_allow_other');
}
