/**
 * s3rver 3.7.1 as a child process, exactly as /work/shared/notes/toolchain.md prescribes:
 *   node --openssl-legacy-provider node_modules/s3rver/bin/s3rver.js -d DIR -a 127.0.0.1 -p PORT --silent
 *        --configure-bucket NAME
 * (without the flag, paged ListObjectsV2 fails with 500 on Node 20). One bucket with a random name per
 * server; its data directory is a fresh temp dir, removed on `stop()`.
 *
 * What s3rver does not do (so tests must not rely on it): If-None-Match / If-Match on PUT (use the
 * conditional-write shim, `s3-conditional-shim.ts`), If-Match on GET, and the first level of common
 * prefixes in delimiter listings (list keys at least two levels below the prefix). Any access key is
 * accepted as long as it is `S3RVER` with secret `S3RVER` (`S3RVER_CREDENTIALS`).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { httpProbe, startChildServer, type RunningServer } from './child-server.js';

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3rverServer extends RunningServer {
  bucket: string;
  dir: string;
}

const S3RVER_BIN = path.join(path.dirname(createRequire(import.meta.url).resolve('s3rver/package.json')), 'bin', 's3rver.js');

/**
 * Start s3rver with one bucket. `dir` keeps its data in a directory of the caller's that outlives the
 * server (benchmarks reuse a loaded bucket); by default a temp dir, removed on `stop()`.
 */
export async function startS3rver(opts: { bucket?: string; dir?: string } = {}): Promise<S3rverServer> {
  const bucket = opts.bucket ?? `vhfs-${randomBytes(5).toString('hex')}`;
  const owned = opts.dir === undefined;
  const dir = opts.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-s3rver-')));
  try {
    const server = await startChildServer({
      name: 's3rver',
      command: process.execPath,
      args: (port) => ['--openssl-legacy-provider', S3RVER_BIN, '-d', dir, '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', bucket],
      // Ours only if our randomly named bucket answers (a stranger on the port would give 404).
      ready: async (port) => (await httpProbe(`http://127.0.0.1:${port}/${bucket}?max-keys=0`)).status === 200,
    });
    return {
      ...server,
      bucket,
      dir,
      stop: async () => {
        await server.stop();
        if (owned) await fs.rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (owned) await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
}
