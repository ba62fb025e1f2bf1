import { hkdfSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Gateway } from './core.js';
import { TollgateError } from './errors/index.js';
import { SipServer, type CallHandler } from './sip/sip-server.js';
import type { SipTransport, TransportProtocol } from './transport/sip-transport.js';
import { UdpTransport } from './transport/udp-transport.js';
import { StreamTransport } from './transport/stream-transport.js';
import { WsTransport } from './transport/ws-transport.js';
import type { ConnectionEvents } from './transport/connection-guard.js';
import { sipStreamFraming } from './sip/sip-stream-framing.js';
import { RateLimitedLog } from './observability/rate-limited-log.js';
import { KeyCredentials } from './calls/key-credentials.js';
import { DigestNonceCounts } from './policy/digest-nonce-counts.js';
import { OverloadMonitor } from './observability/overload-monitor.js';

export interface SipService {
  readonly server: SipServer;
  /** Bound address of each enabled transport. */
  readonly listening: Partial<Record<TransportProtocol, { address: string; port: number }>>;
  /** Overload control's measure of load (null when sip.overload.enabled is off). */
  readonly overload: OverloadMonitor | null;
  drain(): void;
  close(): Promise<void>;
}

/** Key for stateless digest nonces, derived from the master key so every node shares it. */
function nonceKey(masterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'tollgate sip nonce v1', 32));
}

/** What the SIP side reads from the media plane. */
export interface SipMediaLoad {
  /** Busiest media worker's event-loop utilisation since the previous call (MediaEngine.utilization). */
  utilization(): number;
}

/**
 * Starts tollgate's SIP side from config: one transport per entry of sip.transports (TLS and
 * WSS with the configured or development certificate), a SipServer that authenticates with the
 * keys' digest credentials (nonce counts in the counters backend, so a cluster sharing Redis
 * refuses a replay on any node), overload control reading the event loop, the INVITEs in
 * progress and `media`'s load, and `handler` (the inbound calls) for everything after that.
 */
export async function startSip(gw: Gateway, handler: CallHandler, media: SipMediaLoad | null = null): Promise<SipService> {
  const c = gw.config.sip;
  const m = gw.metrics;
  const o = c.overload;
  let server: SipServer | null = null;
  const overload = o.enabled
    ? new OverloadMonitor(o, { pendingInvites: () => server?.pendingInvites ?? 0, mediaLoad: () => media?.utilization() ?? null }, (s) => {
      m.sipOverloaded.set(s.overloaded ? 1 : 0);
      m.sipPendingInvites.set(s.pendingInvites);
      if (server) {
        const held = server.transactions;
        m.sipTransactions.set({ side: 'server' }, held.servers);
        m.sipTransactions.set({ side: 'client' }, held.clients);
      }
      m.sipOverloadEventLoopDelay.set(s.eventLoopDelayMs / 1000);
      if (s.mediaLoad !== null) m.sipOverloadMediaLoad.set(s.mediaLoad);
    })
    : null;
  server = new SipServer(
    {
      realm: c.realm,
      nonceKey: nonceKey(gw.config.secrets.masterKey),
      nonceTtlMs: c.nonceTtlSec * 1000,
      digestAlgorithms: c.digestAlgorithms,
      allowNoQop: c.digest.allowNoQop,
      userAgent: 'tollgate',
      bruteForce: {
        maxFailures: c.bruteForce.maxFailures,
        windowMs: c.bruteForce.windowSec * 1000,
        blockMs: c.bruteForce.blockSec * 1000,
        maxUsernamesPerSource: c.bruteForce.maxUsernamesPerSource,
      },
      challenges: { ratePerSec: c.challenges.perSourcePerSec, burst: c.challenges.burst, floodThreshold: c.challenges.floodThreshold, blockMs: c.challenges.floodBlockSec * 1000 },
      limits: { maxMessageBytes: c.maxMessageBytes, maxHeaders: 100, maxLineBytes: 8192 },
      ...(c.advertisedAddress ? { advertisedAddress: c.advertisedAddress } : {}),
    },
    {
      credentials: new KeyCredentials(gw.keys),
      nonceCounts: new DigestNonceCounts(gw.counters),
      ...(overload ? { load: overload } : {}),
      handler,
      log: gw.log.child({ component: 'sip' }),
      events: {
        onAuthFailure: (_ip, reason) => m.sipAuthFailures.inc({ reason }),
        onBlocked: (_ip, reason) => m.sipBlockedSources.inc({ reason }),
        onDropped: (reason) => m.sipDroppedRequests.inc({ reason }),
        onChallenge: (outcome) => m.sipChallenges.inc({ outcome }),
        onOverload: (signal) => m.sipOverloadRefusals.inc({ signal }),
        onCall: (outcome) => m.sipCalls.inc({ outcome: outcome.startsWith('ended:') ? 'ended' : outcome }),
      },
    },
  );
  const sip = server;
  overload?.start();
  const onMessage = (msg: Parameters<SipServer['handle']>[0]): void => sip.handle(msg);
  // What clients do to connections is counted in full and logged as a rate-limited sample,
  // without stacks: a flood must not turn into a flood of log lines.
  const connLog = new RateLimitedLog(gw.log.child({ component: 'sip-transport' }), { intervalMs: 10_000, burst: 5 });
  const onError = (err: Error): void => {
    const code = (err as NodeJS.ErrnoException).code;
    // Out of descriptors or buffers while accepting: a load condition, not a bug.
    if (code === 'EMFILE' || code === 'ENFILE' || code === 'ENOBUFS' || code === 'ENOMEM') connLog.write('warn', `fault:${code}`, { code, error: err.message }, 'SIP transport cannot accept connections');
    else gw.log.error({ err }, 'SIP transport error');
  };
  const connectionEvents = (transport: TransportProtocol): ConnectionEvents => ({
    refused: (ip, reason) => {
      gw.metrics.sipConnectionsRefused.inc({ transport, reason });
      connLog.write('warn', `refused:${reason}`, { ip, transport, reason }, 'SIP connection refused');
    },
    closed: (ip, reason) => {
      gw.metrics.sipConnectionsClosed.inc({ transport, reason });
      connLog.write(reason === 'idle-timeout' ? 'debug' : 'warn', `closed:${reason}`, { ip, transport, reason }, 'SIP connection closed');
    },
    peerError: (ip, err) => connLog.write('debug', `peer:${transport}`, { ip, transport, code: (err as NodeJS.ErrnoException).code, error: err.message }, 'SIP connection failed'),
  });
  const tlsFiles = gw.tls ? { cert: readFileSync(gw.tls.certFile), key: readFileSync(gw.tls.keyFile) } : null;
  const transports: SipTransport[] = [];
  const listening: SipService['listening'] = {};
  try {
    for (const protocol of new Set(c.transports)) {
      let t: SipTransport & { listen(host: string, port: number): Promise<void> };
      const stream = {
        idleTimeoutMs: c.idleTimeoutSec * 1000,
        messageTimeoutMs: c.messageTimeoutMs,
        handshakeTimeoutMs: c.handshakeTimeoutMs,
        maxMessageBytes: c.maxMessageBytes,
        maxConnections: c.maxConnections,
        maxConnectionsPerSource: c.maxConnectionsPerSource,
        frame: sipStreamFraming,
        events: connectionEvents(protocol),
      };
      switch (protocol) {
        case 'udp':
          t = new UdpTransport(onMessage, onError, c.maxMessageBytes);
          await t.listen(c.host, c.udpPort);
          break;
        case 'tcp':
          t = new StreamTransport(stream, onMessage, onError);
          await t.listen(c.host, c.tcpPort);
          break;
        case 'tls':
          if (!tlsFiles) throw new Error('sip.transports has tls but no TLS certificate is configured (tls.certFile) or generated');
          t = new StreamTransport({ ...stream, tls: { ...tlsFiles, minVersion: 'TLSv1.2' } }, onMessage, onError);
          await t.listen(c.host, c.tlsPort);
          break;
        case 'ws':
          t = new WsTransport(stream, onMessage, onError);
          await t.listen(c.host, c.wsPort);
          break;
        case 'wss':
          if (!tlsFiles) throw new Error('sip.transports has wss but no TLS certificate is configured (tls.certFile) or generated');
          t = new WsTransport({ ...stream, tls: tlsFiles }, onMessage, onError);
          await t.listen(c.host, c.wssPort);
          break;
      }
      transports.push(t);
      sip.addTransport(t);
      listening[protocol] = t.address();
    }
  } catch (err) {
    overload?.close();
    await Promise.all(transports.map((t) => t.close()));
    const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES') {
      throw new TollgateError('CONFIG_INVALID', `cannot listen for SIP on ${e.address ?? c.host}:${e.port ?? '?'} (${e.code}): another program holds it, or set sip.host / sip.*Port (e.g. TOLLGATE_SIP__UDP_PORT)`, { cause: err });
    }
    throw err;
  }
  gw.log.info({ sip: listening }, 'SIP listening');
  return {
    server: sip,
    listening,
    overload,
    drain: () => sip.drain(),
    async close() {
      overload?.close();
      await sip.close();
      await Promise.all(transports.map((t) => t.close()));
    },
  };
}
