/**
 * The worker thread of read-pool.ts. Read requests: each file is read once with blocking calls, the
 * bytes it read are hashed, and the buffer goes back transferred (no copy); errors go back as code +
 * one line. Stream pieces: fed to a `ContentHasher` per stream (SHA-256), each acknowledged with
 * its buffer (for reuse) so the producer can bound how far ahead it runs; `finish` answers the digest.
 */
import { parentPort } from 'node:worker_threads';
import { isVhfsError } from '../util/errors.js';
import { ContentHasher, digestBytes } from '../util/hash.js';
import { readFileOnceSync } from './source-files.js';
import type { WorkerAnswer, WorkerMessage, WorkerReply } from './read-pool.js';

const streams = new Map<number, ContentHasher>();
const post = (m: WorkerAnswer, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(m, transfer);

parentPort!.on('message', (msg: WorkerMessage) => {
  if ('job' in msg) {
    const replies: WorkerReply[] = [];
    const transfer: ArrayBuffer[] = [];
    for (const req of msg.requests) {
      try {
        const bytes = readFileOnceSync(req.file, { label: req.label, size: req.size, ...(req.identity ? { identity: req.identity } : {}) });
        const digest = digestBytes(bytes, { chunks: Boolean(req.chunks) });
        const buffer = bytes.buffer as ArrayBuffer;
        replies.push({ ok: true, buffer, size: bytes.length, sha256: digest.sha256, ...(digest.chunkTable ? { chunkTable: digest.chunkTable } : {}) });
        transfer.push(buffer);
      } catch (err) {
        replies.push(isVhfsError(err)
          ? { ok: false, code: err.code, message: err.message }
          : { ok: false, code: 'STORE', message: `${req.label}: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
    post({ job: msg.job, replies }, transfer);
    return;
  }
  let hasher = streams.get(msg.stream);
  if (!hasher) streams.set(msg.stream, (hasher = new ContentHasher()));
  if ('data' in msg) {
    hasher.update(new Uint8Array(msg.data, 0, msg.length));
    post({ stream: msg.stream, hashed: msg.data, length: msg.length }, [msg.data]); // the buffer goes back for reuse
  } else {
    streams.delete(msg.stream);
    const d = hasher.finish();
    post({ stream: msg.stream, digest: { sha256: d.sha256, size: d.size } });
  }
});
