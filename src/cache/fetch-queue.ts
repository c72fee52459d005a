/**
 * Bounded, prioritised fetching from one store: at most `concurrency` requests in flight, and when a slot
 * frees up the most urgent waiting request goes first — a reader's miss before readahead, readahead before
 * background filling — so work done ahead of readers never delays a reader. Within a priority, first come
 * first served. A request that is already waiting can be promoted (a reader now needs what readahead asked
 * for), and one whose caller gave up can be dropped before it starts.
 */
export const Priority = { Reader: 0, Readahead: 1, Background: 2 } as const;
export type Priority = (typeof Priority)[keyof typeof Priority];

interface Waiting {
  priority: Priority;
  seq: number;
  start: () => void;
}

export class FetchQueue {
  private running = 0;
  private seq = 0;
  private readonly waiting: Waiting[] = [];
  /** Requests started, per priority (for stats and tests). */
  readonly started = [0, 0, 0];

  constructor(readonly concurrency: number) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Run `fn` when a slot is free; resolves or rejects with it. */
  run<T>(priority: Priority, fn: () => Promise<T>): { promise: Promise<T>; promote: () => void } {
    let entry: Waiting | undefined;
    const promise = new Promise<T>((resolve, reject) => {
      const start = () => {
        this.running++;
        this.started[priority]++;
        fn().then(resolve, reject).finally(() => {
          this.running--;
          this.next();
        });
      };
      if (this.running < this.concurrency && this.waiting.length === 0) start();
      else {
        entry = { priority, seq: this.seq++, start };
        this.waiting.push(entry);
      }
    });
    return {
      promise,
      promote: () => {
        if (entry && entry.priority > Priority.Reader) entry.priority = Priority.Reader;
      },
    };
  }

  private next(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      let best = 0;
      for (let i = 1; i < this.waiting.length; i++) {
        const w = this.waiting[i];
        const b = this.waiting[best];
        if (w.priority < b.priority || (w.priority === b.priority && w.seq < b.seq)) best = i;
      }
      const [w] = this.waiting.splice(best, 1);
      w.start();
    }
  }
}
