import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../store/sqlite-store.js';
import { createLogger } from '../observability/logger.js';
import { AuditLog, GENESIS_HASH, deriveAuditKey, hashEntry } from './audit-log.js';

interface Row {
  seq: number;
  ts: string;
  actor: string;
  action: string;
  target: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

describe('AuditLog with SqliteStore', () => {
  let dir: string;
  let dbPath: string;
  let store: SqliteStore;
  let audit: AuditLog;
  const masterKey = randomBytes(32);
  const chainKey = deriveAuditKey(masterKey);
  let now = Date.UTC(2025, 0, 1, 12, 0, 0);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tollgate-audit-'));
    dbPath = join(dir, 'audit.db');
    store = new SqliteStore(dbPath);
    await store.migrate();
    audit = new AuditLog(store, chainKey, createLogger({ level: 'silent' }), () => (now += 1000));
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function appendN(n: number): Promise<void> {
    for (let i = 1; i <= n; i++) {
      await audit.append({ actor: `user:${i % 3}`, action: 'key.create', target: `key_${i}`, details: { n: i, scopes: ['calls:read'], note: `entry ${i}` } });
    }
  }

  /** Runs `fn` on a second, independent connection to the same database file. */
  function tamper(fn: (db: Database.Database) => void): void {
    const db = new Database(dbPath);
    try {
      db.pragma('busy_timeout = 5000');
      fn(db);
    } finally {
      db.close();
    }
  }

  const rowAt = (db: Database.Database, seq: number): Row => db.prepare('SELECT * FROM audit_log WHERE seq = ?').get(seq) as Row;

  it('an empty log verifies ok with 0 entries', async () => {
    expect(await audit.verify()).toEqual({ ok: true, entries: 0, headSeq: 0, headHash: GENESIS_HASH });
  });

  it('appends entries with consecutive seq numbers, each linked to the previous hash', async () => {
    await appendN(4);
    const entries = await audit.list({ limit: 10 });
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(entries[0]!.prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.prevHash).toBe(entries[i - 1]!.hash);
    expect(entries[2]).toMatchObject({ actor: 'user:0', action: 'key.create', target: 'key_3', details: { n: 3, scopes: ['calls:read'], note: 'entry 3' } });
  });

  it('an untouched chain of N entries verifies ok with entries=N and headSeq=N, across pages', async () => {
    const n = 12;
    await appendN(n);
    const entries = await audit.list({ limit: 100 });
    const expected = { ok: true, entries: n, headSeq: n, headHash: entries[n - 1]!.hash };
    expect(await audit.verify()).toEqual(expected);
    // Page boundaries (5, 5, 2) must not break the walk.
    expect(await audit.verify(5)).toEqual(expected);
    expect(await audit.verify(1)).toEqual(expected);
  });

  it('an edited entry is reported as "edited" at its seq', async () => {
    await appendN(6);
    tamper((db) => {
      db.prepare('UPDATE audit_log SET details = ? WHERE seq = 4').run(JSON.stringify({ n: 4, scopes: ['keys:admin'], note: 'entry 4' }));
    });
    const v = await audit.verify(2);
    expect(v).toMatchObject({ ok: false, seq: 4, problem: 'edited', entries: 4 });
  });

  it('an edit of the actor or timestamp is also reported as "edited"', async () => {
    await appendN(3);
    tamper((db) => db.prepare("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2").run());
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 2, problem: 'edited' });
  });

  it('a deleted middle entry is reported as "deleted_before" at the following seq', async () => {
    await appendN(6);
    tamper((db) => db.prepare('DELETE FROM audit_log WHERE seq = 3').run());
    const v = await audit.verify();
    expect(v).toMatchObject({ ok: false, seq: 4, problem: 'deleted_before' });
  });

  it('a deleted first entry is reported at seq 2', async () => {
    await appendN(3);
    tamper((db) => db.prepare('DELETE FROM audit_log WHERE seq = 1').run());
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 2, problem: 'deleted_before' });
  });

  it('two rows with swapped contents are reported at the first swapped seq', async () => {
    await appendN(6);
    tamper((db) => {
      const a = rowAt(db, 2);
      const b = rowAt(db, 5);
      const put = db.prepare('UPDATE audit_log SET ts = ?, actor = ?, action = ?, target = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?');
      db.transaction(() => {
        put.run(b.ts, b.actor, b.action, b.target, b.details, b.prev_hash, b.hash, 2);
        put.run(a.ts, a.actor, a.action, a.target, a.details, a.prev_hash, a.hash, 5);
      })();
    });
    const v = await audit.verify();
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.seq).toBe(2);
    expect(['edited', 'reordered']).toContain(v.problem);
  });

  it('an edited entry re-hashed under a chain key from another master key is still detected', async () => {
    await appendN(5);
    const forgedKey = deriveAuditKey(randomBytes(32));
    expect(forgedKey.equals(chainKey)).toBe(false);
    tamper((db) => {
      const r = rowAt(db, 3);
      const details = { n: 3, scopes: ['keys:admin'], note: 'entry 3' };
      const hash = hashEntry(forgedKey, { seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, details, prevHash: r.prev_hash });
      db.prepare('UPDATE audit_log SET details = ?, hash = ? WHERE seq = 3').run(JSON.stringify(details), hash);
    });
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 3, problem: 'edited' });
  });

  it('an entry re-hashed with the real chain key still breaks the link to the next entry', async () => {
    await appendN(5);
    tamper((db) => {
      const r = rowAt(db, 3);
      const details = { n: 3, scopes: ['keys:admin'], note: 'entry 3' };
      const hash = hashEntry(chainKey, { seq: r.seq, ts: r.ts, actor: r.actor, action: r.action, target: r.target, details, prevHash: r.prev_hash });
      db.prepare('UPDATE audit_log SET details = ?, hash = ? WHERE seq = 3').run(JSON.stringify(details), hash);
    });
    expect(await audit.verify()).toMatchObject({ ok: false, seq: 4, problem: 'reordered' });
  });

  it('a log written with one chain key does not verify under another', async () => {
    await appendN(2);
    const other = new AuditLog(store, deriveAuditKey(randomBytes(32)), createLogger({ level: 'silent' }));
    expect(await other.verify()).toMatchObject({ ok: false, seq: 1, problem: 'edited' });
  });
});

describe('hashEntry', () => {
  const key = deriveAuditKey(Buffer.alloc(32, 1));
  const base = { seq: 7, ts: '2025-01-01T00:00:00.000Z', actor: 'admin', action: 'key.revoke', target: 'key_1', prevHash: GENESIS_HASH };

  it('does not depend on the order of keys in details, at any depth', () => {
    const h1 = hashEntry(key, { ...base, details: { a: 1, b: { x: [1, 2], y: 'z' }, c: null } });
    const h2 = hashEntry(key, { ...base, details: { c: null, b: { y: 'z', x: [1, 2] }, a: 1 } });
    expect(h1).toBe(h2);
    expect(h1).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes when any detail value, the seq or the previous hash changes', () => {
    const h = hashEntry(key, { ...base, details: { a: 1 } });
    expect(hashEntry(key, { ...base, details: { a: 2 } })).not.toBe(h);
    expect(hashEntry(key, { ...base, seq: 8, details: { a: 1 } })).not.toBe(h);
    expect(hashEntry(key, { ...base, prevHash: '1'.repeat(64), details: { a: 1 } })).not.toBe(h);
    expect(hashEntry(deriveAuditKey(Buffer.alloc(32, 2)), { ...base, details: { a: 1 } })).not.toBe(h);
  });

  it('derives the same chain key from the same master key', () => {
    expect(deriveAuditKey(Buffer.alloc(32, 1)).equals(key)).toBe(true);
    expect(key).toHaveLength(32);
  });
});
