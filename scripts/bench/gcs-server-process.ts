/**
 * The test GCS JSON-API server (`test/servers/gcs-server.ts`) in a process of its own, for benchmarks: the
 * server is an in-process `http.Server`, and run inside the benchmark it would share one event loop with
 * the client being measured, while s3rver and azurite each get their own process. `fork` this file with
 * the bucket names as arguments; it answers `{ port }` over IPC once it listens and exits when the parent
 * disconnects (on purpose or because it died), so it never outlives the benchmark. Its objects live in
 * memory and are gone when it exits.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startGcsServer } from '../../test/servers/gcs-server.js';
import type { RunningServer } from '../../test/servers/child-server.js';

export async function startGcsServerProcess(buckets: string[]): Promise<RunningServer> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', ...buckets], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`GCS server process exited ${code}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.disconnect();
      await gone;
    },
  };
}

if (process.argv[2] === '--serve' && process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  const server = await startGcsServer({ buckets: process.argv.slice(3) });
  process.on('disconnect', () => { void server.stop().then(() => process.exit(0)); });
  process.send({ port: server.port });
}
