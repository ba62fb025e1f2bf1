import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.TOLLGATE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.TOLLGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface Backend {
  readonly name: string;
  /** TOLLGATE_* variables selecting this backend. */
  readonly env: Record<string, string>;
  cleanup(): Promise<void>;
}

/** The embedded default: SQLite file in the data dir and in-memory counters. */
export function embeddedBackend(): Backend {
  return { name: 'sqlite + memory', env: {}, cleanup: () => Promise.resolve() };
}

/** PostgreSQL in a fresh schema and Redis under a fresh prefix; cleanup drops both. */
export function clusterBackend(): Backend {
  const tag = `tgt_${randomBytes(6).toString('hex')}`;
  return {
    name: 'postgres + redis',
    env: {
      TOLLGATE_STORE__DRIVER: 'postgres',
      TOLLGATE_STORE__POSTGRES__URL: PG_URL,
      TOLLGATE_STORE__POSTGRES__SCHEMA: tag,
      TOLLGATE_COUNTERS__DRIVER: 'redis',
      TOLLGATE_COUNTERS__REDIS__URL: REDIS_URL,
      TOLLGATE_COUNTERS__REDIS__KEY_PREFIX: `${tag}:`,
    },
    async cleanup() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${tag} CASCADE`);
      await c.end();
      const { Redis } = await import('ioredis');
      const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await r.connect();
      let cursor = '0';
      let rounds = 0;
      do {
        const [next, keys] = await r.scan(cursor, 'MATCH', `${tag}:*`, 'COUNT', 1000);
        if (keys.length) await r.del(...keys);
        cursor = next;
      } while (cursor !== '0' && ++rounds < 10_000);
      r.disconnect();
    },
  };
}
