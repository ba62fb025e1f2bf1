import type { DestinationStream, Logger } from 'pino';
import { isAbsolute, join, relative } from 'node:path';
import type { Config } from './config/index.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import type { Store } from './store/store.js';
import { SqliteStore } from './store/sqlite-store.js';
import { PostgresStore } from './store/postgres-store.js';
import { AuditCheckpoints, AuditLog, deriveAuditKey } from './audit/index.js';
import { KeyService } from './keys/key-service.js';
import { TokenService } from './keys/token-service.js';
import { LocalRevocationBus, MemoryCounters } from './policy/memory-counters.js';
import { RedisCounters, RedisRevocationBus } from './policy/redis-counters.js';
import type { Counters } from './policy/counters.js';
import type { RevocationBus } from './keys/revocation-bus.js';
import { PolicyEngine } from './policy/policy-engine.js';
import { CredentialVerifier } from './policy/credentials.js';
import { SettlementLedger } from './billing/index.js';
import { rateTableFor } from './policy/rate-table.js';
import { blockedPrefixes } from './policy/prefix-lists.js';
import { ensureDevCertificate } from './transport/dev-certificate.js';
import { NumberService } from './calls/number-service.js';
import { WebhookService } from './webhooks/index.js';
import { EgressGuard } from './net/index.js';


/**
 * Part of the composition root (ARCHITECTURE.md; src/main.ts): the core services every process
 * kind needs — store, counters, audit, keys, tokens, policy, numbers, webhooks — built from
 * config. Nothing below the root imports it.
 */

/** Every long-lived core object of one gateway, built from config (no module-level singletons). */
export interface Gateway {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly store: Store;
  readonly counters: Counters;
  readonly bus: RevocationBus;
  readonly audit: AuditLog;
  /** Signed checkpoints of the audit chain's head (null: no checkpoint key configured). */
  readonly checkpoints: AuditCheckpoints | null;
  readonly ledger: SettlementLedger;
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly policy: PolicyEngine;
  /** Resolves API keys and tokens to principals (REST, agent streams, Twilio-style Basic auth). */
  readonly credentials: CredentialVerifier;
  readonly numbers: NumberService;
  readonly webhooks: WebhookService;
  /** Every server-side request goes through it: webhooks, agent dial-outs, attach webhooks, x5u fetches. */
  readonly egress: EgressGuard;
  readonly tls: { certFile: string; keyFile: string } | null;
  close(): Promise<void>;
}

export interface BuildOptions {
  logDestination?: DestinationStream;
  /** The CLI's one-shot commands skip the dev certificate and default metrics. */
  purpose?: 'serve' | 'command';
  logger?: Logger;
}

export function openStore(config: Config): Store {
  return config.store.driver === 'postgres'
    ? new PostgresStore({ url: config.store.postgres.url, poolSize: config.store.postgres.poolSize, ...(config.store.postgres.schema ? { schema: config.store.postgres.schema } : {}) })
    : new SqliteStore(config.store.sqlite.path);
}

export async function buildGateway(config: Config, opts: BuildOptions = {}): Promise<Gateway> {
  const purpose = opts.purpose ?? 'serve';
  const log = opts.logger ?? createLogger({ level: config.log.level, destination: opts.logDestination, base: { node: config.nodeId } });
  const metrics = new Metrics({ defaultMetrics: purpose === 'serve' });
  const closers: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    while (closers.length) {
      const c = closers.pop()!;
      try {
        await c();
      } catch (err) {
        log.warn({ err }, 'error while closing');
      }
    }
  };
  try {
    const store = openStore(config);
    closers.push(() => store.close());
    await store.migrate();

    let counters: Counters;
    let bus: RevocationBus;
    if (config.counters.driver === 'redis') {
      const { url, keyPrefix } = config.counters.redis;
      counters = new RedisCounters({ url, keyPrefix });
      closers.push(() => counters.close());
      const redisBus = new RedisRevocationBus({ url, channel: `${keyPrefix}revocations` });
      bus = redisBus;
      closers.push(() => bus.close());
      await redisBus.ready();
    } else {
      counters = new MemoryCounters();
      bus = new LocalRevocationBus();
      closers.push(() => counters.close(), () => bus.close());
    }

    const audit = new AuditLog(store, deriveAuditKey(config.secrets.masterKey), log, undefined, () => metrics.auditEntries.inc());
    const cp = config.audit;
    const checkpoints = cp.checkpointKey ? new AuditCheckpoints(audit, store, { keyPem: cp.checkpointKey, file: cp.checkpointFile, node: config.nodeId }, log.child({ component: 'audit' })) : null;
    if (purpose === 'serve') {
      if (!checkpoints) {
        log.warn({ audit: 'no-checkpoints' }, 'audit checkpoints off (no audit.checkpointKey and secrets.autoGenerate is false): deleting the newest audit entries would go unnoticed');
      } else {
        const rel = cp.checkpointKeyFile === null ? null : relative(config.dataDir, cp.checkpointKeyFile);
        const inDataDir = rel !== null && rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
        if (inDataDir) log.warn({ audit: 'key-in-data-dir' }, 'the audit checkpoint key is in the data directory, beside the database: checkpoints then catch someone with database access only, not someone who can write the data directory; keep it elsewhere (audit.checkpointKeyFile)');
        log.info({ checkpointFile: cp.checkpointFile, keyId: checkpoints.keyId, intervalSec: cp.checkpointIntervalSec }, 'audit checkpoints on');
        checkpoints.start(cp.checkpointIntervalSec);
        // Runs before the store closes (closers run last first): a last checkpoint at shutdown.
        closers.push(() => checkpoints.stop());
      }
    }
    // Built before the key service, which tells it about rotations and revocations. The
    // delivery loop runs only in `serve`; one-shot CLI commands just queue deliveries.
    const egress = new EgressGuard({ allow: config.egress.allow, log: log.child({ component: 'egress' }) });
    const webhooks = new WebhookService(store, audit, { ...config.webhooks, masterKey: config.secrets.masterKey }, log.child({ component: 'webhooks' }), { egress });
    closers.push(() => webhooks.stop());
    const keys = new KeyService(
      store,
      audit,
      bus,
      {
        pepper: config.secrets.pepper,
        masterKey: config.secrets.masterKey,
        realm: config.sip.realm,
        rotationGraceSec: config.keys.rotationGraceSec,
        cache: config.keys.cache,
        changeFeed: config.keys.changeFeed,
        defaults: config.keys.defaults,
        onEvent: (type, keyId, data) => webhooks.emit(type, keyId, data),
      },
      log,
      undefined,
      (result) => metrics.keyVerifications.inc({ result }),
    );
    closers.push(() => keys.close());
    // A serving gateway follows the store's key change feed, so changes by the CLI or another
    // node reach it; one-shot commands only write (their changes land in the feed).
    if (purpose === 'serve') await keys.start();
    const tokens = new TokenService(store, keys, {
      signingKeyPem: config.secrets.tokenSigningKey,
      issuer: config.tokens.issuer,
      defaultTtlSec: config.tokens.defaultTtlSec,
      maxTtlSec: config.tokens.maxTtlSec,
    });
    // Settlements the store cannot take are journaled and replayed by the serving process only:
    // a one-shot CLI command settles no calls and must not race the server over the journal.
    const { journalFile, flushTimeoutMs, ...billing } = config.billing;
    const ledger = new SettlementLedger(store, counters, { ...billing, journalPath: purpose === 'serve' ? journalFile : null }, log.child({ component: 'billing' }), {
      onPending: (n) => metrics.settlementsPending.set(n),
      onFailure: (stage) => metrics.settlementFailures.inc({ stage }),
    });
    // Runs before the store and the counters close (closers run last first): pending writes get
    // flushTimeoutMs, the rest stays journaled for the next start.
    closers.push(async () => {
      await ledger.flush(flushTimeoutMs);
      await ledger.close();
    });
    if (purpose === 'serve') await ledger.start();
    const policy = new PolicyEngine(counters, store, ledger, audit, { ...config.policy, blockedPrefixes: blockedPrefixes(config), rates: rateTableFor(config) }, log, undefined, (action, verdict) =>
      metrics.policyDecisions.inc({ action, verdict }),
    );

    const numbers = new NumberService(store, audit);

    let tls: Gateway['tls'] = null;
    if (config.tls.certFile) tls = { certFile: config.tls.certFile, keyFile: config.tls.keyFile };
    else if (purpose === 'serve' && config.tls.autoGenerateDev) {
      const dev = await ensureDevCertificate(join(config.dataDir, 'tls'));
      if (dev.created) log.warn({ certFile: dev.certFile }, 'generated a self-signed development TLS certificate');
      tls = { certFile: dev.certFile, keyFile: dev.keyFile };
    }

    if (purpose === 'serve') webhooks.start();
    const credentials = new CredentialVerifier(keys, tokens, log);
    return { config, log, metrics, store, counters, bus, audit, checkpoints, ledger, keys, tokens, policy, credentials, numbers, webhooks, egress, tls, close };
  } catch (err) {
    await close();
    throw err;
  }
}

