import type { Server, Socket } from 'node:net';

/** Why a connection was refused at accept. */
export type ConnectionRefusal =
  /** The source address already holds maxConnectionsPerSource connections. */
  | 'source-limit'
  /** The transport already holds maxConnections connections. */
  | 'limit';

/** Why tollgate closed a connection it had accepted. */
export type ConnectionClose =
  /** The TLS handshake (TLS, WSS) or the WebSocket upgrade request did not complete in time. */
  | 'handshake-timeout'
  /** A message's first byte arrived but the message was not complete in time (slowloris). */
  | 'message-timeout'
  /** No traffic either way for the idle timeout. */
  | 'idle-timeout'
  /** The byte stream could not be framed (bad Content-Length, oversize message): answered, then closed. */
  | 'framing-error';

/**
 * What stream and WebSocket transports report about their connections, for metrics and logs.
 * None of these is a fault of tollgate: they are conditions caused by clients, reported as
 * data so the caller can count them and log them at a level and rate of its choosing.
 */
export interface ConnectionEvents {
  refused?(source: string, reason: ConnectionRefusal): void;
  closed?(source: string, reason: ConnectionClose): void;
  /** A peer's connection failed (reset, broken pipe, failed TLS handshake, malformed HTTP). */
  peerError?(source: string, err: Error): void;
}

export interface ConnectionLimits {
  /** Most simultaneous inbound connections; more are refused (Node's server.maxConnections). */
  readonly maxConnections: number;
  /** Most simultaneous inbound connections from one source address; more are refused at once. */
  readonly maxConnectionsPerSource: number;
  /**
   * For servers with a handshake (TLS, and the HTTP upgrade of a WebSocket): time from the TCP
   * accept until handshakeDone(); then the connection is closed.
   */
  readonly handshakeTimeoutMs: number;
}

/** The address a connection comes from, IPv4-mapped IPv6 written as IPv4 (one source, one count). */
export function sourceAddress(s: { readonly remoteAddress?: string | undefined }): string {
  const a = s.remoteAddress ?? '';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function connectionKey(s: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): string {
  return `${s.remoteAddress ?? ''}|${s.remotePort ?? 0}`;
}

/**
 * Admission control for a listening TCP, TLS or HTTP server, at the raw TCP level (before any
 * TLS handshake or HTTP parsing, so a slow handshake holds a slot and is counted too):
 * - a per-source-address cap: the connection over it is closed as soon as it is accepted, so
 *   one address holding many half-open connections cannot lock other addresses out;
 * - the transport-wide cap (server.maxConnections; Node refuses those and emits 'drop');
 * - a handshake deadline for servers that have one: the TLS handshake (and, for WebSocket, the
 *   HTTP upgrade request) must finish within handshakeTimeoutMs of the accept.
 * The deadline is tracked by the remote address and port, which the raw socket and the TLS
 * socket or HTTP request built on it share.
 */
export class ConnectionGuard {
  private readonly perSource = new Map<string, number>();
  private readonly handshakes = new Map<string, ReturnType<typeof setTimeout>>();
  private closed = false;

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly events: ConnectionEvents = {},
  ) {}

  /** Guards a server before it listens. `handshake`: start a deadline at each accept. */
  watch(server: Server, handshake: boolean): void {
    server.maxConnections = this.limits.maxConnections;
    server.on('drop', (d?: { remoteAddress?: string }) => this.events.refused?.(sourceAddress(d ?? {}), 'limit'));
    // First among the 'connection' listeners: a refused socket is destroyed before TLS or HTTP
    // wraps it, so the refusal makes no handshake error of its own.
    server.prependListener('connection', (raw: Socket) => this.admit(raw, handshake));
  }

  /** Inbound connections now held by a source. */
  connectionsFrom(source: string): number {
    return this.perSource.get(source) ?? 0;
  }

  /** The TLS handshake or WebSocket upgrade of this connection completed: its deadline is off. */
  handshakeDone(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): void {
    const key = connectionKey(socket);
    const timer = this.handshakes.get(key);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.handshakes.delete(key);
  }

  /** Clears every pending deadline (the server's connections are being destroyed). */
  close(): void {
    this.closed = true;
    for (const t of this.handshakes.values()) clearTimeout(t);
    this.handshakes.clear();
  }

  private admit(raw: Socket, handshake: boolean): void {
    const source = sourceAddress(raw);
    if (this.closed) {
      raw.destroy();
      return;
    }
    const held = this.perSource.get(source) ?? 0;
    if (held >= this.limits.maxConnectionsPerSource) {
      raw.destroy();
      this.events.refused?.(source, 'source-limit');
      return;
    }
    this.perSource.set(source, held + 1);
    const key = connectionKey(raw);
    raw.once('close', () => {
      const n = (this.perSource.get(source) ?? 1) - 1;
      if (n <= 0) this.perSource.delete(source);
      else this.perSource.set(source, n);
      const timer = this.handshakes.get(key);
      if (timer !== undefined) {
        clearTimeout(timer);
        this.handshakes.delete(key);
      }
    });
    if (!handshake) return;
    this.handshakes.set(
      key,
      setTimeout(() => {
        this.handshakes.delete(key);
        if (raw.destroyed) return;
        this.events.closed?.(source, 'handshake-timeout');
        raw.destroy();
      }, this.limits.handshakeTimeoutMs),
    );
  }
}
