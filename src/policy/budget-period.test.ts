import { describe, it, expect, afterEach } from 'vitest';
import { costOf, periodBounds } from './budget-period.js';

const at = (iso: string): number => new Date(iso).getTime();

describe('periodBounds', () => {
  const savedTz = process.env.TZ;
  afterEach(() => {
    if (savedTz === undefined) delete process.env.TZ;
    else process.env.TZ = savedTz;
  });

  it('a day runs from UTC midnight to the next UTC midnight', () => {
    expect(periodBounds('day', at('2025-03-15T13:45:10.123Z'))).toEqual({
      id: '2025-03-15',
      from: '2025-03-15T00:00:00.000Z',
      to: '2025-03-16T00:00:00.000Z',
    });
  });

  it('is half-open: midnight starts the new day, the millisecond before is still the old one', () => {
    expect(periodBounds('day', at('2025-03-16T00:00:00.000Z')).id).toBe('2025-03-16');
    expect(periodBounds('day', at('2025-03-15T23:59:59.999Z')).id).toBe('2025-03-15');
  });

  it('a month runs from the 1st of the month to the 1st of the next, in UTC', () => {
    expect(periodBounds('month', at('2025-06-30T23:59:59.999Z'))).toEqual({
      id: '2025-06',
      from: '2025-06-01T00:00:00.000Z',
      to: '2025-07-01T00:00:00.000Z',
    });
    expect(periodBounds('month', at('2024-02-29T12:00:00.000Z'))).toEqual({
      id: '2024-02',
      from: '2024-02-01T00:00:00.000Z',
      to: '2024-03-01T00:00:00.000Z',
    });
  });

  it('rolls over from December to January of the next year', () => {
    const now = at('2024-12-31T23:30:00.000Z');
    expect(periodBounds('month', now)).toEqual({ id: '2024-12', from: '2024-12-01T00:00:00.000Z', to: '2025-01-01T00:00:00.000Z' });
    expect(periodBounds('day', now)).toEqual({ id: '2024-12-31', from: '2024-12-31T00:00:00.000Z', to: '2025-01-01T00:00:00.000Z' });
    expect(periodBounds('month', at('2025-01-01T00:00:00.000Z'))).toEqual({
      id: '2025-01',
      from: '2025-01-01T00:00:00.000Z',
      to: '2025-02-01T00:00:00.000Z',
    });
  });

  it('uses UTC even when the process time zone is far from it', () => {
    process.env.TZ = 'Pacific/Kiritimati'; // UTC+14: local date is already 1 January
    const now = at('2024-12-31T23:30:00.000Z');
    expect(new Date(now).getDate()).toBe(1); // the zone change took effect
    expect(periodBounds('day', now).id).toBe('2024-12-31');
    expect(periodBounds('month', now)).toEqual({ id: '2024-12', from: '2024-12-01T00:00:00.000Z', to: '2025-01-01T00:00:00.000Z' });
  });

  it('the total period spans all time', () => {
    const b = periodBounds('total', at('2025-05-05T05:05:05.000Z'));
    expect(b.id).toBe('total');
    expect(Date.parse(b.from)).toBeLessThanOrEqual(0);
    expect(b.to.startsWith('9999-')).toBe(true);
    expect(periodBounds('total', at('1999-01-01T00:00:00.000Z'))).toEqual(b);
  });
});

describe('costOf', () => {
  it('rounds up per-second metering to a whole unit', () => {
    expect(costOf(1, 2)).toBe(1);
    expect(costOf(30, 2)).toBe(1);
    expect(costOf(60, 2)).toBe(2);
    expect(costOf(61, 2)).toBe(3);
    expect(costOf(0, 2)).toBe(0);
  });

  it('is exact for whole minutes and zero at a zero rate', () => {
    expect(costOf(3600, 7)).toBe(420);
    expect(costOf(3600, 0)).toBe(0);
    expect(costOf(59, 60)).toBe(59);
  });
});
