/**
 * The stores that index sources name (`ObjectRef.store`), opened once each and closed together.
 *
 * Three kinds of name:
 *  - `file:///`: local-path inputs, read through a directory store rooted at `/`;
 *  - a bucket URL (`s3://bucket`, `gs://bucket`, `az://account/container`): object inputs, reopened from
 *    the URL with the endpoint/region settings (environment and `<home>/stores.json`): these names can go
 *    into a persisted index, as they hold no secret (credentials come from each SDK's environment);
 *  - `session:<n>`: a store made at resolution that cannot be reopened from a name without its secret (an
 *    `https://user:password@…/x?token=…` object); it lives as long as this registry, and an index that
 *    names one is never persisted.
 */
import { createHash } from 'node:crypto';
import { openBucketStore, openHttpObject, openStore, type CloudScheme, type ObjectStore, type StoreSettings } from '../store/index.js';
import { VhfsError } from '../util/errors.js';

export const LOCAL_ROOT_STORE = 'file:///';
export const SESSION_PREFIX = 'session:';

export class SourceStores {
  private readonly open = new Map<string, ObjectStore>();

  constructor(private readonly settings?: StoreSettings) {}

  /** The store `name` denotes (opened on first use). */
  get(name: string): ObjectStore {
    let s = this.open.get(name);
    if (s) return s;
    if (name.startsWith(SESSION_PREFIX)) throw new VhfsError('NOT_FOUND', `${name}: a store of an earlier session; resolve the input again`);
    s = name === LOCAL_ROOT_STORE ? openStore('/') : openStore(name, this.settings ? { settings: this.settings } : {});
    this.open.set(name, s);
    return s;
  }

  /** The store of a whole bucket and the name an index records for it. */
  bucket(scheme: CloudScheme, bucket: string): { name: string; store: ObjectStore } {
    const name = `${scheme}://${bucket}`;
    let store = this.open.get(name);
    if (!store) this.open.set(name, (store = openBucketStore(scheme, bucket, this.settings)));
    return { name, store };
  }

  /** A read-only store for one `http(s)://` object, under a session name that reveals nothing of the URL. */
  httpObject(url: string): { name: string; store: ObjectStore; key: string } {
    const name = `${SESSION_PREFIX}${createHash('sha256').update(url).digest('hex').slice(0, 16)}`;
    const { store, key } = openHttpObject(url);
    const existing = this.open.get(name);
    if (existing) return { name, store: existing, key };
    this.open.set(name, store);
    return { name, store, key };
  }

  async close(): Promise<void> {
    const stores = [...this.open.values()];
    this.open.clear();
    await Promise.all(stores.map((s) => s.close?.()));
  }
}
