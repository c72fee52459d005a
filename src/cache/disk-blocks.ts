/**
 * The on-disk block tier: one file per block under `<dir>/blocks/<aa>/<hash>.<blockSize>/<block>`, where
 * `hash` is the sha256 of the source's name (store URL + key). Sources are immutable, so a block file is
 * written once (temp file + rename: a crash never leaves a torn block that a reader would trust) and
 * never changes. Size bounds and sharing between processes are the host cache's job (it will replace
 * this class behind the same `BlockDisk` interface).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { BlockDisk } from './block-cache.js';

export class LocalBlockDisk implements BlockDisk {
  constructor(readonly dir: string) {}

  private blockPath(source: string, blockSize: number, block: number): string {
    const h = createHash('sha256').update(source).digest('hex');
    return path.join(this.dir, 'blocks', h.slice(0, 2), `${h}.${blockSize}`, String(block));
  }

  async get(source: string, blockSize: number, block: number): Promise<Buffer | undefined> {
    try {
      return await fs.readFile(this.blockPath(source, blockSize, block));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async getRange(source: string, blockSize: number, block: number, offset: number, length: number): Promise<Buffer | undefined> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.blockPath(source, blockSize, block), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const buf = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      return bytesRead === length ? buf : undefined;
    } finally {
      await fh.close();
    }
  }

  async has(source: string, blockSize: number, block: number): Promise<boolean> {
    return fs.access(this.blockPath(source, blockSize, block)).then(() => true, () => false);
  }

  async put(source: string, blockSize: number, block: number, data: Buffer): Promise<void> {
    const file = this.blockPath(source, blockSize, block);
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await fs.writeFile(tmp, data);
    await fs.rename(tmp, file);
  }
}
