import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { CountersError } from '../errors/index.js';
import type { BudgetState, Counters, LeaseDecision, RateDecision, ReserveDecision } from './counters.js';
import type { RevocationBus } from '../keys/revocation-bus.js';

/**
 * Counters shared by every node of a cluster, kept in Redis (7+). Each operation is one Lua
 * script, so it is atomic across nodes, and every script reads the clock with `TIME`, so all
 * nodes share the Redis server's clock. Times inside the scripts are milliseconds (with the
 * microsecond fraction), like MemoryCounters. The semantics match MemoryCounters exactly
 * (policy/counters-contract.ts).
 *
 * Key layout, all under `keyPrefix`:
 *   rate:<bucket>              string  GCRA theoretical arrival time (TAT), expires when idle
 *   lease:<pool>               zset    leaseId → expiry; expires with its last live lease
 *   budget:{<account>}:state   hash    spent, seeded
 *   budget:{<account>}:resv    zset    reservationId → expiry
 *   budget:{<account>}:amount  hash    reservationId → amount
 *   budget:{<account>}:settled zset    reservationId → settle time (last 10 000 kept)
 *   once:<set>                 set     claimOnce members; expires ttlMs after its first member
 * The budget keys share a hash tag so they live in one cluster slot, and expire together
 * after `budgetTtlMs` without writes (the account then asks for its seed again).
 */

/** Shared Lua prelude: the server clock and number formatting that keeps full precision. */
const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function f(x)
  return string.format('%.17g', x)
end
`;

const RATE_LIMIT = `${PRELUDE}
local now = now_ms()
local interval = 1000 / tonumber(ARGV[1])
local tolerance = interval * (math.max(1, tonumber(ARGV[2])) - 1)
local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then tat = math.max(tonumber(stored), now) end
if tat - now > tolerance then
  return {0, math.ceil(tat - tolerance - now)}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], f(next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
return {1, 0}
`;

/** Lease pool helpers: purge expired leases; expire the pool key with its longest-lived lease. */
const LEASE_PRELUDE = `${PRELUDE}
local function purge(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', f(now))
end
local function touch(key, now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] then
    redis.call('PEXPIRE', key, math.max(1, math.ceil(tonumber(top[2]) - now)) + 1)
  end
end
`;

const ACQUIRE_LEASE = `${LEASE_PRELUDE}
local now = now_ms()
purge(KEYS[1], now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
local n = redis.call('ZCARD', KEYS[1])
if not held and n >= tonumber(ARGV[2]) then
  return {0, n}
end
redis.call('ZADD', KEYS[1], f(now + tonumber(ARGV[3])), ARGV[1])
if not held then n = n + 1 end
touch(KEYS[1], now)
return {1, n}
`;

const RENEW_LEASE = `${LEASE_PRELUDE}
local now = now_ms()
purge(KEYS[1], now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', f(now + tonumber(ARGV[2])), ARGV[1])
touch(KEYS[1], now)
return 1
`;

const RELEASE_LEASE = `
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`;

const COUNT_LEASES = `${LEASE_PRELUDE}
purge(KEYS[1], now_ms())
return redis.call('ZCARD', KEYS[1])
`;

/**
 * Budget helpers. KEYS: state, resv, amount, settled.
 * live_reserved drops expired reservations and sums the live ones.
 */
const BUDGET_PRELUDE = `${PRELUDE}
local function live_reserved(now)
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', f(now))
  if #dead > 0 then
    for i = 1, #dead do redis.call('HDEL', KEYS[3], dead[i]) end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', f(now))
  end
  local sum = 0
  local amounts = redis.call('HVALS', KEYS[3])
  for i = 1, #amounts do sum = sum + tonumber(amounts[i]) end
  return sum
end
-- Budget keys live keyTtl past the last write, and never shorter than their last reservation.
local function touch(now, key_ttl)
  local ttl = key_ttl
  local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if top[2] then ttl = math.max(ttl, math.ceil(tonumber(top[2]) - now) + 1000) end
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
`;

/** ARGV: reservationId, amount, limit, ttlMs, seedSpent ('' when none), keyTtlMs */
const RESERVE_BUDGET = `${BUDGET_PRELUDE}
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[5] == '' then return {'needs_seed'} end
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  redis.call('HSET', KEYS[1], 'spent', f(tonumber(ARGV[5])), 'seeded', '1')
end
local ttl = tonumber(ARGV[4])
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent'))
local reserved = live_reserved(now)
local amount = tonumber(ARGV[2])
if spent + reserved + amount > tonumber(ARGV[3]) then
  touch(now, tonumber(ARGV[6]))
  return {'insufficient', f(spent), f(reserved)}
end
redis.call('ZADD', KEYS[2], f(now + ttl), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], f(amount))
touch(now, tonumber(ARGV[6]))
return {'reserved', f(spent), f(reserved + amount)}
`;

/** ARGV: reservationId, cost, keyTtlMs */
const SETTLE_BUDGET = `${BUDGET_PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('ZSCORE', KEYS[4], ARGV[1]) then return 0 end
local now = now_ms()
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], f(now), ARGV[1])
if redis.call('ZCARD', KEYS[4]) > 10000 then
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -10001)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent')) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'spent', f(spent))
touch(now, tonumber(ARGV[3]))
return 1
`;

/** ARGV: reservationId, ttlMs, keyTtlMs */
const RENEW_RESERVATION = `${BUDGET_PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local now = now_ms()
local expires = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expires or tonumber(expires) <= now then return 0 end
redis.call('ZADD', KEYS[2], 'XX', f(now + tonumber(ARGV[2])), ARGV[1])
touch(now, tonumber(ARGV[3]))
return 1
`;

const BUDGET_STATE = `${BUDGET_PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local reserved = live_reserved(now_ms())
return {f(tonumber(redis.call('HGET', KEYS[1], 'spent'))), f(reserved)}
`;

/** ARGV: member, ttlMs, maxMembers. 1 when the member is new (and now added), else 0. */
const CLAIM_ONCE = `
local n = redis.call('SCARD', KEYS[1])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 or n >= tonumber(ARGV[3]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if n == 0 then redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[2]))) end
return 1
`;

class LuaScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

const SCRIPTS = {
  rateLimit: new LuaScript(RATE_LIMIT),
  acquireLease: new LuaScript(ACQUIRE_LEASE),
  renewLease: new LuaScript(RENEW_LEASE),
  releaseLease: new LuaScript(RELEASE_LEASE),
  countLeases: new LuaScript(COUNT_LEASES),
  reserveBudget: new LuaScript(RESERVE_BUDGET),
  settleBudget: new LuaScript(SETTLE_BUDGET),
  renewReservation: new LuaScript(RENEW_RESERVATION),
  budgetState: new LuaScript(BUDGET_STATE),
  claimOnce: new LuaScript(CLAIM_ONCE),
} as const;

type Operation = keyof typeof SCRIPTS;

export interface RedisConnectionOptions {
  /** Milliseconds to establish a connection before giving up on that attempt (default 2000). */
  connectTimeoutMs?: number;
  /** Hard bound on any command, including one queued while disconnected (default 5000). */
  commandTimeoutMs?: number;
  /** Reconnection attempts a queued command waits for before it fails (default 1). */
  maxRetriesPerRequest?: number;
  /** Connection-level errors (they also surface as CountersError on the commands they fail). */
  onError?: (err: Error) => void;
}

export type RedisCountersOptions = RedisConnectionOptions & {
  keyPrefix: string;
  /** Idle budget accounts expire after this long (default 40 days) and are then re-seeded. */
  budgetTtlMs?: number;
} & ({ url: string; client?: undefined } | { client: Redis; url?: undefined });

export interface RedisRevocationBusOptions extends RedisConnectionOptions {
  url: string;
  channel: string;
}

const DEFAULT_BUDGET_TTL_MS = 40 * 24 * 60 * 60 * 1000;

/** Opens an ioredis client that fails fast when Redis is unreachable instead of queueing forever. */
function connect(url: string, opts: RedisConnectionOptions, extra: RedisOptions = {}): Redis {
  let client: Redis;
  try {
    client = new Redis(url, {
      ...extra,
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      commandTimeout: opts.commandTimeoutMs ?? 5000,
      maxRetriesPerRequest: opts.maxRetriesPerRequest ?? 1,
    });
  } catch {
    // No cause: the parser's message could echo the URL, which may hold a password.
    throw new CountersError('invalid Redis connection settings for counters');
  }
  // Without a listener ioredis prints every connection error; failures reach callers as
  // rejected commands instead.
  client.on('error', (err: Error) => opts.onError?.(err));
  return client;
}

/** QUIT when connected (flushes pending replies); otherwise just drop the socket. */
async function closeClient(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  if (client.status !== 'ready') {
    client.disconnect();
    return;
  }
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT');
}

function unexpected(op: string): CountersError {
  return new CountersError(`unexpected reply from Redis for ${op}`);
}

function toNumber(v: unknown, op: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  if (!Number.isFinite(n)) throw unexpected(op);
  return n;
}

function toPair(v: unknown, op: string): [unknown, unknown] {
  if (!Array.isArray(v) || v.length !== 2) throw unexpected(op);
  return [v[0], v[1]];
}

export class RedisCounters implements Counters {
  readonly driver = 'redis' as const;
  private readonly client: Redis;
  private readonly ownsClient: boolean;
  private readonly prefix: string;
  private readonly budgetTtlMs: number;
  private closing: Promise<void> | null = null;

  constructor(opts: RedisCountersOptions) {
    this.prefix = opts.keyPrefix;
    this.budgetTtlMs = Math.ceil(opts.budgetTtlMs ?? DEFAULT_BUDGET_TTL_MS);
    if (opts.client) {
      this.client = opts.client;
      this.ownsClient = false;
    } else {
      this.client = connect(opts.url, opts);
      this.ownsClient = true;
    }
  }

  /** Runs one script by SHA, loading it on first use (or after SCRIPT FLUSH / failover). */
  private async run(op: Operation, keys: string[], args: (string | number)[]): Promise<unknown> {
    if (this.closing) throw new CountersError(`counters are closed (${op})`);
    const script = SCRIPTS[op];
    try {
      try {
        return await this.client.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (!isNoScript(err)) throw err;
        return await this.client.eval(script.source, keys.length, ...keys, ...args);
      }
    } catch (err) {
      throw new CountersError(`Redis counters: ${op} failed`, { cause: err });
    }
  }

  private budgetKeys(account: string): string[] {
    const base = `${this.prefix}budget:{${account}}`;
    return [`${base}:state`, `${base}:resv`, `${base}:amount`, `${base}:settled`];
  }

  async rateLimit(bucket: string, ratePerSec: number, burst: number): Promise<RateDecision> {
    const [allowed, retry] = toPair(await this.run('rateLimit', [`${this.prefix}rate:${bucket}`], [ratePerSec, burst]), 'rateLimit');
    return allowed === 1 ? { allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs: toNumber(retry, 'rateLimit') };
  }

  async acquireLease(pool: string, leaseId: string, max: number, ttlMs: number): Promise<LeaseDecision> {
    const reply = await this.run('acquireLease', [`${this.prefix}lease:${pool}`], [leaseId, max, ttlMs]);
    const [acquired, active] = toPair(reply, 'acquireLease');
    return { acquired: acquired === 1, active: toNumber(active, 'acquireLease') };
  }

  async renewLease(pool: string, leaseId: string, ttlMs: number): Promise<boolean> {
    return (await this.run('renewLease', [`${this.prefix}lease:${pool}`], [leaseId, ttlMs])) === 1;
  }

  async releaseLease(pool: string, leaseId: string): Promise<void> {
    await this.run('releaseLease', [`${this.prefix}lease:${pool}`], [leaseId]);
  }

  async countLeases(pool: string): Promise<number> {
    return toNumber(await this.run('countLeases', [`${this.prefix}lease:${pool}`], []), 'countLeases');
  }

  async reserveBudget(
    account: string,
    reservationId: string,
    amount: number,
    limit: number,
    ttlMs: number,
    seedSpent?: number,
  ): Promise<ReserveDecision> {
    const reply = await this.run('reserveBudget', this.budgetKeys(account), [
      reservationId,
      amount,
      limit,
      ttlMs,
      seedSpent === undefined ? '' : seedSpent,
      this.budgetTtlMs,
    ]);
    if (!Array.isArray(reply)) throw unexpected('reserveBudget');
    const [kind, spent, reserved] = reply as unknown[];
    if (kind === 'needs_seed') return { kind: 'needs_seed' };
    if (kind !== 'reserved' && kind !== 'insufficient') throw unexpected('reserveBudget');
    return { kind, spent: toNumber(spent, 'reserveBudget'), reserved: toNumber(reserved, 'reserveBudget') };
  }

  async settleBudget(account: string, reservationId: string, cost: number): Promise<void> {
    await this.run('settleBudget', this.budgetKeys(account), [reservationId, cost, this.budgetTtlMs]);
  }

  async renewReservation(account: string, reservationId: string, ttlMs: number): Promise<boolean> {
    return (await this.run('renewReservation', this.budgetKeys(account), [reservationId, ttlMs, this.budgetTtlMs])) === 1;
  }

  async budgetState(account: string): Promise<BudgetState | null> {
    const reply = await this.run('budgetState', this.budgetKeys(account), []);
    if (reply === null) return null;
    const [spent, reserved] = toPair(reply, 'budgetState');
    return { spent: toNumber(spent, 'budgetState'), reserved: toNumber(reserved, 'budgetState') };
  }

  async claimOnce(set: string, member: string, ttlMs: number, maxMembers: number): Promise<boolean> {
    return (await this.run('claimOnce', [`${this.prefix}once:${set}`], [member, Math.ceil(ttlMs), maxMembers])) === 1;
  }

  /** Closes the connection this instance opened (a client passed in stays open). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.ownsClient ? closeClient(this.client) : Promise.resolve();
    return this.closing;
  }
}

/**
 * Revocation notices over Redis pub/sub. Publishing uses one connection and listening another,
 * because a subscribed connection may only run subscriber commands. The publisher's own node
 * hears its notices too (callers drop their local cache first anyway).
 */
export class RedisRevocationBus implements RevocationBus {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly channel: string;
  private readonly handlers = new Set<(keyId: string) => void>();
  private subscribed = false;
  private subscribing: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(opts: RedisRevocationBusOptions) {
    this.channel = opts.channel;
    this.pub = connect(opts.url, opts);
    try {
      // Subscriptions are restored by hand on every (re)connect, so a first SUBSCRIBE that
      // failed while Redis was down is retried as well.
      this.sub = connect(opts.url, opts, { autoResubscribe: false });
    } catch (err) {
      this.pub.disconnect();
      throw err;
    }
    this.sub.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.deliver(message);
    });
    this.sub.on('close', () => {
      this.subscribed = false;
    });
    this.sub.on('ready', () => {
      this.ensureSubscribed().catch(() => {
        // Retried on the next reconnect; ready() callers see the failure themselves.
      });
    });
    this.ensureSubscribed().catch(() => {});
  }

  private deliver(keyId: string): void {
    for (const h of this.handlers) {
      try {
        h(keyId);
      } catch {
        // A faulty listener must not stop the others (STYLE.md §9).
      }
    }
  }

  private ensureSubscribed(): Promise<void> {
    if (this.closing) return Promise.reject(new CountersError('revocation bus is closed'));
    if (this.subscribed) return Promise.resolve();
    this.subscribing ??= this.sub.subscribe(this.channel).then(
      () => {
        this.subscribed = true;
        this.subscribing = null;
      },
      (err: unknown) => {
        this.subscribing = null;
        throw new CountersError('Redis revocation bus: subscribe failed', { cause: err });
      },
    );
    return this.subscribing;
  }

  /** Resolves once the subscription is active (rejects with CountersError if Redis is unreachable). */
  ready(): Promise<void> {
    return this.ensureSubscribed();
  }

  async publish(keyId: string): Promise<void> {
    if (this.closing) throw new CountersError('revocation bus is closed');
    try {
      await this.pub.publish(this.channel, keyId);
    } catch (err) {
      throw new CountersError('Redis revocation bus: publish failed', { cause: err });
    }
  }

  subscribe(handler: (keyId: string) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /** Quits both connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.handlers.clear();
      await Promise.all([closeClient(this.sub), closeClient(this.pub)]);
    })();
    return this.closing;
  }
}
