import { pino, type DestinationStream, type Logger } from 'pino';
import { join } from 'node:path';
import type { Config } from './config/index.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import type { Store } from './store/store.js';
import { SqliteStore } from './store/sqlite-store.js';
import { PostgresStore } from './store/postgres-store.js';
import { AuditLog, deriveAuditKey } from './audit/index.js';
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
import { buildHttpServer, VERSION } from './api/server.js';
import { loadStirSigning, stirX5u, type StirSigning } from './stir/index.js';
import type { CliApp } from './cli/app.js';
import { startVoice } from './voice.js';

/**
 * The composition root (ARCHITECTURE.md): the one place the object graph is built from config.
 * Every other module gets only what it uses, through its constructor; nothing imports this file
 * but the entry point (src/tollgate.ts) and the call wiring beside it (src/voice.ts).
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
  readonly ledger: SettlementLedger;
  readonly keys: KeyService;
  readonly tokens: TokenService;
  readonly policy: PolicyEngine;
  /** Resolves API keys and tokens to principals (REST, agent streams, Twilio-style Basic auth). */
  readonly credentials: CredentialVerifier;
  readonly numbers: NumberService;
  readonly webhooks: WebhookService;
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
    // Built before the key service, which tells it about rotations and revocations. The
    // delivery loop runs only in `serve`; one-shot CLI commands just queue deliveries.
    const webhooks = new WebhookService(store, audit, { ...config.webhooks, masterKey: config.secrets.masterKey }, log.child({ component: 'webhooks' }));
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
    const tokens = new TokenService(store, (id) => keys.getCurrent(id), {
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
    return { config, log, metrics, store, counters, bus, audit, ledger, keys, tokens, policy, credentials, numbers, webhooks, tls, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * `tollgate serve`: the core services, then calls (media, agents, SIP), then the REST API and
 * agent streams; drains on SIGTERM/SIGINT (every call type refused, running calls finish up to
 * sip.drainTimeoutSec), then closes children before parents.
 */
export async function serve(config: Config): Promise<void> {
  const gw = await buildGateway(config, { purpose: 'serve' });
  let voice: Awaited<ReturnType<typeof startVoice>> | null = null;
  const stirCertificate: { current: StirSigning | null } = { current: null };
  let http: ReturnType<typeof buildHttpServer> | null = null;
  try {
    voice = await startVoice(gw);
    http = buildHttpServer(gw, { calls: voice.calls, outbound: voice.outbound, trunks: voice.trunks, stir: stirCertificate });
    await http.app.listen({ host: config.http.host, port: config.http.port });
  } catch (err) {
    // Nothing may keep the process alive after a failed start.
    await http?.app.close();
    await voice?.close();
    await gw.close();
    throw err;
  }
  if (!voice || !http) throw new Error('tollgate did not start');
  const running = voice;
  const web = http;
  const addr = web.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.http.port;
  const hostForUrl = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  const base = `http://${hostForUrl}:${port}`;
  const bridge = running.bridge;
  // STIR/SHAKEN signing: the default x5u is this gateway's own /v1/stir/cert.pem.
  const stir = loadStirSigning(config, { x5u: stirX5u(config, base), log: gw.log.child({ component: 'stir' }) });
  running.outbound.setStir(stir);
  stirCertificate.current = stir;
  bridge.setPublicBase(base);
  // Agents dial in over WebSocket on the same port as the REST API (/v1/stream).
  web.app.server.on('upgrade', (req, socket, head) => {
    if (!bridge.handleUpgrade(req, socket, head)) socket.destroy();
  });
  gw.log.info({ url: base, sip: running.sip.listening, media: { workers: running.media.workerCount }, store: config.store.driver, counters: config.counters.driver, dataDir: config.dataDir }, 'tollgate listening');
  const keyCount = await gw.store.countKeys();
  process.stderr.write(
    [
      '',
      `tollgate ${VERSION} is running: REST API on ${base} (store: ${config.store.driver}, counters: ${config.counters.driver})`,
      `  SIP:     ${Object.entries(running.sip.listening).map(([p, a]) => `${p} ${a.address}:${a.port}`).join(', ')}; media workers: ${running.media.workerCount}`,
      `  health:  curl ${base}/readyz`,
      `  API doc: ${base}/openapi.json`,
      keyCount === 0
        ? '  next:    create your first admin key in another terminal:\n           npm run tollgate -- keys create --name admin --role admin'
        : `  keys:    ${keyCount} in the store; list them with: npm run tollgate -- keys list`,
      '  stop:    Ctrl-C (drains, then exits)',
      '',
    ].join('\n') + '\n',
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    gw.log.info({ signal }, 'draining');
    web.drain();
    running.drain();
    const drainMs = config.sip.drainTimeoutSec * 1000;
    const deadline = setTimeout(() => {
      gw.log.error('drain deadline passed; exiting');
      process.exit(1);
    }, drainMs + 10_000);
    deadline.unref();
    void (async () => {
      // Running calls of every kind may finish (new ones are refused: SIP 503, DRAINING) for up
      // to sip.drainTimeoutSec; then the rest end (BYE or CANCEL) with reason shutdown.
      await running.calls.idle(drainMs);
      await web.app.close();
      await running.close();
      await gw.close();
      gw.log.info('stopped');
      clearTimeout(deadline);
      process.exitCode = 0;
    })();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** The CLI's view of the composition root: one-shot commands open the core services; serve runs everything. */
export const cliApp: CliApp = {
  open: (config) => buildGateway(config, { purpose: 'command', logger: createLogger({ level: 'warn', destination: pino.destination(2) }) }),
  serve,
};
