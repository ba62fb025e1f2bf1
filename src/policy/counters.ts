/**
 * Shared counters behind the policy engine: CPS (GCRA), concurrency leases, budget
 * reservations, and once-only claims (digest nonce counts). Two implementations pass the same contract (policy/counters-contract.ts):
 * MemoryCounters for one node and RedisCounters (atomic Lua scripts) for a cluster.
 */
export interface RateDecision {
  readonly allowed: boolean;
  /** When the next request would be admitted (0 when allowed). */
  readonly retryAfterMs: number;
}

export interface LeaseDecision {
  readonly acquired: boolean;
  /** Live leases in the pool after the call. */
  readonly active: number;
}

export type ReserveDecision =
  | { readonly kind: 'reserved'; readonly spent: number; readonly reserved: number }
  | { readonly kind: 'insufficient'; readonly spent: number; readonly reserved: number }
  /** The account has not been loaded since start (or has expired): call again with `seedSpent`. */
  | { readonly kind: 'needs_seed' };

export interface BudgetState {
  readonly spent: number;
  readonly reserved: number;
}

export interface Counters {
  readonly driver: 'memory' | 'redis';
  /**
   * Generic cell rate algorithm: `ratePerSec` emissions per second with `burst` requests of
   * tolerance (burst 1 = strictly spaced). Exact: over any window W at most
   * floor(W × rate) + burst requests are admitted.
   */
  rateLimit(bucket: string, ratePerSec: number, burst: number): Promise<RateDecision>;
  /** Takes a slot in `pool` unless `max` live leases exist; a lease dies `ttlMs` after its last renewal. */
  acquireLease(pool: string, leaseId: string, max: number, ttlMs: number): Promise<LeaseDecision>;
  renewLease(pool: string, leaseId: string, ttlMs: number): Promise<boolean>;
  releaseLease(pool: string, leaseId: string): Promise<void>;
  countLeases(pool: string): Promise<number>;
  /**
   * Reserves `amount` against `limit` for `account` (spent + live reservations + amount ≤ limit).
   * A reservation dies `ttlMs` after it is made unless settled, so a dead node's reservations
   * free themselves.
   */
  reserveBudget(account: string, reservationId: string, amount: number, limit: number, ttlMs: number, seedSpent?: number): Promise<ReserveDecision>;
  /** Drops the reservation and adds the real cost to the spent total. Idempotent per reservation. */
  settleBudget(account: string, reservationId: string, cost: number): Promise<void>;
  /** Extends a live reservation's life (for calls longer than the reservation TTL). */
  renewReservation(account: string, reservationId: string, ttlMs: number): Promise<boolean>;
  budgetState(account: string): Promise<BudgetState | null>;
  /**
   * Adds `member` to `set` unless it is there already: true the first time, false for every
   * later claim while the set lives. The set lives `ttlMs` from its first member (later claims
   * do not extend it) and holds `maxMembers` at most: past that every claim is false. Atomic
   * across nodes. Used for digest nonce counts (RFC 7616 §3.4.5): set = the nonce, member = nc.
   */
  claimOnce(set: string, member: string, ttlMs: number, maxMembers: number): Promise<boolean>;
  close(): Promise<void>;
}
