/**
 * Fault injection for end-to-end tests of the real `vhfs` binary (CLI and mount daemon), with no test hook
 * in the product: loaded with `NODE_OPTIONS=--import=<this file>` (the mount daemon inherits the
 * environment), it routes every call of every `LocalDirStore` through a `FaultyStore` built from the
 * JSON in `VHFS_TEST_FAULTS`, the only place that variable is read:
 *
 *   { "keys": "^blobs/",                   only calls on matching keys are affected (regex; default all)
 *     "delayMs": 3600000,                  a store that does not answer (an abort still ends the call)
 *     "fail": [{ "op": "getRange", "nth": 1, "sticky": true, "code": "STORE" }],
 *     "rival": true }                      before every put, another client rewrites the object (same
 *                                          bytes, new etag), so every conditional put loses its CAS for real
 *
 * `faultsEnv(plan)` (below) builds the environment a test passes to the child process.
 */
import { fileURLToPath } from 'node:url';
import { LocalDirStore } from '../../src/store/local.js';
import { FaultyStore, type FaultPlan, type StoreOp } from '../../src/store/faulty.js';
import type { ObjectStore } from '../../src/store/types.js';
import { VhfsError, type VhfsErrorCode } from '../../src/util/errors.js';

export interface FaultsSpec {
  keys?: string;
  delayMs?: number;
  fail?: Array<{ op: StoreOp; nth: number; sticky?: boolean; code?: VhfsErrorCode; message?: string }>;
  rival?: boolean;
}

/** Environment for a child `vhfs` that injects `spec` into its directory stores. */
export function faultsEnv(spec: FaultsSpec): Record<string, string> {
  return {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${fileURLToPath(import.meta.url)}`.trim(),
    VHFS_TEST_FAULTS: JSON.stringify(spec),
  };
}

const OPS: StoreOp[] = ['head', 'getRange', 'get', 'getStream', 'put', 'list', 'delete'];
type Method = (this: LocalDirStore, ...args: unknown[]) => Promise<unknown>;

function install(spec: FaultsSpec): void {
  const proto = LocalDirStore.prototype as unknown as Record<StoreOp, Method>;
  const original = Object.fromEntries(OPS.map((op) => [op, proto[op]])) as Record<StoreOp, Method>;
  const wrapped = new WeakMap<LocalDirStore, FaultyStore>();
  const faultyFor = (store: LocalDirStore): FaultyStore => {
    let faulty = wrapped.get(store);
    if (!faulty) {
      const call = (op: StoreOp) => (...args: unknown[]) => original[op].apply(store, args);
      const inner = {
        get url() { return store.url; },
        get stats() { return store.stats; },
        head: call('head'), getRange: call('getRange'), get: call('get'), getStream: call('getStream'),
        put: call('put'), list: call('list'), delete: call('delete'),
      } as unknown as ObjectStore;
      const plan: FaultPlan = {
        ...(spec.keys !== undefined ? { keys: new RegExp(spec.keys) } : {}),
        ...(spec.delayMs !== undefined ? { delayMs: spec.delayMs } : {}),
        fail: (spec.fail ?? []).map((f) => ({
          op: f.op, nth: f.nth, ...(f.sticky ? { sticky: true } : {}),
          ...(f.code ? { error: new VhfsError(f.code, f.message ?? `${store.url}: injected ${f.code} (VHFS_TEST_FAULTS)`) } : {}),
        })),
        ...(spec.rival ? {
          beforeCall: async (op: StoreOp, key: string) => {
            if (op !== 'put') return;
            const current = await inner.get(key).catch(() => undefined);
            if (current) await inner.put(key, current);
          },
        } : {}),
      };
      wrapped.set(store, (faulty = new FaultyStore(inner, plan)));
    }
    return faulty;
  };
  for (const op of OPS) {
    proto[op] = function (this: LocalDirStore, ...args: unknown[]) {
      return (faultyFor(this)[op] as (...a: unknown[]) => Promise<unknown>)(...args);
    };
  }
}

const raw = process.env.VHFS_TEST_FAULTS;
if (raw) install(JSON.parse(raw) as FaultsSpec);
