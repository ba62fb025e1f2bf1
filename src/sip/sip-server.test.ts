import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createLogger } from '../observability/logger.js';
import type { InboundMessage, Peer, SipTransport } from '../transport/sip-transport.js';
import { SipServer, type CallHandler, type InboundCall } from './sip-server.js';
import type { CallPolicy } from './call-policy.js';
import { parseMessage } from './sip-parser.js';
import type { SipResponse, SipRequest } from './sip-message.js';
import { digestResponse } from './digest-auth.js';

const PASSWORD = 'tg_live_password';
const USER = 'key_trunk';

class FakeTransport implements SipTransport {
  readonly protocol = 'udp' as const;
  readonly sent: { msg: SipResponse | SipRequest; peer: Peer }[] = [];
  readonly raw: string[] = [];
  address() {
    return { address: '127.0.0.1', port: 5060 };
  }
  send(data: Buffer, peer: Peer): Promise<void> {
    this.raw.push(data.toString());
    const r = parseMessage(data);
    // A 400 echoes the malformed header it refuses, so it may not parse back: keep it raw only.
    if (r.ok) this.sent.push({ msg: r.message, peer });
    return Promise.resolve();
  }
  close() {
    return Promise.resolve();
  }
  responses(): SipResponse[] {
    return this.sent.map((s) => s.msg).filter((m): m is SipResponse => m.kind === 'response');
  }
  requests(): SipRequest[] {
    return this.sent.map((s) => s.msg).filter((m): m is SipRequest => m.kind === 'request');
  }
}

const peer: Peer = { protocol: 'udp', address: '192.0.2.7', port: 5062 };

function md5(s: string) {
  return createHash('md5').update(s).digest('hex');
}

describe('SipServer (UAS core, RFC 3261 §8.2, §12, §13.3, §15)', () => {
  let t: FakeTransport;
  let server: SipServer<{ id: number }>;
  let ended: string[];
  let released: number;
  let completed: number;
  let offerDelay: Promise<void>;
  const answerSdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n';
  let calls: InboundCall<{ id: number }>[];

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    t = new FakeTransport();
    ended = [];
    released = 0;
    completed = 0;
    calls = [];
    offerDelay = Promise.resolve();
    const policy: CallPolicy<{ id: number }> = {
      ha1: (u, alg) => Promise.resolve(u === USER && alg === 'MD5' ? [md5(`${USER}:tollgate:${PASSWORD}`)] : null),
      authorizeInbound: (req) =>
        Promise.resolve(req.dialled === '+14155550100' ? { ok: true, grant: { id: 1 }, target: 'echo', maxDurationSec: 60 } : { ok: false, code: 'NUMBER_NOT_FOUND', message: 'no' }),
      release: () => {
        released++;
        return Promise.resolve();
      },
      complete: () => {
        completed++;
        return Promise.resolve();
      },
      renew: () => Promise.resolve(),
    };
    const handler: CallHandler<{ id: number }> = {
      offer: async (call) => {
        calls.push(call);
        await offerDelay;
        return { ok: true, sdp: Buffer.from(answerSdp) };
      },
      reoffer: () => Promise.resolve({ ok: true, sdp: Buffer.from(answerSdp.replace('1 1 IN', '1 2 IN')) }),
      ended: (call, reason) => ended.push(reason),
    };
    server = new SipServer({ realm: 'tollgate', nonceKey: randomBytes(32), nonceTtlMs: 300_000, digestAlgorithms: ['MD5'], userAgent: 'tollgate', bruteForce: { maxFailures: 5, windowMs: 60_000, blockMs: 60_000 } }, policy, handler, createLogger({ level: 'silent' }));
    server.addTransport(t);
  });
  afterEach(async () => {
    vi.useRealTimers();
    await server.close();
  });

  const flush = async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
    await vi.advanceTimersByTimeAsync(0);
  };
  const deliver = async (text: string) => {
    const inbound: InboundMessage = { data: Buffer.from(text.replace(/\n/g, '\r\n')), peer, local: { address: '127.0.0.1', port: 5060 } };
    server.handle(inbound);
    await flush();
  };
  const msg = (method: string, opts: { branch: string; cseq: number; toTag?: string; auth?: string; body?: string; extra?: string[] }) => {
    const body = opts.body ?? '';
    return [
      `${method} sip:+14155550100@127.0.0.1 SIP/2.0`,
      `Via: SIP/2.0/UDP 192.0.2.7:5062;branch=${opts.branch};rport`,
      'From: <sip:carrier@192.0.2.7>;tag=caller1',
      `To: <sip:+14155550100@127.0.0.1>${opts.toTag ? `;tag=${opts.toTag}` : ''}`,
      'Call-ID: call-abc',
      `CSeq: ${opts.cseq} ${method}`,
      'Contact: <sip:carrier@192.0.2.7:5062>',
      'Max-Forwards: 70',
      ...(opts.auth ? [`Proxy-Authorization: ${opts.auth}`] : []),
      ...(opts.extra ?? []),
      ...(body ? ['Content-Type: application/sdp'] : []),
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\n');
  };
  const offer = 'v=0\no=- 1 1 IN IP4 192.0.2.7\ns=-\nc=IN IP4 192.0.2.7\nt=0 0\nm=audio 30000 RTP/AVP 0\n';
  const last = () => t.responses().at(-1)!;

  /** INVITE → 407 → INVITE with credentials; returns the To tag of the answer once answered. */
  async function authedInvite(branch = 'z9hG4bKinv2'): Promise<void> {
    await deliver(msg('INVITE', { branch: 'z9hG4bKinv1', cseq: 1, body: offer }));
    const challenge = last();
    expect(challenge.status).toBe(407);
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers.get('Proxy-Authenticate')!)![1]!;
    await deliver(msg('ACK', { branch: 'z9hG4bKinv1', cseq: 1, toTag: /tag=([^;]+)/.exec(challenge.headers.get('To')!)?.[1] }));
    const uri = 'sip:+14155550100@127.0.0.1';
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce: 'c0ffee', qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`;
    await deliver(msg('INVITE', { branch, cseq: 2, body: offer, auth }));
  }
  const toTagOf = (r: SipResponse) => /tag=([^;>]+)/.exec(r.headers.get('To')!)![1]!;

  it('challenges an INVITE with 407, then answers 200 with SDP, a To tag and a Contact', async () => {
    await authedInvite();
    const ok = last();
    expect(ok.status).toBe(200);
    expect(ok.headers.get('Content-Type')).toBe('application/sdp');
    expect(ok.body.toString()).toContain('m=audio 20000');
    expect(toTagOf(ok)).toMatch(/^[A-Za-z0-9_-]{8,}$/);
    expect(ok.headers.get('Contact')).toMatch(/^<sip:127\.0\.0\.1:5060>$/);
    // rport filled in (RFC 3581); no received= since the Via host is the real source (§18.2.1).
    expect(ok.headers.get('Via')).toContain('rport=5062');
    expect(ok.headers.get('Via')).not.toContain('received=');
    expect(t.responses().map((r) => r.status)).toEqual([100, 407, 100, 200]);
  });

  it('resends the 200 until the ACK (T1 doubling), then stops (§13.3.1.4)', async () => {
    await authedInvite();
    await vi.advanceTimersByTimeAsync(500 + 1000);
    expect(t.responses().filter((r) => r.status === 200)).toHaveLength(3);
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: toTagOf(last()) }));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(t.responses().filter((r) => r.status === 200)).toHaveLength(3);
    expect(ended).toEqual([]);
  });

  it('ends the call with a BYE when no ACK comes within 64×T1', async () => {
    await authedInvite();
    await vi.advanceTimersByTimeAsync(33_000);
    expect(ended).toEqual(['ack-timeout']);
    expect(t.requests().map((r) => r.method)).toContain('BYE');
  });

  it('a BYE ends the call, answered 200, and settles it; a BYE for no dialog gets 481', async () => {
    await authedInvite();
    const tag = toTagOf(last());
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: tag }));
    await vi.advanceTimersByTimeAsync(2000);
    await deliver(msg('BYE', { branch: 'z9hG4bKbye', cseq: 3, toTag: tag }));
    expect(last().status).toBe(200);
    expect(ended).toEqual(['remote-bye']);
    expect(completed).toBe(1);
    await deliver(msg('BYE', { branch: 'z9hG4bKbye2', cseq: 4, toTag: tag }));
    expect(last().status).toBe(481);
  });

  it('CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE, grant released, no BYE (§9.2)', async () => {
    let letGo!: () => void;
    offerDelay = new Promise((r) => (letGo = r));
    await authedInvite('z9hG4bKslow');
    await deliver(msg('CANCEL', { branch: 'z9hG4bKslow', cseq: 2 }));
    letGo();
    await flush();
    const statuses = t.responses().map((r) => `${r.status} ${r.headers.get('CSeq')}`);
    expect(statuses).toContain('200 2 CANCEL');
    expect(statuses).toContain('487 2 INVITE');
    expect(statuses).not.toContain('200 2 INVITE');
    expect(ended).toEqual(['cancelled']);
    expect(released).toBe(1);
    expect(t.requests().map((r) => r.method)).not.toContain('BYE');
  });

  it('a re-INVITE (hold) in the dialog gets a new answer', async () => {
    await authedInvite();
    const tag = toTagOf(last());
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: tag }));
    await deliver(msg('INVITE', { branch: 'z9hG4bKreinv', cseq: 3, toTag: tag, body: offer.replace('m=audio', 'a=sendonly\nm=audio') }));
    expect(last().status).toBe(200);
    expect(last().body.toString()).toContain('1 2 IN');
  });

  it('puts a To tag on every response but 100 (§8.2.6.2)', async () => {
    await deliver(msg('INVITE', { branch: 'z9hG4bKtag', cseq: 1, body: offer }));
    const [trying, challenge] = t.responses().slice(-2);
    expect(trying!.headers.get('To')).not.toContain('tag=');
    expect(challenge!.headers.get('To')).toMatch(/;tag=[A-Za-z0-9_-]{8,}$/);
  });

  it('refuses an unknown number with 404 and a Reason header, after authentication', async () => {
    await deliver(msg('INVITE', { branch: 'z9hG4bKx1', cseq: 1, body: offer }).replace(/\+14155550100/g, '+14155550199'));
    const nonce = /nonce="([^"]+)"/.exec(last().headers.get('Proxy-Authenticate')!)![1]!;
    const uri = 'sip:+14155550199@127.0.0.1';
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce: 'c1', qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1"`;
    await deliver(msg('INVITE', { branch: 'z9hG4bKx2', cseq: 2, body: offer, auth }).replace(/\+14155550100/g, '+14155550199'));
    expect(last().status).toBe(404);
    expect(last().headers.get('Reason')).toBe('SIP;cause=404;text="NUMBER_NOT_FOUND"');
  });

  it('an INVITE without SDP gets 488 and gives the grant back', async () => {
    await deliver(msg('INVITE', { branch: 'z9hG4bKn1', cseq: 1 }));
    const nonce = /nonce="([^"]+)"/.exec(last().headers.get('Proxy-Authenticate')!)![1]!;
    const uri = 'sip:+14155550100@127.0.0.1';
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce: 'c2', qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c2"`;
    await deliver(msg('INVITE', { branch: 'z9hG4bKn2', cseq: 2, auth }));
    expect(last().status).toBe(488);
    expect(released).toBe(1);
  });

  it('notes the real source in the top Via when it differs from the sent-by (received, RFC 3581)', async () => {
    await deliver(msg('OPTIONS', { branch: 'z9hG4bKnat', cseq: 1 }).replace('Via: SIP/2.0/UDP 192.0.2.7:5062', 'Via: SIP/2.0/UDP 10.1.1.1:5060'));
    expect(last().headers.get('Via')).toBe('SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKnat;rport=5062;received=192.0.2.7');
  });

  it('answers OPTIONS 200 without authentication, unknown methods 405 with Allow, Require 420', async () => {
    await deliver(msg('OPTIONS', { branch: 'z9hG4bKo', cseq: 1 }));
    expect(last().status).toBe(200);
    expect(last().headers.get('Allow')).toContain('INVITE');
    await deliver(msg('PUBLISH', { branch: 'z9hG4bKp', cseq: 1 }));
    expect(last().status).toBe(405);
    await deliver(msg('OPTIONS', { branch: 'z9hG4bKr', cseq: 1, extra: ['Require: 100rel'] }));
    expect([last().status, last().headers.get('Unsupported')]).toEqual([420, '100rel']);
  });

  it('answers a request that does not parse with 400, and drops a garbage datagram', async () => {
    await deliver(msg('OPTIONS', { branch: 'z9hG4bKbad', cseq: 1 }).replace('CSeq: 1 OPTIONS', 'CSeq: one OPTIONS'));
    expect(t.raw.at(-1)).toMatch(/^SIP\/2\.0 400 Malformed CSeq header\r\n/);
    const before = t.raw.length;
    await deliver('\u0000\u0001garbage');
    expect(t.raw.length).toBe(before);
  });

  it('a media-side hang-up sends BYE and ends the call once', async () => {
    await authedInvite();
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: toTagOf(last()) }));
    await calls[0]!.hangup('media-timeout');
    await calls[0]!.hangup('media-timeout');
    expect(t.requests().filter((r) => r.method === 'BYE')).toHaveLength(1);
    const bye = t.requests().find((r) => r.method === 'BYE')!;
    expect(bye.uri).toBe('sip:carrier@192.0.2.7:5062');
    expect(bye.headers.get('To')).toContain('tag=caller1');
    expect(ended).toEqual(['media-timeout']);
  });

  it('hangs up at the maximum duration', async () => {
    await authedInvite();
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: toTagOf(last()) }));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(ended).toEqual(['max-duration']);
  });

  it('while draining, new INVITEs get 503 with Retry-After', async () => {
    server.drain();
    await deliver(msg('INVITE', { branch: 'z9hG4bKd', cseq: 1, body: offer }));
    expect(last().status).toBe(503);
    expect(last().headers.get('Retry-After')).toBe('30');
  });
});
