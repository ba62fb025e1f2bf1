import pg from 'pg';
import { StoreError } from '../errors/index.js';
import type { KeyPatch, KeyRecord, SecretRecord } from './key-record.js';
import type {
  AuditEntry, CallPatch, CallRecord, KeyChangeBatch, KeyListFilter, NumberRecord, Store, TrunkPatch, TrunkRecord, UsageRecord, WebhookDelivery,
  WebhookDeliveryPatch, WebhookDeliveryStatus, WebhookEndpoint,
} from './store.js';
import {
  KEY_COLUMNS, PATCH_COLUMNS, keyToValues, patchValue, rowToAudit, rowToKey, rowToSecret, rowToUsage,
  type AuditRow, type KeyRow, type NumberRow, type SecretRow, type UsageRow, rowToNumber, type CallRow, rowToCall, CALL_COLUMNS, callToValues, callPatchColumns, isoCursor, olderThan,
  TRUNK_COLUMNS, rowToTrunk, trunkToValues, trunkPatchColumns, type TrunkRow,
  WEBHOOK_ENDPOINT_COLUMNS, rowToWebhookEndpoint, webhookEndpointToValues, subscribes, type WebhookEndpointRow,
  WEBHOOK_DELIVERY_COLUMNS, rowToWebhookDelivery, webhookDeliveryToValues, deliveryPatchColumns, type WebhookDeliveryRow, ENDPOINT_REMOVED,
} from './row-mapping.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';

export interface PostgresStoreOptions {
  /** Connection URL; may carry a password, so it never appears in errors. */
  readonly url: string;
  readonly poolSize: number;
  /** Schema for every table; created by migrate() when missing. Default: the server's search_path. */
  readonly schema?: string | undefined;
}

const pgBool = (b: boolean): boolean => b;

/**
 * Fixed advisory-lock keys (per database). Migrations and audit appends take them with
 * pg_advisory_xact_lock, so they are released with the transaction, even when the client dies.
 */
const MIGRATION_LOCK = '7346829150014480001';
const AUDIT_LOCK = '7346829150014480002';
const KEY_CHANGES_LOCK = '7346829150014480003';

/** Unquoted, lower-case identifier: safe to put in a `-c search_path=` startup option as is. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const SECRET_COLUMNS = 'id, key_id, hash, ha1_md5, ha1_sha256, created_at, expires_at';

/**
 * Cluster store on node-postgres. Every write that must be atomic runs in one transaction on
 * one pooled client; writes that must be serialised across nodes (migrations, the audit chain)
 * take a transaction-scoped advisory lock.
 */
export class PostgresStore implements Store {
  readonly driver = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly schema: string | undefined;
  /** Strings that must never reach an error message: the URL and its password. */
  private readonly secrets: string[];
  private closing: Promise<void> | undefined;

  constructor(opts: PostgresStoreOptions) {
    if (opts.schema !== undefined && !SCHEMA_NAME.test(opts.schema)) {
      throw new StoreError('postgres schema name must match [a-z_][a-z0-9_]* (at most 63 characters)');
    }
    this.schema = opts.schema;
    this.secrets = secretsOf(opts.url);
    try {
      this.pool = new pg.Pool({
        connectionString: opts.url,
        max: opts.poolSize,
        ...(opts.schema !== undefined ? { options: `-c search_path=${opts.schema}` } : {}),
      });
    } catch (err) {
      throw this.storeError('connect', err);
    }
    // An idle client that loses its connection emits on the pool; without a listener that
    // would crash the process. The next query fails and reports it as a StoreError.
    this.pool.on('error', () => undefined);
  }

  migrate(): Promise<void> {
    return this.run('migrate', () =>
      this.tx(async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
        if (this.schema !== undefined) await c.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
        await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
        const { rows } = await c.query<{ version: number }>('SELECT version FROM schema_migrations');
        const applied = new Set(rows.map((r) => Number(r.version)));
        for (const m of POSTGRES_MIGRATIONS) {
          if (applied.has(m.version)) continue;
          await c.query(m.sql);
          await c.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, new Date().toISOString()]);
        }
      }),
    );
  }

  ping(): Promise<void> {
    return this.run('ping', async () => void (await this.pool.query('SELECT 1')));
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end().catch((err: unknown) => {
      throw this.storeError('close', err);
    });
    return this.closing;
  }

  insertKey(key: KeyRecord, secret: SecretRecord): Promise<void> {
    return this.run('insertKey', () => {
      const cols = KEY_COLUMNS.join(', ');
      const marks = KEY_COLUMNS.map((_, i) => `$${i + 1}`).join(', ');
      return this.tx(async (c) => {
        await c.query(`INSERT INTO api_keys (${cols}) VALUES (${marks})`, keyToValues(key, pgBool));
        await insertSecret(c, secret);
        await recordKeyChange(c, key.id);
      });
    });
  }

  getKey(id: string): Promise<KeyRecord | null> {
    return this.run('getKey', async () => {
      const { rows } = await this.pool.query<KeyRow>('SELECT * FROM api_keys WHERE id = $1', [id]);
      return rows[0] ? rowToKey(rows[0]) : null;
    });
  }

  listKeys(filter: KeyListFilter = {}): Promise<KeyRecord[]> {
    return this.run('listKeys', async () => {
      const where: string[] = [];
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      if (filter.status) where.push(`status = ${arg(filter.status)}`);
      if (filter.mode) where.push(`mode = ${arg(filter.mode)}`);
      if (filter.after) where.push(`id > ${arg(filter.after)}`);
      const sql = `SELECT * FROM api_keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ${arg(filter.limit ?? 100)}`;
      return (await this.pool.query<KeyRow>(sql, args)).rows.map(rowToKey);
    });
  }

  countKeys(): Promise<number> {
    return this.run('countKeys', async () => {
      const { rows } = await this.pool.query<{ n: string }>('SELECT COUNT(*) AS n FROM api_keys');
      return Number(rows[0]?.n ?? 0);
    });
  }

  updateKey(id: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null> {
    return this.run('updateKey', () => this.tx((c) => patchKey(c, id, patch, updatedAt)));
  }

  recordKeyUse(id: string, lastUsedAt: string): Promise<void> {
    return this.run('recordKeyUse', async () => void (await this.pool.query('UPDATE api_keys SET last_used_at = $1 WHERE id = $2', [lastUsedAt, id])));
  }

  rotateSecret(secret: SecretRecord, othersExpireAt: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null> {
    return this.run('rotateSecret', () =>
      this.tx(async (c) => {
        const key = await patchKey(c, secret.keyId, patch, updatedAt);
        if (!key) return null;
        await c.query('UPDATE key_secrets SET expires_at = $1 WHERE key_id = $2 AND (expires_at IS NULL OR expires_at > $1)', [
          othersExpireAt,
          secret.keyId,
        ]);
        await insertSecret(c, secret);
        return key;
      }),
    );
  }

  keyChangesAfter(afterSeq: number, limit: number): Promise<KeyChangeBatch> {
    return this.run('keyChangesAfter', async () => {
      // One statement, so the rows and the bounds come from one snapshot.
      const { rows } = await this.pool.query<{ lo: string; hi: string; seq: string | null; key_id: string | null; at: string | null }>(
        `WITH b AS (SELECT COALESCE(MIN(seq), 0) AS lo, COALESCE(MAX(seq), 0) AS hi FROM key_changes)
         SELECT b.lo, b.hi, c.seq, c.key_id, c.at FROM b
         LEFT JOIN LATERAL (SELECT seq, key_id, at FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT $2) c ON true
         ORDER BY c.seq`,
        [afterSeq, limit],
      );
      const changes = rows.filter((r) => r.seq !== null).map((r) => ({ seq: Number(r.seq), keyId: r.key_id!, at: r.at! }));
      return { changes, oldestSeq: Number(rows[0]?.lo ?? 0), newestSeq: Number(rows[0]?.hi ?? 0) };
    });
  }

  pruneKeyChanges(beforeIso: string): Promise<number> {
    return this.run('pruneKeyChanges', async () => {
      const r = await this.pool.query('DELETE FROM key_changes WHERE at < $1 AND seq < (SELECT MAX(seq) FROM key_changes)', [beforeIso]);
      return r.rowCount ?? 0;
    });
  }

  findSecretByHash(hash: string): Promise<SecretRecord | null> {
    return this.run('findSecretByHash', async () => {
      const { rows } = await this.pool.query<SecretRow>('SELECT * FROM key_secrets WHERE hash = $1', [hash]);
      return rows[0] ? rowToSecret(rows[0]) : null;
    });
  }

  listLiveSecrets(keyId: string, now: string): Promise<SecretRecord[]> {
    return this.run('listLiveSecrets', async () => {
      const { rows } = await this.pool.query<SecretRow>(
        'SELECT * FROM key_secrets WHERE key_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC',
        [keyId, now],
      );
      return rows.map(rowToSecret);
    });
  }

  appendAudit(build: (head: AuditEntry | null) => AuditEntry): Promise<AuditEntry> {
    return this.run('appendAudit', () =>
      this.tx(async (c) => {
        // Serialises appenders on every node: the lock is held until COMMIT, so the next writer
        // reads the head this one wrote.
        await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [AUDIT_LOCK]);
        const { rows } = await c.query<AuditRow>('SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1');
        const e = build(rows[0] ? rowToAudit(rows[0]) : null);
        await c.query(
          'INSERT INTO audit_log (seq, ts, actor, action, target, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
          [e.seq, e.ts, e.actor, e.action, e.target, JSON.stringify(e.details), e.prevHash, e.hash],
        );
        return e;
      }),
    );
  }

  listAudit(opts: { afterSeq?: number; limit: number; target?: string | undefined; descending?: boolean }): Promise<AuditEntry[]> {
    return this.run('listAudit', async () => {
      const where: string[] = [];
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      if (opts.afterSeq !== undefined) where.push(`seq ${opts.descending ? '<' : '>'} ${arg(opts.afterSeq)}`);
      if (opts.target) where.push(`target = ${arg(opts.target)}`);
      const sql = `SELECT * FROM audit_log ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${opts.descending ? 'DESC' : 'ASC'} LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<AuditRow>(sql, args)).rows.map(rowToAudit);
    });
  }

  insertUsage(u: UsageRecord): Promise<boolean> {
    return this.run('insertUsage', async () => {
      const r = await this.pool.query(
        'INSERT INTO usage_records (id, key_id, call_id, direction, seconds, amount, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING',
        [u.id, u.keyId, u.callId, u.direction, u.seconds, u.amount, u.createdAt],
      );
      return r.rowCount === 1;
    });
  }

  sumUsage(keyId: string, fromIso: string, toIso: string): Promise<{ seconds: number; amount: number; calls: number }> {
    return this.run('sumUsage', async () => {
      // SUM(bigint) is numeric and COUNT(*) is bigint: both arrive as strings.
      const { rows } = await this.pool.query<{ seconds: string; amount: string; calls: string }>(
        'SELECT COALESCE(SUM(seconds),0) AS seconds, COALESCE(SUM(amount),0) AS amount, COUNT(*) AS calls FROM usage_records WHERE key_id = $1 AND created_at >= $2 AND created_at < $3',
        [keyId, fromIso, toIso],
      );
      const r = rows[0];
      return { seconds: Number(r?.seconds ?? 0), amount: Number(r?.amount ?? 0), calls: Number(r?.calls ?? 0) };
    });
  }

  listUsage(opts: { keyId?: string | undefined; fromIso: string; toIso: string; limit: number }): Promise<UsageRecord[]> {
    return this.run('listUsage', async () => {
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      let sql = `SELECT * FROM usage_records WHERE created_at >= ${arg(opts.fromIso)} AND created_at < ${arg(opts.toIso)}`;
      if (opts.keyId) sql += ` AND key_id = ${arg(opts.keyId)}`;
      sql += ` ORDER BY created_at, id LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<UsageRow>(sql, args)).rows.map(rowToUsage);
    });
  }

  upsertNumber(n: NumberRecord): Promise<void> {
    return this.run('upsertNumber', async () => {
      await this.pool.query(
        `INSERT INTO numbers (number, target, key_id, srtp, agent, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (number) DO UPDATE SET target = EXCLUDED.target, key_id = EXCLUDED.key_id, srtp = EXCLUDED.srtp, agent = EXCLUDED.agent, updated_at = EXCLUDED.updated_at`,
        [n.number, n.target, n.keyId, n.srtp, n.agent ? JSON.stringify(n.agent) : null, n.createdAt, n.updatedAt],
      );
    });
  }

  getNumber(number: string): Promise<NumberRecord | null> {
    return this.run('getNumber', async () => {
      const { rows } = await this.pool.query<NumberRow>('SELECT * FROM numbers WHERE number = $1', [number]);
      return rows[0] ? rowToNumber(rows[0]) : null;
    });
  }

  listNumbers(opts: { keyId?: string | undefined; limit: number; after?: string | undefined }): Promise<NumberRecord[]> {
    return this.run('listNumbers', async () => {
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      const where: string[] = [];
      if (opts.keyId) where.push(`key_id = ${arg(opts.keyId)}`);
      if (opts.after) where.push(`number > ${arg(opts.after)}`);
      const sql = `SELECT * FROM numbers ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY number LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<NumberRow>(sql, args)).rows.map(rowToNumber);
    });
  }

  deleteNumber(number: string): Promise<boolean> {
    return this.run('deleteNumber', async () => (await this.pool.query('DELETE FROM numbers WHERE number = $1', [number])).rowCount === 1);
  }

  insertCall(c: CallRecord): Promise<void> {
    return this.run('insertCall', async () => {
      await this.pool.query(`INSERT INTO calls (${CALL_COLUMNS.join(', ')}) VALUES (${CALL_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`, callToValues(c));
    });
  }

  updateCall(id: string, patch: CallPatch): Promise<CallRecord | null> {
    return this.run('updateCall', async () => {
      const cols = callPatchColumns(patch);
      if (cols.length === 0) {
        const { rows } = await this.pool.query<CallRow>('SELECT * FROM calls WHERE id = $1', [id]);
        return rows[0] ? rowToCall(rows[0]) : null;
      }
      const args: unknown[] = cols.map((c) => c.value);
      const sets = cols.map((c, i) => `${c.column} = $${i + 1}`).join(', ');
      args.push(id);
      const { rows } = await this.pool.query<CallRow>(`UPDATE calls SET ${sets} WHERE id = $${args.length} RETURNING *`, args);
      return rows[0] ? rowToCall(rows[0]) : null;
    });
  }

  getCall(id: string): Promise<CallRecord | null> {
    return this.run('getCall', async () => {
      const { rows } = await this.pool.query<CallRow>('SELECT * FROM calls WHERE id = $1', [id]);
      return rows[0] ? rowToCall(rows[0]) : null;
    });
  }

  listCalls(opts: { keyId?: string | undefined; limit: number; before?: string | undefined; beforeId?: string | undefined }): Promise<CallRecord[]> {
    return this.run('listCalls', async () => {
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      const where: string[] = [];
      if (opts.keyId) where.push(`key_id = ${arg(opts.keyId)}`);
      const older = olderThan('started_at', opts.before, opts.beforeId, arg);
      if (older) where.push(older);
      const sql = `SELECT * FROM calls ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY started_at DESC, id DESC LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<CallRow>(sql, args)).rows.map(rowToCall);
    });
  }

  insertTrunk(t: TrunkRecord): Promise<void> {
    return this.run('insertTrunk', async () => {
      await this.pool.query(`INSERT INTO trunks (${TRUNK_COLUMNS.join(', ')}) VALUES (${TRUNK_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`, trunkToValues(t, pgBool));
    });
  }

  updateTrunk(id: string, patch: TrunkPatch): Promise<TrunkRecord | null> {
    return this.run('updateTrunk', async () => {
      const cols = trunkPatchColumns(patch, pgBool);
      if (cols.length === 0) return this.getTrunk(id);
      const args: unknown[] = [...cols.map((c) => c.value), id];
      const sets = cols.map((c, i) => `${c.column} = $${i + 1}`).join(', ');
      const { rows } = await this.pool.query<TrunkRow>(`UPDATE trunks SET ${sets} WHERE id = $${args.length} RETURNING *`, args);
      return rows[0] ? rowToTrunk(rows[0]) : null;
    });
  }

  getTrunk(id: string): Promise<TrunkRecord | null> {
    return this.run('getTrunk', async () => {
      const { rows } = await this.pool.query<TrunkRow>('SELECT * FROM trunks WHERE id = $1', [id]);
      return rows[0] ? rowToTrunk(rows[0]) : null;
    });
  }

  listTrunks(opts: { limit: number; after?: string | undefined }): Promise<TrunkRecord[]> {
    return this.run('listTrunks', async () => {
      const { rows } = opts.after
        ? await this.pool.query<TrunkRow>('SELECT * FROM trunks WHERE id > $1 ORDER BY id LIMIT $2', [opts.after, opts.limit])
        : await this.pool.query<TrunkRow>('SELECT * FROM trunks ORDER BY id LIMIT $1', [opts.limit]);
      return rows.map(rowToTrunk);
    });
  }

  deleteTrunk(id: string): Promise<boolean> {
    return this.run('deleteTrunk', async () => (await this.pool.query('DELETE FROM trunks WHERE id = $1', [id])).rowCount === 1);
  }

  insertWebhookEndpoint(e: WebhookEndpoint): Promise<void> {
    return this.run('insertWebhookEndpoint', async () => {
      await this.pool.query(
        `INSERT INTO webhook_endpoints (${WEBHOOK_ENDPOINT_COLUMNS.join(', ')}) VALUES (${WEBHOOK_ENDPOINT_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
        webhookEndpointToValues(e, pgBool),
      );
    });
  }

  listWebhookEndpoints(opts: { keyId?: string | null | undefined; limit: number; after?: string | undefined }): Promise<WebhookEndpoint[]> {
    return this.run('listWebhookEndpoints', async () => {
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      const where: string[] = [];
      if (opts.keyId === null) where.push('key_id IS NULL');
      else if (opts.keyId !== undefined) where.push(`key_id = ${arg(opts.keyId)}`);
      if (opts.after) where.push(`id > ${arg(opts.after)}`);
      const sql = `SELECT * FROM webhook_endpoints ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<WebhookEndpointRow>(sql, args)).rows.map(rowToWebhookEndpoint);
    });
  }

  getWebhookEndpoint(id: string): Promise<WebhookEndpoint | null> {
    return this.run('getWebhookEndpoint', async () => {
      const { rows } = await this.pool.query<WebhookEndpointRow>('SELECT * FROM webhook_endpoints WHERE id = $1', [id]);
      return rows[0] ? rowToWebhookEndpoint(rows[0]) : null;
    });
  }

  deleteWebhookEndpoint(id: string): Promise<boolean> {
    return this.run('deleteWebhookEndpoint', () =>
      this.tx(async (c) => {
        const removed = (await c.query('DELETE FROM webhook_endpoints WHERE id = $1', [id])).rowCount === 1;
        if (removed) {
          await c.query(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = $1, updated_at = $2 WHERE endpoint_id = $3 AND status = 'pending'",
            [ENDPOINT_REMOVED, new Date().toISOString(), id],
          );
        }
        return removed;
      }),
    );
  }

  endpointsFor(keyId: string | null, eventType: string): Promise<WebhookEndpoint[]> {
    return this.run('endpointsFor', async () => {
      const { rows } = keyId === null
        ? await this.pool.query<WebhookEndpointRow>('SELECT * FROM webhook_endpoints WHERE enabled AND key_id IS NULL ORDER BY id')
        : await this.pool.query<WebhookEndpointRow>('SELECT * FROM webhook_endpoints WHERE enabled AND (key_id = $1 OR key_id IS NULL) ORDER BY id', [keyId]);
      return rows.map(rowToWebhookEndpoint).filter((e) => subscribes(e, eventType));
    });
  }

  insertDelivery(d: WebhookDelivery): Promise<void> {
    return this.run('insertDelivery', async () => {
      await this.pool.query(
        `INSERT INTO webhook_deliveries (${WEBHOOK_DELIVERY_COLUMNS.join(', ')}) VALUES (${WEBHOOK_DELIVERY_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
        webhookDeliveryToValues(d),
      );
    });
  }

  updateDelivery(id: string, patch: WebhookDeliveryPatch): Promise<WebhookDelivery | null> {
    return this.run('updateDelivery', async () => {
      const cols = deliveryPatchColumns(patch);
      if (cols.length === 0) return this.getDelivery(id);
      const args: unknown[] = [...cols.map((c) => c.value), id];
      const sets = cols.map((c, i) => `${c.column} = $${i + 1}`).join(', ');
      const { rows } = await this.pool.query<WebhookDeliveryRow>(`UPDATE webhook_deliveries SET ${sets} WHERE id = $${args.length} RETURNING *`, args);
      return rows[0] ? rowToWebhookDelivery(rows[0]) : null;
    });
  }

  getDelivery(id: string): Promise<WebhookDelivery | null> {
    return this.run('getDelivery', async () => {
      const { rows } = await this.pool.query<WebhookDeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = $1', [id]);
      return rows[0] ? rowToWebhookDelivery(rows[0]) : null;
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
    return this.run('listDeliveries', async () => {
      const args: unknown[] = [];
      const arg = (v: unknown): string => `$${args.push(v)}`;
      const where: string[] = [];
      if (opts.keyId === null) where.push('key_id IS NULL');
      else if (opts.keyId !== undefined) where.push(`key_id = ${arg(opts.keyId)}`);
      if (opts.endpointId) where.push(`endpoint_id = ${arg(opts.endpointId)}`);
      if (opts.status) where.push(`status = ${arg(opts.status)}`);
      const older = olderThan('created_at', opts.before, opts.beforeId, arg);
      if (older) where.push(older);
      const sql = `SELECT * FROM webhook_deliveries ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id DESC LIMIT ${arg(opts.limit)}`;
      return (await this.pool.query<WebhookDeliveryRow>(sql, args)).rows.map(rowToWebhookDelivery);
    });
  }

  claimDueDeliveries(nowIso: string, limit: number, leaseUntilIso: string): Promise<WebhookDelivery[]> {
    return this.run('claimDueDeliveries', async () => {
      // SKIP LOCKED: concurrent claimers on other nodes pass over rows another claimer is
      // leasing right now instead of waiting for them, and never take the same row.
      const { rows } = await this.pool.query<WebhookDeliveryRow>(
        `UPDATE webhook_deliveries d SET next_attempt_at = $1
         FROM (
           SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
           ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
         ) due
         WHERE d.id = due.id
         RETURNING d.*`,
        [isoCursor(leaseUntilIso), isoCursor(nowIso), limit],
      );
      return rows.map(rowToWebhookDelivery);
    });
  }

  consumeTokenId(jti: string, expiresAt: string): Promise<boolean> {
    return this.run('consumeTokenId', async () => {
      const r = await this.pool.query('INSERT INTO used_token_ids (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING', [
        jti,
        expiresAt,
      ]);
      return r.rowCount === 1;
    });
  }

  purgeExpiredTokenIds(now: string): Promise<number> {
    return this.run('purgeExpiredTokenIds', async () => {
      const r = await this.pool.query('DELETE FROM used_token_ids WHERE expires_at < $1', [now]);
      return r.rowCount ?? 0;
    });
  }

  /** Runs `fn` in one transaction on one pooled client; rolls back on any error. */
  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken = false;
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await c.query('ROLLBACK');
      } catch {
        broken = true; // the connection is in an unknown state: do not return it to the pool
      }
      throw err;
    } finally {
      c.release(broken);
    }
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.storeError(what, err);
    }
  }

  private storeError(what: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const raw = err instanceof Error ? err.message : String(err);
    let message = raw;
    for (const s of this.secrets) message = message.split(s).join('[redacted]');
    // If the driver's message carried the URL or password, its cause might too: drop it.
    return new StoreError(`postgres ${what} failed: ${message}`, message === raw ? { cause: err } : undefined);
  }
}

/**
 * Appends to the key change feed inside the key write's transaction. The advisory lock is held
 * until COMMIT and taken before the seq is drawn, so changes commit in seq order: without it a
 * change could commit after a higher seq that a reader has already passed, and never be read.
 * Key writes are rare; the lock is held only for this insert and the commit.
 */
async function recordKeyChange(c: pg.PoolClient, keyId: string): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [KEY_CHANGES_LOCK]);
  await c.query('INSERT INTO key_changes (key_id, at) VALUES ($1, $2)', [keyId, new Date().toISOString()]);
}

/** Applies a patch to a key and records the change, in the caller's transaction. */
async function patchKey(c: pg.PoolClient, id: string, patch: KeyPatch, updatedAt: string): Promise<KeyRecord | null> {
  const args: unknown[] = [];
  const arg = (v: unknown): string => `$${args.push(v)}`;
  const sets: string[] = [`updated_at = ${arg(updatedAt)}`];
  for (const [field, v] of Object.entries(patch)) {
    const col = PATCH_COLUMNS[field];
    if (!col || v === undefined) continue;
    sets.push(`${col} = ${arg(patchValue(col, v, pgBool))}`);
  }
  const { rows } = await c.query<KeyRow>(`UPDATE api_keys SET ${sets.join(', ')} WHERE id = ${arg(id)} RETURNING *`, args);
  if (!rows[0]) return null;
  await recordKeyChange(c, id);
  return rowToKey(rows[0]);
}

function insertSecret(c: pg.PoolClient, s: SecretRecord): Promise<pg.QueryResult> {
  return c.query(`INSERT INTO key_secrets (${SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
    s.id,
    s.keyId,
    s.hash,
    s.ha1Md5,
    s.ha1Sha256,
    s.createdAt,
    s.expiresAt,
  ]);
}

/** The URL itself and its password (raw and decoded), longest first, for scrubbing messages. */
function secretsOf(url: string): string[] {
  const out = new Set<string>([url]);
  try {
    const u = new URL(url);
    if (u.password) {
      out.add(u.password);
      try {
        out.add(decodeURIComponent(u.password));
      } catch {
        // malformed escape: the raw form is enough
      }
    }
  } catch {
    // not a URL (e.g. a socket path): scrub the whole string only
  }
  return [...out].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
}
