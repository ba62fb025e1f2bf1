import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from 'pino';
import { parseMessage } from '../sip/sip-parser.js';
import { buildResponse, serializeMessage } from '../sip/sip-serializer.js';
import { DEFAULT_LIMITS, type SipRequest } from '../sip/sip-message.js';
import { parseUri } from '../sip/sip-grammar.js';
import { newTag } from '../sip/sip-ids.js';
import { buildAnswer, isParseError, isRejection, negotiate, parseOffer } from '../sdp/index.js';

/**
 * What the test sink does with a call, by the dialled number's last four digits (like a
 * carrier's test numbers): 0486 busy (486), 0480 unavailable (480), 0404 not found (404),
 * 0408 rings and never answers, 0603 declined (603); anything else rings for 200 ms and
 * answers, then echoes the caller's RTP back until the BYE.
 */
export const TEST_SINK_BEHAVIOURS: Readonly<Record<string, number | 'no-answer'>> = { '0486': 486, '0480': 480, '0404': 404, '0408': 'no-answer', '0603': 603 };

interface SinkCall {
  readonly media: Socket;
  readonly toTag: string;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * The built-in carrier that test-mode keys' outbound calls reach instead of a live trunk
 * (docs/outbound.md): a small SIP UAS on 127.0.0.1 over UDP that answers like a carrier and
 * echoes media, so an agent hears its own audio. Nothing it receives leaves the host.
 */
export class TestSink {
  private sock: Socket | null = null;
  private readonly calls = new Map<string, SinkCall>();
  /** INVITEs received, newest last (tests read the Identity header here). */
  readonly invites: SipRequest[] = [];

  constructor(private readonly log: Logger) {}

  async start(): Promise<{ address: string; port: number }> {
    const sock = createSocket('udp4');
    await new Promise<void>((res, rej) => {
      sock.once('error', rej);
      sock.bind(0, '127.0.0.1', () => res());
    });
    sock.on('message', (data, rinfo) => this.onMessage(data, rinfo.address, rinfo.port));
    sock.on('error', (err) => this.log.warn({ err }, 'test sink socket error'));
    this.sock = sock;
    return this.address;
  }

  get address(): { address: string; port: number } {
    const a = this.sock?.address();
    return { address: '127.0.0.1', port: a?.port ?? 0 };
  }

  private reply(req: SipRequest, status: number, to: { address: string; port: number }, extra: { toTag?: string; body?: Buffer; headers?: [string, string][] } = {}): void {
    const res = buildResponse(req, status, undefined, {
      ...(extra.toTag ? { toTag: extra.toTag } : {}),
      headers: [['Server', 'tollgate-test-sink'], ...(extra.headers ?? [])],
      ...(extra.body ? { body: extra.body } : {}),
    });
    this.sock?.send(serializeMessage(res), to.port, to.address);
  }

  private onMessage(data: Buffer, address: string, port: number): void {
    const parsed = parseMessage(data, DEFAULT_LIMITS);
    if (!parsed.ok || parsed.message.kind !== 'request') return;
    const req = parsed.message;
    const from = { address, port };
    const callId = req.headers.get('Call-ID') ?? '';
    switch (req.method) {
      case 'INVITE': {
        const existing = this.calls.get(callId);
        if (existing) return; // a retransmission (the answer will follow or was sent)
        this.invites.push(req);
        if (this.invites.length > 100) this.invites.shift();
        void this.onInvite(req, from);
        return;
      }
      case 'ACK':
        return;
      case 'CANCEL': {
        this.reply(req, 200, from);
        const c = this.calls.get(callId);
        if (c?.timer) clearTimeout(c.timer);
        if (c) {
          this.calls.delete(callId);
          c.media.close();
          const invite = this.invites.find((i) => i.headers.get('Call-ID') === callId);
          if (invite) this.reply(invite, 487, from, { toTag: c.toTag });
        }
        return;
      }
      case 'BYE': {
        this.reply(req, 200, from);
        const c = this.calls.get(callId);
        if (c) {
          if (c.timer) clearTimeout(c.timer);
          c.media.close();
          this.calls.delete(callId);
        }
        return;
      }
      default:
        this.reply(req, 200, from);
    }
  }

  private async onInvite(req: SipRequest, from: { address: string; port: number }): Promise<void> {
    this.reply(req, 100, from);
    const user = parseUri(req.uri)?.user ?? '';
    const behaviour = TEST_SINK_BEHAVIOURS[user.slice(-4)];
    const toTag = newTag();
    if (typeof behaviour === 'number') {
      this.reply(req, behaviour, from, { toTag });
      return;
    }
    const media = createSocket('udp4');
    await new Promise<void>((res) => media.bind(0, '127.0.0.1', () => res()));
    // Echo: every RTP packet goes back where it came from.
    media.on('message', (pkt, r) => media.send(pkt, r.port, r.address));
    media.on('error', () => {});
    const call: SinkCall = { media, toTag, timer: null };
    this.calls.set(req.headers.get('Call-ID') ?? '', call);
    this.reply(req, 180, from, { toTag });
    if (behaviour === 'no-answer') return;
    call.timer = setTimeout(() => {
      const offer = parseOffer(req.body);
      if (isParseError(offer)) return this.reply(req, 488, from, { toTag });
      const plan = negotiate(offer, { codecs: ['PCMU', 'PCMA'], srtp: 'optional', suites: ['AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32'], telephoneEvent: true });
      if (isRejection(plan)) return this.reply(req, 488, from, { toTag });
      const sdp = buildAnswer(plan, { address: '127.0.0.1', port: media.address().port, sessionId: 1, sessionVersion: 1, username: 'test-sink' });
      this.reply(req, 200, from, { toTag, body: Buffer.from(sdp), headers: [['Contact', `<sip:sink@127.0.0.1:${this.address.port}>`], ['Content-Type', 'application/sdp']] });
    }, 200);
  }

  async stop(): Promise<void> {
    for (const c of this.calls.values()) {
      if (c.timer) clearTimeout(c.timer);
      c.media.close();
    }
    this.calls.clear();
    await new Promise<void>((res) => (this.sock ? this.sock.close(() => res()) : res()));
    this.sock = null;
  }
}
