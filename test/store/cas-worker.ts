/**
 * Child process for the multi-process store tests.
 *   cas ROOT KEY N     increment the counter object KEY N times with compare-and-swap
 *   hang-put ROOT KEY  start a streaming put that never finishes (the parent SIGKILLs it)
 */
import { isVhfsError } from '../../src/util/errors.js';
import { LocalDirStore } from '../../src/store/local.js';

const [mode, root, key, n] = process.argv.slice(2);
const store = new LocalDirStore(root);
if (mode === 'cas') {
  for (let i = 0; i < Number(n); i++) {
    for (;;) {
      const info = await store.head(key);
      const value = Number((await store.get(key)).toString());
      try {
        await store.put(key, Buffer.from(String(value + 1)), { ifMatch: info!.etag });
        break;
      } catch (err) {
        if (!isVhfsError(err, 'CONFLICT')) throw err;
      }
    }
  }
} else if (mode === 'hang-put') {
  async function* body() {
    yield Buffer.alloc(64 * 1024, 1);
    await new Promise(() => setInterval(() => {}, 1000)); // never ends
  }
  await store.put(key, body());
}
