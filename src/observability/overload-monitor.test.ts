import { describe, it, expect, vi, afterEach } from 'vitest';
import { OverloadMonitor, type OverloadSample } from './overload-monitor.js';

const thresholds = { maxEventLoopDelayMs: 100, maxPendingInvites: 3, maxMediaLoad: 0.9, sampleMs: 1000, retryAfterSec: 10 };

describe('overload control: the measure of load', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function monitor(start: { delay?: number; media?: number | null; pending?: number } = {}) {
    const state: { delay: number; media: number | null; pending: number } = { delay: start.delay ?? 0, media: start.media === undefined ? 0.1 : start.media, pending: start.pending ?? 0 };
    const samples: OverloadSample[] = [];
    const m = new OverloadMonitor(thresholds, { pendingInvites: () => state.pending, mediaLoad: () => state.media, eventLoopDelayMs: () => state.delay }, (s) => samples.push(s));
    return { m, state, samples };
  }

  it('admits while every signal is under its threshold', () => {
    const { m } = monitor({ delay: 20, media: 0.5, pending: 2 });
    m.sample();
    expect(m.admit()).toEqual({ ok: true });
  });

  it('refuses with Retry-After while the event loop lags, from the next sample on, and admits again once it recovers', () => {
    const { m, state } = monitor();
    m.sample();
    state.delay = 250;
    expect(m.admit().ok).toBe(true); // not sampled yet
    expect(m.sample().overloaded).toBe('event-loop-delay');
    expect(m.admit()).toEqual({ ok: false, signal: 'event-loop-delay', retryAfterSec: 10 });
    state.delay = 5;
    m.sample();
    expect(m.admit().ok).toBe(true);
  });

  it('refuses while the busiest media worker is over maxMediaLoad; no media workers is no signal', () => {
    const { m, state } = monitor({ media: 0.95 });
    m.sample();
    expect(m.admit()).toMatchObject({ ok: false, signal: 'media-load' });
    state.media = null;
    m.sample();
    expect(m.admit().ok).toBe(true);
  });

  it('reads the INVITEs in progress at every admission, not only at samples', () => {
    const { m, state } = monitor();
    m.sample();
    state.pending = 3;
    expect(m.admit()).toMatchObject({ ok: false, signal: 'pending-invites' });
    state.pending = 2;
    expect(m.admit().ok).toBe(true);
  });

  it('samples on its timer once started, reporting each sample, and stops on close', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const { m, samples, state } = monitor();
    m.start();
    state.delay = 300;
    await vi.advanceTimersByTimeAsync(3000);
    expect(samples.map((s) => s.overloaded)).toEqual(['event-loop-delay', 'event-loop-delay', 'event-loop-delay']);
    m.close();
    await vi.advanceTimersByTimeAsync(3000);
    expect(samples).toHaveLength(3);
  });

  it('measures this thread\'s event-loop delay itself when not given a reader (a blocked loop shows)', async () => {
    const m = new OverloadMonitor({ ...thresholds, maxEventLoopDelayMs: 20 }, { pendingInvites: () => 0, mediaLoad: () => null });
    m.start();
    try {
      // Let the histogram take a few samples, then hold the loop for 150 ms.
      await new Promise((r) => setTimeout(r, 60));
      const until = performance.now() + 150;
      while (performance.now() < until) { /* busy: the loop is blocked */ }
      await new Promise((r) => setTimeout(r, 30));
      const s = m.sample();
      expect(s.eventLoopDelayMs).toBeGreaterThan(20);
      expect(s.overloaded).toBe('event-loop-delay');
    } finally {
      m.close();
    }
  });
});
