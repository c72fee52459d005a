/**
 * Local-path inputs over trees with symbolic links: links are followed as `cp -rL` would, but a link to a
 * directory being walked above it (a loop) is not, so branching loops (`a/b1 -> ..`, `a/b2 -> ..`) finish
 * at once instead of growing without bound; FIFOs, sockets and dangling links are skipped.
 */
import test from 'ava';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { tempDir, vhfs } from './helpers.js';

test('a wildcard over branching symlink loops, a FIFO, a dangling link and a link out of the tree lists each real file once', async (t) => {
  const dir = await tempDir(t);
  const data = path.join(dir, 'data');
  await fs.mkdir(path.join(data, 'a', 'deeper'), { recursive: true });
  await fs.writeFile(path.join(data, 'a', 'f.txt'), 'f');
  await fs.writeFile(path.join(data, 'a', 'deeper', 'g.txt'), 'g');
  await fs.writeFile(path.join(dir, 'outside.txt'), 'outside');
  await fs.symlink('..', path.join(data, 'a', 'b1'));
  await fs.symlink('..', path.join(data, 'a', 'b2'));
  await fs.symlink('../..', path.join(data, 'a', 'deeper', 'up'));
  await fs.symlink(path.join(dir, 'outside.txt'), path.join(data, 'a', 'out.txt'));
  await fs.symlink('/nonexistent/x.txt', path.join(data, 'dangling.txt'));
  execFileSync('mkfifo', [path.join(data, 'a', 'pipe.txt')]);
  const started = Date.now();
  const r = await vhfs(['--home', path.join(dir, 'home'), 'ls', '-R', `${data}/**.txt`, '--keep-directories', 'suffix']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.out.trim().split('\n'), ['a/deeper/g.txt', 'a/f.txt', 'a/out.txt']);
  t.log(`listed in ${Date.now() - started} ms`);
});
