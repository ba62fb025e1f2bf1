import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { TollgateError } from '../errors/index.js';
import type { MessageHandler, Peer, SipTransport } from './sip-transport.js';
import { ConnectionGuard, sourceAddress, type ConnectionEvents } from './connection-guard.js';

export interface WsTransportOptions {
  maxMessageBytes: number;
  /** Most simultaneous connections; more are refused. */
  maxConnections: number;
  /** Most simultaneous connections from one source address (upgraded or not); more are refused at once. */
  maxConnectionsPerSource: number;
  /**
   * From the TCP accept, the WebSocket upgrade request must be complete within this long (for
   * WSS, TLS handshake included); a connection still without its upgrade is closed.
   */
  handshakeTimeoutMs: number;
  /** Close a connection with no traffic for this long; pings every third of it. */
  idleTimeoutMs: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Refusals, closes by tollgate and peer errors, for metrics and logs. */
  events?: ConnectionEvents;
}

/**
 * SIP over WebSocket (RFC 7118): the client must ask for the "sip" subprotocol; each WebSocket
 * message (text or binary) is one SIP message; responses and in-dialog requests go back on the
 * connection the client opened (a WebSocket peer cannot be dialled).
 *
 * The same admission limits as TCP and TLS (ConnectionGuard): a per-source connection cap
 * counted from the TCP accept, and a deadline for the TLS handshake plus the HTTP upgrade, so a
 * client trickling its upgrade request cannot hold connections open.
 */
export class WsTransport implements SipTransport {
  readonly protocol: 'ws' | 'wss';
  private http: HttpServer | null = null;
  private wss: WebSocketServer | null = null;
  private readonly conns = new Map<string, WebSocket>();
  private readonly guard: ConnectionGuard;
  private readonly events: ConnectionEvents;
  private closed = false;

  constructor(
    private readonly opts: WsTransportOptions,
    private readonly onMessage: MessageHandler,
    private readonly onError: (err: Error) => void,
  ) {
    this.protocol = opts.tls ? 'wss' : 'ws';
    this.events = opts.events ?? {};
    this.guard = new ConnectionGuard(
      { maxConnections: opts.maxConnections, maxConnectionsPerSource: opts.maxConnectionsPerSource, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      this.events,
    );
  }

  async listen(host: string, port: number): Promise<void> {
    const http = this.opts.tls ? createHttpsServer({ cert: this.opts.tls.cert, key: this.opts.tls.key, minVersion: 'TLSv1.2' }) : createHttpServer();
    this.guard.watch(http, true);
    http.on('request', (_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('SIP over WebSocket: connect with the "sip" subprotocol\n');
    });
    // Malformed HTTP and failed TLS handshakes are the client's problem: report them, answer
    // what can be answered (Node's default for clientError, which a listener replaces).
    http.on('clientError', (err: Error & { code?: string }, socket: Duplex & { remoteAddress?: string }) => {
      this.events.peerError?.(sourceAddress(socket), err);
      if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    http.on('tlsClientError', (err: Error, socket: { remoteAddress?: string }) => {
      if (socket.remoteAddress !== undefined) this.events.peerError?.(sourceAddress(socket), err);
    });
    const wss = new WebSocketServer({
      server: http,
      maxPayload: this.opts.maxMessageBytes,
      handleProtocols: (protocols) => (protocols.has('sip') ? 'sip' : false),
      verifyClient: (_info, cb) => cb(this.conns.size < this.opts.maxConnections, 503, 'Too many connections'),
    });
    wss.on('connection', (ws, req) => {
      this.guard.handshakeDone(req.socket);
      if (ws.protocol !== 'sip') {
        ws.close(1002, 'the sip subprotocol is required (RFC 7118)');
        return;
      }
      const id = randomBytes(8).toString('base64url');
      this.conns.set(id, ws);
      const source = sourceAddress(req.socket);
      const peer: Peer = { protocol: this.protocol, address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0, connectionId: id };
      const local = { address: req.socket.localAddress ?? '', port: req.socket.localPort ?? 0 };
      let alive = true;
      const ping = setInterval(() => {
        if (!alive) {
          this.events.closed?.(source, 'idle-timeout');
          ws.terminate();
          return;
        }
        alive = false;
        ws.ping();
      }, Math.max(1000, Math.floor(this.opts.idleTimeoutMs / 3)));
      ws.on('pong', () => (alive = true));
      ws.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => {
        alive = true;
        const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
        if (buf.length === 0 || buf.toString('latin1').trim() === '') return;
        this.onMessage({ data: buf, peer, local });
      });
      ws.on('error', (err: Error) => this.events.peerError?.(source, err));
      ws.on('close', () => {
        clearInterval(ping);
        this.conns.delete(id);
      });
    });
    wss.on('error', (err) => this.onError(err));
    this.http = http;
    this.wss = wss;
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  }

  address(): { address: string; port: number } {
    const a = this.http?.address();
    if (!a || typeof a === 'string') throw new TollgateError('INTERNAL', `${this.protocol.toUpperCase()} transport is not listening`);
    return { address: a.address, port: a.port };
  }

  /** Connections open now from one source address (upgraded or still in their handshake). */
  connectionsFrom(source: string): number {
    return this.guard.connectionsFrom(source);
  }

  send(data: Buffer, peer: Peer): Promise<void> {
    const ws = peer.connectionId ? this.conns.get(peer.connectionId) : undefined;
    if (!ws || ws.readyState !== ws.OPEN) return Promise.reject(new TollgateError('INTERNAL', 'the WebSocket connection of this peer is gone'));
    return new Promise((resolve, reject) => ws.send(data.toString('utf8'), (err) => (err ? reject(err) : resolve())));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.guard.close();
    for (const ws of this.conns.values()) ws.close(1001, 'shutting down');
    this.wss?.close();
    const http = this.http;
    if (http) {
      // Connections still in their handshake or upgrade have no WebSocket to close.
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    }
  }
}
