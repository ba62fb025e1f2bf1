import type { TransportProtocol } from '../transport/sip-transport.js';
import type { SipMessage } from './sip-message.js';
import { parseNameAddr } from './sip-grammar.js';

/** The body of a message when it is an SDP (Content-Type application/sdp, not empty); else null. */
export function sdpBody(m: SipMessage): Buffer | null {
  const ct = m.headers.get('Content-Type')?.split(';')[0]?.trim().toLowerCase();
  return ct === 'application/sdp' && m.body.length > 0 ? m.body : null;
}

/** The tag parameter of a From/To header value, or null. */
export function tagOf(header: string | undefined): string | null {
  return header ? parseNameAddr(header)?.params.get('tag') ?? null : null;
}

/** The URI parameter naming a transport in Contact and Request-URIs ('' for UDP, the default). */
export function transportParam(p: TransportProtocol): string {
  return p === 'udp' ? '' : `;transport=${p}`;
}
