/**
 * Content hashing while data flows: sha256 is the content address of every blob (`blobs/sha256/<hex>`),
 * md5 is kept because object stores report it (S3 ETag of single-part uploads, GCS/Azure Content-MD5).
 *
 * `ContentHasher` is the write path's one pass over a body: SHA-256 and, for bodies larger than one
 * chunk, the chunk hash table (`chunk-hashes.ts`) from the same bytes, so what is hashed is exactly what
 * is stored. It skips md5: no record keeps it, and on 16 KiB files md5 costs more CPU than SHA-256.
 *
 * `HashingTransform` passes bytes through unchanged and hashes them on the way, so a body can be hashed
 * and written (to a temp file, a store) in one pass without ever being held in memory. `digest()` is valid
 * once the stream has ended.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CHUNK_SIZE, ChunkHasher } from './chunk-hashes.js';

export interface ContentDigest {
  sha256: string; // hex
  md5: string; // hex
  size: number;
}

export class HashingTransform extends Transform {
  private readonly sha = createHash('sha256');
  private readonly md5: Hash | undefined;
  private size = 0;
  private result: ContentDigest | undefined;

  constructor(opts: { md5?: boolean } = {}) {
    super();
    this.md5 = opts.md5 === false ? undefined : createHash('md5');
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.sha.update(chunk);
    this.md5?.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.result = { sha256: this.sha.digest('hex'), md5: this.md5?.digest('hex') ?? '', size: this.size };
    cb();
  }

  /** The digest of everything that passed; throws if the stream has not ended yet. */
  digest(): ContentDigest {
    if (!this.result) throw new Error('HashingTransform.digest() called before the stream ended');
    return this.result;
  }
}

export function hashBuffer(data: Uint8Array): ContentDigest {
  return {
    sha256: createHash('sha256').update(data).digest('hex'),
    md5: createHash('md5').update(data).digest('hex'),
    size: data.length,
  };
}

/** What one pass over a body yields: its address and, when it spans more than one chunk, its chunk table. */
export interface BodyDigest {
  sha256: string; // hex
  size: number;
  /** Serialized chunk hash table; only for bodies larger than one chunk (CHUNK_SIZE) when asked for. */
  chunkTable?: Buffer;
}

/**
 * SHA-256 (and optionally the chunk hash table) of bytes fed in order, in any pieces. With
 * `chunks: true` the table is kept only if the body turns out larger than one chunk: a one-chunk
 * body is verified by its SHA-256 alone.
 */
export class ContentHasher {
  private readonly sha = createHash('sha256');
  private readonly chunks: ChunkHasher | undefined;
  private total = 0;

  constructor(opts: { chunks?: boolean } = {}) {
    this.chunks = opts.chunks ? new ChunkHasher() : undefined;
  }

  get size(): number {
    return this.total;
  }

  update(data: Uint8Array): void {
    this.sha.update(data);
    this.chunks?.update(data);
    this.total += data.length;
  }

  /** The digest of everything fed; the hasher is not used afterwards. */
  finish(): BodyDigest {
    const digest: BodyDigest = { sha256: this.sha.digest('hex'), size: this.total };
    if (this.chunks && this.total > CHUNK_SIZE) digest.chunkTable = this.chunks.finish();
    return digest;
  }
}

/** `ContentHasher` over one buffer; the chunk table is computed only when the buffer needs one. */
export function digestBytes(data: Uint8Array, opts: { chunks?: boolean } = {}): BodyDigest {
  const hasher = new ContentHasher({ chunks: Boolean(opts.chunks) && data.length > CHUNK_SIZE });
  hasher.update(data);
  return hasher.finish();
}

/**
 * Hash `source` while piping it into `sink` (a file write stream, an upload); without a sink the
 * bytes are only hashed. Resolves after the sink has finished.
 */
export async function hashStream(
  source: NodeJS.ReadableStream | AsyncIterable<Uint8Array>,
  sink?: NodeJS.WritableStream,
): Promise<ContentDigest> {
  const hasher = new HashingTransform();
  if (sink) {
    await pipeline(source, hasher, sink);
  } else {
    await pipeline(source, hasher, async (chunks: AsyncIterable<Buffer>) => {
      for await (const _ of chunks); // drain: the hasher does the work
    });
  }
  return hasher.digest();
}

/**
 * Read-buffer size for streaming a file of `size` bytes: a fixed 1 MiB buffer per stream made garbage
 * collection dominate `dataset create` on thousands of small files.
 */
export function readBufferSize(size: number): number {
  return Math.min(1 << 20, Math.max(16 << 10, size));
}

/** Files up to this size are read whole rather than streamed. */
export const SMALL_FILE_BYTES = 1 << 20;

export async function hashFile(path: string): Promise<ContentDigest> {
  const { size } = await stat(path);
  if (size <= SMALL_FILE_BYTES) return hashBuffer(await readFile(path));
  return hashStream(createReadStream(path, { highWaterMark: readBufferSize(size) }));
}
