/**
 * Run `fn` over `items` with at most `limit` calls in flight; results come back in input order. After
 * the first failure nothing new starts, and the call rejects with that failure once the calls already
 * running have settled: no work outlives the call (a caller may clean up right after it).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let failure: unknown;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]);
      } catch (err) {
        if (!failed) failure = err;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed) throw failure;
  return results;
}

export interface MapAheadOptions<T> {
  /** Calls started but not yet consumed, at most. */
  limit: number;
  /** Weight of an item (e.g. bytes it will hold in memory); default 0. */
  weigh?: (item: T) => number;
  /**
   * Total weight of items started and not yet handed to the consumer, at most (one item is always
   * allowed, whatever its weight). The item the consumer is working on comes on top.
   */
  maxWeight?: number;
}

/**
 * `fn` over `items`, yielding results in input order while up to `limit` later calls already run: a
 * read-ahead for a consumer that must go in order (a package writer) but whose producers are I/O that
 * overlaps well. The window is bounded by count and, with `weigh`, by weight, so memory stays bounded
 * however large the items are. It is refilled in bursts (once half of it is consumed), so a producer
 * that batches the calls made in one tick (read-pool.ts) gets batches. A failed call throws when its turn
 * comes. When the consumer stops (break, error), nothing new starts and the generator waits for the
 * calls still running, so none outlives it.
 */
export async function* mapAhead<T, R>(
  items: readonly T[],
  opts: MapAheadOptions<T>,
  fn: (item: T, index: number) => Promise<R>,
): AsyncGenerator<R, void, undefined> {
  const limit = Math.max(1, opts.limit);
  const maxWeight = opts.maxWeight ?? Infinity;
  const weigh = opts.weigh ?? (() => 0);
  const window: Array<{ result: Promise<R>; weight: number }> = [];
  let inFlightWeight = 0;
  let next = 0;
  const fill = () => {
    while (next < items.length && window.length < limit) {
      const weight = weigh(items[next]);
      if (window.length > 0 && inFlightWeight + weight > maxWeight) break;
      const i = next++;
      const result = fn(items[i], i);
      result.catch(() => {}); // rejections are rethrown in order below, never unhandled
      window.push({ result, weight });
      inFlightWeight += weight;
    }
  };
  try {
    fill();
    while (window.length > 0) {
      const head = window[0];
      let value: R;
      try {
        value = await head.result;
      } finally {
        window.shift();
        inFlightWeight -= head.weight;
      }
      if (window.length <= limit / 2) fill();
      yield value;
    }
  } finally {
    await Promise.allSettled(window.map((w) => w.result));
  }
}
