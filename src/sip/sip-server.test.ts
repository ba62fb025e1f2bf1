import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createLogger } from '../observability/logger.js';
import type { InboundMessage, Peer, SipTransport } from '../transport/sip-transport.js';
import { SipServer, type CallHandler, type InboundInvite, type InboundLeg, type LegEnd } from './sip-server.js';
import type { LoadMonitor, LoadVerdict, NonceCountStore, SipCredentials } from './call-policy.js';
import { parseMessage } from './sip-parser.js';
import type { SipResponse, SipRequest } from './sip-message.js';
import { digestResponse } from './digest-auth.js';

const PASSWORD = 'tg_live_password';
const USER = 'key_trunk';

class FakeTransport implements SipTransport {
  readonly protocol = 'udp' as const;
  readonly sent: { msg: SipResponse | SipRequest; peer: Peer }[] = [];
  readonly raw: string[] = [];
  /** Makes the next send of a response with this status fail, as a broken socket would. */
  failStatus: number | null = null;
  address() {
    return { address: '127.0.0.1', port: 5060 };
  }
  send(data: Buffer, peer: Peer): Promise<void> {
    if (this.failStatus !== null && data.toString().startsWith(`SIP/2.0 ${this.failStatus} `)) {
      this.failStatus = null;
      return Promise.reject(new Error('EPIPE'));
    }
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

let peer: Peer = { protocol: 'udp', address: '192.0.2.7', port: 5062 };
const CARRIER: Peer = { protocol: 'udp', address: '192.0.2.7', port: 5062 };

function md5(s: string) {
  return createHash('md5').update(s).digest('hex');
}

describe('SipServer (UAS core, RFC 3261 §8.2, §12, §13.3, §15)', () => {
  let t: FakeTransport;
  let server: SipServer;
  let ended: LegEnd[];
  let offerDelay: Promise<void>;
  let invites: InboundInvite[];
  let legs: InboundLeg[];
  let throwOnInvite: boolean;
  /** Holds the credentials lookup (a store read) until it resolves. */
  let ha1Delay: Promise<void>;
  let ha1Lookups: number;
  /** What the fake load monitor answers. */
  let load: LoadVerdict;
  let logLines: Record<string, unknown>[];
  let nonceCountsDown: boolean;
  let events: string[];
  const answerSdp = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n';

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    t = new FakeTransport();
    ended = [];
    invites = [];
    legs = [];
    throwOnInvite = false;
    offerDelay = Promise.resolve();
    ha1Delay = Promise.resolve();
    ha1Lookups = 0;
    load = { ok: true };
    logLines = [];
    events = [];
    peer = CARRIER;
    nonceCountsDown = false;
    const credentials: SipCredentials = {
      ha1: async (u, alg) => {
        ha1Lookups++;
        await ha1Delay;
        return u === USER && alg === 'MD5' ? [md5(`${USER}:tollgate:${PASSWORD}`)] : null;
      },
    };
    // The application side, as calls/ does it: bind, then answer or refuse.
    const handler: CallHandler = {
      invite: async (inv, leg) => {
        invites.push(inv);
        legs.push(leg);
        leg.bind({
          ended: (reason) => ended.push(reason),
          reoffer: () => Promise.resolve({ ok: true, sdp: Buffer.from(answerSdp.replace('1 1 IN', '1 2 IN')) }),
        });
        if (throwOnInvite) throw new Error('handler fault');
        if (inv.dialled !== '+14155550100') return leg.refuse('NUMBER_NOT_FOUND', 'no');
        if (!inv.sdp) return leg.refuse('SDP_NOT_ACCEPTABLE', 'an SDP offer in the INVITE is required');
        await leg.ring(180);
        await offerDelay;
        await leg.answer(Buffer.from(answerSdp));
      },
    };
    const seen = new Set<string>();
    const nonceCounts: NonceCountStore = {
      claim: (nonce, nc) => {
        if (nonceCountsDown) return Promise.reject(new Error('counters down'));
        const fresh = !seen.has(`${nonce}:${nc}`);
        seen.add(`${nonce}:${nc}`);
        return Promise.resolve(fresh);
      },
    };
    const monitor: LoadMonitor = { admit: () => load };
    const log = createLogger({ level: 'info', destination: { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) } });
    server = new SipServer(
      {
        realm: 'tollgate',
        nonceKey: randomBytes(32),
        nonceTtlMs: 30_000,
        digestAlgorithms: ['MD5'],
        userAgent: 'tollgate',
        bruteForce: { maxFailures: 5, windowMs: 60_000, blockMs: 60_000, maxUsernamesPerSource: 3 },
        challenges: { ratePerSec: 10, burst: 20, floodThreshold: 50, blockMs: 60_000 },
      },
      {
        credentials,
        nonceCounts,
        load: monitor,
        handler,
        log,
        events: {
          onAuthFailure: (_ip, f) => events.push(`auth-failure:${f}`),
          onBlocked: (ip, b) => events.push(`blocked:${b}:${ip}`),
          onDropped: (b) => events.push(`dropped:${b}`),
          onChallenge: (o) => events.push(`challenge:${o}`),
          onOverload: (sig) => events.push(`overload:${sig}`),
        },
      },
    );
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
  const msg = (method: string, opts: { branch: string; cseq: number; toTag?: string; auth?: string; body?: string; extra?: string[]; fromTag?: string }) => {
    const body = opts.body ?? '';
    return [
      `${method} sip:+14155550100@127.0.0.1 SIP/2.0`,
      `Via: SIP/2.0/UDP 192.0.2.7:5062;branch=${opts.branch};rport`,
      `From: <sip:carrier@192.0.2.7>;tag=${opts.fromTag ?? 'caller1'}`,
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

  /** INVITE → 407 → INVITE with credentials (the handler then rings and answers). */
  async function authedInvite(branch = 'z9hG4bKinv2', fromTag = 'caller1', cseq = 2): Promise<string> {
    await deliver(msg('INVITE', { branch: `${branch}c`, cseq: cseq - 1, body: offer, fromTag }));
    const challenge = last();
    expect(challenge.status).toBe(407);
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers.get('Proxy-Authenticate')!)![1]!;
    await deliver(msg('ACK', { branch: `${branch}c`, cseq: cseq - 1, toTag: /tag=([^;]+)/.exec(challenge.headers.get('To')!)?.[1], fromTag }));
    const uri = 'sip:+14155550100@127.0.0.1';
    const cnonce = `c0ffee${fromTag}`;
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce, qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
    await deliver(msg('INVITE', { branch, cseq, body: offer, auth, fromTag }));
    return auth;
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
    // The challenge is stateless (no 100 Trying before it, RFC 3261 §8.2.7); the call is not.
    expect(t.responses().map((r) => r.status)).toEqual([407, 100, 180, 200]);
    // The 180 and the 200 carry the same To tag: one early dialog becomes the confirmed one (§12.1.1).
    expect(toTagOf(t.responses()[2]!)).toBe(toTagOf(ok));
    expect(invites[0]).toMatchObject({ keyId: USER, dialled: '+14155550100', from: 'carrier', sipCallId: 'call-abc', sourceIp: '192.0.2.7', transport: 'udp' });
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

  it('a BYE ends the call, answered 200, told to the application once; a BYE for no dialog gets 481', async () => {
    await authedInvite();
    const tag = toTagOf(last());
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: tag }));
    await vi.advanceTimersByTimeAsync(2000);
    await deliver(msg('BYE', { branch: 'z9hG4bKbye', cseq: 3, toTag: tag }));
    expect(last().status).toBe(200);
    expect(ended).toEqual(['remote-bye']);
    await deliver(msg('BYE', { branch: 'z9hG4bKbye2', cseq: 4, toTag: tag }));
    expect(last().status).toBe(481);
  });

  it('CANCEL before the answer: 200 to the CANCEL, 487 to the INVITE, the application told at once, no BYE (§9.2)', async () => {
    let letGo!: () => void;
    offerDelay = new Promise((r) => (letGo = r));
    await authedInvite('z9hG4bKslow');
    await deliver(msg('CANCEL', { branch: 'z9hG4bKslow', cseq: 2 }));
    // Told while the application is still busy (e.g. dialling an agent), not after it returns.
    expect(ended).toEqual(['cancelled']);
    expect(legs[0]!.state).toBe('ended');
    letGo();
    await flush();
    const statuses = t.responses().map((r) => `${r.status} ${r.headers.get('CSeq')}`);
    expect(statuses).toContain('200 2 CANCEL');
    expect(statuses).toContain('487 2 INVITE');
    expect(statuses).not.toContain('200 2 INVITE');
    expect(ended).toEqual(['cancelled']);
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
    let letGo!: () => void;
    offerDelay = new Promise((r) => (letGo = r));
    await authedInvite();
    const [challenge, trying, ringing] = t.responses();
    expect(challenge!.headers.get('To')).toMatch(/;tag=[A-Za-z0-9_-]{8,}$/);
    expect(trying!.status).toBe(100);
    expect(trying!.headers.get('To')).not.toContain('tag=');
    expect(ringing!.headers.get('To')).toMatch(/;tag=[A-Za-z0-9_-]{8,}$/);
    letGo();
    await flush();
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

  it('an INVITE without SDP gets 488 with a Warning when the application refuses it', async () => {
    await deliver(msg('INVITE', { branch: 'z9hG4bKn1', cseq: 1 }));
    const nonce = /nonce="([^"]+)"/.exec(last().headers.get('Proxy-Authenticate')!)![1]!;
    const uri = 'sip:+14155550100@127.0.0.1';
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce: 'c2', qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c2"`;
    await deliver(msg('INVITE', { branch: 'z9hG4bKn2', cseq: 2, auth }));
    expect(last().status).toBe(488);
    expect(last().headers.get('Warning')).toBe('399 tollgate "an SDP offer in the INVITE is required"');
    expect(invites[0]!.sdp).toBeNull();
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

  it('an application hang-up sends one BYE to the caller\'s Contact with its tags, and a later BYE gets 481', async () => {
    await authedInvite();
    const tag = toTagOf(last());
    await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: tag }));
    legs[0]!.hangup();
    legs[0]!.hangup();
    expect(t.requests().filter((r) => r.method === 'BYE')).toHaveLength(1);
    const bye = t.requests().find((r) => r.method === 'BYE')!;
    expect(bye.uri).toBe('sip:carrier@192.0.2.7:5062');
    expect(bye.headers.get('To')).toContain('tag=caller1');
    // The application ended it: no SIP-side end is reported back.
    expect(ended).toEqual([]);
    await deliver(msg('BYE', { branch: 'z9hG4bKbye9', cseq: 3, toTag: tag }));
    expect(last().status).toBe(481);
  });

  it('an application hang-up before the answer is a 480 refusal, not a BYE', async () => {
    let letGo!: () => void;
    offerDelay = new Promise((r) => (letGo = r));
    await authedInvite();
    legs[0]!.hangup();
    letGo();
    await flush();
    expect(t.responses().map((r) => r.status)).toEqual([407, 100, 180, 480]);
    expect(t.requests().map((r) => r.method)).not.toContain('BYE');
  });

  it('a 200 OK that cannot be sent ends the leg (transport-error), and nothing is retransmitted', async () => {
    t.failStatus = 200;
    await authedInvite();
    expect(ended).toEqual(['transport-error']);
    expect(legs[0]!.state).toBe('ended');
    await vi.advanceTimersByTimeAsync(40_000);
    expect(t.responses().filter((r) => r.status === 200)).toHaveLength(0);
    expect(t.requests().map((r) => r.method)).not.toContain('BYE');
  });

  it('a handler that throws gets 500 for its INVITE', async () => {
    throwOnInvite = true;
    await authedInvite();
    expect(last().status).toBe(500);
    expect(ended).toEqual(['transport-error']);
  });

  it('an INVITE reusing a live Call-ID with another From tag is another dialog: a BYE in one leaves the other up', async () => {
    await authedInvite('z9hG4bKa', 'callerA');
    const tagA = toTagOf(last());
    await authedInvite('z9hG4bKb', 'callerB', 4);
    const tagB = toTagOf(last());
    expect(tagB).not.toBe(tagA);
    expect(legs).toHaveLength(2);
    await deliver(msg('BYE', { branch: 'z9hG4bKbyeB', cseq: 5, toTag: tagB, fromTag: 'callerB' }));
    expect(last().status).toBe(200);
    expect(legs.map((l) => l.state)).toEqual(['answered', 'ended']);
    // Tags from one dialog cannot reach the other (§12.2.2: a request is matched on all three).
    await deliver(msg('BYE', { branch: 'z9hG4bKbyeX', cseq: 6, toTag: tagA, fromTag: 'callerB' }));
    expect(last().status).toBe(481);
    expect(legs[0]!.state).toBe('answered');
  });

  it('the same INVITE arriving by a second path is a merged request: 482 (§8.2.2.2)', async () => {
    let letGo!: () => void;
    offerDelay = new Promise((r) => (letGo = r));
    const auth = await authedInvite();
    // The same request (Call-ID, From tag, CSeq) on another branch, as a forking proxy would deliver it.
    await deliver(msg('INVITE', { branch: 'z9hG4bKother', cseq: 2, body: offer, auth }));
    expect(last().status).toBe(482);
    expect(legs).toHaveLength(1);
    letGo();
    await flush();
    expect(last().status).toBe(200);
  });

  it('a copy arriving while the first INVITE is still being authenticated is merged too: 482, not a digest replay (§8.2.2.2)', async () => {
    await deliver(msg('INVITE', { branch: 'z9hG4bKm1c', cseq: 1, body: offer }));
    const challenge = last();
    const nonce = /nonce="([^"]+)"/.exec(challenge.headers.get('Proxy-Authenticate')!)![1]!;
    await deliver(msg('ACK', { branch: 'z9hG4bKm1c', cseq: 1, toTag: /tag=([^;]+)/.exec(challenge.headers.get('To')!)?.[1] }));
    const uri = 'sip:+14155550100@127.0.0.1';
    const response = digestResponse({ algorithm: 'MD5', username: USER, realm: 'tollgate', password: PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce: 'merged', qop: 'auth' });
    const auth = `Digest username="${USER}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="merged"`;
    // The key's credentials take a while to read; the copy comes meanwhile.
    let release!: () => void;
    ha1Delay = new Promise((r) => (release = r));
    await deliver(msg('INVITE', { branch: 'z9hG4bKm2', cseq: 2, body: offer, auth }));
    await deliver(msg('INVITE', { branch: 'z9hG4bKm2other', cseq: 2, body: offer, auth }));
    expect(last().status).toBe(482);
    release();
    await flush();
    expect(legs).toHaveLength(1);
    expect(last().status).toBe(200);
    expect(t.responses().filter((r) => r.status === 407)).toHaveLength(1);
  });

  it('while draining, new INVITEs get 503 with Retry-After', async () => {
    server.drain();
    await deliver(msg('INVITE', { branch: 'z9hG4bKd', cseq: 1, body: offer }));
    expect(last().status).toBe(503);
    expect(last().headers.get('Retry-After')).toBe('30');
  });
  describe('unauthenticated requests cost nearly nothing (stateless front door, RFC 3261 §8.2.7)', () => {
    it('challenges an INVITE without keeping a transaction: no 100, no 407 retransmission over UDP, a retransmission gets the same To tag', async () => {
      await deliver(msg('INVITE', { branch: 'z9hG4bKsl1', cseq: 1, body: offer }));
      expect(t.responses().map((r) => r.status)).toEqual([407]);
      expect(server.transactions.servers).toBe(0);
      await vi.advanceTimersByTimeAsync(40_000);
      expect(t.responses()).toHaveLength(1);
      // The client's own retransmission (Timer A) is answered again, with the same To tag.
      await deliver(msg('INVITE', { branch: 'z9hG4bKsl1', cseq: 1, body: offer }));
      expect(t.responses().map((r) => r.status)).toEqual([407, 407]);
      expect(toTagOf(t.responses()[1]!)).toBe(toTagOf(t.responses()[0]!));
      // Its ACK matches nothing and is dropped without an answer.
      await deliver(msg('ACK', { branch: 'z9hG4bKsl1', cseq: 1, toTag: toTagOf(t.responses()[0]!) }));
      expect(t.responses()).toHaveLength(2);
      expect(server.transactions.servers).toBe(0);
      expect(events.filter((e) => e === 'challenge:sent')).toHaveLength(2);
    });

    it('answers OPTIONS, a BYE for no dialog and an unknown method without a transaction', async () => {
      await deliver(msg('OPTIONS', { branch: 'z9hG4bKso', cseq: 1 }));
      await deliver(msg('BYE', { branch: 'z9hG4bKsb', cseq: 2, toTag: 'nosuchdialog' }));
      await deliver(msg('PUBLISH', { branch: 'z9hG4bKsp', cseq: 3 }));
      expect(t.responses().map((r) => r.status)).toEqual([200, 481, 405]);
      expect(server.transactions.servers).toBe(0);
    });

    it('answers a source over its rate nothing, blocks it as a flood, and still challenges another source', async () => {
      for (let i = 0; i < 20; i++) await deliver(msg('INVITE', { branch: `z9hG4bKfl${i}`, cseq: 1, body: offer }));
      expect(t.responses()).toHaveLength(20); // the burst
      for (let i = 0; i < 60; i++) await deliver(msg('INVITE', { branch: `z9hG4bKfm${i}`, cseq: 1, body: offer }));
      expect(t.responses()).toHaveLength(20);
      expect(events).toContain('blocked:flood:192.0.2.7');
      expect(events.filter((e) => e === 'challenge:rate-limited')).toHaveLength(50);
      // Blocked: dropped before it is parsed, even OPTIONS.
      await deliver(msg('OPTIONS', { branch: 'z9hG4bKfo', cseq: 1 }));
      expect(events).toContain('dropped:flood');
      expect(t.responses()).toHaveLength(20);
      peer = { protocol: 'udp', address: '198.51.100.9', port: 5060 };
      await deliver(msg('INVITE', { branch: 'z9hG4bKother', cseq: 1, body: offer }));
      expect(last().status).toBe(407);
      expect(server.transactions.servers).toBe(0);
      // One warning line for the block, none per dropped request.
      expect(logLines.filter((l) => l.msg === 'a source blocked: it kept sending requests over its rate without authenticating')).toHaveLength(1);
    });
  });

  describe('digest hardening', () => {
    const answer = (nonce: string, o: { user?: string; pass?: string; uri?: string; noQop?: boolean; cnonce?: string } = {}) => {
      const uri = o.uri ?? 'sip:+14155550100@127.0.0.1';
      const user = o.user ?? USER;
      const cnonce = o.cnonce ?? 'c0ffee01';
      if (o.noQop) {
        const response = digestResponse({ algorithm: 'MD5', username: user, realm: 'tollgate', password: o.pass ?? PASSWORD, method: 'INVITE', uri, nonce });
        return `Digest username="${user}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5`;
      }
      const response = digestResponse({ algorithm: 'MD5', username: user, realm: 'tollgate', password: o.pass ?? PASSWORD, method: 'INVITE', uri, nonce, nc: '00000001', cnonce, qop: 'auth' });
      return `Digest username="${user}", realm="tollgate", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`;
    };
    const challenge = async (branch: string) => {
      await deliver(msg('INVITE', { branch, cseq: 1, body: offer }));
      return /nonce="([^"]+)"/.exec(last().headers.get('Proxy-Authenticate')!)![1]!;
    };

    it('a captured Authorization replayed (same nonce and nc) is refused: no second call', async () => {
      const auth = await authedInvite();
      expect(last().status).toBe(200);
      await deliver(msg('INVITE', { branch: 'z9hG4bKreplay', cseq: 2, body: offer, auth, fromTag: 'attacker', }).replace('Call-ID: call-abc', 'Call-ID: replayed'));
      expect(last().status).toBe(407);
      expect(invites).toHaveLength(1);
      expect(events).toContain('auth-failure:replay');
    });

    it('an answer without qop is refused although the password is right', async () => {
      const nonce = await challenge('z9hG4bKnq1');
      await deliver(msg('INVITE', { branch: 'z9hG4bKnq2', cseq: 2, body: offer, auth: answer(nonce, { noQop: true }) }));
      expect(last().status).toBe(407);
      expect(invites).toHaveLength(0);
      expect(events).toContain('auth-failure:qop-required');
    });

    it('an answer whose uri names another number gets 400 and places no call (RFC 7616 §3.4.6)', async () => {
      const nonce = await challenge('z9hG4bKur1');
      await deliver(msg('INVITE', { branch: 'z9hG4bKur2', cseq: 2, body: offer, auth: answer(nonce, { uri: 'sip:+14155550199@127.0.0.1' }) }));
      expect([last().status, last().reason]).toEqual([400, 'Digest URI Mismatch']);
      expect(invites).toHaveLength(0);
    });

    it('a brute force on one username blocks that username from the source; the carrier\'s username from the same address still authenticates', async () => {
      for (let i = 0; i < 5; i++) {
        const nonce = await challenge(`z9hG4bKbf${i}a`);
        await deliver(msg('INVITE', { branch: `z9hG4bKbf${i}b`, cseq: 2, body: offer, auth: answer(nonce, { user: 'key_guessed', pass: `guess${i}` }), fromTag: `g${i}` }));
      }
      expect(events).toContain('blocked:brute-force:192.0.2.7');
      // Blocked: dropped without an answer and without a transaction.
      const before = t.responses().length;
      const nonce = await challenge('z9hG4bKbf9a');
      await deliver(msg('INVITE', { branch: 'z9hG4bKbf9b', cseq: 2, body: offer, auth: answer(nonce, { user: 'key_guessed', pass: 'guess9' }), fromTag: 'g9' }));
      expect(t.responses()).toHaveLength(before + 1); // the challenge only
      expect(events).toContain('dropped:brute-force');
      await authedInvite('z9hG4bKlegit', 'carrier');
      expect(last().status).toBe(200);
      // No transaction was left behind by the blocked attempts (the last failure's included).
      await vi.advanceTimersByTimeAsync(40_000);
      expect(server.transactions.servers).toBe(0);
    });
  });

  describe('overload control', () => {
    it('refuses a new INVITE 503 with Retry-After before any digest work, and counts the signal', async () => {
      load = { ok: false, signal: 'event-loop-delay', retryAfterSec: 7 };
      await deliver(msg('INVITE', { branch: 'z9hG4bKov1', cseq: 1, body: offer, auth: 'Digest username="key_trunk", realm="tollgate", nonce="x", uri="sip:+14155550100@127.0.0.1", response="0"' }));
      expect(last().status).toBe(503);
      expect(last().headers.get('Retry-After')).toBe('7');
      expect(last().headers.get('Reason')).toBe('SIP;cause=503;text="OVERLOADED"');
      expect(ha1Lookups).toBe(0);
      expect(server.transactions.servers).toBe(0);
      expect(events).toEqual(['overload:event-loop-delay']);
    });

    it('never refuses in-dialog requests: BYE and re-INVITE of an admitted call are answered', async () => {
      await authedInvite();
      const tag = toTagOf(last());
      await deliver(msg('ACK', { branch: 'z9hG4bKack', cseq: 2, toTag: tag }));
      load = { ok: false, signal: 'pending-invites', retryAfterSec: 5 };
      await deliver(msg('INVITE', { branch: 'z9hG4bKrei', cseq: 3, toTag: tag, body: offer }));
      expect(last().status).toBe(200);
      await deliver(msg('BYE', { branch: 'z9hG4bKbyo', cseq: 4, toTag: tag }));
      expect(last().status).toBe(200);
      expect(ended).toEqual(['remote-bye']);
    });

    it('counts INVITEs in progress (the pending-invites signal) until their final response', async () => {
      let letGo!: () => void;
      offerDelay = new Promise((r) => (letGo = r));
      await authedInvite();
      expect(server.pendingInvites).toBe(1);
      letGo();
      await flush();
      expect(server.pendingInvites).toBe(0);
    });
  });

  it('credentials that cannot be checked (the nonce-count memory down) are refused 500, never let through; the fault is logged as a sample', async () => {
    nonceCountsDown = true;
    await authedInvite();
    expect(last().status).toBe(500);
    expect(invites).toHaveLength(0);
    expect(logLines.filter((l) => l.msg === 'could not check digest credentials: the key store or the nonce-count memory failed')).toHaveLength(1);
  });

  it('a response that cannot be sent because the client has gone is a warning without a stack, not an error', async () => {
    t.failStatus = 100;
    await authedInvite();
    expect(logLines.filter((l) => l.level === 'error')).toEqual([]);
    const warn = logLines.find((l) => l.msg === 'a SIP response could not be sent: the client has gone');
    expect(warn).toMatchObject({ level: 'warn', ip: '192.0.2.7', method: 'INVITE' });
    expect(JSON.stringify(warn)).not.toContain('stack');
    expect(server.transactions.servers).toBe(0);
  });
});
