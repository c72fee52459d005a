/**
 * `<config>/inputs.json` in the shape valohai-utils reads (Valohai data-plane spec, "inputs.json"):
 * `{ "<input>": { "files": [ { name, path, size, uri, datum_id, checksums, metadata } ] } }`.
 *
 * Streamed, since a version may have millions of files, and written atomically (temp file + rename), so a
 * job never reads half a file. Small chunks, one at a time, with a turn of the event loop between them:
 * FUSE requests are served on this same thread, and a million-file inputs.json (~300 MB) must not stall
 * them while it is written. An input that could not be resolved is listed with no files and an `error`
 * naming why, so a job (or a person reading the file) is never told "no files" when the truth is "failed".
 */
import { promises as fs, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import type { InputSet } from './input-set.js';
import { mkdirShared, shareFile } from '../util/shared-dirs.js';

export async function writeInputsJson(file: string, mountpoint: string, inputs: InputSet, failures: ReadonlyMap<string, string> = new Map()): Promise<void> {
  await mkdirShared(path.dirname(file));
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    // pipeline() owns the stream's errors: an unwritable config dir rejects here instead of an unhandled
    // 'error' event that would take the whole mount down.
    await pipeline(Readable.from(batched(chunks(mountpoint, inputs, failures), 16 * 1024), { highWaterMark: 1 }), createWriteStream(tmp));
    await shareFile(tmp);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Join small strings into chunks of about `bytes` (one stream write per entry kept the event loop busy), yielding the loop after each. */
async function* batched(parts: AsyncIterable<string>, bytes: number): AsyncGenerator<string> {
  let pending: string[] = [];
  let size = 0;
  for await (const c of parts) {
    pending.push(c);
    size += c.length;
    if (size >= bytes) {
      yield pending.join('');
      pending = [];
      size = 0;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  if (pending.length) yield pending.join('');
}

async function* chunks(mountpoint: string, inputs: InputSet, failures: ReadonlyMap<string, string>): AsyncGenerator<string> {
  yield '{';
  let firstInput = true;
  for (const name of inputs.names) {
    const error = failures.get(name);
    yield `${firstInput ? '' : ','}\n  ${JSON.stringify(name)}: {${error === undefined ? '' : `"error": ${JSON.stringify(error)}, `}"files": [`;
    firstInput = false;
    const input = inputs.get(name);
    let first = true;
    if (input) {
      for await (const f of input.describe()) {
        const entry = {
          name: f.name,
          path: path.join(mountpoint, name, f.name),
          size: f.size,
          uri: f.uri,
          ...(f.datumId ? { datum_id: f.datumId } : {}),
          checksums: f.sha256 ? { sha256: f.sha256 } : {},
          metadata: [],
        };
        yield `${first ? '' : ','}\n    ${JSON.stringify(entry)}`;
        first = false;
      }
    }
    yield first ? ']}' : '\n  ]}';
  }
  yield '\n}\n';
}
