/**
 * What a source may get without authenticating: answers to requests that carry no credentials
 * (digest challenges, OPTIONS) are limited per source address, and a source that keeps sending
 * over its rate is blocked for a while, every message from it dropped before it is parsed.
 *
 * - A token bucket per source: `ratePerSec` answers a second with `burst` of tolerance. A
 *   request over it gets no answer (and costs a map lookup).
 * - `floodThreshold` requests over the rate within `windowMs` (default 10 s) make a flood: the
 *   source is blocked for `blockMs`.
 *
 * Per node and in memory, bounded (`maxTracked` sources, the least recently seen dropped first).
 * A flood from many (spoofed) addresses is not stopped here: overload control is the answer to
 * that (SipServer refuses new INVITEs with 503 when the node's load is over its thresholds).
 */
export interface ChallengeLimiterOptions {
  ratePerSec: number;
  burst: number;
  floodThreshold: number;
  blockMs: number;
  /** Window over which requests over the rate are counted. Default 10,000 ms. */
  windowMs?: number;
  /** Default 100,000. */
  maxTracked?: number;
}

export type ChallengeAdmission =
  /** Answer it. */
  | 'ok'
  /** Over the source's rate: no answer. */
  | 'limited'
  /** Over the rate, and this request made the source a flood: it is blocked from now on. */
  | 'blocked';

interface SourceState {
  tokens: number;
  at: number;
  windowStart: number;
  over: number;
}

export class ChallengeLimiter {
  private readonly sources = new Map<string, SourceState>();
  private readonly blocked = new Map<string, number>();
  private readonly windowMs: number;
  private readonly max: number;

  constructor(private readonly opts: ChallengeLimiterOptions, private readonly now: () => number = Date.now) {
    this.windowMs = opts.windowMs ?? 10_000;
    this.max = opts.maxTracked ?? 100_000;
  }

  /** Blocked sources: every message from them is dropped. */
  isBlocked(addr: string): boolean {
    if (this.blocked.size === 0) return false;
    const until = this.blocked.get(addr);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.blocked.delete(addr);
    return false;
  }

  /** Sources blocked now (for metrics). */
  get blockedCount(): number {
    const now = this.now();
    for (const [a, until] of this.blocked) if (until <= now) this.blocked.delete(a);
    return this.blocked.size;
  }

  /** One answer without authentication for `addr`: may it go out? */
  take(addr: string): ChallengeAdmission {
    const now = this.now();
    let s = this.sources.get(addr);
    if (s) {
      this.sources.delete(addr);
      s.tokens = Math.min(this.opts.burst, s.tokens + ((now - s.at) * this.opts.ratePerSec) / 1000);
      s.at = now;
    } else {
      s = { tokens: this.opts.burst, at: now, windowStart: now, over: 0 };
    }
    this.sources.set(addr, s);
    if (this.sources.size > this.max) this.sources.delete(this.sources.keys().next().value!);
    if (s.tokens >= 1) {
      s.tokens -= 1;
      return 'ok';
    }
    if (now - s.windowStart >= this.windowMs) {
      s.windowStart = now;
      s.over = 0;
    }
    s.over++;
    if (s.over < this.opts.floodThreshold) return 'limited';
    s.over = 0;
    this.blocked.delete(addr);
    this.blocked.set(addr, now + this.opts.blockMs);
    if (this.blocked.size > this.max) this.blocked.delete(this.blocked.keys().next().value!);
    return 'blocked';
  }
}
