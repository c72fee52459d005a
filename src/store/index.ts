/**
 * Store selection by URL. `file://…` and plain paths are local directory stores; cloud schemes are
 * recognised (so users get a clear "not built yet" rather than a path named `s3:`) but not served yet.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VhfsError } from '../util/errors.js';
import { LocalDirStore, type LocalDirStoreOptions } from './local.js';
import type { ObjectStore } from './types.js';

export * from './types.js';
export { LocalDirStore, keyProblem, type LocalDirStoreOptions } from './local.js';
export { FaultyStore, type FaultPlan, type StoreOp } from './faulty.js';

const CLOUD_BACKENDS: Record<string, string> = {
  's3:': 'S3',
  'gs:': 'Google Cloud Storage',
  'az:': 'Azure Blob',
  'azure:': 'Azure Blob',
  'http:': 'HTTPS',
  'https:': 'HTTPS',
};

export function openStore(url: string, options: LocalDirStoreOptions = {}): ObjectStore {
  if (url === '') throw new VhfsError('BAD_URI', 'empty store URL');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*:)\/\//.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return new LocalDirStore(path.resolve(url), options);
  if (scheme === 'file:') {
    let dir: string;
    try {
      dir = fileURLToPath(url);
    } catch (err) {
      throw new VhfsError('BAD_URI', `store URL ${url}: ${(err as Error).message}`);
    }
    return new LocalDirStore(dir, options);
  }
  const backend = CLOUD_BACKENDS[scheme];
  if (backend) {
    throw new VhfsError('UNSUPPORTED', `store URL ${url}: the ${backend} backend is not built yet; use a file:// store or a local path`);
  }
  throw new VhfsError('BAD_URI', `store URL ${url}: unknown scheme ${scheme}// (expected file://, s3://, gs://, az:// or a path)`);
}
