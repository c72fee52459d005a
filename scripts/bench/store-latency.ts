/**
 * Ranged-GET latency and parallel throughput of each network store backend on its local server, direct
 * and behind the loopback delay proxy (a cloud-like round trip per request):
 *   S3 = S3Store on s3rver, GCS = GcsStore on the local JSON-API server, Azure = AzureBlobStore on azurite,
 *   HTTPS = HttpsStore on a static HTTP server.
 * For each: one 64 MiB object; `--gets` sequential 256 KiB ranged GETs at random aligned offsets (latency
 * p50/p99), then the same number 32 at a time (throughput, and p50/p99 under load). Measures the store
 * client and the server together on this machine: compare backends within one run, as ratios.
 *
 *   node dist/scripts/bench/store-latency.js [--latency-ms 20] [--gets 256] [--parallel 32] [--backends s3,gcs,azure,https]
 */
import { randomBytes } from 'node:crypto';
import type { ObjectStore } from '../../src/store/types.js';
import { AzureBlobStore, GcsStore, HttpsStore, S3Store } from '../../src/store/index.js';
import { startS3rver, S3RVER_CREDENTIALS } from '../../test/servers/s3rver.js';
import { startGcsServer } from '../../test/servers/gcs-server.js';
import { startAzurite } from '../../test/servers/azurite.js';
import { startStaticHttp } from '../../test/servers/static-http.js';
import { startFaultProxyProcess } from '../../test/servers/fault-proxy.js';
import type { RunningServer } from '../../test/servers/child-server.js';

const argv = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const LATENCY = Number(opt('--latency-ms', '20'));
const GETS = Number(opt('--gets', '256'));
const PARALLEL = Number(opt('--parallel', '32'));
const BACKENDS = opt('--backends', 's3,gcs,azure,https').split(',');
const SIZE = 64 * 1024 * 1024;
const RANGE = 256 * 1024;
const log = (s: string) => process.stderr.write(`${s}\n`);

interface Backend {
  name: string;
  start(): Promise<{ server: RunningServer; open(endpoint: string): ObjectStore; seed(store: ObjectStore, data: Buffer): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: 's3',
    async start() {
      const server = await startS3rver();
      const open = (endpoint: string) => new S3Store({ bucket: server.bucket, endpoint, pathStyle: true, credentials: { ...S3RVER_CREDENTIALS } });
      return { server, open, seed: async (s, data) => { await s.put('big', data); } };
    },
  },
  {
    name: 'gcs',
    async start() {
      const server = await startGcsServer({ buckets: ['bench'] });
      const open = (endpoint: string) => new GcsStore({ bucket: 'bench', endpoint });
      return { server, open, seed: async (s, data) => { await s.put('big', data); } };
    },
  },
  {
    name: 'azure',
    async start() {
      const server = await startAzurite();
      const { BlobServiceClient } = await import('@azure/storage-blob');
      await BlobServiceClient.fromConnectionString(server.connectionString).getContainerClient('bench').create();
      const open = (endpoint: string) => new AzureBlobStore({ account: server.account, container: 'bench', endpoint, credential: { kind: 'key', accountKey: server.accountKey } });
      return { server, open, seed: async (s, data) => { await s.put('big', data); } };
    },
  },
  {
    name: 'https',
    async start() {
      const server = await startStaticHttp();
      const open = (endpoint: string) => new HttpsStore({ base: `${endpoint}/files` });
      return { server, open, seed: async (_s, data) => { server.put('/files/big', data); } };
    },
  },
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function measure(store: ObjectStore, parallel: number): Promise<{ p50: number; p99: number; mbps: number }> {
  const offsets = Array.from({ length: GETS }, (_, i) => ((i * 7919) % (SIZE / RANGE)) * RANGE);
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (next < offsets.length) {
      const off = offsets[next++];
      const s = performance.now();
      const buf = await store.getRange('big', off, RANGE);
      lat.push(performance.now() - s);
      if (buf.length !== RANGE) throw new Error(`short read: ${buf.length}`);
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), mbps: (GETS * RANGE) / secs / 1e6 };
}

async function main(): Promise<void> {
  const data = randomBytes(SIZE);
  const rows: string[] = [];
  for (const b of backends.filter((x) => BACKENDS.includes(x.name))) {
    log(`${b.name}: starting server`);
    const { server, open, seed } = await b.start();
    const proxy = await startFaultProxyProcess(server.endpoint, { latencyMs: LATENCY });
    try {
      await seed(open(server.endpoint), data);
      for (const [label, endpoint] of [['direct', server.endpoint], [`+${LATENCY} ms proxy`, proxy.endpoint]] as const) {
        const store = open(endpoint);
        await store.getRange('big', 0, RANGE); // connect, load the SDK
        const seq = await measure(store, 1);
        const par = await measure(store, PARALLEL);
        rows.push(`| ${b.name} | ${label} | ${seq.p50.toFixed(1)} | ${seq.p99.toFixed(1)} | ${seq.mbps.toFixed(0)} | ${par.p50.toFixed(1)} | ${par.p99.toFixed(1)} | ${par.mbps.toFixed(0)} |`);
        log(rows[rows.length - 1]);
      }
    } finally {
      await proxy.stop();
      await server.stop();
    }
  }
  const load = (await import('node:fs')).readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  process.stdout.write([
    `Ranged GETs of 256 KiB from a 64 MiB object, ${GETS} per measurement; load average ${load} at the end.`,
    '',
    `Command: \`node dist/scripts/bench/store-latency.js ${argv.join(' ')}\``,
    '',
    `| backend | path | 1 at a time: p50 (ms) | p99 (ms) | MB/s | ${PARALLEL} in parallel: p50 (ms) | p99 (ms) | MB/s |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'));
}

main().catch((err: unknown) => {
  log(`store-latency: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
});
