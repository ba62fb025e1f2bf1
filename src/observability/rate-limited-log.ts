import type { Logger } from 'pino';
import { systemClock, type Clock } from '../util/time.js';

export type RateLimitedLevel = 'debug' | 'info' | 'warn' | 'error';

export interface RateLimitedLogOptions {
  /** Length of a window, ms. */
  readonly intervalMs: number;
  /** Lines per key per window; the rest are counted, not written. */
  readonly burst: number;
  /** Most keys tracked; past it the table starts afresh (keys are meant to be a small fixed set). */
  readonly maxKeys?: number;
  readonly clock?: Clock;
}

interface Window {
  start: number;
  written: number;
  suppressed: number;
}

/**
 * Logs conditions that can repeat thousands of times a second (a client flood, a refused
 * connection per attempt) without flooding the log: at most `burst` lines per key per
 * `intervalMs`. The next line written for a key after a window that dropped lines carries
 * `suppressed: n`. Keys name a kind of condition (e.g. "refused:source-limit"), not a source, so
 * many sources cannot multiply the lines. Metrics count every occurrence; the log samples them.
 */
export class RateLimitedLog {
  private readonly windows = new Map<string, Window>();
  private readonly clock: Clock;
  private readonly maxKeys: number;

  constructor(
    private readonly log: Logger,
    private readonly opts: RateLimitedLogOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.maxKeys = opts.maxKeys ?? 1000;
  }

  write(level: RateLimitedLevel, key: string, fields: Record<string, unknown>, msg: string): void {
    if (!this.log.isLevelEnabled(level)) return;
    const now = this.clock();
    let w = this.windows.get(key);
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.windows.clear();
      w = { start: now, written: 0, suppressed: 0 };
      this.windows.set(key, w);
    } else if (now - w.start >= this.opts.intervalMs) {
      w.start = now;
      w.written = 0;
    }
    if (w.written >= this.opts.burst) {
      w.suppressed++;
      return;
    }
    w.written++;
    if (w.suppressed > 0) {
      this.log[level]({ ...fields, suppressed: w.suppressed }, msg);
      w.suppressed = 0;
    } else {
      this.log[level](fields, msg);
    }
  }
}
