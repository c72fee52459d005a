// fuse-native 2.2.6 ships no types; this covers the surface vhfs uses. Note: fuse-native drops options whose
// value is falsy (entryTimeout: 0, uid: 0) — use src/fuse/mountpoint.ts mountFuse, which passes them itself.
declare module 'fuse-native' {
  export interface Stat {
    mtime: Date; atime: Date; ctime: Date;
    size: number; mode: number; uid: number; gid: number; nlink?: number;
    ino?: number; dev?: number; rdev?: number; blksize?: number; blocks?: number;
  }
  export type Cb<T = void> = (err: number, value?: T) => void;
  export interface Ops {
    error?(cb: (err: number) => void): void;
    fsyncdir?(path: string, dataSync: boolean, fd: number, cb: (err: number) => void): void;
    init?(cb: (err: number) => void): void;
    access?(path: string, mode: number, cb: (err: number) => void): void;
    statfs?(path: string, cb: (err: number, st?: Record<string, number>) => void): void;
    getattr?(path: string, cb: (err: number, st?: Stat) => void): void;
    fgetattr?(path: string, fd: number, cb: (err: number, st?: Stat) => void): void;
    readdir?(path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void): void;
    open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
    opendir?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
    release?(path: string, fd: number, cb: (err: number) => void): void;
    releasedir?(path: string, fd: number, cb: (err: number) => void): void;
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
    flush?(path: string, fd: number, cb: (err: number) => void): void;
    fsync?(path: string, dataSync: boolean, fd: number, cb: (err: number) => void): void;
    truncate?(path: string, size: number, cb: (err: number) => void): void;
    ftruncate?(path: string, fd: number, size: number, cb: (err: number) => void): void;
    readlink?(path: string, cb: (err: number, target?: string) => void): void;
    chown?(path: string, uid: number, gid: number, cb: (err: number) => void): void;
    chmod?(path: string, mode: number, cb: (err: number) => void): void;
    mknod?(path: string, mode: number, dev: number, cb: (err: number) => void): void;
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: (err: number) => void): void;
    getxattr?(path: string, name: string, position: number, cb: (err: number, value?: Buffer) => void): void;
    listxattr?(path: string, cb: (err: number, names?: string[]) => void): void;
    removexattr?(path: string, name: string, cb: (err: number) => void): void;
    create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
    utimens?(path: string, atime: Date, mtime: Date, cb: (err: number) => void): void;
    unlink?(path: string, cb: (err: number) => void): void;
    rename?(src: string, dest: string, cb: (err: number) => void): void;
    link?(src: string, dest: string, cb: (err: number) => void): void;
    symlink?(src: string, dest: string, cb: (err: number) => void): void;
    mkdir?(path: string, mode: number, cb: (err: number) => void): void;
    rmdir?(path: string, cb: (err: number) => void): void;
  }
  export interface FuseOptions {
    force?: boolean; mkdir?: boolean; debug?: boolean;
    /** Per-op timeout in ms (default 15000; the kernel gets ETIMEDOUT), false = none, or per op name. */
    timeout?: number | false | ({ default?: number } & Record<string, number | false | undefined>);
    allowOther?: boolean; allowRoot?: boolean; autoUnmount?: boolean; defaultPermissions?: boolean;
    maxRead?: number; fsname?: string; subtype?: string; kernelCache?: boolean; autoCache?: boolean;
    entryTimeout?: number; attrTimeout?: number; acAttrTimeout?: number; noforget?: boolean;
    uid?: number; gid?: number; umask?: number; displayFolder?: boolean;
    blkdev?: boolean; blksize?: number; remember?: number; modules?: string;
  }
  export default class Fuse {
    constructor(mnt: string, ops: Ops, opts?: FuseOptions);
    mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static isConfigured(cb: (err: Error | null, configured: boolean) => void): void;
    static ENOENT: number; static EIO: number; static EROFS: number; static EACCES: number;
    static EISDIR: number; static ENOTDIR: number; static EINVAL: number; static EBADF: number;
    static ENOTEMPTY: number; static EEXIST: number; static EPERM: number; static ENOSYS: number;
    static ETIMEDOUT: number; static ENOTSUP: number; static EXDEV: number; static ENOSPC: number;
    static ENOTCONN: number; static ENODATA: number; static EOPNOTSUPP: number; static ENXIO: number;
    static EAGAIN: number; static EBUSY: number; static ENAMETOOLONG: number; static ERANGE: number;
  }
}
