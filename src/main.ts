import { pino } from 'pino';
import type { Config } from './config/index.js';
import { createLogger } from './observability/logger.js';
import { buildHttpServer, VERSION } from './api/server.js';
import { createStirVerifier, loadStirSigningMaterial, stirX5u, type StirSigning } from './stir/index.js';
import type { CliApp } from './cli/app.js';
import { buildGateway } from './core.js';
import { startVoice } from './voice.js';

/**
 * The composition root (ARCHITECTURE.md): the one place the object graph is built from config —
 * the core services (src/core.ts), the call graph (src/voice.ts, src/sip-service.ts), the REST
 * API — and handed out, each part getting only what it uses through its constructor. Only the
 * entry point (src/tollgate.ts) imports it.
 */

/**
 * `tollgate serve`: the core services, then the STIR/SHAKEN material, then calls (media,
 * agents, SIP), then the REST API and agent streams; drains on SIGTERM/SIGINT (every call type
 * refused, running calls finish up to sip.drainTimeoutSec), then closes children before parents.
 */
export async function serve(config: Config): Promise<void> {
  const gw = await buildGateway(config, { purpose: 'serve' });
  for (const warning of config.warnings) gw.log.warn({ setting: 'environment' }, warning);
  let voice: Awaited<ReturnType<typeof startVoice>> | null = null;
  const stirCertificate: { current: StirSigning | null } = { current: null };
  let http: ReturnType<typeof buildHttpServer> | null = null;
  let base = '';
  try {
    // STIR/SHAKEN before any listener (docs/stir.md#startup): the signing key and certificate
    // and the verifier's trust anchors are read and checked first, so an expired or mismatched
    // certificate, a missing key or an unreadable trust file stops the start here with
    // CONFIG_INVALID (exit 2), with no SIP or HTTP port ever bound, instead of a gateway that
    // says it is ready and sends unsigned INVITEs.
    const stirLog = gw.log.child({ component: 'stir' });
    const signing = loadStirSigningMaterial(config, { log: stirLog });
    const stirVerifier = config.stir.verify.enabled ? createStirVerifier(config, { egress: gw.egress }) : null;
    voice = await startVoice(gw, { stirVerifier });
    http = buildHttpServer(gw, { calls: voice.calls, outbound: voice.outbound, trunks: voice.trunks, stir: stirCertificate });
    await http.app.listen({ host: config.http.host, port: config.http.port });
    const addr = http.app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.http.port;
    const hostForUrl = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
    base = `http://${hostForUrl}:${port}`;
    // The default x5u is this gateway's own /v1/stir/cert.pem, whose port is known only now
    // (http.port 0 picks one). Nothing here can fail on configuration any more (checked above);
    // it runs in the same turn as the listen callback, before the first connection is served,
    // so no request ever sees the gateway without its signer.
    const stir = signing?.withX5u(stirX5u(config, base)) ?? null;
    voice.outbound.setStir(stir);
    stirCertificate.current = stir;
  } catch (err) {
    // Nothing may keep the process alive after a failed start.
    await http?.app.close();
    await voice?.close();
    await gw.close();
    throw err;
  }
  const running = voice;
  const web = http;
  const bridge = running.bridge;
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
