#!/usr/bin/env node
// More I/O threads than libuv's default 4: a store on a filesystem that stops answering holds a thread per
// stuck read, and the deadline logic (src/store/deadline.ts) lets at most a few reads of a store be stuck,
// so threads stay free for everything else (mountinfo reads, the persisted index, logs).
process.env.UV_THREADPOOL_SIZE ??= '16';
const { main } = await import('../dist/src/cli/main.js');
const flushed = (stream) => new Promise((resolve) => stream.write('', resolve));
// Exit as soon as the command is done and its output is flushed, rather than when the event loop empties:
// a command that gave up on a hung mount must not wait for it. (A read stuck in the kernel still holds the
// exit itself: Node joins its I/O threads.)
main(process.argv).then(async (code) => {
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
});
