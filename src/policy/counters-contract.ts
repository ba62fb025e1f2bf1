import { describe, it, expect, beforeEach, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import type { Counters } from './counters.js';

/** How time passes for the backend under test. */
export interface ContractTime {
  /** Lets `ms` pass: moves a fake clock, or sleeps when the backend keeps its own clock (Redis). */
  pass: (ms: number) => Promise<void>;
  /**
   * Stretches every TTL, rate interval and wait: 1 on a fake clock. On a real clock, large
   * enough that a loaded machine's delays between two calls stay well inside the TTLs.
   */
  scale: number;
}

/**
 * The behaviour every Counters backend must show. Run by memory-counters.test.ts and
 * redis-counters.test.ts. Buckets are unique per test so backends with shared state
 * (Redis) need no flushing. Checks that something has not expired yet are made right after
 * it was set up (the margin is a whole TTL); expiry and renewal are checked half a TTL past
 * the original one, so neither side of the check is nearer than half a TTL.
 */
export function countersContract(name: string, make: () => Promise<Counters>, time: ContractTime): void {
  const { pass, scale } = time;
  /** The TTL the expiry tests use. */
  const T = 150 * scale;
  describe(`Counters contract: ${name}`, () => {
    let c: Counters;
    const id = (s: string): string => `${s}:${randomUUID()}`;
    beforeEach(async () => {
      c = await make();
    });
    afterAll(async () => {
      await c?.close();
    });

    it('GCRA admits the burst, then refuses with a retry-after no longer than one interval', async () => {
      const b = id('cps');
      const results = [];
      for (let i = 0; i < 5; i++) results.push(await c.rateLimit(b, 1 / scale, 3));
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, false, false]);
      const refused = results[3]!;
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(1000 * scale);
    });

    it('GCRA with burst 1 spaces requests strictly', async () => {
      const b = id('cps');
      expect((await c.rateLimit(b, 2 / scale, 1)).allowed).toBe(true);
      const second = await c.rateLimit(b, 2 / scale, 1);
      expect(second.allowed).toBe(false);
      expect(second.retryAfterMs).toBeGreaterThan(400 * scale);
      expect(second.retryAfterMs).toBeLessThanOrEqual(500 * scale);
      await pass(second.retryAfterMs + 20 * scale);
      expect((await c.rateLimit(b, 2 / scale, 1)).allowed).toBe(true);
    });

    it('buckets are independent', async () => {
      const a = id('cps');
      const b = id('cps');
      expect((await c.rateLimit(a, 1, 1)).allowed).toBe(true);
      expect((await c.rateLimit(a, 1, 1)).allowed).toBe(false);
      expect((await c.rateLimit(b, 1, 1)).allowed).toBe(true);
    });

    it('leases are refused beyond the maximum and freed by release', async () => {
      const p = id('pool');
      expect(await c.acquireLease(p, 'a', 2, 10_000)).toEqual({ acquired: true, active: 1 });
      expect(await c.acquireLease(p, 'b', 2, 10_000)).toEqual({ acquired: true, active: 2 });
      expect(await c.acquireLease(p, 'c', 2, 10_000)).toEqual({ acquired: false, active: 2 });
      await c.releaseLease(p, 'a');
      expect(await c.countLeases(p)).toBe(1);
      expect((await c.acquireLease(p, 'c', 2, 10_000)).acquired).toBe(true);
    });

    it('re-acquiring a lease one already holds does not take a second slot', async () => {
      const p = id('pool');
      await c.acquireLease(p, 'a', 1, 10_000);
      expect(await c.acquireLease(p, 'a', 1, 10_000)).toEqual({ acquired: true, active: 1 });
    });

    it('a lease that is not renewed expires, so a dead node frees its slots', async () => {
      const p = id('pool');
      await c.acquireLease(p, 'a', 1, T);
      expect((await c.acquireLease(p, 'b', 1, T)).acquired).toBe(false);
      await pass(1.5 * T);
      expect(await c.countLeases(p)).toBe(0);
      expect((await c.acquireLease(p, 'b', 1, T)).acquired).toBe(true);
    });

    it('a renewed lease outlives its first TTL; renewing an unknown lease reports false', async () => {
      const p = id('pool');
      await c.acquireLease(p, 'a', 1, T);
      expect(await c.renewLease(p, 'a', 3 * T)).toBe(true);
      await pass(1.5 * T);
      expect(await c.countLeases(p)).toBe(1);
      expect(await c.renewLease(p, 'nope', 3 * T)).toBe(false);
    });

    it('a budget account asks for its seed first, then reserves against the limit', async () => {
      const a = id('budget');
      expect(await c.reserveBudget(a, 'r1', 40, 100, 10_000)).toEqual({ kind: 'needs_seed' });
      expect(await c.reserveBudget(a, 'r1', 40, 100, 10_000, 30)).toEqual({ kind: 'reserved', spent: 30, reserved: 40 });
      expect(await c.reserveBudget(a, 'r2', 40, 100, 10_000)).toEqual({ kind: 'insufficient', spent: 30, reserved: 40 });
      expect(await c.reserveBudget(a, 'r3', 30, 100, 10_000)).toEqual({ kind: 'reserved', spent: 30, reserved: 70 });
    });

    it('settling replaces the reservation with the real cost, once', async () => {
      const a = id('budget');
      await c.reserveBudget(a, 'r1', 50, 100, 10_000, 0);
      await c.settleBudget(a, 'r1', 12);
      expect(await c.budgetState(a)).toEqual({ spent: 12, reserved: 0 });
      await c.settleBudget(a, 'r1', 12);
      expect(await c.budgetState(a)).toEqual({ spent: 12, reserved: 0 });
      expect((await c.reserveBudget(a, 'r2', 88, 100, 10_000)).kind).toBe('reserved');
      expect((await c.reserveBudget(a, 'r3', 1, 100, 10_000)).kind).toBe('insufficient');
    });

    it('an unsettled reservation expires and frees the budget', async () => {
      const a = id('budget');
      await c.reserveBudget(a, 'r1', 100, 100, T, 0);
      expect((await c.reserveBudget(a, 'r2', 1, 100, T)).kind).toBe('insufficient');
      await pass(1.5 * T);
      expect((await c.reserveBudget(a, 'r2', 1, 100, T)).kind).toBe('reserved');
    });

    it('renewing a reservation keeps it alive', async () => {
      const a = id('budget');
      await c.reserveBudget(a, 'r1', 100, 100, T, 0);
      expect(await c.renewReservation(a, 'r1', 3 * T)).toBe(true);
      await pass(1.5 * T);
      expect((await c.reserveBudget(a, 'r2', 1, 100, T)).kind).toBe('insufficient');
      expect(await c.renewReservation(a, 'nope', 3 * T)).toBe(false);
    });

    it('claimOnce: true the first time a member is claimed, false for a replay', async () => {
      const s = id('once');
      expect(await c.claimOnce(s, '1', 10_000, 10)).toBe(true);
      expect(await c.claimOnce(s, '1', 10_000, 10)).toBe(false);
      expect(await c.claimOnce(s, '2', 10_000, 10)).toBe(true);
      expect(await c.claimOnce(id('once'), '1', 10_000, 10)).toBe(true);
    });

    it('claimOnce refuses every claim once the set holds maxMembers', async () => {
      const s = id('once');
      expect(await c.claimOnce(s, 'a', 10_000, 2)).toBe(true);
      expect(await c.claimOnce(s, 'b', 10_000, 2)).toBe(true);
      expect(await c.claimOnce(s, 'c', 10_000, 2)).toBe(false);
    });

    it('a claimOnce set expires ttlMs after its first member; later claims do not extend it', async () => {
      // TTL 2T: 'b' comes at T (an extended set would live to 3T); checked at 2.5T, half a T
      // from either edge.
      const s = id('once');
      expect(await c.claimOnce(s, 'a', 2 * T, 10)).toBe(true);
      expect(await c.claimOnce(s, 'a', 2 * T, 10)).toBe(false);
      await pass(T);
      expect(await c.claimOnce(s, 'b', 2 * T, 10)).toBe(true);
      await pass(1.5 * T);
      expect(await c.claimOnce(s, 'a', 2 * T, 10)).toBe(true);
      expect(await c.claimOnce(s, 'b', 2 * T, 10)).toBe(true);
    });

    it('unknown accounts have no state', async () => {
      expect(await c.budgetState(id('budget'))).toBeNull();
    });
  });
}
