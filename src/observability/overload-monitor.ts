import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Thresholds of overload control (config sip.overload). */
export interface OverloadThresholds {
  /** p99 of this thread's event-loop delay over the last sample, ms. */
  readonly maxEventLoopDelayMs: number;
  /** INVITEs received and not yet answered finally. */
  readonly maxPendingInvites: number;
  /** Busiest media worker's event-loop utilisation over the last sample, 0..1. */
  readonly maxMediaLoad: number;
  readonly sampleMs: number;
  readonly retryAfterSec: number;
}

/** Where the monitor reads the load from. */
export interface OverloadInputs {
  /** INVITEs in progress, read at every admission (it changes per request). */
  pendingInvites(): number;
  /** Busiest media worker's event-loop utilisation since the previous call; null when there are none. */
  mediaLoad(): number | null;
  /**
   * p99 event-loop delay of this thread since the previous call, ms. Default: Node's
   * `perf_hooks.monitorEventLoopDelay` histogram, read and reset at each sample.
   */
  eventLoopDelayMs?(): number;
}

export type OverloadSignal = 'event-loop-delay' | 'pending-invites' | 'media-load';

export interface OverloadSample {
  readonly eventLoopDelayMs: number;
  readonly mediaLoad: number | null;
  readonly pendingInvites: number;
  /** The signal over its threshold in this sample, or null. */
  readonly overloaded: OverloadSignal | null;
}

/**
 * Overload control's measure of load (the SIP layer's `LoadMonitor`): a new INVITE is refused
 * with 503 and Retry-After while
 *   - the main thread's event loop lags: p99 delay over the last sample above
 *     `maxEventLoopDelayMs` (every SIP message, agent frame and timer waits that long), or
 *   - the busiest media worker's loop is busy more than `maxMediaLoad` of the time, or
 *   - more than `maxPendingInvites` INVITEs are being set up (a backlog forming),
 * so that the calls already admitted keep their timing rather than every call degrading. The
 * first two are sampled every `sampleMs` (a timer that itself runs late under load: the sample
 * then covers the longer span); the third is read at each admission.
 */
export class OverloadMonitor {
  private histogram: IntervalHistogram | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private last: OverloadSample = { eventLoopDelayMs: 0, mediaLoad: null, pendingInvites: 0, overloaded: null };

  constructor(
    private readonly t: OverloadThresholds,
    private readonly inputs: OverloadInputs,
    private readonly onSample: (s: OverloadSample) => void = () => {},
  ) {}

  /** Starts sampling. Idempotent. */
  start(): void {
    if (this.timer) return;
    if (!this.inputs.eventLoopDelayMs) {
      this.histogram = monitorEventLoopDelay({ resolution: 10 });
      this.histogram.enable();
    }
    this.timer = setInterval(() => this.sample(), this.t.sampleMs);
    this.timer.unref();
  }

  /** Reads the sampled signals (the timer calls it; tests call it with their own inputs). */
  sample(): OverloadSample {
    let delay = 0;
    if (this.inputs.eventLoopDelayMs) delay = this.inputs.eventLoopDelayMs();
    else if (this.histogram) {
      // Nanoseconds; an empty histogram (no samples yet) reads as 0 rather than its sentinel.
      delay = this.histogram.count > 0 ? this.histogram.percentile(99) / 1e6 : 0;
      this.histogram.reset();
    }
    const mediaLoad = this.inputs.mediaLoad();
    const pendingInvites = this.inputs.pendingInvites();
    const overloaded: OverloadSignal | null =
      delay > this.t.maxEventLoopDelayMs ? 'event-loop-delay'
        : mediaLoad !== null && mediaLoad > this.t.maxMediaLoad ? 'media-load'
          : pendingInvites >= this.t.maxPendingInvites ? 'pending-invites'
            : null;
    this.last = { eventLoopDelayMs: delay, mediaLoad, pendingInvites, overloaded };
    this.onSample(this.last);
    return this.last;
  }

  /** The latest sample. */
  get current(): OverloadSample {
    return this.last;
  }

  /** May a new INVITE start now? Cheap: a field read and one counter. */
  admit(): { readonly ok: true } | { readonly ok: false; readonly signal: OverloadSignal; readonly retryAfterSec: number } {
    const sampled = this.last.overloaded;
    if (sampled === 'event-loop-delay' || sampled === 'media-load') return { ok: false, signal: sampled, retryAfterSec: this.t.retryAfterSec };
    if (this.inputs.pendingInvites() >= this.t.maxPendingInvites) return { ok: false, signal: 'pending-invites', retryAfterSec: this.t.retryAfterSec };
    return { ok: true };
  }

  /** Stops sampling. Idempotent. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.histogram?.disable();
    this.histogram = null;
  }
}
