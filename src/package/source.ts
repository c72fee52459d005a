/**
 * Random-access byte sources the reader works on: anything that can return an exact byte range.
 * Adapters for a Buffer, a local file and an object-store key; each checks that a read returned
 * exactly what was asked, so a short read surfaces as an error instead of a misparse.
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

/** A local file opened read-only; close it when done. */
export async function fileSource(path: string): Promise<FileSource> {
  const fh: FileHandle = await open(path, 'r');
  const { size } = await fh.stat();
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

/** An object in a store, size from `head` or an index; every read is one ranged GET. */
export function storeSource(store: ObjectStore, key: string, size: number): RandomAccessSource {
  return {
    size,
    read: (offset, length) => store.getRange(key, offset, length),
  };
}
