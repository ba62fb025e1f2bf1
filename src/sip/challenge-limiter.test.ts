import { describe, it, expect } from 'vitest';
import { ChallengeLimiter } from './challenge-limiter.js';

describe('answers without authentication, per source (ChallengeLimiter)', () => {
  it('answers a burst, then the rate; over it, no answer', () => {
    let now = 0;
    const l = new ChallengeLimiter({ ratePerSec: 10, burst: 5, floodThreshold: 1000, blockMs: 60_000 }, () => now);
    const first = Array.from({ length: 7 }, () => l.take('192.0.2.1'));
    expect(first).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'limited', 'limited']);
    now += 100; // one token back at 10/s
    expect(l.take('192.0.2.1')).toBe('ok');
    expect(l.take('192.0.2.1')).toBe('limited');
    // Another source has its own bucket.
    expect(l.take('192.0.2.2')).toBe('ok');
  });

  it('blocks a source that keeps sending over its rate (floodThreshold within the window), for blockMs', () => {
    let now = 0;
    const l = new ChallengeLimiter({ ratePerSec: 1, burst: 1, floodThreshold: 3, blockMs: 5000 }, () => now);
    expect(l.take('a')).toBe('ok');
    expect(l.take('a')).toBe('limited');
    expect(l.take('a')).toBe('limited');
    expect(l.isBlocked('a')).toBe(false);
    expect(l.take('a')).toBe('blocked');
    expect(l.isBlocked('a')).toBe(true);
    expect(l.isBlocked('b')).toBe(false);
    expect(l.blockedCount).toBe(1);
    now += 5001;
    expect(l.isBlocked('a')).toBe(false);
    expect(l.take('a')).toBe('ok');
  });

  it('forgets refusals older than the window: a source that is only sometimes over its rate is not blocked', () => {
    let now = 0;
    const l = new ChallengeLimiter({ ratePerSec: 1, burst: 1, floodThreshold: 3, blockMs: 5000, windowMs: 1000 }, () => now);
    for (let round = 0; round < 10; round++) {
      expect(l.take('a')).toBe('ok');
      expect(l.take('a')).toBe('limited');
      expect(l.take('a')).toBe('limited');
      now += 1500;
    }
    expect(l.isBlocked('a')).toBe(false);
  });

  it('tracks a bounded number of sources', () => {
    const l = new ChallengeLimiter({ ratePerSec: 1, burst: 1, floodThreshold: 3, blockMs: 5000, maxTracked: 100 }, () => 0);
    for (let i = 0; i < 10_000; i++) l.take(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    expect((l as unknown as { sources: Map<string, unknown> }).sources.size).toBeLessThanOrEqual(100);
  });
});
