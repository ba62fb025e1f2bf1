import { createSocket, type Socket } from 'node:dgram';
import { isIP, isIPv6 } from 'node:net';
import { TollgateError } from '../errors/index.js';
import type { MessageHandler, Peer, SipTransport } from './sip-transport.js';

/** SIP over UDP (RFC 3261 §18). One socket; datagrams larger than maxDatagram are dropped. */
export class UdpTransport implements SipTransport {
  readonly protocol = 'udp' as const;
  private socket: Socket | null = null;
  private closed = false;

  constructor(
    private readonly onMessage: MessageHandler,
    private readonly onError: (err: Error) => void,
    private readonly maxDatagram = 65_535,
  ) {}

  async listen(host: string, port: number): Promise<void> {
    // Destinations are IP literals (a request's source or a Via's received/rport): answer dgram's
    // lookup synchronously instead of a dns.lookup round per message.
    const socket = createSocket({
      type: isIPv6(host) ? 'udp6' : 'udp4',
      reuseAddr: false,
      lookup: (addr: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void) => {
        const family = isIP(addr);
        if (family === 0) cb(new Error(`not an IP literal: ${addr}`), '', 0);
        else cb(null, addr, family);
      },
    });
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const local = socket.address();
    socket.on('error', (err) => this.onError(err));
    socket.on('message', (data, rinfo) => {
      if (data.length === 0 || data.length > this.maxDatagram) return;
      // RFC 5626 §4.4.1: a UDP keep-alive is STUN, not CRLF; a stray CRLF datagram is ignored.
      if (data.length <= 4 && data.toString('latin1').trim() === '') return;
      this.onMessage({ data, peer: { protocol: 'udp', address: rinfo.address, port: rinfo.port }, local: { address: local.address, port: local.port } });
    });
  }

  address(): { address: string; port: number } {
    if (!this.socket) throw new TollgateError('INTERNAL', 'UDP transport is not listening');
    const a = this.socket.address();
    return { address: a.address, port: a.port };
  }

  send(data: Buffer, peer: Peer): Promise<void> {
    const socket = this.socket;
    if (!socket || this.closed) return Promise.reject(new TollgateError('INTERNAL', 'UDP transport is closed'));
    return new Promise((resolve, reject) => {
      socket.send(data, peer.port, peer.address, (err) => (err ? reject(err) : resolve()));
    });
  }

  close(): Promise<void> {
    if (this.closed || !this.socket) {
      this.closed = true;
      return Promise.resolve();
    }
    this.closed = true;
    const s = this.socket;
    return new Promise((resolve) => s.close(() => resolve()));
  }
}
