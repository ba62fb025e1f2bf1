import { describe, expect, it } from 'vitest';
import { backoffMs } from './backoff.js';

const o = { initialBackoffMs: 1000, maxBackoffMs: 600_000 };

describe('retry backoff', () => {
  it('doubles from initialBackoffMs with each failed attempt (no jitter at random = 0.5)', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((a) => backoffMs(a, o, () => 0.5))).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 64_000]);
  });

  it('is capped at maxBackoffMs before jitter', () => {
    expect(backoffMs(10, o, () => 0.5)).toBe(512_000);
    expect(backoffMs(11, o, () => 0.5)).toBe(600_000);
    expect(backoffMs(50, o, () => 0.5)).toBe(600_000);
    expect(backoffMs(5000, o, () => 0.5)).toBe(600_000);
  });

  it('spreads each delay by ±20 %', () => {
    expect(backoffMs(1, o, () => 0)).toBe(800);
    expect(backoffMs(3, o, () => 0)).toBe(3200);
    expect(backoffMs(3, o, () => 0.999_999)).toBe(4800);
    expect(backoffMs(20, o, () => 0)).toBe(480_000);
    expect(backoffMs(20, o, () => 0.999_999)).toBe(720_000);
    for (let i = 0; i < 1000; i++) {
      const d = backoffMs(2, o);
      expect(d).toBeGreaterThanOrEqual(1600);
      expect(d).toBeLessThanOrEqual(2400);
    }
  });

  it('never answers less than 1 ms', () => {
    expect(backoffMs(1, { initialBackoffMs: 1, maxBackoffMs: 1 }, () => 0)).toBe(1);
    expect(backoffMs(0, o, () => 0.5)).toBe(1000);
  });
});
