import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '../errors/index.js';
import { createLogger } from '../observability/logger.js';
import { MemoryCounters } from '../policy/memory-counters.js';
import type { CallPatch, CallRecord, UsageRecord } from '../store/store.js';
import { SettlementLedger, type LedgerCounters, type LedgerStore, type LedgerTimers, type SettlementLedgerOptions, type SettlementStage } from './settlement-ledger.js';
import { usageIdOf, type Settlement } from './settlement.js';

const root = mkdtempSync(join(tmpdir(), 'tollgate-ledger-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Timers the test fires by hand: nothing runs until it says so. */
class ManualTimers implements LedgerTimers {
  private next = 1;
  private readonly due = new Map<number, { fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.due.set(id, { fn, ms });
    return id;
  }
  clear(h: unknown): void {
    this.due.delete(h as number);
  }
  delays(): number[] {
    return [...this.due.values()].map((t) => t.ms);
  }
  /** Fires the timer set for `ms`. */
  fire(ms: number): void {
    const hit = [...this.due].find(([, t]) => t.ms === ms);
    if (!hit) throw new Error(`no timer for ${ms} ms (have ${this.delays().join(', ')})`);
    this.due.delete(hit[0]);
    hit[1].fn();
  }
}

type Fault = 'fail' | 'hang' | null;

/** A store with the two writes the ledger uses; `fault` decides each write's fate. */
class FakeStore implements LedgerStore {
  readonly usage = new Map<string, UsageRecord>();
  readonly calls = new Map<string, Partial<CallRecord>>();
  /** Every insertUsage attempt, by call id, in order. */
  readonly attempts: string[] = [];
  fault: (op: 'insertUsage' | 'updateCall', id: string) => Fault = () => null;
  private readonly hung: (() => void)[] = [];

  private run<T>(op: 'insertUsage' | 'updateCall', id: string, fn: () => T): Promise<T> {
    const f = this.fault(op, id);
    if (f === 'fail') return Promise.reject(new StoreError(`postgres ${op} failed: connection terminated`));
    if (f === 'hang') return new Promise((res) => this.hung.push(() => res(fn())));
    return Promise.resolve(fn());
  }
  /** Lets every hung write complete. */
  release(): void {
    for (const r of this.hung.splice(0)) r();
  }
  insertUsage(u: UsageRecord): Promise<boolean> {
    this.attempts.push(u.callId);
    return this.run('insertUsage', u.callId, () => {
      if (this.usage.has(u.id)) return false;
      this.usage.set(u.id, u);
      return true;
    });
  }
  updateCall(id: string, patch: CallPatch): Promise<CallRecord | null> {
    return this.run('updateCall', id, () => {
      const c = this.calls.get(id);
      if (!c) return null;
      Object.assign(c, patch);
      return c as CallRecord;
    });
  }
  /** The store is down until up() (or down(false)). */
  down(on = true): void {
    this.fault = on ? () => 'fail' : () => null;
  }
}

const OPTS: Omit<SettlementLedgerOptions, 'journalPath'> = { maxPendingInMemory: 100, initialBackoffMs: 500, maxBackoffMs: 30_000, attemptTimeoutMs: 0 };

const settlement = (n: number, over: Partial<Settlement> = {}): Settlement => ({
  callId: `call-${n}`,
  keyId: 'key_a',
  direction: 'inbound',
  seconds: 10 + n,
  amount: 2,
  createdAt: '2026-06-01T12:00:00.000Z',
  budget: { account: 'budget:key_a:2026-06', reservationId: `call-${n}` },
  leasePool: 'calls:key_a',
  ...over,
});

interface Rig {
  ledger: SettlementLedger;
  store: FakeStore;
  counters: MemoryCounters;
  timers: ManualTimers;
  journal: string;
  logs: string[];
  pendingSeen: number[];
  failures: SettlementStage[];
}

let dir: string;
let seq = 0;
beforeEach(() => {
  dir = join(root, `t${++seq}`);
});
const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.ledger.close();
});

function rig(o: { store?: FakeStore; counters?: MemoryCounters; wrap?: (c: MemoryCounters) => LedgerCounters; opts?: Partial<SettlementLedgerOptions> } = {}): Rig {
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (l: string) => void logs.push(l) } });
  const store = o.store ?? new FakeStore();
  const counters = o.counters ?? new MemoryCounters();
  const timers = new ManualTimers();
  const journal = join(dir, 'settlement-journal.jsonl');
  const pendingSeen: number[] = [];
  const failures: SettlementStage[] = [];
  const ledger = new SettlementLedger(store, o.wrap ? o.wrap(counters) : counters, { ...OPTS, journalPath: journal, ...o.opts }, log, {
    timers,
    random: () => 0.5,
    onPending: (n) => pendingSeen.push(n),
    onFailure: (s) => failures.push(s),
  });
  const r = { ledger, store, counters, timers, journal, logs, pendingSeen, failures };
  rigs.push(r);
  return r;
}

/** A call admitted by the counters: a reservation of 100 and a lease, as PolicyEngine.authorize leaves them. */
async function admitted(c: MemoryCounters, s: Settlement): Promise<void> {
  await c.acquireLease(s.leasePool, s.callId, 100, 60_000);
  if (s.budget) await c.reserveBudget(s.budget.account, s.budget.reservationId, 100, 10_000, 60_000, 0);
}

const journalLines = (path: string): { countersDone: boolean; settlement: Settlement }[] =>
  existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];

describe('SettlementLedger', () => {
  it('lands a settlement at once: budget settled at the cost, lease released, one usage record keyed by the call id, no journal', async () => {
    const r = rig();
    const s = settlement(1);
    await admitted(r.counters, s);
    expect(await r.ledger.submit(s)).toBe('landed');
    expect(r.store.usage.get(usageIdOf('call-1'))).toEqual({ id: 'use_call-1', keyId: 'key_a', callId: 'call-1', direction: 'inbound', seconds: 11, amount: 2, createdAt: s.createdAt });
    expect(await r.counters.budgetState(s.budget!.account)).toEqual({ spent: 2, reserved: 0 });
    expect(await r.counters.countLeases(s.leasePool)).toBe(0);
    expect(existsSync(r.journal)).toBe(false);
    expect(r.timers.delays()).toEqual([]);
  });

  it('is idempotent by call id: the same settlement again (here, or after a restart) keeps one usage record and settles the budget once', async () => {
    const r = rig();
    const s = settlement(1);
    await admitted(r.counters, s);
    await r.ledger.submit(s);
    await r.ledger.submit(s);
    const again = rig({ store: r.store, counters: r.counters });
    await again.ledger.submit(s);
    expect([...r.store.usage.keys()]).toEqual(['use_call-1']);
    expect(await r.counters.budgetState(s.budget!.account)).toEqual({ spent: 2, reserved: 0 });
  });

  it('completes the call record after the usage record', async () => {
    const r = rig();
    r.store.calls.set('CA1', { id: 'CA1', status: 'answered' });
    const record = { id: 'CA1', patch: { status: 'ended', endReason: 'remote-bye', billableSeconds: 11 } satisfies CallPatch };
    expect(await r.ledger.submit(settlement(1, { record }))).toBe('landed');
    expect(r.store.calls.get('CA1')).toMatchObject({ status: 'ended', endReason: 'remote-bye', billableSeconds: 11 });
  });

  it('during a store outage journals the settlement (fsync) before submit resolves, keeps the counters right, and retries with exponential backoff and jitter until the store is back', async () => {
    const r = rig();
    const s = settlement(1);
    await admitted(r.counters, s);
    r.store.down();
    expect(await r.ledger.submit(s)).toBe('pending');
    expect(journalLines(r.journal)).toEqual([{ v: 1, countersDone: true, settlement: s }]);
    // The key's limits do not wait for the store: spent is settled, the slot is free.
    expect(await r.counters.budgetState(s.budget!.account)).toEqual({ spent: 2, reserved: 0 });
    expect(await r.counters.countLeases(s.leasePool)).toBe(0);
    expect(r.ledger.pending).toBe(1);
    expect(r.logs.filter((l) => l.includes('the store is unreachable'))).toHaveLength(1);

    // 500 ms, then doubling (random 0.5 = no jitter); each failed round tries the oldest settlement once.
    for (const delay of [500, 1000, 2000, 4000]) {
      expect(r.timers.delays()).toEqual([delay]);
      r.timers.fire(delay);
      await r.ledger.retryNow();
    }
    expect(r.store.attempts).toEqual(['call-1', 'call-1', 'call-1', 'call-1', 'call-1']);
    expect(r.failures.filter((f) => f === 'store')).toHaveLength(5);
    expect(r.logs.filter((l) => l.includes('the store is unreachable'))).toHaveLength(1);

    r.store.down(false);
    r.timers.fire(8000);
    await r.ledger.retryNow();
    expect(r.store.usage.has('use_call-1')).toBe(true);
    expect(r.ledger.pending).toBe(0);
    expect(r.pendingSeen.at(-1)).toBe(0);
    expect(existsSync(r.journal)).toBe(false);
    expect(r.timers.delays()).toEqual([]);
    expect(r.logs.some((l) => l.includes('the store is back'))).toBe(true);
    // Settling the budget again on the retry changed nothing.
    expect(await r.counters.budgetState(s.budget!.account)).toEqual({ spent: 2, reserved: 0 });
  });

  it('caps the retry delay at maxBackoffMs, spread by ±20 %', async () => {
    const r = rig({ opts: { maxBackoffMs: 3000 } });
    r.store.down();
    await r.ledger.submit(settlement(1));
    for (const delay of [500, 1000, 2000, 3000, 3000]) {
      expect(r.timers.delays()).toEqual([delay]);
      r.timers.fire(delay);
      await r.ledger.retryNow();
    }
    const spread = rig({ opts: { maxBackoffMs: 3000 } });
    // random 0 → 0.8 × the delay.
    const low = new SettlementLedger(spread.store, spread.counters, { ...OPTS, journalPath: null }, createLogger({ level: 'silent' }), { timers: spread.timers, random: () => 0 });
    spread.store.down();
    await low.submit(settlement(2));
    expect(spread.timers.delays()).toEqual([400]);
    await low.close();
  });

  it('while the store is down, new settlements go to the journal without waiting on the store', async () => {
    const r = rig();
    r.store.down();
    await r.ledger.submit(settlement(1));
    await r.ledger.submit(settlement(2));
    await r.ledger.submit(settlement(3));
    expect(r.store.attempts).toEqual(['call-1']);
    expect(journalLines(r.journal).map((l) => l.settlement.callId)).toEqual(['call-1', 'call-2', 'call-3']);
    r.store.down(false);
    await r.ledger.retryNow();
    // Oldest first.
    expect(r.store.attempts).toEqual(['call-1', 'call-1', 'call-2', 'call-3']);
    expect(r.ledger.pending).toBe(0);
  });

  it('compacts the journal as settlements land: the ones still pending stay, in order', async () => {
    const r = rig();
    r.store.down();
    for (const n of [1, 2, 3, 4]) await r.ledger.submit(settlement(n));
    // The store takes two writes, then fails again.
    let budget = 2;
    r.store.fault = () => (budget-- > 0 ? null : 'fail');
    await r.ledger.retryNow();
    expect([...r.store.usage.keys()]).toEqual(['use_call-1', 'use_call-2']);
    expect(journalLines(r.journal).map((l) => l.settlement.callId)).toEqual(['call-3', 'call-4']);
    expect(r.ledger.pending).toBe(2);
    r.store.down(false);
    await r.ledger.retryNow();
    expect(existsSync(r.journal)).toBe(false);
    expect(r.store.usage.size).toBe(4);
  });

  it('one settlement the store keeps refusing does not hold up the others, and stays journaled', async () => {
    const r = rig();
    r.store.fault = (_op, id) => (id === 'call-2' ? 'fail' : null);
    expect(await r.ledger.submit(settlement(1))).toBe('landed');
    expect(await r.ledger.submit(settlement(2))).toBe('pending');
    // Taken for an outage at first: straight to the journal.
    expect(await r.ledger.submit(settlement(3))).toBe('pending');
    r.timers.fire(500);
    await r.ledger.retryNow();
    expect([...r.store.usage.keys()]).toEqual(['use_call-1', 'use_call-3']);
    expect(journalLines(r.journal).map((l) => l.settlement.callId)).toEqual(['call-2']);
    // The store answers others, so new settlements are written at once again.
    expect(await r.ledger.submit(settlement(4))).toBe('landed');
    expect(r.ledger.pending).toBe(1);
    expect(r.timers.delays()).toEqual([1000]);
  });

  it('replays the journal on start, before calls are taken, and removes it once every settlement landed', async () => {
    const first = rig();
    first.store.down();
    for (const n of [1, 2, 3]) await first.ledger.submit(settlement(n, { record: { id: `CA${n}`, patch: { status: 'ended' } } }));
    await first.ledger.close();

    // The next run: a fresh process (new counters) with the store reachable.
    const store = new FakeStore();
    for (const n of [1, 2, 3]) store.calls.set(`CA${n}`, { id: `CA${n}`, status: 'answered' });
    const next = rig({ store });
    expect(await next.ledger.start()).toEqual({ replayed: 3, pending: 0 });
    expect(store.attempts).toEqual(['call-1', 'call-2', 'call-3']);
    expect([...store.usage.values()].map((u) => u.seconds)).toEqual([11, 12, 13]);
    expect(store.calls.get('CA2')).toMatchObject({ status: 'ended' });
    expect(existsSync(next.journal)).toBe(false);
    expect(next.logs.some((l) => l.includes('replaying settlements'))).toBe(true);
  });

  it('on start with the store still refusing, keeps the journal and retries', async () => {
    const first = rig();
    first.store.down();
    await first.ledger.submit(settlement(1));
    await first.ledger.close();
    const next = rig({ store: first.store });
    expect(await next.ledger.start()).toEqual({ replayed: 1, pending: 1 });
    expect(journalLines(next.journal)).toHaveLength(1);
    expect(next.timers.delays()).toEqual([500]);
    first.store.down(false);
    next.timers.fire(500);
    await next.ledger.retryNow();
    expect(existsSync(next.journal)).toBe(false);
  });

  it('holds at most maxPendingInMemory settlements in memory; the journal holds the rest, and all land', async () => {
    const r = rig({ opts: { maxPendingInMemory: 2 } });
    r.store.down();
    for (let n = 1; n <= 7; n++) await r.ledger.submit(settlement(n));
    expect(r.ledger.pending).toBe(7);
    expect(journalLines(r.journal)).toHaveLength(7);
    expect(r.logs.filter((l) => l.includes('over the memory cap'))).toHaveLength(1);
    r.store.down(false);
    await r.ledger.retryNow();
    expect([...r.store.usage.keys()]).toEqual([1, 2, 3, 4, 5, 6, 7].map((n) => `use_call-${n}`));
    expect(r.ledger.pending).toBe(0);
    expect(existsSync(r.journal)).toBe(false);
  });

  it('replays a journal larger than the memory cap', async () => {
    const first = rig();
    first.store.down();
    for (let n = 1; n <= 5; n++) await first.ledger.submit(settlement(n));
    await first.ledger.close();
    const next = rig({ opts: { maxPendingInMemory: 2 } });
    expect(await next.ledger.start()).toEqual({ replayed: 5, pending: 0 });
    expect(next.store.attempts).toEqual(['call-1', 'call-2', 'call-3', 'call-4', 'call-5']);
  });

  it('counts a store that hangs past attemptTimeoutMs as down; the late write is harmless', async () => {
    const r = rig({ opts: { attemptTimeoutMs: 5000 } });
    r.store.fault = () => 'hang';
    const submitted = r.ledger.submit(settlement(1));
    await new Promise((res) => setImmediate(res));
    r.timers.fire(5000);
    expect(await submitted).toBe('pending');
    expect(journalLines(r.journal)).toHaveLength(1);
    r.store.release(); // the hung write lands after all
    r.store.fault = () => null;
    r.timers.fire(500);
    await r.ledger.retryNow();
    expect(r.store.usage.size).toBe(1);
    expect(existsSync(r.journal)).toBe(false);
  });

  it('flush() waits for a write under way; what has not landed by the deadline stays journaled for the next start', async () => {
    const r = rig();
    r.store.fault = () => 'hang';
    void r.ledger.submit(settlement(1));
    const flushed = r.ledger.flush(2000);
    await new Promise((res) => setImmediate(res));
    r.timers.fire(2000);
    expect(await flushed).toEqual({ pending: 1 });
    await r.ledger.close();
    expect(journalLines(r.journal).map((l) => l.settlement.callId)).toEqual(['call-1']);

    const next = rig();
    expect(await next.ledger.start()).toEqual({ replayed: 1, pending: 0 });
    expect(next.store.usage.has('use_call-1')).toBe(true);
  });

  it('flush() lands pending settlements when the store is back in time', async () => {
    const r = rig();
    r.store.down();
    await r.ledger.submit(settlement(1));
    r.store.down(false);
    expect(await r.ledger.flush(2000)).toEqual({ pending: 0 });
    expect(existsSync(r.journal)).toBe(false);
  });

  it('lands the usage while the counters (Redis) fail, and settles the budget on a retry', async () => {
    let redisDown = true;
    const r = rig({
      wrap: (c) => ({
        settleBudget: (...a) => (redisDown ? Promise.reject(new Error('redis: connection lost')) : c.settleBudget(...a)),
        releaseLease: (...a) => (redisDown ? Promise.reject(new Error('redis: connection lost')) : c.releaseLease(...a)),
      }),
    });
    const s = settlement(1);
    await admitted(r.counters, s);
    expect(await r.ledger.submit(s)).toBe('pending');
    expect(r.store.usage.has('use_call-1')).toBe(true);
    expect(journalLines(r.journal)).toEqual([{ v: 1, countersDone: false, settlement: s }]);
    expect(r.failures).toEqual(['counters']);
    redisDown = false;
    r.timers.fire(500);
    await r.ledger.retryNow();
    expect(await r.counters.budgetState(s.budget!.account)).toEqual({ spent: 2, reserved: 0 });
    expect(await r.counters.countLeases(s.leasePool)).toBe(0);
    expect(r.store.attempts).toEqual(['call-1']);
    expect(existsSync(r.journal)).toBe(false);
  });

  it('sets aside a line a crash cut short (in <journal>.rejected) and replays the rest', async () => {
    const first = rig();
    first.store.down();
    await first.ledger.submit(settlement(1));
    await first.ledger.close();
    writeFileSync(first.journal, readFileSync(first.journal, 'utf8') + '{"v":1,"countersDone":true,"settlement":{"callId":"call-2","ke');
    const next = rig();
    expect(await next.ledger.start()).toEqual({ replayed: 1, pending: 0 });
    expect(readFileSync(`${next.journal}.rejected`, 'utf8')).toContain('"call-2"');
    expect(next.logs.some((l) => l.includes('set aside'))).toBe(true);
  });

  it('a new line after a torn one starts on its own line', async () => {
    const r = rig();
    r.store.down();
    await r.ledger.submit(settlement(1));
    writeFileSync(r.journal, readFileSync(r.journal, 'utf8') + '{"torn');
    const again = rig({ store: r.store });
    await again.ledger.submit(settlement(2));
    const lines = readFileSync(r.journal, 'utf8').split('\n');
    expect(lines[1]).toBe('{"torn');
    expect(JSON.parse(lines[2]!).settlement.callId).toBe('call-2');
  });
});
