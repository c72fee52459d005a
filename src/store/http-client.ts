/**
 * One GET/HEAD over Node's http/https for the backends that speak plain HTTP on their read path (the
 * HTTPS store, and GCS's ranged media GETs): keep-alive agents shared per process, redirects, retries
 * with the shared RetryPolicy, an idle limit on the socket, the caller's AbortSignal.
 *
 *  - Retried: connection resets/refusals/idle timeouts (`isTransientNetworkError`) and replies 408, 429,
 *    500, 502, 503, 504, with full-jitter backoff (at least a `Retry-After`, capped at `maxDelayMs`).
 *    An aborted signal stops at once.
 *  - Redirects 301/302/303/307/308 are followed up to 5 times; `headers` marked origin-bound (credentials)
 *    are sent only to the origin of the first URL.
 *  - The socket's idle limit covers reply headers and body alike: a body that stops mid-way errors, and
 *    the caller (remote.ts) re-requests the range.
 * Resolves with the final reply, whatever its status; `HttpStatusError.from(res)` turns a non-2xx reply
 * into an error carrying the status and the start of the body (for the service's error message).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { VhfsError } from '../util/errors.js';
import { backoffMs, isTransientNetworkError, keepAliveAgents, sleep, type RetryPolicy } from './remote.js';

export interface HttpGet {
  method: 'GET' | 'HEAD';
  url: URL;
  headers?: http.OutgoingHttpHeaders;
  /** Sent to the first URL's origin only (credentials). */
  originHeaders?: http.OutgoingHttpHeaders;
  signal?: AbortSignal;
  policy: RetryPolicy;
  maxSockets: number;
  /** For messages: where the request goes, secrets removed. */
  where: string;
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/** A reply outside 2xx: the status for error mapping, and the start of its body for the message. */
export class HttpStatusError extends Error {
  constructor(readonly status: number, readonly statusText: string, readonly body = '') {
    super(`HTTP ${status} ${statusText}`);
  }

  /** Drain (at most 4 KiB of) the reply's body into an error. */
  static async from(res: http.IncomingMessage): Promise<HttpStatusError> {
    let body = '';
    try {
      for await (const chunk of res) {
        if (body.length < 4096) body += (chunk as Buffer).toString('utf8');
      }
    } catch {
      // the status is what matters
    }
    return new HttpStatusError(res.statusCode ?? 0, res.statusMessage ?? '', body.slice(0, 4096));
  }
}

export async function httpGet(req: HttpGet): Promise<http.IncomingMessage> {
  for (let attempt = 1; ; attempt++) {
    let res: http.IncomingMessage;
    try {
      res = await follow(req);
    } catch (err) {
      if (req.signal?.aborted || !isTransientNetworkError(err) || attempt >= req.policy.attempts) throw err;
      await sleep(backoffMs(req.policy, attempt), req.signal);
      continue;
    }
    if (!RETRY_STATUS.has(res.statusCode ?? 0) || attempt >= req.policy.attempts) return res;
    res.resume();
    const retryAfter = Number(res.headers['retry-after']) * 1000;
    await sleep(Math.max(backoffMs(req.policy, attempt), Number.isFinite(retryAfter) ? Math.min(retryAfter, req.policy.maxDelayMs) : 0), req.signal);
  }
}

async function follow(req: HttpGet): Promise<http.IncomingMessage> {
  let target = req.url;
  for (let hop = 0; ; hop++) {
    const headers = { ...req.headers, ...(target.origin === req.url.origin ? req.originHeaders : {}) };
    const res = await once(req, target, headers);
    const location = res.headers.location;
    if (!REDIRECT_STATUS.has(res.statusCode ?? 0) || !location) return res;
    res.resume();
    if (hop >= MAX_REDIRECTS) throw new VhfsError('STORE', `${req.where}: more than ${MAX_REDIRECTS} redirects`);
    target = new URL(location, target);
  }
}

function once(req: HttpGet, url: URL, headers: http.OutgoingHttpHeaders): Promise<http.IncomingMessage> {
  const agents = keepAliveAgents(req.maxSockets);
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const r = (secure ? https : http).request(url, {
      method: req.method, headers, agent: secure ? agents.https : agents.http, ...(req.signal ? { signal: req.signal } : {}),
    }, resolve);
    const idle = req.policy.idleTimeoutMs;
    r.setTimeout(idle, () => r.destroy(Object.assign(new Error(`no data for ${idle} ms`), { code: 'ETIMEDOUT' })));
    r.on('error', reject);
    r.end();
  });
}
