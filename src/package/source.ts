/**
 * Random-access byte sources the reader works on: anything that can return an exact byte range.
 * Adapters for a Buffer, a local file and an object-store key; each checks that a read returned
 * exactly what was asked, so a short read surfaces as an error instead of a misparse. A file source
 * holds a descriptor: every path that opens one closes it, errors included (`withFileSource`), since a
 * daemon that leaks one per rejected package runs out of descriptors.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { VhfsError } from '../util/errors.js';
import type { ObjectStore } from '../store/types.js';

export interface RandomAccessSource {
  readonly size: number;
  /** Exactly `length` bytes at `offset` (the range lies within `size`). */
  read(offset: number, length: number): Promise<Buffer>;
}

export function bufferSource(buf: Buffer): RandomAccessSource {
  return {
    size: buf.length,
    read: async (offset, length) => buf.subarray(offset, offset + length),
  };
}

export interface FileSource extends RandomAccessSource {
  close(): Promise<void>;
}

/**
 * A local file opened read-only; close it when done (or use `withFileSource`). A missing file is
 * NOT_FOUND, and a handle is never left open by a failure here.
 */
export async function fileSource(path: string): Promise<FileSource> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new VhfsError('NOT_FOUND', `${path}: no such file`);
    throw new VhfsError('STORE', `${path}: cannot open: ${e.message}`, { cause: err });
  }
  let size: number;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new VhfsError('BAD_ARGUMENT', `${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    await fh.close().catch(() => {});
    if (err instanceof VhfsError) throw err;
    throw new VhfsError('STORE', `${path}: cannot stat: ${(err as Error).message}`, { cause: err });
  }
  return {
    size,
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) {
          throw new VhfsError('STORE', `${path}: short read at offset ${offset + done} (file shrank?)`);
        }
        done += bytesRead;
      }
      return buf;
    },
    close: () => fh.close(),
  };
}

/** Open `path`, run `fn` on it, and close it whatever `fn` does: errors included. */
export async function withFileSource<T>(path: string, fn: (source: FileSource) => Promise<T>): Promise<T> {
  const source = await fileSource(path);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}

/** An object in a store, size from `head` or an index; every read is one ranged GET. */
export function storeSource(store: ObjectStore, key: string, size: number): RandomAccessSource {
  return {
    size,
    read: (offset, length) => store.getRange(key, offset, length),
  };
}
