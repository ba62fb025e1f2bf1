import type { Logger } from 'pino';
import type { KeyChange, KeyChangeBatch, Store } from '../store/store.js';
import { systemClock, toIso, type Clock } from '../util/time.js';

export interface KeyChangeFeedOptions {
  /**
   * How often to look for changes written by other processes (default 100 ms). On PostgreSQL
   * this is the poll of the feed, and so the longest a change from a process without the Redis
   * bus (or a lost pub/sub message) goes unseen. On SQLite a lookup checks at every call anyway;
   * the timer only tells onChange listeners when no request arrives.
   */
  readonly pollIntervalMs: number;
  /** Changes older than this are pruned from the store (default one day). */
  readonly retentionMs?: number;
  /** How often this process prunes (default one hour). */
  readonly pruneIntervalMs?: number;
}

export interface KeyChangeHandlers {
  /** A key changed (once per change, in commit order). */
  changed(change: KeyChange): void;
  /**
   * Changes may have been missed (pruned before they were read, or the store was reset): every
   * cached key must be dropped. Which keys changed is unknown.
   */
  lost(reason: 'pruned' | 'reset' | 'backlog'): void;
}

/** Rows read per query, and queries per catch-up before giving up on the backlog. */
const BATCH = 500;
const MAX_BATCHES = 100;
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

type FeedStore = Pick<Store, 'keyChangesAfter' | 'pruneKeyChanges' | 'syncKeyChanges'>;

/**
 * Follows the store's key change feed (key_changes: one row per key write, written in the
 * writer's transaction by any process on the store: this gateway, another node, the CLI) and
 * hands each change to the key service once, in order.
 *
 * - SQLite: check() is synchronous and costs one PRAGMA data_version (~1 µs) when nothing
 *   changed. The key service calls it before every cached answer, so a change committed by
 *   another process is applied before the very next lookup. This process's own commits do not
 *   move data_version: the key service calls catchUp() after each of its writes.
 * - PostgreSQL: catchUp() reads the feed; the timer runs it every pollIntervalMs, and the
 *   revocation bus (Redis pub/sub) runs it at once when another node announces a change. The
 *   poll is also the safety net for pub/sub messages lost on a reconnect.
 */
export class KeyChangeFeed {
  /** Highest seq applied; -1 until start() has read the head. */
  private cursor = -1;
  private version: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  private lastPruneAt: number;
  private failing = false;
  private closed = false;

  constructor(
    private readonly store: FeedStore,
    private readonly opts: KeyChangeFeedOptions,
    private readonly handlers: KeyChangeHandlers,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.lastPruneAt = clock();
  }

  get started(): boolean {
    return this.cursor >= 0 && !this.closed;
  }

  /**
   * Starts at the feed's head (caches are empty when a process starts, so nothing older
   * matters) and starts the timer. Idempotent.
   */
  async start(): Promise<void> {
    if (this.started || this.closed) return;
    const sync = this.store.syncKeyChanges;
    if (sync) {
      this.version = sync.dataVersion();
      this.cursor = sync.keyChangesAfter(0, 0).newestSeq;
    } else {
      this.cursor = (await this.store.keyChangesAfter(0, 0)).newestSeq;
    }
    if (this.closed) return;
    this.timer = setInterval(() => this.tick(), this.opts.pollIntervalMs);
    this.timer.unref();
  }

  /**
   * Applies changes committed by other processes since the last call, synchronously (SQLite).
   * Does nothing on PostgreSQL or before start(). Store faults throw (StoreError).
   */
  check(): void {
    const sync = this.store.syncKeyChanges;
    if (!sync || this.cursor < 0) return;
    // Read the version before the rows: a commit landing in between moves it again, and the
    // next check reads once more, rather than a change being missed.
    const v = sync.dataVersion();
    if (v === this.version) return;
    this.version = v;
    this.drainSync();
  }

  /**
   * Reads and applies every change not yet applied. Calls made while a read is in flight are
   * served by a read that starts after it, so a caller that has just committed a change sees
   * it applied when the promise resolves.
   */
  catchUp(): Promise<void> {
    if (this.cursor < 0 || this.closed) return Promise.resolve();
    if (this.store.syncKeyChanges) {
      try {
        this.drainSync();
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    }
    if (!this.inFlight) {
      this.inFlight = this.drainAsync().finally(() => {
        this.inFlight = null;
      });
      return this.inFlight;
    }
    this.queued ??= this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.catchUp();
      });
    return this.queued;
  }

  /** Stops the timer. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private drainSync(): void {
    const sync = this.store.syncKeyChanges!;
    for (let i = 0; i < MAX_BATCHES; i++) {
      if (this.apply(sync.keyChangesAfter(this.cursor, BATCH))) return;
    }
    this.handlers.lost('backlog');
    this.cursor = Math.max(this.cursor, sync.keyChangesAfter(this.cursor, 0).newestSeq);
  }

  private async drainAsync(): Promise<void> {
    for (let i = 0; i < MAX_BATCHES; i++) {
      if (this.closed || this.apply(await this.store.keyChangesAfter(this.cursor, BATCH))) return;
    }
    // More than MAX_BATCHES × BATCH changes at once: drop everything and skip to the head.
    this.handlers.lost('backlog');
    this.cursor = Math.max(this.cursor, (await this.store.keyChangesAfter(this.cursor, 0)).newestSeq);
  }

  /** Applies one read; true when the feed is drained. */
  private apply(batch: KeyChangeBatch): boolean {
    if (batch.newestSeq < this.cursor) {
      // The feed is behind what was already read: the database was restored or replaced.
      this.cursor = batch.newestSeq;
      this.handlers.lost('reset');
      return true;
    }
    // Rows between the cursor and the oldest stored one were pruned unread. (On PostgreSQL a
    // rolled-back write leaves a hole in seq that can look the same: dropping the caches once
    // is the safe answer to both.)
    if (this.cursor < batch.oldestSeq - 1) this.handlers.lost('pruned');
    for (const c of batch.changes) {
      if (c.seq <= this.cursor) continue;
      this.cursor = c.seq;
      this.handlers.changed(c);
    }
    return batch.changes.length < BATCH;
  }

  private tick(): void {
    if (this.closed) return;
    if (this.store.syncKeyChanges) {
      try {
        this.check();
        this.recovered();
      } catch (err) {
        this.failed(err);
      }
    } else if (!this.inFlight) {
      this.catchUp().then(
        () => this.recovered(),
        (err: unknown) => this.failed(err),
      );
    }
    const now = this.clock();
    if (now - this.lastPruneAt >= (this.opts.pruneIntervalMs ?? HOUR_MS)) {
      this.lastPruneAt = now;
      this.store.pruneKeyChanges(toIso(now - (this.opts.retentionMs ?? DAY_MS))).then(
        (n) => void (n > 0 && this.log.debug({ pruned: n }, 'pruned the key change feed')),
        (err: unknown) => this.log.warn({ err }, 'could not prune the key change feed'),
      );
    }
  }

  /** Logged once per outage, not every poll. */
  private failed(err: unknown): void {
    if (this.failing) return;
    this.failing = true;
    this.log.warn({ err }, 'cannot read the key change feed; changes made by other processes are not seen until it recovers');
  }

  private recovered(): void {
    if (!this.failing) return;
    this.failing = false;
    this.log.info('key change feed readable again');
  }
}
