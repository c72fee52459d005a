/**
 * The writable FUSE tree of `outputs/`: a passthrough to the current run's staging tree on local disk.
 *
 * Thin by design: every handler is one node `fs` call on the staging path plus a map update in the session
 * (src/outputs/session.ts), which owns every upload decision. File handles are the staging tree's own file
 * descriptors, so `read`/`write` go straight to `fs.read`/`fs.write` on the fd they are given: no lookup
 * by path, no promise, no await besides the I/O itself.
 *
 * Which calls are synchronous: those that only touch inodes the kernel has in memory (stat, open, close,
 * chmod, utimens, mkdir, rmdir, link, symlink, readlink) cost a few µs, less than a round trip through libuv's
 * thread pool (measured: a `stat` through the mount 2-3x faster). Those that move data or may free blocks
 * (read, write, fsync, truncate, unlink, rename over a file, readdir of a big directory, statfs) stay on the
 * thread pool, so one slow disk operation does not stall every other request.
 *
 * POSIX semantics come from the staging filesystem (errno passed through as is). What differs:
 *  - while a finalize runs, modifications get EROFS; a handle whose run was finalized stays readable but
 *    refuses writes (EROFS), so nothing written after the upload is silently lost;
 *  - `mknod` (FIFOs, sockets, devices) is refused with EPERM: such files cannot be outputs. Symlinks and
 *    hard links are stored; finalize uploads a symlink to a regular file inside outputs/ with that file's
 *    bytes, and skips (with a warning) one that dangles or leads outside (spec §9 q11);
 *  - permissions are those of the daemon's user (fuse-native does not tell us the caller's uid);
 *  - fuse-native passes only one of the two times to `utimens` (the atime, twice), and both "now" and
 *    "omit" arrive as 1073 ms after the epoch: "now" is assumed, so `touch` works; the mtime a `tar -x`
 *    restores is lost (the datum's ctime is its time anyway).
 *
 * Deliberately absent handlers (each would be a hop to this thread): `flush` (writes are synchronous, so
 * close has no error to report), `access` and the xattr family (libfuse answers ENOSYS once and the kernel
 * stops asking), `opendir`/`releasedir` (libfuse keeps its own handle; see native-notes), `fgetattr`
 * (libfuse falls back to `getattr`). libfuse's `hide` mode renames an unlinked-but-open file to
 * `.fuse_hidden*` in its directory until its last close; finalize never takes those for outputs.
 */
import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import Fuse, { type Ops, type Stat } from 'fuse-native';
import type { OutputsSession } from '../outputs/session.js';

/** What `utimens` receives for UTIME_NOW and UTIME_OMIT alike (tv_sec 0, tv_nsec ≈ 2^30 → ms). */
const UTIME_SENTINEL_MS = 1073;
/** Open flags passed on to the staging file: access mode and synchronous-write flags. O_APPEND is left
 * out on purpose: the kernel already computes every write's offset from the file size. */
const O_ACCMODE = 3; // not in node's fs.constants (O_RDONLY 0, O_WRONLY 1, O_RDWR 2)
const OPEN_FLAGS_KEPT = O_ACCMODE | C.O_SYNC | C.O_DSYNC;

type Done = (errnoOrValue: number) => void;

function statOf(st: fs.Stats): Stat {
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, nlink: st.nlink,
    blksize: st.blksize, blocks: st.blocks, atime: st.atime, mtime: st.mtime, ctime: st.ctime,
  };
}

/** The process umask (node's open/mkdir apply it again after the kernel applied the caller's). */
function readUmask(): number {
  const u = process.umask(0o022);
  process.umask(u);
  return u;
}

export function outputsOps(session: OutputsSession): Ops {
  const real = (p: string) => session.stagePath(p);
  const umask = readUmask();
  const errno = (err: unknown): number => ((err as NodeJS.ErrnoException | null)?.errno ?? (err ? Fuse.EIO : 0));
  const status = (cb: Done) => (err: NodeJS.ErrnoException | null) => cb(errno(err));
  /** A synchronous call's outcome: its value, or the errno it failed with. */
  const now = <T>(call: () => T): { value: T } | { errno: number } => {
    try {
      return { value: call() };
    } catch (err) {
      return { errno: errno(err) };
    }
  };
  /** A modification made synchronously, unless the session is frozen (finalize); then tell the session. */
  const modifyNow = (cb: Done, call: () => void, after?: () => void): void => {
    if (!session.writable) return cb(Fuse.EROFS);
    const r = now(call);
    if ('errno' in r) return cb(r.errno);
    after?.();
    cb(0);
  };
  /** The same for calls that may take long (they free or move data): on the thread pool. */
  const modifyLater = (cb: Done, io: (next: (err: NodeJS.ErrnoException | null) => void) => void, after?: () => void): void => {
    if (!session.writable) return cb(Fuse.EROFS);
    io((err) => {
      if (!err) after?.();
      cb(errno(err));
    });
  };
  /** Undo the daemon's umask on a new file or directory when it would have removed bits the caller asked for. */
  const exactMode = (mode: number) => (mode & umask) !== 0;

  return {
    getattr(p, cb) {
      const r = now(() => fs.lstatSync(real(p)));
      if ('errno' in r) return cb(r.errno);
      const st = statOf(r.value);
      // The staging area is private (the CLI's umask is 077); outputs/ itself must look enterable to a job.
      if (p === '/') st.mode |= 0o755;
      cb(0, st);
      session.attrServed(p);
    },

    readdir(p, cb) {
      fs.readdir(real(p), (err, names) => (err ? cb(errno(err)) : cb(0, names)));
    },

    readlink(p, cb) {
      const r = now(() => fs.readlinkSync(real(p)));
      if ('errno' in r) return cb(r.errno);
      cb(0, r.value);
    },

    statfs(_p, cb) {
      // The staging area, not the run's tree: the tree of a run being finalized at unmount is deleted
      // while the mount is still up, and the daemon's own statfs is how it recognises its mount then.
      fs.statfs(session.stagingDir, (err, s) => {
        if (err) return cb(errno(err));
        cb(0, {
          bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: s.files, ffree: s.ffree, favail: s.ffree, fsid: 0, flag: 0, namemax: 255,
        });
      });
    },

    create(p, mode, cb) {
      if (!session.writable) return cb(Fuse.EROFS);
      const r = now(() => {
        const fd = fs.openSync(real(p), C.O_CREAT | C.O_RDWR, mode & 0o7777);
        if (exactMode(mode)) {
          try { fs.fchmodSync(fd, mode & 0o7777); } catch { /* keep the masked mode */ }
        }
        return fd;
      });
      if ('errno' in r) return cb(r.errno);
      session.created(r.value, p);
      cb(0, r.value);
    },

    open(p, flags, cb) {
      const write = (flags & O_ACCMODE) !== C.O_RDONLY;
      if (write && !session.writable) return cb(Fuse.EROFS);
      const r = now(() => fs.openSync(real(p), flags & OPEN_FLAGS_KEPT));
      if ('errno' in r) return cb(r.errno);
      session.opened(r.value, p, write);
      cb(0, r.value);
    },

    read(_p, fd, buf, len, pos, cb) {
      fs.read(fd, buf, 0, len, pos, (err, n) => cb(err ? errno(err) : n));
    },

    write(_p, fd, buf, len, pos, cb) {
      if (!session.mayWrite(fd)) return cb(Fuse.EROFS);
      fs.write(fd, buf, 0, len, pos, (err, n) => cb(err ? errno(err) : n));
    },

    release(_p, fd, cb) {
      // Forget the handle before the fd is closed: once closed, the number can be handed to the next
      // open at once, and forgetting it afterwards would drop that new file's handle.
      session.released(fd);
      now(() => fs.closeSync(fd));
      cb(0);
    },

    fsync(_p, datasync, fd, cb) {
      (datasync ? fs.fdatasync : fs.fsync)(fd, status(cb));
    },

    truncate(p, size, cb) {
      modifyLater(cb, (next) => fs.truncate(real(p), size, next), () => session.changed(p));
    },

    ftruncate(_p, fd, size, cb) {
      if (!session.mayWrite(fd)) return cb(Fuse.EROFS);
      fs.ftruncate(fd, size, status(cb));
    },

    chmod(p, mode, cb) {
      modifyNow(cb, () => fs.chmodSync(real(p), mode & 0o7777), () => session.chmodded(p, mode));
    },

    chown(p, uid, gid, cb) {
      modifyNow(cb, () => fs.lchownSync(real(p), uid, gid));
    },

    utimens(p, atime, _mtimeIsAtimeAgain, cb) {
      // fuse-native hands over milliseconds (a number), whatever its typings say.
      const given = atime as unknown as number | Date;
      const ms = typeof given === 'number' ? given : given.getTime();
      const t = ms === UTIME_SENTINEL_MS ? new Date() : new Date(ms);
      modifyNow(cb, () => fs.lutimesSync(real(p), t, t));
    },

    unlink(p, cb) {
      modifyLater(cb, (next) => fs.unlink(real(p), next), () => session.removed(p));
    },

    rename(src, dst, cb) {
      // Asynchronous: replacing an existing file frees its blocks.
      modifyLater(cb, (next) => fs.rename(real(src), real(dst), next), () => session.renamed(src, dst));
    },

    link(src, dst, cb) {
      modifyNow(cb, () => fs.linkSync(real(src), real(dst)), () => session.linked(dst));
    },

    symlink(target, linkPath, cb) {
      modifyNow(cb, () => fs.symlinkSync(target, real(linkPath)), () => session.linked(linkPath));
    },

    mkdir(p, mode, cb) {
      modifyNow(cb, () => {
        fs.mkdirSync(real(p), mode & 0o7777);
        if (exactMode(mode)) fs.chmodSync(real(p), mode & 0o7777);
      });
    },

    rmdir(p, cb) {
      modifyNow(cb, () => fs.rmdirSync(real(p)));
    },

    mknod(_p, _mode, _dev, cb) {
      cb(Fuse.EPERM);
    },
  };
}
