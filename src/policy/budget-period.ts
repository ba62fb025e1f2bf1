import type { BudgetPeriod } from '../store/key-record.js';

/** The current budget period (UTC) as an id and a half-open ISO range. */
export function periodBounds(period: BudgetPeriod, nowMs: number): { id: string; from: string; to: string } {
  const d = new Date(nowMs);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  switch (period) {
    case 'day': {
      const from = Date.UTC(y, m, d.getUTCDate());
      return { id: new Date(from).toISOString().slice(0, 10), from: new Date(from).toISOString(), to: new Date(from + 86_400_000).toISOString() };
    }
    case 'month': {
      const from = Date.UTC(y, m, 1);
      return { id: new Date(from).toISOString().slice(0, 7), from: new Date(from).toISOString(), to: new Date(Date.UTC(y, m + 1, 1)).toISOString() };
    }
    case 'total':
      return { id: 'total', from: '1970-01-01T00:00:00.000Z', to: '9999-12-31T23:59:59.999Z' };
    default: {
      const never: never = period;
      throw new Error(`unknown budget period ${String(never)}`);
    }
  }
}

/** Per-second metering: the cost of `seconds` at `ratePerMinute`, rounded up to a whole unit. */
export function costOf(seconds: number, ratePerMinute: number): number {
  return Math.ceil((seconds * ratePerMinute) / 60);
}
