import { createServer as createTcpServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect, type TlsOptions, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { TollgateError } from '../errors/index.js';
import type { MessageHandler, Peer, SipTransport } from './sip-transport.js';
import { peerKey } from './sip-transport.js';
import { ConnectionGuard, sourceAddress, type ConnectionClose, type ConnectionEvents } from './connection-guard.js';

/** What a stream framer reports (sip/'s SipStreamFramer is one: RFC 3261 §18.3 framing, RFC 5626 keep-alives). */
export interface StreamFramerHandlers {
  onMessage(message: Buffer): void;
  onPing?(): void;
  /**
   * The stream cannot be framed any more. `reply`, when the framer's layer could build one, is
   * written before the connection closes (SIP: 400 for a bad Content-Length, 513 for an
   * oversize message).
   */
  onError(error: { readonly code: string; readonly message: string; readonly reply?: Buffer | null }): void;
}

/** Cuts a connection's bytes into messages; made per connection. */
export type StreamFramerFactory = (
  handlers: StreamFramerHandlers,
  maxMessageBytes: number,
) => {
  push(chunk: Buffer): void;
  /** Bytes held of a message not yet complete (0 between messages). */
  readonly bufferedBytes: number;
};

export interface StreamTransportOptions {
  /** Frames each connection's byte stream into messages (the SIP layer supplies it). */
  frame: StreamFramerFactory;
  /** Close a connection with no traffic either way for this long (RFC 5626 keep-alives count as traffic). */
  idleTimeoutMs: number;
  /**
   * Once the first byte of a message has arrived, the whole message must arrive within this
   * long, or the connection is closed. Every byte counts as traffic for the idle timeout, so
   * without this a client sending a header a byte at a time (slowloris) would hold its
   * connection for ever.
   */
  messageTimeoutMs: number;
  /** TLS only: the handshake must complete within this long of the TCP accept. */
  handshakeTimeoutMs: number;
  maxMessageBytes: number;
  /** Most simultaneous inbound connections; more are refused. */
  maxConnections: number;
  /** Most simultaneous inbound connections from one source address; more are refused at once. */
  maxConnectionsPerSource: number;
  /** TLS server options (certificate, key); absent = plain TCP. */
  tls?: TlsOptions & { minVersion?: 'TLSv1.2' | 'TLSv1.3' };
  /** TLS client: verify the server certificate (default true) and extra CAs. */
  tlsClient?: { rejectUnauthorized?: boolean; ca?: string | Buffer };
  /** Refusals, closes by tollgate and peer errors, for metrics and logs. */
  events?: ConnectionEvents;
}

/**
 * After a framing error is answered, the connection is half-closed (our FIN follows the answer)
 * and what the peer still sends is read and discarded for this long before the socket is
 * destroyed: destroying it with unread bytes would send a RST, and a RST can make the peer's
 * stack discard the answer before its application reads it.
 */
export const CLOSE_LINGER_MS = 2000;

/** How long an outgoing connection may take to connect (and for TLS, to finish its handshake). */
const CONNECT_TIMEOUT_MS = 10_000;

interface Conn {
  readonly id: string;
  readonly socket: Socket;
  readonly key: string;
  readonly source: string;
  /** Last byte in or out (Date.now()). */
  lastActivity: number;
  /** When the first byte of the message being received arrived; 0 between messages. */
  messageStart: number;
  /** The connection's one timer (idle, message deadline or close linger), and when it fires. */
  timer: ReturnType<typeof setTimeout> | null;
  timerAt: number;
  /** A framing error was answered and the connection half-closed: input is discarded until the linger ends. */
  closing: boolean;
}

/**
 * SIP over TCP or TLS (RFC 3261 §18.3, TLS 1.2+): messages framed by Content-Length, responses
 * sent back on the connection the request came on, connections reused for a peer, RFC 5626
 * double-CRLF pings answered with a CRLF.
 *
 * Limits against clients that hold connections without using them: a per-source connection cap
 * and a TLS handshake deadline (ConnectionGuard), a deadline to complete a message once it has
 * begun, and an idle timeout. Each connection has one timer, set for its earliest deadline and
 * re-armed when it fires early, so a data chunk costs no timer operation.
 */
export class StreamTransport implements SipTransport {
  readonly protocol: 'tcp' | 'tls';
  private server: Server | null = null;
  private readonly byId = new Map<string, Conn>();
  private readonly byPeer = new Map<string, Conn>();
  private readonly guard: ConnectionGuard;
  private readonly events: ConnectionEvents;
  private closed = false;

  constructor(
    private readonly opts: StreamTransportOptions,
    private readonly onMessage: MessageHandler,
    private readonly onError: (err: Error) => void,
  ) {
    this.protocol = opts.tls ? 'tls' : 'tcp';
    this.events = opts.events ?? {};
    this.guard = new ConnectionGuard(
      { maxConnections: opts.maxConnections, maxConnectionsPerSource: opts.maxConnectionsPerSource, handshakeTimeoutMs: opts.handshakeTimeoutMs },
      this.events,
    );
  }

  async listen(host: string, port: number): Promise<void> {
    const server = this.opts.tls
      ? createTlsServer({ minVersion: 'TLSv1.2', ...this.opts.tls }, (s) => this.accept(s))
      : createTcpServer((s) => this.accept(s));
    this.guard.watch(server, this.opts.tls !== undefined);
    // A failed TLS handshake is the client's problem: report it, keep serving. A socket without
    // an address is already gone (refused by the guard, or reset by the client at once).
    server.on('tlsClientError', (err: Error, s: TLSSocket) => {
      if (s.remoteAddress !== undefined) this.events.peerError?.(sourceAddress(s), err);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err: Error) => this.onError(err));
  }

  address(): { address: string; port: number } {
    const a = this.server?.address();
    if (!a || typeof a === 'string') throw new TollgateError('INTERNAL', `${this.protocol.toUpperCase()} transport is not listening`);
    return { address: a.address, port: a.port };
  }

  get connections(): number {
    return this.byId.size;
  }

  /** Inbound connections open now from one source address (TLS ones still in their handshake too). */
  connectionsFrom(source: string): number {
    return this.guard.connectionsFrom(source);
  }

  /** An inbound connection, for TLS once its handshake is done. */
  private accept(socket: Socket | TLSSocket): void {
    if (socket.destroyed) return; // refused by the guard
    this.guard.handshakeDone(socket);
    this.adopt(socket);
  }

  private adopt(socket: Socket | TLSSocket): Conn {
    const id = randomBytes(8).toString('base64url');
    const remote = { protocol: this.protocol, address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const conn: Conn = { id, socket, key: peerKey(remote), source: sourceAddress(socket), lastActivity: Date.now(), messageStart: 0, timer: null, timerAt: 0, closing: false };
    this.byId.set(id, conn);
    this.byPeer.set(conn.key, conn);
    socket.setNoDelay(true);
    const local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    let delivered = 0;
    const framer = this.opts.frame(
      {
        onMessage: (data: Buffer) => {
          delivered++;
          this.onMessage({ data, peer: { ...remote, connectionId: id }, local });
        },
        onPing: () => {
          if (!socket.destroyed && !conn.closing) socket.write('\r\n');
        },
        onError: (e) => this.closeAfter(conn, e.reply ?? null),
      },
      this.opts.maxMessageBytes,
    );
    socket.on('data', (chunk: Buffer) => {
      const now = Date.now();
      conn.lastActivity = now;
      if (conn.closing) return;
      const before = delivered;
      try {
        framer.push(chunk);
      } finally {
        // The message deadline runs from the first byte of the message still incomplete.
        if (conn.closing || framer.bufferedBytes === 0) conn.messageStart = 0;
        else if (conn.messageStart === 0 || delivered !== before) conn.messageStart = now;
        this.arm(conn);
      }
    });
    socket.on('error', (err: Error) => this.events.peerError?.(conn.source, err));
    socket.on('close', () => {
      if (conn.timer) clearTimeout(conn.timer);
      conn.timer = null;
      this.forget(conn);
    });
    this.arm(conn);
    return conn;
  }

  private forget(conn: Conn): void {
    if (this.byId.get(conn.id) === conn) this.byId.delete(conn.id);
    if (this.byPeer.get(conn.key) === conn) this.byPeer.delete(conn.key);
  }

  /** When the connection must next be looked at: its idle deadline, or its message deadline if earlier. */
  private dueAt(conn: Conn): number {
    const idle = conn.lastActivity + this.opts.idleTimeoutMs;
    return conn.messageStart === 0 ? idle : Math.min(idle, conn.messageStart + this.opts.messageTimeoutMs);
  }

  /** Sets the connection's timer for its earliest deadline, unless it already fires no later. */
  private arm(conn: Conn): void {
    if (conn.closing || conn.socket.destroyed) return;
    const due = this.dueAt(conn);
    if (conn.timer && conn.timerAt <= due) return;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timerAt = due;
    conn.timer = setTimeout(() => this.onTimer(conn), Math.max(0, due - Date.now()));
  }

  private onTimer(conn: Conn): void {
    conn.timer = null;
    if (conn.closing || conn.socket.destroyed) return;
    const now = Date.now();
    let reason: ConnectionClose | null = null;
    if (conn.messageStart !== 0 && now >= conn.messageStart + this.opts.messageTimeoutMs) reason = 'message-timeout';
    else if (now >= conn.lastActivity + this.opts.idleTimeoutMs) reason = 'idle-timeout';
    if (!reason) {
      this.arm(conn);
      return;
    }
    this.events.closed?.(conn.source, reason);
    conn.socket.destroy();
  }

  /**
   * A framing error: the stream cannot be resynchronised (RFC 4475 §3.1.2.3), so the connection
   * closes, after the framer's answer (400, 513) when it has one. The FIN follows the answer;
   * bytes still arriving are discarded for CLOSE_LINGER_MS, then the socket is destroyed.
   */
  private closeAfter(conn: Conn, reply: Buffer | null): void {
    if (conn.closing) return;
    conn.closing = true;
    conn.messageStart = 0;
    // Not reused for sending; still in byId so close() destroys it.
    if (this.byPeer.get(conn.key) === conn) this.byPeer.delete(conn.key);
    this.events.closed?.(conn.source, 'framing-error');
    const socket = conn.socket;
    if (socket.destroyed) return;
    if (reply) socket.write(reply);
    socket.end();
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
  }

  async send(data: Buffer, peer: Peer): Promise<void> {
    if (this.closed) throw new TollgateError('INTERNAL', `${this.protocol.toUpperCase()} transport is closed`);
    let conn = (peer.connectionId ? this.byId.get(peer.connectionId) : undefined) ?? this.byPeer.get(peerKey(peer));
    if (!conn || conn.closing || conn.socket.destroyed) conn = await this.connect(peer);
    conn.lastActivity = Date.now();
    const socket = conn.socket;
    await new Promise<void>((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Opens a client connection (for requests tollgate sends, e.g. a BYE after the caller's connection closed). */
  private connect(peer: Peer): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      const connected = (): void => {
        socket.off('error', onError);
        clearTimeout(timer);
        resolve(this.adopt(socket));
      };
      const socket = this.opts.tls
        ? tlsConnect({ host: peer.address, port: peer.port, ...(peer.serverName ? { servername: peer.serverName } : {}), minVersion: 'TLSv1.2', rejectUnauthorized: this.opts.tlsClient?.rejectUnauthorized ?? true, ...(this.opts.tlsClient?.ca ? { ca: this.opts.tlsClient.ca } : {}) }, connected)
        : tcpConnect({ host: peer.address, port: peer.port }, connected);
      socket.once('error', onError);
      const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
      socket.once('close', () => clearTimeout(timer));
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.guard.close();
    for (const c of this.byId.values()) c.socket.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
