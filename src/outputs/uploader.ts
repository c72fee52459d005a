/**
 * One upload as the journal sees it: the row exists (with its datum id) before this runs; this makes the
 * datum, retrying what a retry can fix, and then marks the row uploaded or failed. Shared by live uploads
 * (one at a time, as files turn read-only) and finalize (bounded parallel, with a progress line).
 *
 * Retries: store failures and timeouts (a flaky network) and a file changing during its upload get three
 * more attempts with backoff; a file that cannot be read fails at once. A failed row keeps its datum id and
 * its staged bytes, so `vhfs outputs recover` can try again later and still never make a second datum.
 */
import { promises as fs } from 'node:fs';
import type { Catalog } from '../catalog/catalog.js';
import type { DatumRecord, Producer } from '../catalog/types.js';
import { mapLimit } from '../util/concurrency.js';
import { describeError, isVhfsError } from '../util/errors.js';
import type { ContentDigest } from '../util/hash.js';
import { Progress } from '../util/progress.js';
import { putOutputDatum } from './datum-upload.js';
import type { Journal, UploadRow } from './journal.js';

export const RETRY_DELAYS_MS = [200, 1000, 3000];

export interface UploadJob {
  row: UploadRow;
  /** Local file holding the bytes. */
  file: string;
  /** An earlier attempt (another process, an interrupted finalize) may already have made the datum. */
  mayExist: boolean;
  known?: ContentDigest;
  /** Remove `file` once the row is marked uploaded (live uploads: the file is no longer in the tree). */
  removeAfter?: boolean;
}

export interface UploadOutcome {
  job: UploadJob;
  datum?: DatumRecord;
  error?: string;
}

export async function runUpload(
  catalog: Catalog, journal: Journal, producer: Producer, job: UploadJob, log: (line: string) => void,
  retryDelaysMs: readonly number[] = RETRY_DELAYS_MS,
): Promise<UploadOutcome> {
  const { row } = job;
  let mayExist = job.mayExist;
  for (let attempt = 0; ; attempt++) {
    try {
      const datum = await putOutputDatum(catalog, row.id, job.file, {
        name: row.name, producer, tags: row.tags, properties: row.properties,
      }, { mayExist, ...(job.known ? { known: job.known } : {}) });
      journal.markUploaded(row.id, datum.size, datum.sha256);
      if (job.removeAfter) await fs.rm(job.file, { force: true });
      return { job, datum };
    } catch (err) {
      mayExist = true; // the failed attempt may have got as far as the datum record
      const retryable = isVhfsError(err, 'STORE') || isVhfsError(err, 'TIMEOUT') || isVhfsError(err, 'INTEGRITY');
      const message = describeError(err);
      if (!retryable || attempt >= retryDelaysMs.length) {
        journal.markFailed(row.id, message);
        log(`error: output "${row.path}" not uploaded (${message}); it stays staged for \`vhfs outputs recover\``);
        return { job, error: message };
      }
      await new Promise((r) => setTimeout(r, retryDelaysMs[attempt]));
    }
  }
}

/** Upload `jobs` with at most `concurrency` at once and a progress line; outcomes in job order. */
export async function runUploads(
  catalog: Catalog, journal: Journal, producer: Producer, jobs: UploadJob[],
  opts: { concurrency: number; quiet: boolean; log: (line: string) => void; label: string; retryDelaysMs?: readonly number[] },
): Promise<UploadOutcome[]> {
  if (jobs.length === 0) return [];
  const progress = new Progress(opts.label, jobs.length, { quiet: opts.quiet });
  const outcomes = await mapLimit(jobs, opts.concurrency, async (job) => {
    const out = await runUpload(catalog, journal, producer, job, opts.log, opts.retryDelaysMs);
    progress.tick(1, out.datum?.size ?? 0);
    return out;
  });
  progress.finish();
  return outcomes;
}
