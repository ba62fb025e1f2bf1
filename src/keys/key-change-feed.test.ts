import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../observability/logger.js';
import type { KeyChange, KeyChangeBatch, SyncKeyChangeFeed } from '../store/store.js';
import { KeyChangeFeed, type KeyChangeHandlers } from './key-change-feed.js';

const log = createLogger({ level: 'silent' });

/** The feed table of a store, in memory: what another process would write. */
class FakeFeed {
  rows: KeyChange[] = [];
  private nextSeq = 1;
  version = 1;
  reads = 0;
  prunedBefore: string[] = [];
  /** When set, the next async read waits for this promise. */
  gate: Promise<void> | null = null;
  failing = false;

  /** Another process commits a change. */
  write(keyId: string, at = '2026-06-01T00:00:00.000Z'): number {
    const seq = this.nextSeq++;
    this.rows.push({ seq, keyId, at });
    this.version++;
    return seq;
  }

  read(afterSeq: number, limit: number): KeyChangeBatch {
    this.reads++;
    if (this.failing) throw new Error('database is locked');
    return {
      changes: this.rows.filter((r) => r.seq > afterSeq).slice(0, limit),
      oldestSeq: this.rows[0]?.seq ?? 0,
      newestSeq: this.rows.at(-1)?.seq ?? 0,
    };
  }

  /** The store a PostgreSQL gateway sees: reads are asynchronous. */
  asyncStore() {
    return {
      keyChangesAfter: async (afterSeq: number, limit: number) => {
        const gate = this.gate;
        this.gate = null;
        if (gate) await gate;
        return this.read(afterSeq, limit);
      },
      pruneKeyChanges: (beforeIso: string) => {
        this.prunedBefore.push(beforeIso);
        return Promise.resolve(0);
      },
    };
  }

  /** The store a SQLite gateway sees: a synchronous feed too. */
  syncStore() {
    const sync: SyncKeyChangeFeed = {
      dataVersion: () => {
        if (this.failing) throw new Error('database is locked');
        return this.version;
      },
      keyChangesAfter: (a, l) => this.read(a, l),
    };
    return { ...this.asyncStore(), syncKeyChanges: sync };
  }
}

function recorder() {
  const changed: string[] = [];
  const lost: string[] = [];
  const handlers: KeyChangeHandlers = {
    changed: (c) => void changed.push(c.keyId),
    lost: (r) => void lost.push(r),
  };
  return { changed, lost, handlers };
}

describe('KeyChangeFeed', () => {
  let now = Date.parse('2026-06-01T12:00:00.000Z');
  beforeEach(() => {
    now = Date.parse('2026-06-01T12:00:00.000Z');
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  describe('polled (PostgreSQL)', () => {
    it('starts at the head: changes older than the process are not replayed', async () => {
      const f = new FakeFeed();
      f.write('key_old');
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      await feed.catchUp();
      expect(r.changed).toEqual([]);
      feed.close();
    });

    it('another process\'s change reaches the handler at the next poll, once', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.write('key_a');
      await vi.advanceTimersByTimeAsync(99);
      expect(r.changed).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(r.changed).toEqual(['key_a']);
      await vi.advanceTimersByTimeAsync(500);
      expect(r.changed).toEqual(['key_a']);
      feed.close();
    });

    it('a catch-up asked for while a read is in flight reads again after it, so a write just committed is seen', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      let open!: () => void;
      f.gate = new Promise((res) => (open = res));
      const first = feed.catchUp(); // its read is in flight, before the write below
      f.write('key_b');
      const second = feed.catchUp();
      const third = feed.catchUp(); // joins the queued one
      open();
      await Promise.all([first, second, third]);
      expect(r.changed).toEqual(['key_b']);
      expect(f.reads).toBe(3); // start, the in-flight read, one more for both waiting callers
      feed.close();
    });

    it('hands over a long run of changes in order, in batches', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      const ids = Array.from({ length: 1234 }, (_, i) => `key_${i}`);
      for (const id of ids) f.write(id);
      await feed.catchUp();
      expect(r.changed).toEqual(ids);
      expect(r.lost).toEqual([]);
      feed.close();
    });

    it('a backlog too long to replay drops every cached key and skips to the head', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      for (let i = 0; i < 50_001; i++) f.write('key_flood');
      await feed.catchUp();
      expect(r.lost).toEqual(['backlog']);
      expect(r.changed.length).toBe(50_000);
      f.write('key_after');
      await feed.catchUp();
      expect(r.changed.at(-1)).toBe('key_after');
      expect(r.changed.length).toBe(50_001);
      feed.close();
    });

    it('changes pruned before they were read, or a store reset, drop every cached key', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.write('key_gone1');
      f.write('key_gone2');
      f.write('key_kept');
      f.rows = f.rows.slice(2); // pruned while this process was not reading
      await feed.catchUp();
      expect(r.lost).toEqual(['pruned']);
      expect(r.changed).toEqual(['key_kept']);

      // A restored or replaced database: its feed is behind what was read.
      f.rows = [{ seq: 1, keyId: 'key_new', at: '2026-06-01T00:00:00.000Z' }];
      await feed.catchUp();
      expect(r.lost).toEqual(['pruned', 'reset']);
      f.rows.push({ seq: 2, keyId: 'key_next', at: '2026-06-01T00:00:00.000Z' });
      await feed.catchUp();
      expect(r.changed).toEqual(['key_kept', 'key_next']);
      feed.close();
    });

    it('prunes once per prune interval with the retention cutoff', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100, retentionMs: 60_000, pruneIntervalMs: 1000 }, r.handlers, log, () => now);
      await feed.start();
      for (let i = 0; i < 10; i++) {
        now += 100;
        await vi.advanceTimersByTimeAsync(100);
      }
      expect(f.prunedBefore).toEqual(['2026-06-01T11:59:01.000Z']);
      feed.close();
    });

    it('a read that fails is retried at the next poll; close() stops polling', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.asyncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.failing = true;
      f.write('key_late');
      await vi.advanceTimersByTimeAsync(300);
      expect(r.changed).toEqual([]);
      f.failing = false;
      await vi.advanceTimersByTimeAsync(100);
      expect(r.changed).toEqual(['key_late']);
      feed.close();
      const reads = f.reads;
      f.write('key_closed');
      await vi.advanceTimersByTimeAsync(1000);
      expect(f.reads).toBe(reads);
      expect(r.changed).toEqual(['key_late']);
    });
  });

  describe('checked synchronously (SQLite)', () => {
    it('check() reads the feed only when another connection has committed, and applies it before returning', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.syncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      const reads = f.reads;
      for (let i = 0; i < 100; i++) feed.check();
      expect(f.reads).toBe(reads); // nothing committed: data_version only
      f.write('key_cli');
      feed.check();
      expect(r.changed).toEqual(['key_cli']);
      expect(f.reads).toBe(reads + 1);
      feed.check();
      expect(f.reads).toBe(reads + 1);
      feed.close();
    });

    it('catchUp() reads whatever data_version says, for this process\'s own commits', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.syncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.write('key_own');
      f.version--; // own commits leave data_version alone
      feed.check();
      expect(r.changed).toEqual([]);
      const done = feed.catchUp();
      expect(r.changed).toEqual(['key_own']); // synchronously, before the promise settles
      await done;
      feed.close();
    });

    it('the background check tells the handler with no lookup arriving', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.syncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.write('key_idle');
      await vi.advanceTimersByTimeAsync(100);
      expect(r.changed).toEqual(['key_idle']);
      feed.close();
    });

    it('a store fault in check() throws to the lookup; the timer logs it and carries on', async () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.syncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      await feed.start();
      f.failing = true;
      expect(() => feed.check()).toThrow('database is locked');
      await vi.advanceTimersByTimeAsync(300);
      f.failing = false;
      f.write('key_back');
      await vi.advanceTimersByTimeAsync(100);
      expect(r.changed).toEqual(['key_back']);
      feed.close();
    });

    it('does nothing before start()', () => {
      const f = new FakeFeed();
      const r = recorder();
      const feed = new KeyChangeFeed(f.syncStore(), { pollIntervalMs: 100 }, r.handlers, log, () => now);
      f.write('key_x');
      feed.check();
      expect(f.reads).toBe(0);
      expect(r.changed).toEqual([]);
    });
  });
});
