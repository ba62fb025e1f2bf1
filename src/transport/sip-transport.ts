/**
 * The transport contract the SIP layer sees (STYLE.md §1): raw messages in, raw messages out.
 * Framing (datagram, stream, WebSocket message) is the transport's job; parsing is SIP's.
 */
export type TransportProtocol = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** Where a message came from, or where one goes. */
export interface Peer {
  readonly protocol: TransportProtocol;
  readonly address: string;
  readonly port: number;
  /** For connection-oriented transports: the connection a request arrived on, so the response goes back on it. */
  readonly connectionId?: string;
  /** TLS client connections: the name the peer's certificate must carry (SNI too), e.g. a carrier's DNS name. */
  readonly serverName?: string;
}

export interface InboundMessage {
  readonly data: Buffer;
  readonly peer: Peer;
  /** The local address the message arrived at (for Via and Contact). */
  readonly local: { readonly address: string; readonly port: number };
}

export interface SipTransport {
  readonly protocol: TransportProtocol;
  /** Bound address once listening. */
  address(): { address: string; port: number };
  /**
   * Sends one message. Over streams it reuses the peer's connection when connectionId names a
   * live one (RFC 3261 §18.2.2), else an open connection to address:port, else opens one
   * (TCP/TLS clients only; a WebSocket peer cannot be reached without its connection).
   */
  send(data: Buffer, peer: Peer): Promise<void>;
  close(): Promise<void>;
}

export type MessageHandler = (msg: InboundMessage) => void;

/** Reliable transports need no retransmission timers (RFC 3261 §17.1.1.2: A, E, G are off). */
export function isReliable(p: TransportProtocol): boolean {
  return p !== 'udp';
}

export function peerKey(p: Pick<Peer, 'protocol' | 'address' | 'port'>): string {
  return `${p.protocol}:${p.address}:${p.port}`;
}
