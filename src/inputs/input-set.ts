/**
 * The inputs of one mount, each resolved at most once, on first touch.
 *
 * `get` is synchronous so FUSE handlers answer without an await once an input is ready; `ensure` starts
 * (or joins) the single resolution of an input. A failed resolution is remembered and rethrown for
 * `retryAfterMs`, so a bad URI costs one error line, not one per `stat`; after that a touch retries,
 * since store failures can be transient.
 */
import type { InputSpec } from './config.js';
import type { InputResolver, ResolvedInput } from './resolve.js';
import { describeError } from '../util/errors.js';

type State =
  | { kind: 'pending' }
  | { kind: 'resolving'; promise: Promise<ResolvedInput> }
  | { kind: 'ready'; input: ResolvedInput }
  | { kind: 'failed'; error: unknown; at: number };

export interface InputSetOptions {
  retryAfterMs?: number;
  log?: (line: string) => void;
}

export class InputSet {
  readonly names: string[];
  private readonly specs = new Map<string, InputSpec>();
  private readonly states = new Map<string, State>();
  private readonly retryAfterMs: number;
  private readonly log: (line: string) => void;
  private readonly readyListeners: Array<(input: ResolvedInput) => void> = [];

  constructor(specs: readonly InputSpec[], private readonly resolver: InputResolver, opts: InputSetOptions = {}) {
    for (const s of specs) {
      this.specs.set(s.name, s);
      this.states.set(s.name, { kind: 'pending' });
    }
    this.names = [...this.specs.keys()].sort();
    this.retryAfterMs = opts.retryAfterMs ?? 5000;
    this.log = opts.log ?? (() => {});
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  spec(name: string): InputSpec | undefined {
    return this.specs.get(name);
  }

  /** The resolved input if it is ready, without waiting. */
  get(name: string): ResolvedInput | undefined {
    const s = this.states.get(name);
    return s?.kind === 'ready' ? s.input : undefined;
  }

  /** Call `listener` with every input that is ready now and with each one that becomes ready later. */
  onReady(listener: (input: ResolvedInput) => void): void {
    this.readyListeners.push(listener);
    for (const s of this.states.values()) if (s.kind === 'ready') listener(s.input);
  }

  ensure(name: string): Promise<ResolvedInput> {
    const s = this.states.get(name);
    if (!s) return Promise.reject(new Error(`no input named "${name}"`));
    if (s.kind === 'ready') return Promise.resolve(s.input);
    if (s.kind === 'resolving') return s.promise;
    if (s.kind === 'failed' && Date.now() - s.at < this.retryAfterMs) return Promise.reject(s.error);
    const started = Date.now();
    const promise = this.resolver.resolve(this.specs.get(name)!).then(
      (input) => {
        this.states.set(name, { kind: 'ready', input });
        const how = input.fromCache ? 'from the cached index' : 'from the store';
        this.log(`input "${name}": ${input.index.fileCount} files, ${input.index.dirCount} directories resolved ${how} in ${Date.now() - started} ms`);
        for (const w of input.warnings) this.log(`warning: ${w}`);
        for (const listener of this.readyListeners) listener(input);
        return input;
      },
      (error: unknown) => {
        this.states.set(name, { kind: 'failed', error, at: Date.now() });
        this.log(`error: input "${name}": ${describeError(error)}`);
        throw error;
      },
    );
    this.states.set(name, { kind: 'resolving', promise });
    return promise;
  }

  /** Resolve every input; resolves to the ones that failed (name → error). */
  async ensureAll(): Promise<Map<string, unknown>> {
    const failures = new Map<string, unknown>();
    await Promise.all(this.names.map((n) => this.ensure(n).catch((err: unknown) => { failures.set(n, err); })));
    return failures;
  }
}
