import { createServer as createTcpServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, connect as tlsConnect, type TlsOptions, type TLSSocket } from 'node:tls';
import { randomBytes } from 'node:crypto';
import { TollgateError } from '../errors/index.js';
import type { MessageHandler, Peer, SipTransport } from './sip-transport.js';
import { peerKey } from './sip-transport.js';

/** What a stream framer reports (sip/'s SipStreamFramer is one: RFC 3261 §18.3 framing, RFC 5626 keep-alives). */
export interface StreamFramerHandlers {
  onMessage(message: Buffer): void;
  onPing?(): void;
  onError(error: { readonly code: string; readonly message: string }): void;
}

/** Cuts a connection's bytes into messages; made per connection. */
export type StreamFramerFactory = (handlers: StreamFramerHandlers, maxMessageBytes: number) => { push(chunk: Buffer): void };

export interface StreamTransportOptions {
  /** Frames each connection's byte stream into messages (the SIP layer supplies it). */
  frame: StreamFramerFactory;
  /** Close a connection with no traffic for this long (RFC 5626 keep-alives count as traffic). */
  idleTimeoutMs: number;
  maxMessageBytes: number;
  /** Most simultaneous connections; more are refused. */
  maxConnections: number;
  /** TLS server options (certificate, key); absent = plain TCP. */
  tls?: TlsOptions & { minVersion?: 'TLSv1.2' | 'TLSv1.3' };
  /** TLS client: verify the server certificate (default true) and extra CAs. */
  tlsClient?: { rejectUnauthorized?: boolean; ca?: string | Buffer };
}

interface Conn {
  readonly id: string;
  readonly socket: Socket;
  readonly key: string;
}

/**
 * SIP over TCP or TLS (RFC 3261 §18.3, TLS 1.2+): messages framed by Content-Length, responses
 * sent back on the connection the request came on, connections reused for a peer, RFC 5626
 * double-CRLF pings answered with a CRLF pong, idle connections closed.
 */
export class StreamTransport implements SipTransport {
  readonly protocol: 'tcp' | 'tls';
  private server: Server | null = null;
  private readonly byId = new Map<string, Conn>();
  private readonly byPeer = new Map<string, Conn>();
  private closed = false;

  constructor(
    private readonly opts: StreamTransportOptions,
    private readonly onMessage: MessageHandler,
    private readonly onError: (err: Error) => void,
  ) {
    this.protocol = opts.tls ? 'tls' : 'tcp';
  }

  async listen(host: string, port: number): Promise<void> {
    const server = this.opts.tls
      ? createTlsServer({ minVersion: 'TLSv1.2', ...this.opts.tls }, (s) => this.adopt(s))
      : createTcpServer((s) => this.adopt(s));
    server.maxConnections = this.opts.maxConnections;
    // A failed TLS handshake is the client's problem: note it, keep serving.
    server.on('tlsClientError', () => {});
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

  private adopt(socket: Socket | TLSSocket): Conn {
    const id = randomBytes(8).toString('base64url');
    const remote = { protocol: this.protocol, address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const conn: Conn = { id, socket, key: peerKey(remote) };
    this.byId.set(id, conn);
    this.byPeer.set(conn.key, conn);
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.idleTimeoutMs, () => socket.destroy());
    const local = { address: socket.localAddress ?? '', port: socket.localPort ?? 0 };
    const framer = this.opts.frame(
      {
        onMessage: (data: Buffer) => this.onMessage({ data, peer: { ...remote, connectionId: id }, local }),
        onPing: () => {
          if (!socket.destroyed) socket.write('\r\n');
        },
        onError: () => socket.destroy(),
      },
      this.opts.maxMessageBytes,
    );
    socket.on('data', (chunk: Buffer) => framer.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.byId.delete(id);
      if (this.byPeer.get(conn.key) === conn) this.byPeer.delete(conn.key);
    });
    return conn;
  }

  async send(data: Buffer, peer: Peer): Promise<void> {
    if (this.closed) throw new TollgateError('INTERNAL', `${this.protocol.toUpperCase()} transport is closed`);
    let conn = (peer.connectionId ? this.byId.get(peer.connectionId) : undefined) ?? this.byPeer.get(peerKey(peer));
    if (!conn || conn.socket.destroyed) conn = await this.connect(peer);
    const socket = conn.socket;
    await new Promise<void>((resolve, reject) => socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Opens a client connection (for requests tollgate sends, e.g. a BYE after the caller's connection closed). */
  private connect(peer: Peer): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      const socket = this.opts.tls
        ? tlsConnect({ host: peer.address, port: peer.port, ...(peer.serverName ? { servername: peer.serverName } : {}), minVersion: 'TLSv1.2', rejectUnauthorized: this.opts.tlsClient?.rejectUnauthorized ?? true, ...(this.opts.tlsClient?.ca ? { ca: this.opts.tlsClient.ca } : {}) }, () => {
            socket.off('error', onError);
            resolve(this.adopt(socket));
          })
        : tcpConnect({ host: peer.address, port: peer.port }, () => {
            socket.off('error', onError);
            resolve(this.adopt(socket));
          });
      socket.once('error', onError);
      socket.setTimeout(10_000, () => socket.destroy(new Error('connect timeout')));
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.byId.values()) c.socket.destroy();
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
