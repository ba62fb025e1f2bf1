import { describe, it, expect, afterAll } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { CountersError } from '../errors/index.js';
import { countersContract } from './counters-contract.js';
import { RedisCounters, RedisRevocationBus } from './redis-counters.js';

const url = process.env.TOLLGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const keyPrefix = `tollgate-test:${randomUUID()}:`;
const opened: { close(): Promise<void> }[] = [];

function counters(): RedisCounters {
  const c = new RedisCounters({ url, keyPrefix });
  opened.push(c);
  return c;
}

afterAll(async () => {
  await Promise.all(opened.map((c) => c.close()));
  const admin = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await admin.del(...keys);
    } while (cursor !== '0');
  } finally {
    await admin.quit();
  }
});

// Redis keeps time on its own clock, so waits are real; TTLs ×5 keep a loaded machine's delays well inside them.
countersContract('redis', () => Promise.resolve(counters()), { scale: 5, pass: (ms) => new Promise((r) => setTimeout(r, ms)) });

describe('RedisCounters across nodes', () => {
  it('two nodes share one CPS bucket', async () => {
    const a = counters();
    const b = counters();
    const bucket = `cps:${randomUUID()}`;
    expect((await a.rateLimit(bucket, 1, 2)).allowed).toBe(true);
    expect((await b.rateLimit(bucket, 1, 2)).allowed).toBe(true);
    const refused = await a.rateLimit(bucket, 1, 2);
    expect(refused.allowed).toBe(false);
    expect(Number.isInteger(refused.retryAfterMs)).toBe(true);
    expect((await b.rateLimit(bucket, 1, 2)).allowed).toBe(false);
  });

  it('a member claimed on one node is a replay on the other (digest nonce counts)', async () => {
    const a = counters();
    const b = counters();
    const set = `nc:${randomUUID()}`;
    expect(await a.claimOnce(set, '00000001', 10_000, 100)).toBe(true);
    expect(await b.claimOnce(set, '00000001', 10_000, 100)).toBe(false);
    const both = await Promise.all([a.claimOnce(set, '00000002', 10_000, 100), b.claimOnce(set, '00000002', 10_000, 100)]);
    expect(both.filter(Boolean)).toHaveLength(1);
  });

  it('two nodes share one lease pool', async () => {
    const a = counters();
    const b = counters();
    const pool = `pool:${randomUUID()}`;
    expect(await a.acquireLease(pool, 'call-a', 2, 10_000)).toEqual({ acquired: true, active: 1 });
    expect(await b.acquireLease(pool, 'call-b', 2, 10_000)).toEqual({ acquired: true, active: 2 });
    expect(await a.acquireLease(pool, 'call-c', 2, 10_000)).toEqual({ acquired: false, active: 2 });
    expect(await a.renewLease(pool, 'call-b', 10_000)).toBe(true);
    await a.releaseLease(pool, 'call-b');
    expect(await b.countLeases(pool)).toBe(1);
    expect((await b.acquireLease(pool, 'call-c', 2, 10_000)).acquired).toBe(true);
  });

  it('concurrent acquisitions from two nodes never exceed the maximum', async () => {
    const a = counters();
    const b = counters();
    const pool = `pool:${randomUUID()}`;
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).acquireLease(pool, `call-${i}`, 5, 10_000)),
    );
    expect(results.filter((r) => r.acquired)).toHaveLength(5);
    expect(await a.countLeases(pool)).toBe(5);
  });

  it('two nodes share one budget account and settle once', async () => {
    const a = counters();
    const b = counters();
    const account = `budget:${randomUUID()}`;
    expect(await a.reserveBudget(account, 'r1', 60, 100, 10_000, 10)).toEqual({ kind: 'reserved', spent: 10, reserved: 60 });
    // The seed is ignored once the account exists.
    expect(await b.reserveBudget(account, 'r2', 40, 100, 10_000, 0)).toEqual({ kind: 'insufficient', spent: 10, reserved: 60 });
    await b.settleBudget(account, 'r1', 25);
    await a.settleBudget(account, 'r1', 25);
    expect(await a.budgetState(account)).toEqual({ spent: 35, reserved: 0 });
  });

  it('budget and lease keys carry a TTL', async () => {
    const c = counters();
    const account = `budget:${randomUUID()}`;
    const pool = `pool:${randomUUID()}`;
    await c.reserveBudget(account, 'r1', 1, 100, 10_000, 0);
    await c.acquireLease(pool, 'a', 1, 10_000);
    const admin = new Redis(url, { maxRetriesPerRequest: 1 });
    try {
      const keys = await admin.keys(`${keyPrefix}*${account}*`);
      expect(keys.length).toBeGreaterThanOrEqual(3);
      for (const k of keys) expect(await admin.pttl(k)).toBeGreaterThan(30 * 24 * 3600 * 1000);
      const leaseTtl = await admin.pttl(`${keyPrefix}lease:${pool}`);
      expect(leaseTtl).toBeGreaterThan(0);
      expect(leaseTtl).toBeLessThanOrEqual(10_002);
    } finally {
      await admin.quit();
    }
  });

  it('close is idempotent and later calls fail with CountersError', async () => {
    const c = counters();
    await c.close();
    await c.close();
    await expect(c.countLeases('x')).rejects.toBeInstanceOf(CountersError);
  });
});

describe('RedisRevocationBus', () => {
  it('delivers a published keyId to a subscriber on another connection, despite a faulty listener', async () => {
    const channel = `${keyPrefix}revocations`;
    const publisher = new RedisRevocationBus({ url, channel });
    const listener = new RedisRevocationBus({ url, channel });
    opened.push(publisher, listener);
    listener.subscribe(() => {
      throw new Error('faulty listener');
    });
    const received = new Promise<string>((resolve) => listener.subscribe(resolve));
    await listener.ready();
    await publisher.publish('key_1');
    await expect(received).resolves.toBe('key_1');
    await listener.close();
    await listener.close();
  });
});

describe('unreachable Redis', () => {
  const dead = 'redis://:secret-password@127.0.0.1:1';

  // "Bounded": nothing listens on port 1; a client that kept retrying instead of failing would hang these until the test times out.
  it('counters reject with CountersError in bounded time, without the URL in the message', async () => {
    const c = new RedisCounters({ url: dead, keyPrefix, connectTimeoutMs: 500 });
    try {
      const err: unknown = await c.rateLimit('cps:x', 1, 1).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CountersError);
      expect((err as Error).message).not.toContain('secret-password');
    } finally {
      await c.close();
    }
  });

  it('the revocation bus ready() rejects with CountersError in bounded time', async () => {
    const bus = new RedisRevocationBus({ url: dead, channel: 'x', connectTimeoutMs: 500 });
    try {
      await expect(bus.ready()).rejects.toBeInstanceOf(CountersError);
      await expect(bus.publish('key_1')).rejects.toBeInstanceOf(CountersError);
    } finally {
      await bus.close();
    }
  });
});
