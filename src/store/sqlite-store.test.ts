import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { storeContract } from './store-contract.js';
import { SqliteStore } from './sqlite-store.js';
import { SQLITE_MIGRATIONS } from './migrations.js';
import { StoreError } from '../errors/index.js';
import type { KeyRecord, SecretRecord } from './key-record.js';

const sampleKey = (id: string): KeyRecord => ({
  id, name: 'k', mode: 'live', status: 'active', role: null, scopes: [], allowedCidrs: [], allowedCountries: [], blockedPrefixes: [], callsPerSecond: 1, cpsBurst: 1,
  maxConcurrentCalls: 1, budget: null, maxCallDurationSec: 60, callerIds: [], requireTls: false, attestation: null, hint: 'h', expiresAt: null,
  createdAt: '2026-01-01T00:00:00.000Z', createdBy: 'test', updatedAt: '2026-01-01T00:00:00.000Z', lastUsedAt: null, revokedAt: null,
});
const sampleSecret = (keyId: string, hash: string): SecretRecord => ({
  id: `sec_${keyId}`, keyId, hash, ha1Md5: 'x', ha1Sha256: 'y', createdAt: '2026-01-01T00:00:00.000Z', expiresAt: null,
});

const dir = mkdtempSync(join(tmpdir(), 'tollgate-sqlite-'));
storeContract('sqlite', () => Promise.resolve(new SqliteStore(join(dir, 'test.db'))), () => {
  rmSync(dir, { recursive: true, force: true });
  return Promise.resolve();
});

describe('SqliteStore key change feed, read synchronously', () => {
  const feedDir = mkdtempSync(join(tmpdir(), 'tollgate-sqlite-feed-'));
  afterAll(() => rmSync(feedDir, { recursive: true, force: true }));

  it('data_version moves when another connection (process) commits, not for this connection\'s own writes', async () => {
    const path = join(feedDir, 'feed.db');
    const gateway = new SqliteStore(path);
    const cli = new SqliteStore(path);
    try {
      await gateway.migrate();
      await cli.migrate();
      const feed = gateway.syncKeyChanges;
      const v0 = feed.dataVersion();
      const k = sampleKey('key_feedown');
      await gateway.insertKey(k, sampleSecret(k.id, 'a'.repeat(64)));
      expect(feed.dataVersion()).toBe(v0);
      const own = feed.keyChangesAfter(0, 10);
      expect(own.changes.map((c) => c.keyId)).toEqual([k.id]);

      await cli.updateKey(k.id, { status: 'revoked', revokedAt: '2026-01-01T00:00:00.000Z' }, '2026-01-01T00:00:00.000Z');
      const v1 = feed.dataVersion();
      expect(v1).not.toBe(v0);
      expect(feed.dataVersion()).toBe(v1);
      const seen = feed.keyChangesAfter(own.newestSeq, 10);
      expect(seen.changes.map((c) => c.keyId)).toEqual([k.id]);
      expect(seen).toEqual(await gateway.keyChangesAfter(own.newestSeq, 10));
    } finally {
      await cli.close();
      await gateway.close();
    }
    expect(() => gateway.syncKeyChanges.dataVersion()).toThrow(StoreError);
  });
});

describe('SqliteStore migrations', () => {
  const upgradeDir = mkdtempSync(join(tmpdir(), 'tollgate-sqlite-upgrade-'));
  afterAll(() => rmSync(upgradeDir, { recursive: true, force: true }));

  it('upgrades a version-6 database: call records survive the calls table rebuild, and api may end a call', async () => {
    const path = join(upgradeDir, 'v6.db');
    const db = new Database(path);
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((x) => x.version <= 6)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, '2026-01-01T00:00:00.000Z');
    }
    const id = 'CA' + '5'.repeat(32);
    db.prepare(
      `INSERT INTO calls (id, key_id, direction, from_number, to_number, target, sip_call_id, status, started_at, answered_at, ended_at, end_reason, ended_by, billable_seconds, details)
       VALUES (?, 'key_old', 'inbound', '+1', '+2', 'echo', 'sip-1', 'ended', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:31.000Z', 'remote-bye', 'caller', 30, '{"cost":3}')`,
    ).run(id);
    expect(() => db.prepare("UPDATE calls SET ended_by = 'api' WHERE id = ?").run(id)).toThrow(/CHECK/);
    db.close();
    const store = new SqliteStore(path);
    try {
      await store.migrate();
      expect(await store.getCall(id)).toMatchObject({ id, sipCallId: 'sip-1', endReason: 'remote-bye', endedBy: 'caller', billableSeconds: 30, details: { cost: 3 } });
      expect((await store.updateCall(id, { endedBy: 'api' }))?.endedBy).toBe('api');
      expect((await store.listCalls({ keyId: 'key_old', limit: 10 })).map((c) => c.id)).toEqual([id]);
    } finally {
      await store.close();
    }
  });

  it('upgrades a version-2 database: existing numbers read back with agent null, calls table usable', async () => {
    const path = join(upgradeDir, 'v2.db');
    const db = new Database(path);
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((x) => x.version <= 2)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(m.version, '2026-01-01T00:00:00.000Z');
    }
    db.prepare(
      `INSERT INTO api_keys (id, name, mode, status, role, scopes, allowed_cidrs, allowed_countries, blocked_prefixes, calls_per_second, cps_burst,
        max_concurrent_calls, budget, max_call_duration_sec, caller_ids, require_tls, hint, expires_at, created_at, created_by, updated_at, last_used_at, revoked_at)
       VALUES ('key_old', 'old', 'live', 'active', NULL, '[]', '[]', '[]', '[]', 1, 1, 1, 'null', 60, '[]', 0, 'h', NULL, 't', 'cli', 't', NULL, NULL)`,
    ).run();
    db.prepare("INSERT INTO numbers (number, target, key_id, srtp, created_at, updated_at) VALUES ('+14155550111', 'echo', 'key_old', 'off', 't0', 't1')").run();
    db.close();

    const store = new SqliteStore(path);
    try {
      await store.migrate();
      expect(await store.getNumber('+14155550111')).toEqual({ number: '+14155550111', target: 'echo', keyId: 'key_old', srtp: 'off', agent: null, createdAt: 't0', updatedAt: 't1' });
      expect(SQLITE_MIGRATIONS.map((m) => m.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(await store.listCalls({ limit: 10 })).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
