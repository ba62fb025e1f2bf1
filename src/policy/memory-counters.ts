import type { BudgetState, Counters, LeaseDecision, RateDecision, ReserveDecision } from './counters.js';
import type { RevocationBus } from '../keys/revocation-bus.js';

interface Account {
  spent: number;
  /** reservationId → { amount, expiresAt } */
  reservations: Map<string, { amount: number; expiresAt: number }>;
  settled: Set<string>;
}

/** In-process counters for a single node (the default). Time is monotonic milliseconds. */
export class MemoryCounters implements Counters {
  readonly driver = 'memory' as const;
  private readonly tat = new Map<string, number>();
  private readonly pools = new Map<string, Map<string, number>>();
  private readonly accounts = new Map<string, Account>();
  /** claimOnce sets in the order they were made (so the oldest expire first). */
  private readonly claims = new Map<string, { expiresAt: number; members: Set<string> }>();

  constructor(private readonly now: () => number = () => performance.timeOrigin + performance.now()) {}

  rateLimit(bucket: string, ratePerSec: number, burst: number): Promise<RateDecision> {
    const now = this.now();
    const interval = 1000 / ratePerSec;
    const tolerance = interval * (Math.max(1, burst) - 1);
    const tat = Math.max(this.tat.get(bucket) ?? now, now);
    if (tat - now > tolerance) {
      return Promise.resolve({ allowed: false, retryAfterMs: Math.ceil(tat - tolerance - now) });
    }
    this.tat.set(bucket, tat + interval);
    // Keep the map bounded: drop buckets whose schedule has caught up with the clock.
    if (this.tat.size > 100_000) for (const [k, v] of this.tat) if (v <= now) this.tat.delete(k);
    return Promise.resolve({ allowed: true, retryAfterMs: 0 });
  }

  private livePool(pool: string): Map<string, number> {
    let p = this.pools.get(pool);
    if (!p) {
      p = new Map<string, number>();
      this.pools.set(pool, p);
    }
    const now = this.now();
    for (const [id, exp] of p) if (exp <= now) p.delete(id);
    return p;
  }

  acquireLease(pool: string, leaseId: string, max: number, ttlMs: number): Promise<LeaseDecision> {
    const p = this.livePool(pool);
    if (!p.has(leaseId) && p.size >= max) return Promise.resolve({ acquired: false, active: p.size });
    p.set(leaseId, this.now() + ttlMs);
    return Promise.resolve({ acquired: true, active: p.size });
  }

  renewLease(pool: string, leaseId: string, ttlMs: number): Promise<boolean> {
    const p = this.livePool(pool);
    if (!p.has(leaseId)) return Promise.resolve(false);
    p.set(leaseId, this.now() + ttlMs);
    return Promise.resolve(true);
  }

  releaseLease(pool: string, leaseId: string): Promise<void> {
    const p = this.pools.get(pool);
    p?.delete(leaseId);
    if (p && p.size === 0) this.pools.delete(pool);
    return Promise.resolve();
  }

  countLeases(pool: string): Promise<number> {
    return Promise.resolve(this.livePool(pool).size);
  }

  private liveReserved(a: Account): number {
    const now = this.now();
    let sum = 0;
    for (const [id, r] of a.reservations) {
      if (r.expiresAt <= now) a.reservations.delete(id);
      else sum += r.amount;
    }
    return sum;
  }

  reserveBudget(account: string, reservationId: string, amount: number, limit: number, ttlMs: number, seedSpent?: number): Promise<ReserveDecision> {
    let a = this.accounts.get(account);
    if (!a) {
      if (seedSpent === undefined) return Promise.resolve({ kind: 'needs_seed' });
      this.accounts.set(account, (a = { spent: seedSpent, reservations: new Map(), settled: new Set() }));
    }
    const reserved = this.liveReserved(a);
    if (a.spent + reserved + amount > limit) return Promise.resolve({ kind: 'insufficient', spent: a.spent, reserved });
    a.reservations.set(reservationId, { amount, expiresAt: this.now() + ttlMs });
    return Promise.resolve({ kind: 'reserved', spent: a.spent, reserved: reserved + amount });
  }

  settleBudget(account: string, reservationId: string, cost: number): Promise<void> {
    const a = this.accounts.get(account);
    if (!a) return Promise.resolve();
    if (a.settled.has(reservationId)) return Promise.resolve();
    a.reservations.delete(reservationId);
    a.settled.add(reservationId);
    // Remember the newest 10,000 settled ids (as RedisCounters does): drop the eldest.
    if (a.settled.size > 10_000) a.settled.delete(a.settled.values().next().value!);
    a.spent += cost;
    return Promise.resolve();
  }

  renewReservation(account: string, reservationId: string, ttlMs: number): Promise<boolean> {
    const a = this.accounts.get(account);
    const r = a?.reservations.get(reservationId);
    if (!a || !r || r.expiresAt <= this.now()) return Promise.resolve(false);
    r.expiresAt = this.now() + ttlMs;
    return Promise.resolve(true);
  }

  budgetState(account: string): Promise<BudgetState | null> {
    const a = this.accounts.get(account);
    return Promise.resolve(a ? { spent: a.spent, reserved: this.liveReserved(a) } : null);
  }

  claimOnce(set: string, member: string, ttlMs: number, maxMembers: number): Promise<boolean> {
    const now = this.now();
    // Sets made earlier expire earlier when TTLs are alike: drop expired ones from the front.
    for (const [k, v] of this.claims) {
      if (v.expiresAt > now) break;
      this.claims.delete(k);
    }
    let s = this.claims.get(set);
    if (s && s.expiresAt <= now) {
      this.claims.delete(set);
      s = undefined;
    }
    if (!s) {
      s = { expiresAt: now + ttlMs, members: new Set() };
      this.claims.set(set, s);
      // A bound on memory: past it the eldest set goes (its TTL was the shortest-lived anyway).
      if (this.claims.size > 1_000_000) this.claims.delete(this.claims.keys().next().value!);
    }
    if (s.members.has(member) || s.members.size >= maxMembers) return Promise.resolve(false);
    s.members.add(member);
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    this.claims.clear();
    this.tat.clear();
    this.pools.clear();
    this.accounts.clear();
    return Promise.resolve();
  }
}

/** Revocation notices within one process. */
export class LocalRevocationBus implements RevocationBus {
  private readonly handlers = new Set<(keyId: string) => void>();

  publish(keyId: string): Promise<void> {
    for (const h of this.handlers) {
      try {
        h(keyId);
      } catch {
        // A faulty listener must not stop the others (STYLE.md §9).
      }
    }
    return Promise.resolve();
  }

  subscribe(handler: (keyId: string) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  close(): Promise<void> {
    this.handlers.clear();
    return Promise.resolve();
  }
}
