/**
 * `HttpsStore`: a read-only `ObjectStore` over plain HTTP(S): object `k` is `GET <base>/<k>`, the base
 * URL's query string (a SAS token, a pre-signed prefix) goes with every request and `user:password@`
 * becomes Basic authorization; neither ever appears in `url` or a message.
 *
 * - Reads are ranged GETs (`Range: bytes=A-B`) with Node's http/https and a keep-alive agent. A server that
 *   ignores Range (a 200 with the whole body where a range was asked) is refused with a clear UNSUPPORTED
 *   error before the body is read, so a lazy mount never downloads whole files one block at a time.
 * - Versions: the ETag (or, without one, Last-Modified) seen by `head` or the first ranged read is pinned;
 *   later ranged reads send `If-Match` with a strong ETag and check the reply's validator, so an object
 *   replaced on the server fails with INTEGRITY instead of being served as a mix of two versions.
 * - `head` is a HEAD; servers that refuse HEAD (405/501) get a one-byte ranged GET instead.
 * - Requests, redirects (credentials only to the first origin) and retries (no SDK here: resets, idle
 *   timeouts, 408/429/5xx, with the shared RetryPolicy) are `http-client.ts`; a caller's AbortSignal
 *   aborts the request in flight and stops retrying.
 * - Writes, deletes and listings are UNSUPPORTED: HTTP has no portable way to do them.
 */
import type * as http from 'node:http';
import { VhfsError } from '../util/errors.js';
import { httpGet, HttpStatusError } from './http-client.js';
import {
  parseContentRange,
  RemoteStore,
  scrubSecrets,
  type FailureInfo,
  type RawListPage,
  type RawObject,
  type RawRead,
  type RemoteStoreOptions,
} from './remote.js';

export interface HttpsStoreConfig extends RemoteStoreOptions {
  /** `http(s)://[user:password@]host[:port]/path[?query]`: objects are `<path>/<key>`. */
  base: string;
}

export class HttpsStore extends RemoteStore {
  readonly url: string;
  private readonly base: URL;
  private readonly authorization: string | undefined;

  constructor(config: HttpsStoreConfig) {
    super('', config);
    let base: URL;
    try {
      base = new URL(config.base);
    } catch {
      throw new VhfsError('BAD_URI', `store URL ${scrubSecrets(config.base)}: not a valid URL`);
    }
    if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new VhfsError('BAD_URI', `store URL ${scrubSecrets(config.base)}: not http(s)`);
    if (base.username || base.password) {
      const user = decodeURIComponent(base.username);
      const password = decodeURIComponent(base.password);
      this.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      this.secrets.push(password, this.authorization.slice(6), base.username);
      base.username = '';
      base.password = '';
    }
    if (base.search.length > 1) this.secrets.push(...base.search.slice(1).split('&').map((kv) => kv.slice(kv.indexOf('=') + 1)).filter((v) => v.length >= 16));
    base.hash = '';
    this.base = base;
    this.url = scrubSecrets(config.base.replace(/#.*$/, '').replace(/\/+(\?|$)/, '$1'), this.secrets);
  }

  /** `<base path>/<key, each segment percent-encoded><base query>` */
  private objectUrl(name: string): URL {
    const u = new URL(this.base.href);
    u.pathname = `${this.base.pathname.replace(/\/$/, '')}/${name.split('/').map(encodeURIComponent).join('/')}`;
    return u;
  }

  protected async rawHead(name: string, signal?: AbortSignal): Promise<RawObject | undefined> {
    let res = await this.send('HEAD', name, {}, signal);
    res.resume();
    if (res.statusCode === 404 || res.statusCode === 410) return undefined;
    if (res.statusCode === 405 || res.statusCode === 501) {
      res = await this.send('GET', name, { range: 'bytes=0-0' }, signal);
      res.resume();
      if (res.statusCode === 404 || res.statusCode === 410) return undefined;
      if (res.statusCode === 416) return { name, size: 0, etag: validatorOf(res) ?? '', mtimeMs: mtimeOf(res) };
      const cr = parseContentRange(res.headers['content-range']);
      if (res.statusCode === 206 && cr?.size !== undefined) return { name, size: cr.size, etag: validatorOf(res) ?? '', mtimeMs: mtimeOf(res) };
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) throw await HttpStatusError.from(res);
    return { name, size: Number(res.headers['content-length'] ?? 0), etag: validatorOf(res) ?? '', mtimeMs: mtimeOf(res) };
  }

  protected async rawRead(name: string, range: { offset: number; length: number } | undefined, signal: AbortSignal | undefined, pinned: string | undefined): Promise<RawRead> {
    const headers: http.OutgoingHttpHeaders = {};
    if (range) headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    if (pinned && /^"[^"]*"$/.test(pinned)) headers['if-match'] = pinned; // strong ETags only
    const res = await this.send('GET', name, headers, signal);
    const status = res.statusCode ?? 0;
    if (status === 412 && pinned) {
      res.resume();
      throw this.changed(name, pinned, 'a newer one (the server refused If-Match)');
    }
    if (status !== 200 && status !== 206) throw await HttpStatusError.from(res);
    const etag = validatorOf(res);
    const length = Number(res.headers['content-length'] ?? -1);
    if (status === 206) {
      const cr = parseContentRange(res.headers['content-range']);
      if (!cr) {
        res.resume();
        throw new VhfsError('STORE', `${this.where(name)}: a 206 reply without a usable Content-Range (${String(res.headers['content-range'])})`);
      }
      return { body: res, start: cr.start, length: length >= 0 ? length : cr.end - cr.start + 1, size: cr.size ?? cr.end + 1, partial: true, etag };
    }
    if (length < 0) {
      res.resume();
      throw new VhfsError('STORE', `${this.where(name)}: the server sent no Content-Length; vhfs needs object sizes`);
    }
    return { body: res, start: 0, length, size: length, partial: false, etag };
  }

  protected async rawPut(): Promise<RawObject> {
    throw this.readOnly('put');
  }

  protected async rawList(): Promise<RawListPage> {
    throw this.readOnly('list');
  }

  protected async rawDelete(): Promise<void> {
    throw this.readOnly('delete');
  }

  private readOnly(op: string): VhfsError {
    return new VhfsError('UNSUPPORTED', `${this.url}: ${op} is not supported: HTTP(S) stores are read-only and cannot be listed`);
  }

  protected describeFailure(err: unknown): FailureInfo {
    if (err instanceof HttpStatusError) return { status: err.status, message: err.statusText };
    const code = (err as NodeJS.ErrnoException).code;
    return {
      ...(code ? { code } : {}),
      message: err instanceof Error ? err.message.split('\n')[0] : String(err),
      timeout: code === 'ETIMEDOUT',
    };
  }

  protected credentialsHint(): string {
    return 'an HTTP(S) store takes credentials only from the URL itself (user:password@ or a signed query string)';
  }

  private send(method: 'GET' | 'HEAD', name: string, headers: http.OutgoingHttpHeaders, signal: AbortSignal | undefined): Promise<http.IncomingMessage> {
    return httpGet({
      method, url: this.objectUrl(name), headers, signal, policy: this.retry, maxSockets: this.maxSockets, where: this.where(name),
      ...(this.authorization ? { originHeaders: { authorization: this.authorization } } : {}),
    });
  }
}

/** The version validator of a reply: its ETag, else its Last-Modified. */
function validatorOf(res: http.IncomingMessage): string | undefined {
  const etag = res.headers.etag;
  if (etag) return etag;
  const lm = res.headers['last-modified'];
  return lm ? `last-modified:${lm}` : undefined;
}

function mtimeOf(res: http.IncomingMessage): number {
  const lm = res.headers['last-modified'];
  return lm ? Date.parse(lm) || 0 : 0;
}

/** Split an HTTP(S) object URL into a store for its directory (query kept) and the key of its file. */
export function httpObjectParts(url: string): { base: string; key: string } {
  const u = new URL(url);
  const slash = u.pathname.lastIndexOf('/');
  const raw = u.pathname.slice(slash + 1);
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    key = raw;
  }
  u.pathname = u.pathname.slice(0, slash + 1);
  u.hash = '';
  return { base: u.href, key };
}
