/**
 * Fuzz test of the package reader: a few thousand mutated packages per run (fuzz-corpus.ts), each
 * listed, then every member, every table-covered block and the whole package read and verified
 * (fuzz-worker.ts). No crash, no hang, only clean VhfsErrors (BAD_PACKAGE, UNSAFE_PATH, INTEGRITY), and
 * never a verified byte that differs from the original.
 *
 *   VHFS_FUZZ_ITERATIONS=N   cases per run (default 3000)
 *   VHFS_FUZZ_SEED=S         the run's seed (default: random; printed with every failure)
 *   VHFS_FUZZ_CASE=I         run only case I of seed S (to reproduce a failure)
 *
 * Cases run in a worker thread that announces each case before starting it; a case that does not
 * finish within CASE_DEADLINE_MS fails the test naming it, even if it is stuck in a synchronous loop.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import { errorProblem, fuzzCase, makeBases, servedBytesProblem } from './fuzz-corpus.js';
import { readerLeg, type FuzzStats, type FuzzWorkerData } from './fuzz-worker.js';

const CASE_DEADLINE_MS = 15_000;
const iterations = Number(process.env.VHFS_FUZZ_ITERATIONS ?? 3000);
const seed = process.env.VHFS_FUZZ_SEED !== undefined ? Number(process.env.VHFS_FUZZ_SEED) : (Math.random() * 2 ** 32) >>> 0;
const only = process.env.VHFS_FUZZ_CASE !== undefined ? Number(process.env.VHFS_FUZZ_CASE) : undefined;

interface Failure {
  index: number;
  base: string;
  mutations: string[];
  problems: string[];
}

function runWorker(data: FuzzWorkerData): Promise<{ stats?: FuzzStats; failures: Failure[]; hung?: number; crashed?: string }> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL('./fuzz-worker.js', import.meta.url), { workerData: data });
    const failures: Failure[] = [];
    let current = -1;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        void worker.terminate();
        resolve({ failures, hung: current });
      }, CASE_DEADLINE_MS);
    };
    arm();
    worker.on('message', (m: { type: string; index?: number; stats?: FuzzStats } & Partial<Failure>) => {
      if (m.type === 'case') {
        current = m.index!;
        arm();
      } else if (m.type === 'failure') failures.push(m as Failure);
      else if (m.type === 'done') {
        clearTimeout(timer);
        resolve({ stats: m.stats, failures });
      }
    });
    worker.on('error', (err) => {
      clearTimeout(timer);
      resolve({ failures, crashed: `case ${current}: ${err.stack ?? String(err)}` });
    });
    worker.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ failures, crashed: `worker exited with code ${code} during case ${current}` });
    });
  });
}

test(`fuzz: ${iterations} mutated packages through the reader`, async (t) => {
  t.timeout(60_000 + iterations * 40);
  const from = only ?? 0;
  const to = only !== undefined ? only + 1 : iterations;
  const rerun = (index: number): string => `VHFS_FUZZ_SEED=${seed} VHFS_FUZZ_CASE=${index}`;
  const result = await runWorker({ fuzzWorker: true, seed, from, to });
  if (result.hung !== undefined) t.fail(`seed ${seed}: case ${result.hung} did not finish within ${CASE_DEADLINE_MS} ms (rerun: ${rerun(result.hung)})`);
  if (result.crashed !== undefined) t.fail(`seed ${seed}: the worker crashed: ${result.crashed}`);
  for (const f of result.failures.slice(0, 10)) {
    t.fail(`seed ${seed} case ${f.index} (${f.base}: ${f.mutations.join('; ')}): ${f.problems.join(' | ')} (rerun: ${rerun(f.index)})`);
  }
  if (result.failures.length > 10) t.fail(`seed ${seed}: ${result.failures.length - 10} more failing cases`);
  const stats = result.stats;
  if (stats === undefined) return;
  t.log(`seed ${seed}: ${JSON.stringify(stats)}`);
  t.is(stats.cases, to - from);
  if (stats.cases >= 1000) {
    // The corpus must reach every stage, or the run proves little.
    t.true((stats.rejectedAtListing.BAD_PACKAGE ?? 0) > 0, 'no case rejected as BAD_PACKAGE');
    t.true((stats.rejectedAtListing.UNSAFE_PATH ?? 0) > 0, 'no case rejected as UNSAFE_PATH');
    t.true(stats.membersRejected > 0, 'no member failed verification');
    t.true(stats.blocksRejected > 0, 'no block failed the chunk hash table');
    t.true(stats.membersVerified > 0 && stats.blocksVerified > 0 && stats.packagesVerified > 0, 'nothing verified');
  }
});

test('the same (seed, index) always builds the same case', async (t) => {
  const bases = await makeBases();
  for (const index of [0, 1, 17, 999]) {
    const a = fuzzCase(bases, 12345, index);
    const b = fuzzCase(bases, 12345, index);
    t.true(a.zip.equals(b.zip));
    t.deepEqual(a.mutations, b.mutations);
    t.true(a.mutations.length > 0);
  }
  t.false(fuzzCase(bases, 1, 0).zip.equals(fuzzCase(bases, 2, 0).zip) && fuzzCase(bases, 1, 1).zip.equals(fuzzCase(bases, 2, 1).zip));
});

test('the bases pass the reader leg untouched, and the oracle catches wrong bytes and bad errors', async (t) => {
  const bases = await makeBases();
  const stats: FuzzStats = {
    cases: 0, listed: 0, rejectedAtListing: {}, membersVerified: 0, membersRejected: 0,
    blocksVerified: 0, blocksRejected: 0, packagesVerified: 0, slowestCaseMs: 0,
  };
  for (const base of bases) {
    const c = { seed: 0, index: -1, base, mutations: [], zip: base.zip };
    t.deepEqual(await readerLeg(c, stats), [], base.name);
    const [path, data] = [...base.files].find(([, d]) => d.length > 0)!;
    const wrong = Buffer.from(data);
    wrong[0] ^= 1;
    t.regex(servedBytesProblem(c, path, 0, wrong) ?? '', /differ from the original file/);
    t.regex(servedBytesProblem(c, 'renamed', base.zip.length - 1, Buffer.alloc(2)) ?? '', /past the original package/);
  }
  t.is(stats.listed, bases.length);
  t.is(stats.membersRejected + stats.blocksRejected, 0);
  t.regex(errorProblem(new RangeError('x')) ?? '', /escaped as RangeError/);
  t.is(errorProblem(Object.assign(new Error('x'), { code: 'BAD_PACKAGE' })), 'escaped as Error: x');
});
