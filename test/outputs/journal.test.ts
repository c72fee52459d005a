import test from 'ava';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { currentOwner, Journal, ownerAlive, processStart } from '../../src/outputs/journal.js';
import { datumNameFor } from '../../src/outputs/staging.js';

async function journal(t: import('ava').ExecutionContext): Promise<Journal> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vhfs-journal-'));
  const j = Journal.open(path.join(dir, 'journal.sqlite'));
  t.teardown(async () => {
    j.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  return j;
}

test('staged index follows creates, renames of files and folders (non-BMP names too), removals, in order', async (t) => {
  const j = await journal(t);
  const run = j.createRun({ tool: 't' }, false, currentOwner());
  j.applyStaged(run.id, [
    { op: 'touch', path: 'a.txt' },
    { op: 'touch', path: '🦀dir/x' },
    { op: 'touch', path: '🦀dir/sub/y' },
    { op: 'touch', path: '🦀dirz/not-moved' },
    { op: 'rename', from: '🦀dir', to: 'moved' },
    { op: 'touch', path: 'victim' },
    { op: 'rename', from: 'a.txt', to: 'victim' },
    { op: 'remove', path: 'moved/x' },
  ]);
  t.deepEqual(j.staged(run.id).map((r) => r.path), ['moved/sub/y', 'victim', '🦀dirz/not-moved']);
  j.replaceStaged(run.id, ['only']);
  t.deepEqual(j.staged(run.id).map((r) => r.path), ['only']);
});

test('uploads keep the datum id chosen before they start; retry keeps it too', async (t) => {
  const j = await journal(t);
  const run = j.createRun({ tool: 't' }, false, currentOwner());
  const [u] = j.beginUploads([{ runId: run.id, path: 'p', name: 'p', source: 'tree', tags: ['x'] }]);
  t.is(j.upload(u.id)!.state, 'uploading');
  j.markFailed(u.id, 'boom');
  t.is(j.upload(u.id)!.error, 'boom');
  j.retryUpload(u.id, 'p2', ['y'], { k: 1 });
  t.like(j.upload(u.id), { id: u.id, state: 'uploading', name: 'p2', tags: ['y'], properties: { k: 1 } });
  j.markUploaded(u.id, 5, 'ab');
  t.like(j.upload(u.id), { state: 'uploaded', size: 5, sha256: 'ab' });
  t.is(j.upload(u.id)!.error, undefined);
});

test('a run changes owner only by compare-and-swap; a dead or recycled pid is not its owner', async (t) => {
  const j = await journal(t);
  const me = currentOwner();
  const run = j.createRun({ tool: 't' }, true, me);
  t.true(ownerAlive(me));
  t.false(ownerAlive({ pid: me.pid, start: `${me.start}0` })); // same pid, another process
  t.false(ownerAlive({ pid: 999_999_999, start: '1' }));
  t.is(processStart(999_999_999), undefined);
  const other = { pid: 1, start: processStart(1)! };
  t.false(j.claimRun(run.id, other, me)); // not its current owner
  t.true(j.claimRun(run.id, me, other));
  t.false(j.claimRun(run.id, me, other)); // someone claimed it first
  t.deepEqual(j.run(run.id)!.owner, other);
  t.true(j.run(run.id)!.packaging);
});

test('datum names: paths are kept; what the path rules refuse is percent-encoded', (t) => {
  t.deepEqual(datumNameFor('models/best.pkl'), { name: 'models/best.pkl' });
  t.deepEqual(datumNameFor('spaces and ünïcödé/ok:fine'), { name: 'spaces and ünïcödé/ok:fine' });
  t.deepEqual(datumNameFor('a\\b'), { name: 'a%5Cb', reason: 'the path contains a backslash' });
  t.deepEqual(datumNameFor('C:data/x'), { name: 'C%3Adata/x', reason: 'the path is absolute (starts with a drive letter)' });
  t.is(datumNameFor('x/\ud800y').name, 'x/\ufffdy');
});
