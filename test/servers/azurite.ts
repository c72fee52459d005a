/**
 * azurite-blob (3.37) as a child process:
 *   azurite-blob --inMemoryPersistence --blobHost 127.0.0.1 --blobPort PORT --silent --disableTelemetry
 * (without --disableTelemetry it can take up to 110 s to exit). Nothing is written to disk; the child
 * runs in a temp directory anyway (removed on `stop()`), so a stray file never lands in the worktree.
 *
 * Azurite serves the well-known development account `devstoreaccount1` path-style:
 * `http://127.0.0.1:PORT/devstoreaccount1/<container>/<blob>`. It behaves like real Azure where tests
 * care: `ifNoneMatch: '*'` on an existing blob is 409 BlobAlreadyExists, a wrong `ifMatch` is 412.
 */
import * as fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { httpProbe, startChildServer, type RunningServer } from './child-server.js';

/** The development account every azurite serves (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteServer extends RunningServer {
  account: string;
  accountKey: string;
  /** `http://127.0.0.1:PORT/devstoreaccount1`: the blob service URL of the account. */
  serviceUrl: string;
  connectionString: string;
}

const AZURITE_BLOB_MAIN = path.join(path.dirname(createRequire(import.meta.url).resolve('azurite/package.json')), 'dist', 'src', 'blob', 'main.js');

export async function startAzurite(): Promise<AzuriteServer> {
  const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-azurite-'));
  try {
    const server = await startChildServer({
      name: 'azurite-blob',
      command: process.execPath,
      args: (port) => [AZURITE_BLOB_MAIN, '--inMemoryPersistence', '--blobHost', '127.0.0.1', '--blobPort', String(port), '--silent', '--disableTelemetry'],
      cwd,
      ready: async (port) => /azurite/i.test(String((await httpProbe(`http://127.0.0.1:${port}/${AZURITE_ACCOUNT}?comp=list`)).headers.server)),
    });
    const serviceUrl = `${server.endpoint}/${AZURITE_ACCOUNT}`;
    return {
      ...server,
      account: AZURITE_ACCOUNT,
      accountKey: AZURITE_KEY,
      serviceUrl,
      connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${serviceUrl};`,
      stop: async () => {
        await server.stop();
        await fs.rm(cwd, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await fs.rm(cwd, { recursive: true, force: true });
    throw err;
  }
}
