import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, it, expect } from 'vitest';
import { storeContract } from './store-contract.js';
import { PostgresStore } from './postgres-store.js';
import { StoreError } from '../errors/index.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';

const url = process.env.TOLLGATE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
// A fresh schema per run so parallel runs never share tables. Kept short: the key scanner
// flags tg_(live|test)_ followed by 30+ alphanumerics.
const schema = `tgt_${randomBytes(6).toString('hex')}`;

storeContract(
  'postgres',
  () => Promise.resolve(new PostgresStore({ url, poolSize: 5, schema })),
  async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await client.end();
    }
  },
);

describe('PostgresStore', () => {
  it('reports faults as StoreError without the connection URL or its password', async () => {
    const store = new PostgresStore({ url: 'postgres://tguser:hunter2secret@127.0.0.1:1/nowhere', poolSize: 1 });
    try {
      const err: unknown = await store.getKey('key_x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).message).toMatch(/^postgres getKey failed: /);
      expect((err as StoreError).message).not.toContain('hunter2secret');
      expect((err as StoreError).message).not.toContain('postgres://');
    } finally {
      await store.close();
      await store.close(); // idempotent
    }
  });

  it('refuses a schema name that is not a plain identifier', () => {
    expect(() => new PostgresStore({ url, poolSize: 1, schema: 'x; DROP TABLE y' })).toThrow(StoreError);
  });
});

describe('PostgresStore migrations', () => {
  it('upgrades a version-2 schema: existing numbers read back with agent null, calls table usable', async () => {
    const old = `tgu_${randomBytes(6).toString('hex')}`;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA "${old}"`);
      await client.query(`SET search_path TO "${old}"`);
      await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
      for (const m of POSTGRES_MIGRATIONS.filter((x) => x.version <= 2)) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [m.version, '2026-01-01T00:00:00.000Z']);
      }
      await client.query(
        `INSERT INTO api_keys (id, name, mode, status, role, scopes, allowed_cidrs, allowed_countries, blocked_prefixes, calls_per_second, cps_burst,
          max_concurrent_calls, budget, max_call_duration_sec, caller_ids, require_tls, hint, expires_at, created_at, created_by, updated_at, last_used_at, revoked_at)
         VALUES ('key_old', 'old', 'live', 'active', NULL, '[]', '[]', '[]', '[]', 1, 1, 1, NULL, 60, '[]', false, 'h', NULL, 't', 'cli', 't', NULL, NULL)`,
      );
      await client.query("INSERT INTO numbers (number, target, key_id, srtp, created_at, updated_at) VALUES ('+14155550111', 'echo', 'key_old', 'off', 't0', 't1')");
      const store = new PostgresStore({ url, poolSize: 2, schema: old });
      try {
        await store.migrate();
        await store.migrate();
        expect(await store.getNumber('+14155550111')).toEqual({ number: '+14155550111', target: 'echo', keyId: 'key_old', srtp: 'off', agent: null, createdAt: 't0', updatedAt: 't1' });
        expect(POSTGRES_MIGRATIONS.map((m) => m.version)).toEqual([1, 2, 3, 4, 5, 6, 7]);
        expect(await store.listCalls({ limit: 10 })).toEqual([]);
      } finally {
        await store.close();
      }
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS "${old}" CASCADE`);
      await client.end();
    }
  });
});
