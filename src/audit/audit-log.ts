import { createHmac, hkdfSync } from 'node:crypto';
import type { Logger } from 'pino';
import type { AuditEntry, Store } from '../store/store.js';
import { canonicalJson } from '../util/canonical-json.js';
import { systemClock, toIso, type Clock } from '../util/time.js';

/** Hash of the first entry's predecessor: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEvent {
  actor: string;
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

/** The chain key: derived from the master key, so rewriting the chain needs that secret too. */
export function deriveAuditKey(masterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'tollgate audit chain v1', 32));
}

export function hashEntry(chainKey: Buffer, e: Omit<AuditEntry, 'hash'>): string {
  const content = canonicalJson({
    seq: e.seq,
    ts: e.ts,
    actor: e.actor,
    action: e.action,
    target: e.target,
    details: e.details,
    prevHash: e.prevHash,
  });
  return createHmac('sha256', chainKey).update(content, 'utf8').digest('hex');
}

export type ChainVerdict =
  | { ok: true; entries: number; headSeq: number; headHash: string }
  | {
      ok: false;
      entries: number;
      /** The first entry that does not fit the chain, and what is wrong with it. */
      seq: number;
      /**
       * edited / deleted_before / reordered / broken_link: the chain itself; truncated: entries
       * at or below a checkpoint's seq are gone; checkpoint_mismatch: the entry a checkpoint
       * pinned holds another hash; checkpoint_invalid: the checkpoint file itself is bad.
       */
      problem: 'edited' | 'deleted_before' | 'reordered' | 'broken_link' | 'truncated' | 'checkpoint_mismatch' | 'checkpoint_invalid';
      message: string;
    };

/** What verify() checks the chain against: signed heads from audit-checkpoints.ts (their signatures already checked). */
export interface PinnedHead {
  readonly seq: number;
  readonly headHash: string;
  readonly at: string;
}

/**
 * Append-only, hash-chained log of key and admin actions and policy denials. Each entry
 * carries an HMAC-SHA256 (under a key derived from the master key) of its canonical content,
 * including the previous entry's hash, so an edit, deletion or reordering breaks the chain at
 * that point, and someone with write access to the database alone cannot re-forge it.
 * Truncation of the newest entries leaves a valid shorter chain: signed checkpoints of the head
 * (audit-checkpoints.ts), kept outside the database, catch it.
 */
export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly chainKey: Buffer,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    private readonly onAppend: () => void = () => {},
  ) {}

  async append(ev: AuditEvent): Promise<AuditEntry> {
    const details = JSON.parse(JSON.stringify(ev.details ?? {})) as Record<string, unknown>;
    const entry = await this.store.appendAudit((head) => {
      const base = {
        seq: head ? head.seq + 1 : 1,
        ts: toIso(this.clock()),
        actor: ev.actor,
        action: ev.action,
        target: ev.target ?? null,
        details,
        prevHash: head ? head.hash : GENESIS_HASH,
      };
      return { ...base, hash: hashEntry(this.chainKey, base) };
    });
    this.onAppend();
    this.log.debug({ seq: entry.seq, action: entry.action, target: entry.target }, 'audit entry appended');
    return entry;
  }

  /** Appends without making the caller wait or fail; a failed append is logged as an error. */
  appendInBackground(ev: AuditEvent): void {
    this.append(ev).catch((err: unknown) => this.log.error({ err, action: ev.action }, 'audit append failed'));
  }

  list(opts: { afterSeq?: number; limit: number; target?: string | undefined; descending?: boolean }): Promise<AuditEntry[]> {
    return this.store.listAudit(opts);
  }

  /**
   * Walks the whole chain in pages and names the first entry that was edited, deleted or
   * reordered; then checks it against `pinned` heads (checkpoints): each pinned entry must still
   * be there with the same hash.
   */
  async verify(pageSize = 1000, pinned: readonly PinnedHead[] = []): Promise<ChainVerdict> {
    const wanted = new Map<number, string | null>(pinned.map((p) => [p.seq, null]));
    let prevHash = GENESIS_HASH;
    let expectSeq = 1;
    let count = 0;
    let after = 0;
    for (;;) {
      const page = await this.store.listAudit({ afterSeq: after, limit: pageSize });
      if (page.length === 0) break;
      for (const e of page) {
        count++;
        if (wanted.has(e.seq)) wanted.set(e.seq, e.hash);
        const recomputed = hashEntry(this.chainKey, { seq: e.seq, ts: e.ts, actor: e.actor, action: e.action, target: e.target, details: e.details, prevHash: e.prevHash });
        if (recomputed !== e.hash) {
          return { ok: false, entries: count, seq: e.seq, problem: 'edited', message: `entry ${e.seq} was edited: its content no longer matches its hash` };
        }
        if (e.seq !== expectSeq) {
          return {
            ok: false, entries: count, seq: e.seq, problem: 'deleted_before',
            message: `entries ${expectSeq}..${e.seq - 1} were deleted before entry ${e.seq}`,
          };
        }
        if (e.prevHash !== prevHash) {
          return {
            ok: false, entries: count, seq: e.seq, problem: 'reordered',
            message: `entry ${e.seq} does not follow entry ${e.seq - 1}: the chain was reordered or an entry was replaced`,
          };
        }
        prevHash = e.hash;
        expectSeq = e.seq + 1;
        after = e.seq;
      }
    }
    const headSeq = expectSeq - 1;
    // Highest first: the most recent checkpoint says the most about what is missing.
    for (const p of [...pinned].sort((a, b) => b.seq - a.seq)) {
      if (p.seq > headSeq) {
        return {
          ok: false, entries: count, seq: headSeq + 1, problem: 'truncated',
          message: `entries ${headSeq + 1}..${p.seq} were deleted: the chain ends at entry ${headSeq}, but the checkpoint of ${p.at} holds entry ${p.seq}`,
        };
      }
      if (wanted.get(p.seq) !== p.headHash) {
        return {
          ok: false, entries: count, seq: p.seq, problem: 'checkpoint_mismatch',
          message: `entry ${p.seq} is not the one checkpointed at ${p.at}: the chain was rewritten from there`,
        };
      }
    }
    return { ok: true, entries: count, headSeq, headHash: prevHash };
  }
}
