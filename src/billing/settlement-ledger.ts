import type { Logger } from 'pino';
import type { Store } from '../store/store.js';
import { backoffMs } from '../util/backoff.js';
import { SettlementJournal, type JournalEntry } from './settlement-journal.js';
import { usageOf, type Settlement } from './settlement.js';

export interface SettlementLedgerOptions {
  /** Where settlements the store could not take are journaled; null = memory only (one-shot CLI commands, which settle no calls). */
  readonly journalPath: string | null;
  /** Pending settlements held in memory at most; the journal holds the rest (config default 10 000). */
  readonly maxPendingInMemory: number;
  /** First retry delay after a failure; doubles with each failed round, ±20 % jitter (config default 500 ms). */
  readonly initialBackoffMs: number;
  /** Ceiling of the retry delay before jitter (config default 30 000 ms). */
  readonly maxBackoffMs: number;
  /** Bound on one store write; a store that hangs counts as down. 0 = none (config default 5000 ms). */
  readonly attemptTimeoutMs: number;
}

/** The two store writes and two counter operations a settlement needs (STYLE.md §1). */
export type LedgerStore = Pick<Store, 'insertUsage' | 'updateCall'>;
/** What the ledger settles in the shared counters (policy/counters.ts implements it; billing/ sits below policy/). */
export interface LedgerCounters {
  /** Drops the reservation and adds the real cost to the spent total. Idempotent per reservation. */
  settleBudget(account: string, reservationId: string, cost: number): Promise<void>;
  releaseLease(pool: string, leaseId: string): Promise<void>;
}

/** Timers, replaced by a fake in tests. */
export interface LedgerTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: LedgerTimers = {
  set(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type SettlementStage = 'counters' | 'store' | 'journal';
/** landed: in the store (and the counters); pending: journaled (or held) and retried. */
export type SettleStatus = 'landed' | 'pending';

export interface SettlementLedgerDeps {
  readonly timers?: LedgerTimers;
  /** [0, 1) for the backoff jitter. */
  readonly random?: () => number;
  /** Settlements not yet landed: held in memory plus journaled beyond the memory cap. */
  readonly onPending?: (count: number) => void;
  /** A failed step: counters (memory/Redis), store, or journal (local disk). */
  readonly onFailure?: (stage: SettlementStage) => void;
}

interface Entry {
  readonly s: Settlement;
  countersDone: boolean;
  usageDone: boolean;
  recordDone: boolean;
  journaled: boolean;
}

class AttemptTimeout extends Error {
  constructor(ms: number) {
    super(`the store did not answer within ${ms} ms`);
  }
}

/**
 * Lands each finished call's settlement exactly once, even across a store outage or a restart.
 *
 * 1. Counters first: the budget reservation is settled at the real cost (idempotent per
 *    reservation) and the concurrency lease released. They live in memory or Redis, not in the
 *    store, so the key's limits stay right while the store is down.
 * 2. Then the store: the usage record, whose id derives from the call id (Store.insertUsage
 *    keeps one row per id), then the call record's completion.
 * 3. A settlement the store does not take is appended to the journal (fsync'd) before submit()
 *    resolves, and retried with exponential backoff and jitter, oldest first. While the store
 *    is down new settlements go straight to the journal instead of waiting on it. Once
 *    journaled settlements land, the journal is compacted; when none is left it is removed.
 * 4. start() replays what an earlier run left in the journal, before calls are taken. flush()
 *    at shutdown gives pending writes until a deadline; what does not land stays journaled.
 *
 * Memory stays bounded: at most maxPendingInMemory settlements wait in memory; the journal
 * holds the rest and refills memory as they land. Retrying a step already done is harmless
 * (idempotent by call id and reservation id), so at-least-once attempts give exactly-once
 * effects. A process killed (SIGKILL, power loss) between a call's end and its first store
 * attempt loses that one attempt's settlement: only settlements the store refused are journaled.
 */
export class SettlementLedger {
  private readonly journal: SettlementJournal | null;
  private readonly timers: LedgerTimers;
  private readonly random: () => number;
  /** Settlements waiting for a retry, oldest first; every one is journaled (unless the journal failed). */
  private readonly live = new Map<string, Entry>();
  /** First attempts under way (submit() has not returned). */
  private readonly inFlight = new Map<string, Entry>();
  /** Journaled settlements not in memory (beyond the cap). */
  private spilled = 0;
  /** Journaled settlements that landed since the last compaction. */
  private landed = new Set<string>();
  private failedRounds = 0;
  /** A store write failed and none has succeeded since: new settlements skip their own attempt. */
  private storeDown = false;
  private capWarned = false;
  private timer: unknown = null;
  private round: Promise<void> | null = null;
  private readonly submits = new Set<Promise<SettleStatus>>();
  private closed = false;

  constructor(
    private readonly store: LedgerStore,
    private readonly counters: LedgerCounters,
    private readonly opts: SettlementLedgerOptions,
    private readonly log: Logger,
    private readonly deps: SettlementLedgerDeps = {},
  ) {
    this.timers = deps.timers ?? realTimers;
    this.random = deps.random ?? Math.random;
    this.journal = opts.journalPath
      ? new SettlementJournal(opts.journalPath, (reason) => this.log.error({ journal: opts.journalPath, reason }, 'unreadable settlement journal line set aside in <journal>.rejected'))
      : null;
  }

  /** Settlements not yet in the store (or the counters). */
  get pending(): number {
    return this.live.size + this.spilled;
  }

  /**
   * Replays what an earlier run journaled: call before taking calls. Unreadable lines are set
   * aside; the rest is retried now, and what still fails stays pending (and journaled).
   */
  async start(): Promise<{ replayed: number; pending: number }> {
    if (!this.journal) return { replayed: 0, pending: 0 };
    const found = await this.journal.compact(new Set());
    if (found === 0) return { replayed: 0, pending: 0 };
    this.log.warn({ journal: this.journal.path, settlements: found }, 'replaying settlements an earlier run could not write to the store');
    this.spilled = found;
    await this.refill();
    this.publish();
    await this.retryNow();
    const pending = this.pending;
    if (pending === 0) this.log.info({ settlements: found }, 'journaled settlements replayed into the store');
    return { replayed: found, pending };
  }

  /**
   * Settles a finished call. Resolves 'landed' once counters and store have it, or 'pending'
   * once it is journaled for retries; never rejects. Submitting a call id already pending here
   * does nothing; one already landed is written again as a no-op (idempotent by call id).
   */
  submit(s: Settlement): Promise<SettleStatus> {
    const p = this.settle(s);
    this.submits.add(p);
    void p.finally(() => this.submits.delete(p));
    return p;
  }

  private async settle(s: Settlement): Promise<SettleStatus> {
    if (this.live.has(s.callId) || this.inFlight.has(s.callId)) return 'pending';
    const e: Entry = { s, countersDone: false, usageDone: false, recordDone: false, journaled: false };
    this.inFlight.set(s.callId, e);
    try {
      await this.settleCounters(e);
      if (!this.storeDown && !this.closed && this.live.size < this.opts.maxPendingInMemory) {
        const err = await this.land(e);
        if (err === null && e.countersDone) {
          // flush() may have journaled it while the write was under way: compaction drops it.
          if (e.journaled) this.landed.add(s.callId);
          return 'landed';
        }
        if (err !== null) {
          this.storeFailed(err, e);
          // The first retry waits initialBackoffMs; failed rounds double it.
          this.failedRounds = Math.max(this.failedRounds, 1);
        }
      }
      await this.enqueue(e);
      return 'pending';
    } catch (err) {
      // Only a bug gets here; the settlement must not vanish with it.
      this.log.error({ err, callId: s.callId }, 'settlement failed unexpectedly; keeping it pending');
      if (!this.live.has(s.callId)) await this.enqueue(e).catch(() => undefined);
      return 'pending';
    } finally {
      this.inFlight.delete(s.callId);
    }
  }

  /** Budget settled at the real cost, lease released; both idempotent, both tried. */
  private async settleCounters(e: Entry): Promise<void> {
    const { budget, amount, leasePool, callId } = e.s;
    let failed: unknown = null;
    if (budget) {
      try {
        await this.counters.settleBudget(budget.account, budget.reservationId, amount);
      } catch (err) {
        failed = err;
      }
    }
    try {
      await this.counters.releaseLease(leasePool, callId);
    } catch (err) {
      failed ??= err;
    }
    if (failed === null) {
      e.countersDone = true;
      return;
    }
    this.deps.onFailure?.('counters');
    this.log.warn({ err: failed, callId, keyId: e.s.keyId }, 'could not settle a call in the counters; will retry');
  }

  /** The store writes not yet done; null when all are, else the error. */
  private async land(e: Entry): Promise<unknown> {
    const writes = (async () => {
      if (!e.usageDone) {
        await this.store.insertUsage(usageOf(e.s));
        e.usageDone = true;
      }
      if (e.s.record && !e.recordDone) {
        const updated = await this.store.updateCall(e.s.record.id, e.s.record.patch);
        if (!updated) this.log.warn({ callId: e.s.callId, callSid: e.s.record.id }, 'no call record to complete');
        e.recordDone = true;
      }
    })();
    const ms = this.opts.attemptTimeoutMs;
    let handle: unknown = null;
    try {
      if (ms > 0) {
        await Promise.race([writes, new Promise<never>((_, rej) => (handle = this.timers.set(() => rej(new AttemptTimeout(ms)), ms)))]);
      } else {
        await writes;
      }
      return null;
    } catch (err) {
      // A write that outlives its timeout may still land: retrying it is harmless.
      writes.catch(() => undefined);
      this.deps.onFailure?.('store');
      return err ?? new Error('store write failed');
    } finally {
      if (handle !== null) this.timers.clear(handle);
    }
  }

  private storeFailed(err: unknown, e: Entry): void {
    if (this.storeDown) {
      this.log.debug({ err, callId: e.s.callId }, 'settlement store write failed again');
      return;
    }
    this.storeDown = true;
    this.log.error(
      { err, callId: e.s.callId, keyId: e.s.keyId, journal: this.journal?.path ?? null },
      'the store is unreachable: settlements are journaled and retried until it is back',
    );
  }

  /** Journals a settlement that did not land, and queues it for a retry. */
  private async enqueue(e: Entry): Promise<void> {
    if (!e.journaled) await this.journalEntries([e]);
    if (this.live.size < this.opts.maxPendingInMemory || !e.journaled) {
      // Without the journal, memory is the only place left: over the cap rather than lost.
      this.live.set(e.s.callId, e);
    } else {
      this.spilled++;
      if (!this.capWarned) {
        this.capWarned = true;
        this.log.warn({ maxPendingInMemory: this.opts.maxPendingInMemory, journal: this.journal?.path }, 'settlement backlog over the memory cap: the rest waits in the journal');
      }
    }
    this.publish();
    this.schedule();
  }

  private async journalEntries(entries: Entry[]): Promise<void> {
    if (!this.journal) return;
    try {
      await this.journal.append(entries.map((e): JournalEntry => ({ settlement: e.s, countersDone: e.countersDone })));
      for (const e of entries) e.journaled = true;
    } catch (err) {
      this.deps.onFailure?.('journal');
      this.log.error({ err, journal: this.journal.path, settlements: entries.length }, 'could not journal pending settlements; they are held in memory only');
    }
  }

  private schedule(): void {
    if (this.timer !== null || this.closed || this.pending === 0) return;
    const delay = backoffMs(Math.max(1, this.failedRounds), this.opts, this.random);
    this.timer = this.timers.set(() => {
      this.timer = null;
      void this.retryNow();
    }, delay);
  }

  /** Runs a retry round now (or joins the one under way). */
  retryNow(): Promise<void> {
    if (this.timer !== null) {
      this.timers.clear(this.timer);
      this.timer = null;
    }
    this.round ??= this.runRound().finally(() => {
      this.round = null;
      this.publish();
      this.schedule();
    });
    return this.round;
  }

  /**
   * Oldest first until the store fails twice in a row (one failure may be that settlement's
   * alone: it goes to the back and the next one is tried); then, when memory is clear,
   * compacts the journal and takes the next settlements from it. Each pass lands at least one
   * settlement or stops.
   */
  private async runRound(): Promise<void> {
    let storeError: unknown = null;
    let failedAlone = 0;
    let countersPending = false;
    let landedNow = 0;
    const unjournaled = [...this.live.values()].filter((e) => !e.journaled);
    if (unjournaled.length) await this.journalEntries(unjournaled);
    for (;;) {
      let landedThisPass = 0;
      let failedInARow = 0;
      const batch = [...this.live.values()];
      for (const [i, e] of batch.entries()) {
        if (this.closed) break;
        if (!e.countersDone) await this.settleCounters(e);
        const err = await this.land(e);
        if (err !== null) {
          if (++failedInARow >= 2 || i === batch.length - 1) {
            storeError = err;
            this.storeFailed(err, e);
            break;
          }
          failedAlone++;
          this.log.debug({ err, callId: e.s.callId }, 'settlement store write failed; trying the next one');
          this.live.delete(e.s.callId);
          this.live.set(e.s.callId, e);
          continue;
        }
        failedInARow = 0;
        if (!e.countersDone) {
          countersPending = true;
          continue;
        }
        this.live.delete(e.s.callId);
        if (e.journaled) this.landed.add(e.s.callId);
        landedThisPass++;
      }
      landedNow += landedThisPass;
      if (storeError !== null || this.closed || landedThisPass === 0) break;
      if (this.landed.size > 0 || this.spilled > 0) await this.compact();
      if (this.spilled === 0 || (await this.refill()) === 0) break;
    }
    if (this.landed.size > 0) await this.compact();
    if (storeError === null) {
      if (this.storeDown) this.log.info({ landed: landedNow, pending: this.pending }, 'the store is back: pending settlements landed');
      this.storeDown = false;
      this.capWarned = false;
    }
    if (storeError !== null || failedAlone > 0 || countersPending) this.failedRounds++;
    else this.failedRounds = 0;
  }

  /** Drops landed settlements from the journal and recounts the ones only it holds. */
  private async compact(): Promise<void> {
    if (!this.journal) {
      this.landed.clear();
      return;
    }
    const landed = this.landed;
    this.landed = new Set();
    let spilled = 0;
    try {
      await this.journal.compact(landed, (je) => {
        if (!this.live.has(je.settlement.callId)) spilled++;
      });
      this.spilled = spilled;
    } catch (err) {
      for (const id of landed) this.landed.add(id);
      this.deps.onFailure?.('journal');
      this.log.error({ err, journal: this.journal.path }, 'could not compact the settlement journal');
    }
  }

  /** Moves journaled settlements into memory, up to the cap. Returns how many. */
  private async refill(): Promise<number> {
    if (!this.journal || this.spilled === 0) return 0;
    let loaded = 0;
    try {
      await this.journal.read((je) => {
        if (this.live.size >= this.opts.maxPendingInMemory) return false;
        const id = je.settlement.callId;
        if (this.live.has(id) || this.inFlight.has(id)) return;
        this.live.set(id, { s: je.settlement, countersDone: je.countersDone, usageDone: false, recordDone: false, journaled: true });
        loaded++;
      });
    } catch (err) {
      this.deps.onFailure?.('journal');
      this.log.error({ err, journal: this.journal.path }, 'could not read the settlement journal');
    }
    this.spilled = Math.max(0, this.spilled - loaded);
    return loaded;
  }

  private publish(): void {
    this.deps.onPending?.(this.pending);
  }

  /**
   * At shutdown, before the store closes: waits for first attempts under way and retries what
   * is pending, for at most `deadlineMs`. Whatever has not landed by then is journaled for the
   * next start. Returns what is left pending.
   */
  async flush(deadlineMs: number): Promise<{ pending: number }> {
    const work = (async () => {
      await Promise.allSettled([...this.submits]);
      if (this.pending > 0) await this.retryNow();
    })();
    let handle: unknown = null;
    await Promise.race([work, new Promise<void>((res) => (handle = this.timers.set(res, deadlineMs)))]);
    this.timers.clear(handle);
    const unjournaled = [...this.live.values(), ...this.inFlight.values()].filter((e) => !e.journaled);
    if (unjournaled.length) await this.journalEntries(unjournaled);
    const pending = this.pending + this.inFlight.size;
    if (pending > 0) {
      this.log.warn({ pending, journal: this.journal?.path ?? null }, 'settlements not yet in the store stay journaled for the next start');
    }
    return { pending };
  }

  /** Stops retrying (idempotent). Pending settlements stay journaled; call flush() first. */
  close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) this.timers.clear(this.timer);
    this.timer = null;
    return Promise.resolve();
  }
}
