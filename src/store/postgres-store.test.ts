import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, it, expect } from 'vitest';
import { storeContract } from './store-contract.js';
import { PostgresStore } from './postgres-store.js';
import { StoreError } from '../errors/index.js';

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
