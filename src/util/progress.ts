/**
 * Progress for long work, on stderr: a self-overwriting line on a terminal, a line every few seconds
 * otherwise (CI logs), nothing with `quiet`. Rates and ETA come from elapsed time, so callers only count.
 */
export interface ProgressOptions {
  quiet?: boolean;
  stream?: NodeJS.WriteStream;
  unit?: 'files' | 'bytes';
}

export class Progress {
  private done = 0;
  private bytes = 0;
  private lastDraw = 0;
  private readonly started = Date.now();
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly label: string, private readonly total: number, private readonly opts: ProgressOptions = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = Boolean(this.stream.isTTY);
  }

  tick(count = 1, bytes = 0): void {
    this.done += count;
    this.bytes += bytes;
    const now = Date.now();
    if (now - this.lastDraw >= (this.tty ? 100 : 5000)) {
      this.lastDraw = now;
      this.draw(false);
    }
  }

  finish(): void {
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (this.opts.quiet) return;
    const secs = Math.max((Date.now() - this.started) / 1000, 0.001);
    const pct = this.total > 0 ? Math.min(100, Math.floor((this.done / this.total) * 100)) : 100;
    const rate = this.done / secs;
    const eta = !final && rate > 0 && this.total > this.done ? ` eta ${formatDuration((this.total - this.done) / rate)}` : '';
    const mb = this.bytes > 0 ? ` ${formatBytes(this.bytes)} (${formatBytes(this.bytes / secs)}/s)` : '';
    const line = `${this.label}: ${this.done}/${this.total} (${pct}%)${mb} ${Math.round(rate)}/s${final ? ` in ${formatDuration(secs)}` : eta}`;
    if (this.tty) this.stream.write(`\r\x1b[K${line}${final ? '\n' : ''}`);
    else if (final || this.done < this.total) this.stream.write(`${line}\n`);
  }
}

/** `decimal`: kB, MB, GB (powers of 1000), as Valohai's own log lines print sizes. */
export function formatBytes(n: number, opts: { decimal?: boolean } = {}): string {
  const base = opts.decimal ? 1000 : 1024;
  const units = opts.decimal ? ['B', 'kB', 'MB', 'GB', 'TB'] : ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (n >= base && u < units.length - 1) { n /= base; u++; }
  return `${u === 0 ? Math.round(n) : n.toFixed(1)} ${units[u]}`;
}

export function formatDuration(secs: number): string {
  if (secs < 60) return `${secs.toFixed(1)}s`;
  const m = Math.floor(secs / 60);
  return m < 60 ? `${m}m${Math.round(secs % 60)}s` : `${Math.floor(m / 60)}h${m % 60}m`;
}
