import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { StoreError } from '../errors/index.js';
import type { KeyPatch, KeyRecord, SecretRecord } from './key-record.js';
import type {
  AuditEntry, CallPatch, CallRecord, KeyChangeBatch, KeyListFilter, NumberRecord, Store, SyncKeyChangeFeed, TrunkPatch, TrunkRecord, UsageRecord,
  WebhookDelivery, WebhookDeliveryPatch, WebhookDeliveryStatus, WebhookEndpoint,
} from './store.js';
import {
  KEY_COLUMNS, PATCH_COLUMNS, keyToValues, patchValue, rowToAudit, rowToKey, rowToSecret, rowToUsage,
  type AuditRow, type KeyRow, type NumberRow, type SecretRow, type UsageRow, rowToNumber, type CallRow, rowToCall, CALL_COLUMNS, callToValues, callPatchColumns, isoCursor, olderThan,
  TRUNK_COLUMNS, rowToTrunk, trunkToValues, trunkPatchColumns, type TrunkRow,
  WEBHOOK_ENDPOINT_COLUMNS, rowToWebhookEndpoint, webhookEndpointToValues, subscribes, type WebhookEndpointRow,
  WEBHOOK_DELIVERY_COLUMNS, rowToWebhookDelivery, webhookDeliveryToValues, deliveryPatchColumns, type WebhookDeliveryRow, ENDPOINT_REMOVED,
} from './row-mapping.js';
import { SQLITE_MIGRATIONS } from './migrations.js';

const sqliteBool = (b: boolean): number => (b ? 1 : 0);

const storeError = (what: string, err: unknown): StoreError =>
  err instanceof StoreError ? err : new StoreError(`sqlite ${what} failed: ${(err as Error).message}`, { cause: err });

function wrap<T>(what: string, fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(storeError(what, err));
  }
}

/** The same, for the synchronous feed reads: throws StoreError. */
function wrapSync<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw storeError(what, err);
  }
}

/**
 * Embedded store on better-sqlite3 in WAL mode. Calls are synchronous underneath and return
 * settled promises so callers see one async interface for both stores. Several processes
 * (the server and the CLI) may share the file: writes that must be serialised use
 * BEGIN IMMEDIATE, and busy_timeout waits for the other writer.
 */
export class SqliteStore implements Store {
  readonly driver = 'sqlite' as const;
  private readonly db: Database.Database;
  private closed = false;
  /** Prepared statements by SQL text: compiling a statement costs more than running a lookup. */
  private readonly statements = new Map<string, Database.Statement>();
  readonly syncKeyChanges: SyncKeyChangeFeed;

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.db.pragma('foreign_keys = ON');
    } catch (err) {
      throw new StoreError(`cannot open sqlite database: ${(err as Error).message}`, { cause: err });
    }
    // Asked before every cached key lookup, so kept lean: one prepared statement, no closure
    // per call. Costs about 1 µs (a read transaction: WAL read-lock syscalls).
    const dataVersion = this.db.prepare('PRAGMA data_version').pluck();
    this.syncKeyChanges = {
      dataVersion: () => {
        try {
          return dataVersion.get() as number;
        } catch (err) {
          throw storeError('dataVersion', err);
        }
      },
      keyChangesAfter: (afterSeq, limit) => wrapSync('keyChangesAfter', () => this.readKeyChanges(afterSeq, limit)),
    };
  }

  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      // Dynamic SQL (filters, patch columns) has few shapes; the cap only guards against surprises.
      if (this.statements.size >= 256) this.statements.clear();
      this.statements.set(sql, st);
    }
    return st;
  }

  migrate(): Promise<void> {
    return wrap('migrate', () => {
      this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
      const applied = new Set(
        (this.db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
      );
      for (const m of SQLITE_MIGRATIONS) {
        if (applied.has(m.version)) continue;
        this.db.transaction(() => {
          this.db.exec(m.sql);
          this.db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, new Date().toISOString());
        }).immediate();
      }
    });
  }

  ping(): Promise<void> {
    return wrap('ping', () => void this.stmt('SELECT 1').get());
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.db.close();
    }
    return Promise.resolve();
  }

  insertKey(key: KeyRecord, secret: SecretRecord): Promise<void> {
    return wrap('insertKey', () => {
      const cols = KEY_COLUMNS.join(', ');
      const marks = KEY_COLUMNS.map(() => '?').join(', ');
      this.db.transaction(() => {
        this.stmt(`INSERT INTO api_keys (${cols}) VALUES (${marks})`).run(...keyToValues(key, sqliteBool));
        this.insertSecret(secret);
        this.recordKeyChange(key.id);
      }).immediate();
    });
  }

  /**
   * Appends to the key change feed; called inside the key write's transaction. SQLite has one
   * writer at a time, so seq order is commit order.
   */
  private recordKeyChange(keyId: string): void {
    this.stmt('INSERT INTO key_changes (key_id, at) VALUES (?, ?)').run(keyId, new Date().toISOString());
  }

  private readKeyChanges(afterSeq: number, limit: number): KeyChangeBatch {
    // One read transaction: the rows and the bounds come from the same snapshot.
    return this.db.transaction(() => {
      const rows = this.stmt('SELECT seq, key_id, at FROM key_changes WHERE seq > ? ORDER BY seq LIMIT ?').all(afterSeq, limit) as { seq: number; key_id: string; at: string }[];
      const b = this.stmt('SELECT COALESCE(MIN(seq), 0) AS lo, COALESCE(MAX(seq), 0) AS hi FROM key_changes').get() as { lo: number; hi: number };
      return { changes: rows.map((r) => ({ seq: r.seq, keyId: r.key_id, at: r.at })), oldestSeq: b.lo, newestSeq: b.hi };
    })();
  }

  keyChangesAfter(afterSeq: number, limit: number): Promise<KeyChangeBatch> {
    return wrap('keyChangesAfter', () => this.readKeyChanges(afterSeq, limit));
  }

  pruneKeyChanges(beforeIso: string): Promise<number> {
    return wrap('pruneKeyChanges', () => this.stmt('DELETE FROM key_changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM key_changes)').run(beforeIso).changes);
  }

  private insertSecret(s: SecretRecord): void {
    this.db
      .prepare('INSERT INTO key_secrets (id, key_id, hash, ha1_md5, ha1_sha256, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(s.id, s.keyId, s.hash, s.ha1Md5, s.ha1Sha256, s.createdAt, s.expiresAt);
  }

  getKey(id: string): Promise<KeyRecord | null> {
    return wrap('getKey', () => {
      const row = this.stmt('SELECT * FROM api_keys WHERE id = ?').get(id) as KeyRow | undefined;
      return row ? rowToKey(row) : null;
    });
  }

  listKeys(filter: KeyListFilter = {}): Promise<KeyRecord[]> {
    return wrap('listKeys', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.status) {
        where.push('status = ?');
        args.push(filter.status);
      }
      if (filter.mode) {
        where.push('mode = ?');
        args.push(filter.mode);
      }
      if (filter.after) {
        where.push('id > ?');
        args.push(filter.after);
      }
      const sql = `SELECT * FROM api_keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ?`;
      args.push(filter.limit ?? 100);
      return (this.stmt(sql).all(...args) as KeyRow[]).map(rowToKey);
    });
  }

  countKeys(): Promise<number> {
    return wrap('countKeys', () => (this.stmt('SELECT COUNT(*) AS n FROM api_keys').get() as { n: number }).n);
  }

  updateKey(id: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null> {
    return wrap('updateKey', () => this.db.transaction(() => this.patchKey(id, patch, updatedAt)).immediate());
  }

  /** Applies a patch and records the change (inside the caller's transaction). */
  private patchKey(id: string, patch: KeyPatch, updatedAt: string): KeyRecord | null {
    const sets: string[] = ['updated_at = ?'];
    const args: unknown[] = [updatedAt];
    for (const [field, v] of Object.entries(patch)) {
      const col = PATCH_COLUMNS[field];
      if (!col || v === undefined) continue;
      sets.push(`${col} = ?`);
      args.push(patchValue(col, v, sqliteBool));
    }
    args.push(id);
    const row = this.stmt(`UPDATE api_keys SET ${sets.join(', ')} WHERE id = ? RETURNING *`).get(...args) as KeyRow | undefined;
    if (!row) return null;
    this.recordKeyChange(id);
    return rowToKey(row);
  }

  recordKeyUse(id: string, lastUsedAt: string): Promise<void> {
    return wrap('recordKeyUse', () => void this.stmt('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(lastUsedAt, id));
  }

  rotateSecret(secret: SecretRecord, othersExpireAt: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null> {
    return wrap('rotateSecret', () =>
      this.db.transaction(() => {
        const key = this.patchKey(secret.keyId, patch, updatedAt);
        if (!key) return null;
        this.stmt('UPDATE key_secrets SET expires_at = ? WHERE key_id = ? AND (expires_at IS NULL OR expires_at > ?)').run(othersExpireAt, secret.keyId, othersExpireAt);
        this.insertSecret(secret);
        return key;
      }).immediate(),
    );
  }

  findSecretByHash(hash: string): Promise<SecretRecord | null> {
    return wrap('findSecretByHash', () => {
      const row = this.stmt('SELECT * FROM key_secrets WHERE hash = ?').get(hash) as SecretRow | undefined;
      return row ? rowToSecret(row) : null;
    });
  }

  listLiveSecrets(keyId: string, now: string): Promise<SecretRecord[]> {
    return wrap('listLiveSecrets', () =>
      (this.db
        .prepare('SELECT * FROM key_secrets WHERE key_id = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC')
        .all(keyId, now) as SecretRow[]).map(rowToSecret),
    );
  }

  appendAudit(build: (head: AuditEntry | null) => AuditEntry): Promise<AuditEntry> {
    return wrap('appendAudit', () =>
      this.db.transaction(() => {
        const headRow = this.stmt('SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1').get() as AuditRow | undefined;
        const e = build(headRow ? rowToAudit(headRow) : null);
        this.db
          .prepare('INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
          .run(e.seq, e.ts, e.actor, e.action, e.target, JSON.stringify(e.details), e.prevHash, e.hash);
        return e;
      }).immediate(),
    );
  }

  listAudit(opts: { afterSeq?: number; limit: number; target?: string | undefined; descending?: boolean }): Promise<AuditEntry[]> {
    return wrap('listAudit', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (opts.afterSeq !== undefined) {
        where.push(opts.descending ? 'seq < ?' : 'seq > ?');
        args.push(opts.afterSeq);
      }
      if (opts.target) {
        where.push('target = ?');
        args.push(opts.target);
      }
      args.push(opts.limit);
      const sql = `SELECT * FROM audit_log ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${opts.descending ? 'DESC' : 'ASC'} LIMIT ?`;
      return (this.stmt(sql).all(...args) as AuditRow[]).map(rowToAudit);
    });
  }

  insertUsage(u: UsageRecord): Promise<boolean> {
    return wrap('insertUsage', () => {
      const r = this.stmt('INSERT INTO usage_records (id, key_id, call_id, direction, seconds, amount, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING')
        .run(u.id, u.keyId, u.callId, u.direction, u.seconds, u.amount, u.createdAt);
      return r.changes === 1;
    });
  }

  sumUsage(keyId: string, fromIso: string, toIso: string): Promise<{ seconds: number; amount: number; calls: number }> {
    return wrap('sumUsage', () => {
      const r = this.db
        .prepare(
          'SELECT COALESCE(SUM(seconds),0) AS seconds, COALESCE(SUM(amount),0) AS amount, COUNT(*) AS calls FROM usage_records WHERE key_id = ? AND created_at >= ? AND created_at < ?',
        )
        .get(keyId, fromIso, toIso) as { seconds: number; amount: number; calls: number };
      return { seconds: Number(r.seconds), amount: Number(r.amount), calls: Number(r.calls) };
    });
  }

  listUsage(opts: { keyId?: string | undefined; fromIso: string; toIso: string; limit: number }): Promise<UsageRecord[]> {
    return wrap('listUsage', () => {
      const args: unknown[] = [opts.fromIso, opts.toIso];
      let sql = 'SELECT * FROM usage_records WHERE created_at >= ? AND created_at < ?';
      if (opts.keyId) {
        sql += ' AND key_id = ?';
        args.push(opts.keyId);
      }
      sql += ' ORDER BY created_at, id LIMIT ?';
      args.push(opts.limit);
      return (this.stmt(sql).all(...args) as UsageRow[]).map(rowToUsage);
    });
  }

  upsertNumber(n: NumberRecord): Promise<void> {
    return wrap('upsertNumber', () => {
      this.stmt(
        `INSERT INTO numbers (number, target, key_id, srtp, agent, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (number) DO UPDATE SET target = excluded.target, key_id = excluded.key_id, srtp = excluded.srtp, agent = excluded.agent, updated_at = excluded.updated_at`,
      ).run(n.number, n.target, n.keyId, n.srtp, n.agent ? JSON.stringify(n.agent) : null, n.createdAt, n.updatedAt);
    });
  }

  getNumber(number: string): Promise<NumberRecord | null> {
    return wrap('getNumber', () => {
      const row = this.stmt('SELECT * FROM numbers WHERE number = ?').get(number) as NumberRow | undefined;
      return row ? rowToNumber(row) : null;
    });
  }

  listNumbers(opts: { keyId?: string | undefined; limit: number; after?: string | undefined }): Promise<NumberRecord[]> {
    return wrap('listNumbers', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (opts.keyId) {
        where.push('key_id = ?');
        args.push(opts.keyId);
      }
      if (opts.after) {
        where.push('number > ?');
        args.push(opts.after);
      }
      args.push(opts.limit);
      const sql = `SELECT * FROM numbers ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY number LIMIT ?`;
      return (this.stmt(sql).all(...args) as NumberRow[]).map(rowToNumber);
    });
  }

  deleteNumber(number: string): Promise<boolean> {
    return wrap('deleteNumber', () => this.stmt('DELETE FROM numbers WHERE number = ?').run(number).changes === 1);
  }

  insertCall(c: CallRecord): Promise<void> {
    return wrap('insertCall', () => {
      this.stmt(`INSERT INTO calls (${CALL_COLUMNS.join(', ')}) VALUES (${CALL_COLUMNS.map(() => '?').join(', ')})`).run(...callToValues(c));
    });
  }

  updateCall(id: string, patch: CallPatch): Promise<CallRecord | null> {
    return wrap('updateCall', () => {
      const cols = callPatchColumns(patch);
      if (cols.length) this.stmt(`UPDATE calls SET ${cols.map((c) => `${c.column} = ?`).join(', ')} WHERE id = ?`).run(...cols.map((c) => c.value), id);
      const row = this.stmt('SELECT * FROM calls WHERE id = ?').get(id) as CallRow | undefined;
      return row ? rowToCall(row) : null;
    });
  }

  getCall(id: string): Promise<CallRecord | null> {
    return wrap('getCall', () => {
      const row = this.stmt('SELECT * FROM calls WHERE id = ?').get(id) as CallRow | undefined;
      return row ? rowToCall(row) : null;
    });
  }

  listCalls(opts: { keyId?: string | undefined; limit: number; before?: string | undefined; beforeId?: string | undefined }): Promise<CallRecord[]> {
    return wrap('listCalls', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (opts.keyId) {
        where.push('key_id = ?');
        args.push(opts.keyId);
      }
      const older = olderThan('started_at', opts.before, opts.beforeId, (v) => {
        args.push(v);
        return '?';
      });
      if (older) where.push(older);
      args.push(opts.limit);
      const sql = `SELECT * FROM calls ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY started_at DESC, id DESC LIMIT ?`;
      return (this.stmt(sql).all(...args) as CallRow[]).map(rowToCall);
    });
  }

  insertTrunk(t: TrunkRecord): Promise<void> {
    return wrap('insertTrunk', () => {
      this.stmt(`INSERT INTO trunks (${TRUNK_COLUMNS.join(', ')}) VALUES (${TRUNK_COLUMNS.map(() => '?').join(', ')})`).run(...trunkToValues(t, sqliteBool));
    });
  }

  updateTrunk(id: string, patch: TrunkPatch): Promise<TrunkRecord | null> {
    return wrap('updateTrunk', () => {
      const cols = trunkPatchColumns(patch, sqliteBool);
      if (cols.length) this.stmt(`UPDATE trunks SET ${cols.map((c) => `${c.column} = ?`).join(', ')} WHERE id = ?`).run(...cols.map((c) => c.value), id);
      const row = this.stmt('SELECT * FROM trunks WHERE id = ?').get(id) as TrunkRow | undefined;
      return row ? rowToTrunk(row) : null;
    });
  }

  getTrunk(id: string): Promise<TrunkRecord | null> {
    return wrap('getTrunk', () => {
      const row = this.stmt('SELECT * FROM trunks WHERE id = ?').get(id) as TrunkRow | undefined;
      return row ? rowToTrunk(row) : null;
    });
  }

  listTrunks(opts: { limit: number; after?: string | undefined }): Promise<TrunkRecord[]> {
    return wrap('listTrunks', () => {
      const rows = opts.after
        ? this.stmt('SELECT * FROM trunks WHERE id > ? ORDER BY id LIMIT ?').all(opts.after, opts.limit)
        : this.stmt('SELECT * FROM trunks ORDER BY id LIMIT ?').all(opts.limit);
      return (rows as TrunkRow[]).map(rowToTrunk);
    });
  }

  deleteTrunk(id: string): Promise<boolean> {
    return wrap('deleteTrunk', () => this.stmt('DELETE FROM trunks WHERE id = ?').run(id).changes === 1);
  }

  insertWebhookEndpoint(e: WebhookEndpoint): Promise<void> {
    return wrap('insertWebhookEndpoint', () => {
      this.stmt(`INSERT INTO webhook_endpoints (${WEBHOOK_ENDPOINT_COLUMNS.join(', ')}) VALUES (${WEBHOOK_ENDPOINT_COLUMNS.map(() => '?').join(', ')})`)
        .run(...webhookEndpointToValues(e, sqliteBool));
    });
  }

  listWebhookEndpoints(opts: { keyId?: string | null | undefined; limit: number; after?: string | undefined }): Promise<WebhookEndpoint[]> {
    return wrap('listWebhookEndpoints', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (opts.keyId === null) where.push('key_id IS NULL');
      else if (opts.keyId !== undefined) {
        where.push('key_id = ?');
        args.push(opts.keyId);
      }
      if (opts.after) {
        where.push('id > ?');
        args.push(opts.after);
      }
      args.push(opts.limit);
      const sql = `SELECT * FROM webhook_endpoints ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ?`;
      return (this.stmt(sql).all(...args) as WebhookEndpointRow[]).map(rowToWebhookEndpoint);
    });
  }

  getWebhookEndpoint(id: string): Promise<WebhookEndpoint | null> {
    return wrap('getWebhookEndpoint', () => {
      const row = this.stmt('SELECT * FROM webhook_endpoints WHERE id = ?').get(id) as WebhookEndpointRow | undefined;
      return row ? rowToWebhookEndpoint(row) : null;
    });
  }

  deleteWebhookEndpoint(id: string): Promise<boolean> {
    return wrap('deleteWebhookEndpoint', () =>
      this.db.transaction(() => {
        const removed = this.stmt('DELETE FROM webhook_endpoints WHERE id = ?').run(id).changes === 1;
        if (removed) {
          this.stmt("UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = ?, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'")
            .run(ENDPOINT_REMOVED, new Date().toISOString(), id);
        }
        return removed;
      }).immediate(),
    );
  }

  endpointsFor(keyId: string | null, eventType: string): Promise<WebhookEndpoint[]> {
    return wrap('endpointsFor', () => {
      const rows = keyId === null
        ? this.stmt('SELECT * FROM webhook_endpoints WHERE enabled = 1 AND key_id IS NULL ORDER BY id').all()
        : this.stmt('SELECT * FROM webhook_endpoints WHERE enabled = 1 AND (key_id = ? OR key_id IS NULL) ORDER BY id').all(keyId);
      return (rows as WebhookEndpointRow[]).map(rowToWebhookEndpoint).filter((e) => subscribes(e, eventType));
    });
  }

  insertDelivery(d: WebhookDelivery): Promise<void> {
    return wrap('insertDelivery', () => {
      this.stmt(`INSERT INTO webhook_deliveries (${WEBHOOK_DELIVERY_COLUMNS.join(', ')}) VALUES (${WEBHOOK_DELIVERY_COLUMNS.map(() => '?').join(', ')})`)
        .run(...webhookDeliveryToValues(d));
    });
  }

  updateDelivery(id: string, patch: WebhookDeliveryPatch): Promise<WebhookDelivery | null> {
    return wrap('updateDelivery', () => {
      const cols = deliveryPatchColumns(patch);
      if (cols.length) this.stmt(`UPDATE webhook_deliveries SET ${cols.map((c) => `${c.column} = ?`).join(', ')} WHERE id = ?`).run(...cols.map((c) => c.value), id);
      const row = this.stmt('SELECT * FROM webhook_deliveries WHERE id = ?').get(id) as WebhookDeliveryRow | undefined;
      return row ? rowToWebhookDelivery(row) : null;
    });
  }

  getDelivery(id: string): Promise<WebhookDelivery | null> {
    return wrap('getDelivery', () => {
      const row = this.stmt('SELECT * FROM webhook_deliveries WHERE id = ?').get(id) as WebhookDeliveryRow | undefined;
      return row ? rowToWebhookDelivery(row) : null;
    });
  }

  listDeliveries(opts: {
    keyId?: string | null | undefined;
    endpointId?: string | undefined;
    status?: WebhookDeliveryStatus | undefined;
    limit: number;
    before?: string | undefined;
    beforeId?: string | undefined;
  }): Promise<WebhookDelivery[]> {
    return wrap('listDeliveries', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (opts.keyId === null) where.push('key_id IS NULL');
      else if (opts.keyId !== undefined) {
        where.push('key_id = ?');
        args.push(opts.keyId);
      }
      if (opts.endpointId) {
        where.push('endpoint_id = ?');
        args.push(opts.endpointId);
      }
      if (opts.status) {
        where.push('status = ?');
        args.push(opts.status);
      }
      const older = olderThan('created_at', opts.before, opts.beforeId, (v) => {
        args.push(v);
        return '?';
      });
      if (older) where.push(older);
      args.push(opts.limit);
      const sql = `SELECT * FROM webhook_deliveries ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id DESC LIMIT ?`;
      return (this.stmt(sql).all(...args) as WebhookDeliveryRow[]).map(rowToWebhookDelivery);
    });
  }

  claimDueDeliveries(nowIso: string, limit: number, leaseUntilIso: string): Promise<WebhookDelivery[]> {
    return wrap('claimDueDeliveries', () =>
      // One write statement in an IMMEDIATE transaction: the write lock is taken before the
      // due rows are read, so a claimer in another process waits (busy_timeout) and then sees
      // them already leased.
      this.db.transaction(() =>
        (this.stmt(
          `UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id IN (
             SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?
           ) RETURNING *`,
        ).all(isoCursor(leaseUntilIso), isoCursor(nowIso), limit) as WebhookDeliveryRow[])
          .map(rowToWebhookDelivery),
      ).immediate(),
    );
  }

  consumeTokenId(jti: string, expiresAt: string): Promise<boolean> {
    return wrap('consumeTokenId', () => {
      const r = this.stmt('INSERT INTO used_token_ids (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING').run(jti, expiresAt);
      return r.changes === 1;
    });
  }

  purgeExpiredTokenIds(now: string): Promise<number> {
    return wrap('purgeExpiredTokenIds', () => this.stmt('DELETE FROM used_token_ids WHERE expires_at < ?').run(now).changes);
  }
}
