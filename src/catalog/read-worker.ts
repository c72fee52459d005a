/**
 * The worker thread of read-pool.ts: reads each requested file once with blocking calls, hashes the
 * bytes it read, and sends the buffer back transferred (no copy). Errors go back as code + one line.
 */
import { parentPort } from 'node:worker_threads';
import { isVhfsError } from '../util/errors.js';
import { digestBytes } from '../util/hash.js';
import { readFileOnceSync } from './source-files.js';
import type { ReadRequest, WorkerReply } from './read-pool.js';

parentPort!.on('message', (msg: { job: number; requests: ReadRequest[] }) => {
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
  parentPort!.postMessage({ job: msg.job, replies }, transfer);
});
