/**
 * The whole product on a bucket, through the real CLI: for S3 (s3rver behind the conditional shim), GCS
 * (the local JSON-API server) and Azure (azurite), `dataset create --package --alias`, a second host
 * (fresh home, same store) that sees it, `cat` of files, an alias moved, and a FUSE mount whose every
 * file is byte-identical. Then the secrets test: credentials planted in URLs and the environment appear
 * in no output of any command (stdout, stderr, --json, --verbose, the mount daemon's log).
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { BIN, makeTree, tempBase, vhfs, type RunResult, type TreeFile } from '../cli/helpers.js';
import { hashTree } from '../fuse/helpers.js';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../servers/s3rver.js';
import { startS3ConditionalShim, type ConditionalShim } from '../servers/s3-conditional-shim.js';
import { startGcsServer, type GcsServer } from '../servers/gcs-server.js';
import { startAzurite, type AzuriteServer } from '../servers/azurite.js';

const FILES = 120;

let root: string;
let src: string;
let files: TreeFile[];
let s3: S3rverServer;
let shim: ConditionalShim;
let gcs: GcsServer;
let azure: AzuriteServer;

const S3_ENV = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true' };

test.before(async (t) => {
  t.timeout(180_000);
  root = await fs.mkdtemp(path.join(tempBase(), 'vhfs-cloud-cli-'));
  src = path.join(root, 'src');
  [files, s3, gcs, azure] = await Promise.all([
    makeTree(src, FILES, { seed: 1313, maxSize: 20_000 }),
    startS3rver(),
    startGcsServer({ buckets: ['vhfs-gcs'] }),
    startAzurite(),
  ]);
  shim = await startS3ConditionalShim(s3.endpoint);
  const { BlobServiceClient } = await import('@azure/storage-blob');
  await BlobServiceClient.fromConnectionString(azure.connectionString).getContainerClient('data').create();
});

test.after.always(async () => {
  await shim?.stop();
  await Promise.all([s3?.stop(), gcs?.stop(), azure?.stop()]);
  if (root) await fs.rm(root, { recursive: true, force: true });
});

interface Backend {
  name: string;
  store: () => string;
  env: () => Record<string, string>;
}

const BACKENDS: Backend[] = [
  { name: 's3', store: () => `s3://${s3.bucket}/team?endpoint=${encodeURIComponent(shim.endpoint)}&path_style=true`, env: () => S3_ENV },
  { name: 'gcs', store: () => `gs://vhfs-gcs/team?endpoint=${encodeURIComponent(gcs.endpoint)}`, env: () => ({}) },
  { name: 'azure', store: () => `az://${azure.account}/data/team?endpoint=${encodeURIComponent(azure.endpoint)}`, env: () => ({ AZURE_STORAGE_CONNECTION_STRING: azure.connectionString }) },
];

function ok(t: { fail: (m: string) => void }, r: RunResult, what: string): RunResult {
  if (r.code !== 0) t.fail(`${what} exited ${r.code}: ${r.stderr}`);
  return r;
}

for (const b of BACKENDS) {
  test.serial(`${b.name}: dataset create --package, a second host, cat, alias, and a mount with every file byte-identical`, async (t) => {
    t.timeout(240_000);
    const home1 = path.join(root, `${b.name}-home1`);
    const home2 = path.join(root, `${b.name}-home2`);
    const run = (home: string, ...args: string[]) => vhfs(['--home', home, '--store', b.store(), ...args], { env: b.env() });
    const created = JSON.parse(ok(t, await run(home1, '--json', '--quiet', 'dataset', 'create', 'ds/v1', src, '--package', '--alias', 'latest'), 'dataset create').out) as { files: number; packages: unknown[] };
    t.is(created.files, FILES);
    t.is(created.packages.length, 1);
    ok(t, await run(home1, '--quiet', 'dataset', 'create', 'ds/v2', src), 'dataset create v2');

    // Another host: its own empty catalog, the same bucket.
    const listed = ok(t, await run(home2, 'dataset', 'ls', 'ds'), 'dataset ls').out;
    t.regex(listed, /v1/);
    t.regex(listed, /latest/);
    const some = files.filter((_, i) => i % 23 === 0);
    for (const f of some) {
      const r = await vhfs(['--home', home2, '--store', b.store(), 'cat', 'dataset://ds/latest', f.path], { env: b.env() });
      t.is(r.code, 0, r.stderr);
      t.is((await import('node:crypto')).createHash('sha256').update(r.stdout).digest('hex'), f.sha256, f.path);
    }
    ok(t, await run(home2, 'alias', 'set', 'dataset://ds/latest', 'v2'), 'alias set');
    t.regex(ok(t, await run(home1, 'dataset', 'ls', 'ds'), 'dataset ls after the move').out, /latest.*v2|v2.*latest/);

    // The mount (the daemon inherits the environment, so it finds the same credentials).
    const mnt = path.join(root, `${b.name}-mnt`);
    ok(t, await run(home2, 'mount', '--root', mnt, '--input', 'd=dataset://ds/v1', '--wait'), 'mount');
    try {
      const hashes = await hashTree(path.join(mnt, 'inputs', 'd'));
      t.is(Object.keys(hashes).length, FILES);
      for (const f of files) t.is(hashes[f.path], f.sha256, f.path);
    } finally {
      ok(t, await run(home2, 'unmount', '--root', mnt), 'unmount');
    }
  });
}

test.serial('planted credentials appear in no output: URL credentials, wrong env keys, a forged SAS, --json and --verbose, the daemon log', async (t) => {
  t.timeout(120_000);
  const home = path.join(root, 'secrets-home');
  const secret = 'PLANTEDsecretKEY0123456789abcdefGHIJ';
  const keyId = 'AKIAPLANTED0123456789';
  const sig = 'PLANTEDsig0123456789abcdefABCDEF%2Bxyz%3D';
  const outputs: string[] = [];
  const record = (r: RunResult) => {
    outputs.push(r.out, r.stderr);
    return r;
  };
  // 1. credentials inside store URLs: refused, not echoed
  for (const url of [`s3://${keyId}:${secret}@${s3.bucket}/x`, `gs://user:${secret}@bucket/x`]) {
    const r = record(await vhfs(['--home', home, '--store', url, 'dataset', 'ls']));
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /credentials must not be part of the URL/);
    // (the helpers strip VHFS_STORE from children's environments, so this one is run by hand)
    const viaEnv = record(await new Promise<RunResult>((done) => {
      execFile(process.execPath, [BIN, '--home', home, '--json', 'dataset', 'ls'], { env: { ...process.env, VHFS_STORE: url }, encoding: 'buffer' }, (err, stdout, stderr) => {
        const code = err ? Number((err as NodeJS.ErrnoException & { code?: number }).code) : 0;
        done({ code, stdout, out: stdout.toString(), stderr: stderr.toString(), ms: 0, args: [] });
      });
    }));
    t.is(viaEnv.code, 2, viaEnv.stderr);
    t.regex(viaEnv.stderr, /credentials must not be part of the URL/);
  }
  // 2. wrong keys in the environment: access denied, with the hint, without the keys
  const s3Store = `s3://${s3.bucket}/x?endpoint=${encodeURIComponent(s3.endpoint)}&path_style=true`;
  for (const extra of [[], ['--json'], ['--verbose']]) {
    const r = record(await vhfs(['--home', home, '--store', s3Store, ...extra, 'put', path.join(src, files[0].path)], {
      env: { AWS_ACCESS_KEY_ID: keyId, AWS_SECRET_ACCESS_KEY: secret, AWS_EC2_METADATA_DISABLED: 'true' },
    }));
    t.is(r.code, 6, r.stderr);
    t.regex(r.out + r.stderr, /access denied/);
  }
  // 3. a forged SAS token for Azure
  const azStore = `az://${azure.account}/data/x?endpoint=${encodeURIComponent(azure.endpoint)}`;
  const sas = `sv=2023-11-03&ss=b&srt=sco&sp=rwdlc&se=2030-01-01T00%3A00%3A00Z&sig=${sig}`;
  const r3 = record(await vhfs(['--home', home, '--store', azStore, '--verbose', 'dataset', 'ls'], { env: { AZURE_STORAGE_SAS_TOKEN: sas } }));
  t.is(r3.code, 6, r3.stderr);
  // 4. a mount on a store with a wrong secret: the daemon's log says so, without the secret
  const mnt = path.join(root, 'secrets-mnt');
  const env = { AWS_ACCESS_KEY_ID: keyId, AWS_SECRET_ACCESS_KEY: secret, AWS_EC2_METADATA_DISABLED: 'true' };
  record(await vhfs(['--home', home, '--store', s3Store, 'mount', '--root', mnt, '--input', 'd=dataset://ds/v1', '--wait'], { env }));
  record(await vhfs(['--home', home, 'unmount', '--root', mnt]));
  const logs = await fs.readdir(path.join(home, 'logs')).catch(() => [] as string[]);
  const logText = (await Promise.all(logs.map((l) => fs.readFile(path.join(home, 'logs', l), 'utf8')))).join('\n');
  t.regex(logText, /access denied/, 'the daemon log names the failure (so it is checked for the secret too)');
  outputs.push(logText);
  const all = outputs.join('\n');
  t.true(all.length > 0);
  for (const planted of [secret, keyId, sig, decodeURIComponent(sig)]) t.false(all.includes(planted), `${planted} leaked:\n${all}`);
});
