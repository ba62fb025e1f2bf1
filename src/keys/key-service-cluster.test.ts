import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { AuditLog, deriveAuditKey } from '../audit/index.js';
import { createLogger } from '../observability/logger.js';
import type { RevocationBus } from './revocation-bus.js';
import { LocalRevocationBus } from '../policy/memory-counters.js';
import { RedisRevocationBus } from '../policy/redis-counters.js';
import { PostgresStore } from '../store/postgres-store.js';
import { KeyService, type KeyServiceOptions } from './key-service.js';

const url = process.env.TOLLGATE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const schema = `tgk_${randomBytes(6).toString('hex')}`;
const log = createLogger({ level: 'silent' });
const masterKey = randomBytes(32);
const opts: KeyServiceOptions = {
  pepper: randomBytes(32),
  masterKey,
  realm: 'tollgate',
  rotationGraceSec: 86_400,
  cache: { maxEntries: 1000, ttlMs: 3_600_000 }, // only a change notice can make it forget
  changeFeed: { pollIntervalMs: 100 },
  defaults: { scopes: ['calls:inbound', 'usage:read'], callsPerSecond: 1, cpsBurst: 1, maxConcurrentCalls: 2, maxCallDurationSec: 3600, allowedCountries: ['US'] },
};

/** One process on the shared schema: its own pool, cache and bus. */
function processOn(bus: RevocationBus): { keys: KeyService; close(): Promise<void> } {
  const store = new PostgresStore({ url, poolSize: 2, schema });
  const keys = new KeyService(store, new AuditLog(store, deriveAuditKey(masterKey), log), bus, opts, log);
  return {
    keys,
    async close() {
      keys.close();
      await bus.close();
      await store.close();
    },
  };
}

/** The next `n` key ids the service's listeners hear. */
const changes = (keys: KeyService, n: number): Promise<string[]> =>
  new Promise((res) => {
    const ids: string[] = [];
    const off = keys.onChange((id) => {
      if (ids.push(id) < n) return;
      off();
      res(ids);
    });
  });
const nextChange = async (keys: KeyService): Promise<string> => (await changes(keys, 1))[0]!;

describe('KeyService on PostgreSQL: changes made by another process', () => {
  const open: { close(): Promise<void> }[] = [];
  beforeAll(async () => {
    const s = new PostgresStore({ url, poolSize: 1, schema });
    await s.migrate();
    await s.close();
  });
  beforeEach(() => {
    // Only the poll's interval is faked: the test decides when a poll runs; I/O stays real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  });
  afterEach(async () => {
    vi.useRealTimers();
    await Promise.all(open.splice(0).map((p) => p.close()));
  });
  afterAll(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await c.end();
    }
  });

  it('without a bus (the CLI on memory counters), the next poll of the feed applies it and tells listeners', async () => {
    const gateway = processOn(new LocalRevocationBus());
    const cli = processOn(new LocalRevocationBus());
    open.push(gateway, cli);
    await gateway.keys.start();
    const { key, secret } = await cli.keys.create({ name: 'trunk' }, 'cli:test');
    expect((await gateway.keys.verify(secret)).ok).toBe(true); // cached for an hour
    const heard = changes(gateway.keys, 2);
    await cli.keys.revoke(key.id, 'leaked', 'cli:test');
    // No poll has run: on PostgreSQL the feed is read on a timer, not per lookup.
    expect((await gateway.keys.verify(secret)).ok).toBe(true);
    await vi.advanceTimersByTimeAsync(100);
    expect(await heard).toEqual([key.id, key.id]); // created, then revoked: each once
    expect(await gateway.keys.verify(secret)).toEqual({ ok: false, code: 'KEY_REVOKED', keyId: key.id });
  });

  it('with the Redis bus, the notice applies it at once, and the poll does not tell listeners twice', async () => {
    const channel = `tollgate-test:${randomBytes(6).toString('hex')}:revocations`;
    const busA = new RedisRevocationBus({ url: redisUrl, channel });
    const busB = new RedisRevocationBus({ url: redisUrl, channel });
    await Promise.all([busA.ready(), busB.ready()]);
    const gateway = processOn(busA);
    const other = processOn(busB);
    open.push(gateway, other);
    await gateway.keys.start();
    const created = changes(gateway.keys, 2);
    const { key, secret } = await other.keys.create({ name: 'trunk' }, 'test');
    const { key: second } = await other.keys.create({ name: 'second' }, 'test');
    expect(await created).toEqual([key.id, second.id]);
    expect((await gateway.keys.verify(secret)).ok).toBe(true);

    const heard: string[] = [];
    gateway.keys.onChange((id) => heard.push(id));
    const revoked = nextChange(gateway.keys);
    await other.keys.revoke(key.id, undefined, 'test');
    expect(await revoked).toBe(key.id); // no poll ran: the bus did it
    expect(await gateway.keys.verify(secret)).toMatchObject({ ok: false, code: 'KEY_REVOKED' });

    // Polls after the notice read past the revocation without repeating it.
    await vi.advanceTimersByTimeAsync(300);
    const updated = nextChange(gateway.keys);
    await other.keys.update(second.id, { callsPerSecond: 2 }, 'test');
    expect(await updated).toBe(second.id);
    expect(heard).toEqual([key.id, second.id]);
  });
});
