/**
 * Inputs that name objects directly, as valohai.yaml allows: `s3://bucket/key`, wildcards with
 * keep-directories, and a public `https://` file with a password and a token in its URL, mounted and read
 * through the block cache like any other input. The secrets of the URL appear nowhere a person or another
 * user could read them: the daemon's command line, its log, inputs.json, the CLI's output.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';
import { startS3rver, S3RVER_CREDENTIALS, type S3rverServer } from '../servers/s3rver.js';
import { startStaticHttp, type StaticHttpServer } from '../servers/static-http.js';
import { BIN, fuseTest, hashTree, pidAlive, run, tempDir, waitFor, writeJson } from './helpers.js';

const PASSWORD = 'pw-PLANTED-9f3a';
const TOKEN = 'tok-PLANTED-77c1';

let s3: S3rverServer;
let web: StaticHttpServer;
const objects = new Map<string, Buffer>();
const modelBytes = randomBytes(300_000);

test.before(async () => {
  [s3, web] = await Promise.all([startS3rver(), startStaticHttp({ basicAuth: `alice:${PASSWORD}`, token: TOKEN })]);
  const client = new S3Client({
    endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3RVER_CREDENTIALS, requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  for (const [key, size] of [['data/images/a/1.jpg', 5000], ['data/images/a/2.jpg', 70_000], ['data/images/b/3.jpg', 400_000], ['data/images/readme.txt', 300], ['data/other/x.jpg', 10]] as const) {
    const body = randomBytes(size);
    objects.set(key, body);
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body }));
  }
  client.destroy();
  web.put('/models/model.bin', modelBytes);
});

test.after.always(async () => {
  await Promise.all([s3?.stop(), web?.stop()]);
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

fuseTest('s3:// objects with wildcards and keep-directories, and an https:// file with credentials, read through the mount', async (t) => {
  const dir = await tempDir(t);
  const home = path.join(dir, 'home');
  const root = path.join(dir, 'valohai');
  const modelUrl = `http://alice:${PASSWORD}@127.0.0.1:${web.port}/models/model.bin?token=${TOKEN}`;
  const inputsFile = path.join(dir, 'inputs.json');
  await writeJson(inputsFile, {
    inputs: [
      { name: 'images', default: `s3://${s3.bucket}/data/images/**.jpg`, 'keep-directories': 'suffix' },
      { name: 'flat', default: `s3://${s3.bucket}/data/images/**.jpg` },
      { name: 'one', default: `s3://${s3.bucket}/data/images/a/1.jpg`, filename: 'first.jpg' },
      { name: 'model', default: modelUrl },
    ],
  });
  const env = {
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true',
    VHFS_S3_ENDPOINT: s3.endpoint, VHFS_S3_PATH_STYLE: 'true', VHFS_S3_REGION: 'us-east-1',
  };
  const mounted = await run(process.execPath, [BIN, '--home', home, '--json', 'mount', '--root', root, '--inputs', inputsFile, '--wait'], { env, timeoutMs: 120_000 });
  t.is(mounted.code, 0, mounted.stderr);
  const m = JSON.parse(mounted.stdout) as { pid: number; log: string; mountpoint: string };
  t.teardown(async () => {
    await run(process.execPath, [BIN, '--home', home, 'unmount', '--root', root], { env, timeoutMs: 30_000 });
    if (pidAlive(m.pid)) process.kill(m.pid, 'SIGKILL');
  });

  const got = await hashTree(m.mountpoint);
  const o = (key: string) => sha(objects.get(key)!);
  t.deepEqual(got, {
    'images/a/1.jpg': o('data/images/a/1.jpg'),
    'images/a/2.jpg': o('data/images/a/2.jpg'),
    'images/b/3.jpg': o('data/images/b/3.jpg'),
    'flat/1.jpg': o('data/images/a/1.jpg'),
    'flat/2.jpg': o('data/images/a/2.jpg'),
    'flat/3.jpg': o('data/images/b/3.jpg'),
    'one/first.jpg': o('data/images/a/1.jpg'),
    'model/model.bin': sha(modelBytes),
  });

  const inputsJson = await fs.readFile(path.join(root, 'config', 'inputs.json'), 'utf8');
  const listed = JSON.parse(inputsJson) as Record<string, { files: Array<{ name: string; uri: string; size: number }> }>;
  t.deepEqual(listed.images.files.map((f) => [f.name, f.uri, f.size]), [
    ['a/1.jpg', `s3://${s3.bucket}/data/images/a/1.jpg`, 5000],
    ['a/2.jpg', `s3://${s3.bucket}/data/images/a/2.jpg`, 70_000],
    ['b/3.jpg', `s3://${s3.bucket}/data/images/b/3.jpg`, 400_000],
  ]);
  t.is(listed.model.files[0].size, modelBytes.length);

  // The planted secrets: nowhere.
  const cmdline = (await fs.readFile(`/proc/${m.pid}/cmdline`, 'utf8')).split('\0').join(' ');
  const log = await fs.readFile(m.log, 'utf8');
  for (const [where, text] of [['command line', cmdline], ['daemon log', log], ['inputs.json', inputsJson], ['mount --json output', mounted.stdout + mounted.stderr]] as const) {
    t.false(text.includes(PASSWORD), `the password is in the ${where}`);
    t.false(text.includes(TOKEN), `the token is in the ${where}`);
  }
  t.regex(inputsJson, /"uri":"http:\/\/alice:\*+@127\.0\.0\.1/, 'the https file is listed with its password masked');
});

fuseTest('an object input that matches nothing, or is missing, fails --wait with NOT_FOUND (3) naming the URI', async (t) => {
  const dir = await tempDir(t);
  const env = {
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_EC2_METADATA_DISABLED: 'true',
    VHFS_S3_ENDPOINT: s3.endpoint, VHFS_S3_PATH_STYLE: 'true', VHFS_S3_REGION: 'us-east-1',
  };
  for (const uri of [`s3://${s3.bucket}/data/images/**.png`, `s3://${s3.bucket}/data/nothing-here.bin`]) {
    const root = path.join(dir, `r-${Math.random().toString(36).slice(2)}`);
    const r = await run(process.execPath, [BIN, '--home', path.join(dir, 'home'), 'mount', '--root', root, '--input', `x=${uri}`, '--wait'], { env, timeoutMs: 60_000 });
    t.is(r.code, 3, r.stderr);
    t.true(r.stderr.includes(uri), r.stderr);
    await waitFor(async () => (await run('findmnt', ['-n', path.join(root, 'inputs')])).code !== 0, 10_000, 'no mount left');
  }
});
