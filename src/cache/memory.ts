/**
 * The memory tier of the block cache, bounded in bytes, that does not keep what the kernel keeps.
 *
 * Inputs are mounted with `kernel_cache`: once a byte has been handed to the kernel it lives in the page
 * cache, and the kernel does not ask for it again while it stays there. Keeping our own copy of it as well
 * would double the memory a mount costs for nothing. So every entry counts the bytes not yet delivered to
 * a reader; once all are (`deliver`), the entry moves from the *fresh* set (fetched, still wanted: blocks
 * read ahead, the rest of a block a reader is halfway through) to the *spent* set (kept only while there is
 * room, and in a quarter of the budget at most: a page the kernel dropped under memory pressure, a second
 * reader racing the first). Eviction takes spent entries first, oldest first, then fresh ones, oldest first. Both sets are Maps, whose iteration
 * order is insertion order: a hit re-inserts, which makes them LRU lists with O(1) operations.
 *
 * Fresh data nobody has touched for `STALE_FRESH_MS` is spent too: blocks read ahead for a reader that went
 * elsewhere (a shuffled reader whose next file happened to follow its last one looks sequential for a
 * moment), the rest of a block whose reader stopped. Left fresh, such data filled the budget over a long
 * mount (18 of 26 MB after the peers benchmark, never to be read) and, counted as pending, held back the
 * readahead of the next sequential reader. A reader consumes its readahead within milliseconds; one slower
 * than that still finds it among the spent data while there is room.
 */
export interface MemoryStats {
  entries: number;
  bytes: number;
  freshBytes: number;
  evictions: number;
}

interface Entry {
  data: Buffer;
  /** Bytes not yet delivered to a reader; the entry is spent at 0. */
  undelivered: number;
  /** When it was fetched or last read (`now()`), for fresh entries. */
  touched: number;
}

/** Fresh data untouched this long is spent (see the module comment). */
export const STALE_FRESH_MS = 5000;

export class MemoryTier {
  private readonly fresh = new Map<string, Entry>();
  private readonly spent = new Map<string, Entry>();
  private freshBytes = 0;
  private spentBytes = 0;
  evictions = 0;

  constructor(readonly budget: number, private readonly now: () => number = Date.now) {}

  get bytes(): number {
    return this.freshBytes + this.spentBytes;
  }

  /** Bytes fetched and not yet delivered: what readahead may still add to before it must wait. */
  get pendingBytes(): number {
    return this.freshBytes;
  }

  has(key: string): boolean {
    return this.fresh.has(key) || this.spent.has(key);
  }

  get(key: string): Buffer | undefined {
    const f = this.fresh.get(key);
    if (f) {
      this.touch(key, f);
      return f.data;
    }
    const s = this.spent.get(key);
    if (!s) return undefined;
    this.spent.delete(key);
    this.spent.set(key, s);
    return s.data;
  }

  set(key: string, data: Buffer): void {
    this.delete(key);
    this.fresh.set(key, { data, undelivered: data.length, touched: this.now() });
    this.freshBytes += data.length;
    this.evict();
  }

  /** `bytes` of entry `key` went to a reader. */
  deliver(key: string, bytes: number): void {
    const e = this.fresh.get(key);
    if (!e) return;
    e.undelivered -= bytes;
    if (e.undelivered <= 0) this.spend(key);
    else this.touch(key, e);
  }

  /** Fresh entries stay in the order they were last touched, so the stale ones are the first. */
  private touch(key: string, e: Entry): void {
    e.touched = this.now();
    this.fresh.delete(key);
    this.fresh.set(key, e);
  }

  /**
   * Entry `key` will not be asked for again, delivered whole or not: a sequential reader has passed it
   * (the bytes of a block that no reader takes are a package's headers and padding).
   */
  spend(key: string): void {
    const e = this.fresh.get(key);
    if (!e) return;
    this.moveToSpent(key, e);
    this.evict();
  }

  private moveToSpent(key: string, e: Entry): void {
    this.fresh.delete(key);
    this.freshBytes -= e.data.length;
    this.spent.set(key, e);
    this.spentBytes += e.data.length;
  }

  delete(key: string): void {
    const f = this.fresh.get(key);
    if (f) {
      this.fresh.delete(key);
      this.freshBytes -= f.data.length;
    }
    const s = this.spent.get(key);
    if (s) {
      this.spent.delete(key);
      this.spentBytes -= s.data.length;
    }
  }

  clear(): void {
    this.fresh.clear();
    this.spent.clear();
    this.freshBytes = 0;
    this.spentBytes = 0;
  }

  stats(): MemoryStats {
    return { entries: this.fresh.size + this.spent.size, bytes: this.bytes, freshBytes: this.freshBytes, evictions: this.evictions };
  }

  private evict(): void {
    const staleBefore = this.now() - STALE_FRESH_MS;
    for (let oldest = this.fresh.entries().next(); !oldest.done && oldest.value[1].touched < staleBefore; oldest = this.fresh.entries().next()) {
      this.moveToSpent(...oldest.value);
    }
    // Spent data is the kernel's to keep: a quarter of the budget at most, for the few re-reads it sees.
    while (this.spentBytes > this.budget / 4) this.dropOldest(this.spent);
    while (this.bytes > this.budget) this.dropOldest(this.spent.size > 0 ? this.spent : this.fresh);
  }

  private dropOldest(from: Map<string, Entry>): void {
    const [key, e] = from.entries().next().value as [string, Entry];
    from.delete(key);
    if (from === this.spent) this.spentBytes -= e.data.length;
    else this.freshBytes -= e.data.length;
    this.evictions++;
  }
}
