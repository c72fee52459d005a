/**
 * What every command needs: the home directory, the object store, this host's catalog and cache paths,
 * and how it prints. Opened lazily so `vhfs --help` and argument errors touch nothing on disk.
 */
import path from 'node:path';
import { Catalog } from '../catalog/catalog.js';
import { loadStoreSettings, openStore, type ObjectStore, type StoreSettings } from '../store/index.js';
import { GLOBAL_OPTIONS, type OptionValues } from '../config/options.js';

export type GlobalOptions = OptionValues<typeof GLOBAL_OPTIONS>;

/** How a command runs: with a Context opened for it and closed after it. */
export type Run = (fn: (ctx: Context) => Promise<void>) => Promise<void>;

/** Commander accumulator for repeatable options. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export class Context {
  readonly home: string;
  readonly storeUrl: string;
  /** Exit the process once the command is done, whatever native handle is left (a served mount). */
  exitWhenDone = false;
  private catalogPromise?: Promise<Catalog>;
  private storeInstance?: ObjectStore;
  private settingsInstance?: StoreSettings;

  constructor(readonly opts: GlobalOptions) {
    this.home = opts.home;
    this.storeUrl = opts.store ?? path.join(this.home, 'store');
  }

  get store(): ObjectStore {
    return (this.storeInstance ??= openStore(this.storeUrl, { settings: this.storeSettings }));
  }

  /** Endpoints and regions of buckets: environment, then `<home>/stores.json` (docs/STORES.md). */
  get storeSettings(): StoreSettings {
    return (this.settingsInstance ??= loadStoreSettings({ home: this.home }));
  }

  get storeOpened(): boolean {
    return this.storeInstance !== undefined;
  }

  get cacheDir(): string {
    return path.join(this.home, 'cache');
  }

  catalog(): Promise<Catalog> {
    return (this.catalogPromise ??= Catalog.open({ store: this.store, dbPath: path.join(this.home, 'catalog.sqlite'), tmpDir: path.join(this.home, 'tmp') }));
  }

  async close(): Promise<void> {
    if (this.catalogPromise) (await this.catalogPromise).close();
    await this.storeInstance?.close?.();
  }

  /** Detail (how a URI was resolved, what was read) for --verbose only. */
  debug(line: string): void {
    if (this.opts.verbose) process.stderr.write(`${line}\n`);
  }

  /** Progress and informational lines go to stderr unless --quiet or --json. */
  info(line: string): void {
    if (!this.opts.quiet && !this.opts.json) process.stderr.write(`${line}\n`);
  }

  get quiet(): boolean {
    return Boolean(this.opts.quiet || this.opts.json);
  }
}

/** Print a value: JSON with --json, else the human text. */
export function output(ctx: Context, value: unknown, human: () => string): void {
  if (ctx.opts.json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  else {
    const text = human();
    if (text !== '') process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}
