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

/** The libfuse `-o` options for a mount every user may read (none when `allowOther` is false). */
export async function sharingOptions(allowOther: boolean, opts: { fuseConf?: string; flag?: string } = {}): Promise<string[]> {
  if (!allowOther) return [];
  const uid = process.getuid?.() ?? 0;
  const conf = opts.fuseConf ?? FUSE_CONF;
  if (uid !== 0 && !(await userAllowOther(conf))) {
    throw new VhfsError('UNSUPPORTED',
      `${opts.flag ?? 'allow_other'} as a non-root user (uid ${uid}) needs a line "user_allow_other" in ${conf} ` +
      `(add it as root), or mount as root, or let only uid ${uid} read the mount`);
  }
  return ['allow_other', 'default_permissions'];
}

/** Whether fuse.conf has an uncommented `user_allow_other` line (fusermount's own test). */
export async function userAllowOther(conf = FUSE_CONF): Promise<boolean> {
  const text = await readFile(conf, 'utf8').catch(() => '');
  return text.split('\n').some((line) => line.replace(/#.*/, '').trim() === 'user_allow_other');
}
