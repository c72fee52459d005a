/**
 * A ranged read with a deadline: it answers within `timeoutMs` or fails with TIMEOUT naming the store,
 * object and byte range. The abort signal is handed to the store, which cancels what it can (an HTTP
 * request, a wait for a lock); the promise settles at the deadline even when the store cannot cancel.
 *
 * A read that cannot be cancelled (a local filesystem that stopped answering: a hung NFS server, a FIFO)
 * keeps one of libuv's I/O threads until the kernel lets go. So reads past their deadline and still not
 * settled are counted per store, and once `MAX_STUCK` are, new reads of that store fail at once with a
 * STORE error instead of taking another thread: a few threads may be lost to a dead disk, never all of
 * them (the mount daemon still reads mountinfo, writes logs and unmounts).
 */
import { VhfsError } from '../util/errors.js';
import type { ObjectStore } from './types.js';

export const MAX_STUCK = 4;
const stuck = new WeakMap<ObjectStore, number>();

export async function getRangeWithin(store: ObjectStore, key: string, offset: number, length: number, timeoutMs: number): Promise<Buffer> {
  const range = `${store.url}/${key}: bytes ${offset}-${offset + length - 1}`;
  if ((stuck.get(store) ?? 0) >= MAX_STUCK) {
    throw new VhfsError('STORE', `${range}: not read, ${MAX_STUCK} earlier reads of ${store.url} are still stuck past their deadline (is its disk or server hung?)`);
  }
  const signal = AbortSignal.timeout(timeoutMs);
  let timedOut = false;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    onAbort = () => {
      timedOut = true;
      reject(new VhfsError('TIMEOUT', `${store.url}/${key}: no answer for bytes ${offset}-${offset + length - 1} within ${timeoutMs} ms`));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
  const read = store.getRange(key, offset, length, signal);
  try {
    return await Promise.race([read, deadline]);
  } catch (err) {
    if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      throw new VhfsError('TIMEOUT', `${store.url}/${key}: no answer for bytes ${offset}-${offset + length - 1} within ${timeoutMs} ms`);
    }
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort!);
    if (timedOut) {
      // The read lost the race: count it as stuck until it settles one way or the other.
      stuck.set(store, (stuck.get(store) ?? 0) + 1);
      const release = () => stuck.set(store, (stuck.get(store) ?? 1) - 1);
      read.then(release, release);
    } else {
      read.catch(() => undefined);
    }
  }
}
