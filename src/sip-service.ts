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

export interface SipService {
  readonly server: SipServer;
  /** Bound address of each enabled transport. */
  readonly listening: Partial<Record<TransportProtocol, { address: string; port: number }>>;
  drain(): void;
  close(): Promise<void>;
}

/** Key for stateless digest nonces, derived from the master key so every node shares it. */
function nonceKey(masterKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), 'tollgate sip nonce v1', 32));
}

/**
 * Starts tollgate's SIP side from config: one transport per entry of sip.transports (TLS and
 * WSS with the configured or development certificate), a SipServer that authenticates with the
 * keys' digest credentials, and `handler` (the inbound calls) for everything after that.
 */
export async function startSip(gw: Gateway, handler: CallHandler): Promise<SipService> {
  const c = gw.config.sip;
  const server = new SipServer(
    {
      realm: c.realm,
      nonceKey: nonceKey(gw.config.secrets.masterKey),
      nonceTtlMs: c.nonceTtlSec * 1000,
      digestAlgorithms: c.digestAlgorithms,
      userAgent: 'tollgate',
      bruteForce: { maxFailures: c.bruteForce.maxFailures, windowMs: c.bruteForce.windowSec * 1000, blockMs: c.bruteForce.blockSec * 1000 },
      limits: { maxMessageBytes: c.maxMessageBytes, maxHeaders: 100, maxLineBytes: 8192 },
      ...(c.advertisedAddress ? { advertisedAddress: c.advertisedAddress } : {}),
    },
    new KeyCredentials(gw.keys),
    handler,
    gw.log.child({ component: 'sip' }),
    {
      onAuthFailure: () => gw.metrics.sipAuthFailures.inc(),
      onBlocked: () => gw.metrics.sipBlockedSources.inc(),
      onCall: (outcome) => gw.metrics.sipCalls.inc({ outcome: outcome.startsWith('ended:') ? 'ended' : outcome }),
    },
  );
  const onMessage = (m: Parameters<SipServer['handle']>[0]): void => server.handle(m);
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
      server.addTransport(t);
      listening[protocol] = t.address();
    }
  } catch (err) {
    await Promise.all(transports.map((t) => t.close()));
    const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES') {
      throw new TollgateError('CONFIG_INVALID', `cannot listen for SIP on ${e.address ?? c.host}:${e.port ?? '?'} (${e.code}): another program holds it, or set sip.host / sip.*Port (e.g. TOLLGATE_SIP__UDP_PORT)`, { cause: err });
    }
    throw err;
  }
  gw.log.info({ sip: listening }, 'SIP listening');
  return {
    server,
    listening,
    drain: () => server.drain(),
    async close() {
      await server.close();
      await Promise.all(transports.map((t) => t.close()));
    },
  };
}
