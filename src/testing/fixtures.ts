import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { AuditLog, deriveAuditKey } from '../audit/index.js';
import { SettlementLedger } from '../billing/index.js';
import { KeyService } from '../keys/key-service.js';
import { TokenService } from '../keys/token-service.js';
import { createLogger } from '../observability/logger.js';
import { LocalRevocationBus, MemoryCounters } from '../policy/memory-counters.js';
import { PolicyEngine } from '../policy/policy-engine.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Clock } from '../util/time.js';

/** An in-process object graph on an in-memory SQLite store, for unit tests and benchmarks. */
export async function inMemoryServices(opts: { clock?: Clock; cacheEntries?: number; sqlitePath?: string; followChanges?: boolean } = {}) {
  const log = createLogger({ level: 'silent' });
  const store = new SqliteStore(opts.sqlitePath ?? ':memory:');
  await store.migrate();
  const masterKey = randomBytes(32);
  const clock = opts.clock ?? Date.now;
  const audit = new AuditLog(store, deriveAuditKey(masterKey), log, clock);
  const bus = new LocalRevocationBus();
  const counters = new MemoryCounters();
  const keys = new KeyService(
    store,
    audit,
    bus,
    {
      pepper: randomBytes(32),
      masterKey,
      realm: 'tollgate',
      rotationGraceSec: 86_400,
      cache: { maxEntries: opts.cacheEntries ?? 10_000, ttlMs: 30_000 },
      defaults: { scopes: ['calls:inbound', 'calls:outbound', 'usage:read'], callsPerSecond: 1, cpsBurst: 1, maxConcurrentCalls: 2, maxCallDurationSec: 3600, allowedCountries: ['US', 'CA'] },
    },
    log,
    clock,
  );
  // Like a serving gateway (default): follow the store's key change feed.
  if (opts.followChanges ?? true) await keys.start();
  const signingKeyPem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const tokens = new TokenService(store, keys, { signingKeyPem, issuer: 'tollgate', defaultTtlSec: 60, maxTtlSec: 3600 }, clock);
  const ledger = new SettlementLedger(store, counters, { journalPath: null, maxPendingInMemory: 1000, initialBackoffMs: 100, maxBackoffMs: 1000, attemptTimeoutMs: 0 }, log);
  const policy = new PolicyEngine(counters, store, ledger, audit, { leaseTtlSec: 60, defaultRatePerMinute: 2, blockedPrefixes: ['+1900', '+882'] }, log, clock);
  return {
    log, store, audit, bus, counters, keys, tokens, ledger, policy, masterKey,
    async close() {
      keys.close();
      await ledger.close();
      await counters.close();
      await store.close();
    },
  };
}
