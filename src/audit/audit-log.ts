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
      problem: 'edited' | 'deleted_before' | 'reordered' | 'broken_link';
      message: string;
    };

/**
 * Append-only, hash-chained log of key and admin actions and policy denials. Each entry
 * carries an HMAC-SHA256 (under a key derived from the master key) of its canonical content,
 * including the previous entry's hash, so an edit, deletion or reordering breaks the chain at
 * that point, and someone with write access to the database alone cannot re-forge it. The head hash printed by
 * `tollgate audit verify` can be anchored elsewhere to detect truncation of the newest entries.
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

  /** Walks the whole chain in pages and names the first entry that was edited, deleted or reordered. */
  async verify(pageSize = 1000): Promise<ChainVerdict> {
    let prevHash = GENESIS_HASH;
    let expectSeq = 1;
    let count = 0;
    let after = 0;
    for (;;) {
      const page = await this.store.listAudit({ afterSeq: after, limit: pageSize });
      if (page.length === 0) break;
      for (const e of page) {
        count++;
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
    return { ok: true, entries: count, headSeq: expectSeq - 1, headHash: prevHash };
  }
}
