import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { pino } from 'pino';
import { SipHeaders, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { TransactionLayer } from './transactions.js';
import { RFC3261_TIMERS } from './transaction-timers.js';
import { SipUac, type OutboundEnd, type OutboundLeg } from './sip-uac.js';
import { parseCSeq } from './sip-grammar.js';
import { tagOf } from './message-parts.js';
import type { Peer } from '../transport/sip-transport.js';

const carrier: Peer = { protocol: 'udp', address: '192.0.2.20', port: 5060 };
const SDP = Buffer.from('v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n');

/** A response of the carrier to `req`, with its To tag (and Contact for dialog-creating ones). */
function response(req: SipRequest, status: number, toTag?: string, extra: { contact?: string; sdp?: boolean; headers?: [string, string][] } = {}): SipResponse {
  const headers = new SipHeaders();
  for (const name of ['Via', 'From', 'Call-ID', 'CSeq']) headers.append(name, req.headers.get(name)!);
  headers.append('To', toTag ? `${req.headers.get('To')!};tag=${toTag}` : req.headers.get('To')!);
  if (extra.contact) headers.append('Contact', `<${extra.contact}>`);
  for (const [k, v] of extra.headers ?? []) headers.append(k, v);
  if (extra.sdp) headers.append('Content-Type', 'application/sdp');
  return { kind: 'response', status, reason: 'x', headers, body: extra.sdp ? SDP : Buffer.alloc(0) };
}

describe('SipUac (UAC core, RFC 3261 §9.1, §13.2.2, §17.1.1)', () => {
  let sent: SipMessage[];
  let layer: TransactionLayer;
  let uac: SipUac;
  let events: { progress: number[]; answers: number; ends: OutboundEnd[] };
  let leg: OutboundLeg;

  const requests = (method?: string) => sent.filter((m): m is SipRequest => m.kind === 'request' && (method === undefined || m.method === method));
  const methods = () => requests().map((r) => r.method);
  const invite = () => requests('INVITE')[0]!;
  const receive = (res: SipResponse) => layer.receiveResponse(res, carrier);
  const toTag = (m: SipMessage) => tagOf(m.headers.get('To'));
  const branch = (m: SipMessage) => /branch=([^;]+)/.exec(m.headers.getAll('Via')[0]!)?.[1];

  const place = (credentials: { username: string; password: string } | null = null) =>
    uac.invite({
      peer: carrier,
      requestUri: 'sip:+12025550123@192.0.2.20',
      fromUser: '+14155550100',
      toUser: '+12025550123',
      sdp: SDP,
      credentials,
      events: {
        onProgress: (s) => events.progress.push(s),
        onAnswer: () => events.answers++,
        onEnd: (e) => events.ends.push(e),
      },
    });

  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    events = { progress: [], answers: 0, ends: [] };
    const send = (msg: SipMessage) => {
      sent.push(msg);
      return Promise.resolve();
    };
    layer = new TransactionLayer(send, {
      onRequest: (tx) => void uac.handleInDialog(tx),
      onStrayAck: () => {},
      onStrayResponse: (res) => void uac.onStrayResponse(res),
    }, RFC3261_TIMERS);
    uac = new SipUac({ txl: layer, send, localAddress: () => '192.0.2.1:5060', userAgent: 'tollgate-test', log: pino({ level: 'silent' }) });
    leg = place();
  });
  afterEach(() => {
    uac.close();
    layer.close();
    vi.useRealTimers();
  });

  describe('ringing and the ring timeout', () => {
    it('an INVITE client transaction MUST NOT fire Timer B once in Proceeding: a ringing leg rings until the TU ends it (RFC 3261 §17.1.1.2)', () => {
      receive(response(invite(), 100));
      receive(response(invite(), 180, 'r1'));
      vi.advanceTimersByTime(120_000);
      expect(events.ends).toEqual([]);
      expect(leg.state).toBe('early');
      // Timer A stopped with the provisional: no retransmissions either.
      expect(methods()).toEqual(['INVITE']);
      expect(events.progress).toEqual([180]);
    });

    it('Timer B still ends a leg that gets no response at all, 64×T1 after the INVITE (§17.1.1.2)', () => {
      vi.advanceTimersByTime(31_999);
      expect(events.ends).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(events.ends).toEqual([{ kind: 'timeout' }]);
    });

    it('a CANCEL MUST NOT be sent before a provisional response; it goes when the first one arrives (§9.1)', () => {
      leg.end();
      expect(methods()).not.toContain('CANCEL');
      receive(response(invite(), 100));
      expect(methods().filter((m) => m === 'CANCEL')).toHaveLength(1);
    });

    it('the CANCEL copies the INVITE\'s Request-URI, Call-ID, From, To, top Via branch and CSeq number (§9.1)', () => {
      receive(response(invite(), 180, 'r1'));
      leg.end();
      const cancel = requests('CANCEL')[0]!;
      expect(cancel.uri).toBe(invite().uri);
      for (const h of ['Call-ID', 'From', 'To']) expect(cancel.headers.get(h)).toBe(invite().headers.get(h));
      expect(branch(cancel)).toBe(branch(invite()));
      expect(cancel.headers.get('CSeq')).toBe('1 CANCEL');
    });

    it('CANCEL is sent exactly once: neither a second end() nor further provisionals send another (§9.1)', () => {
      receive(response(invite(), 180, 'r1'));
      leg.end();
      leg.end();
      receive(response(invite(), 183, 'r1'));
      receive(response(invite(), 180, 'r1'));
      expect(methods().filter((m) => m === 'CANCEL')).toHaveLength(1);
      // After end() only onEnd follows: no progress for the late provisionals.
      expect(events.progress).toEqual([180]);
    });

    it('a 487 to the cancelled INVITE ends the leg as cancelled and is ACKed within the transaction (§17.1.1.3)', () => {
      receive(response(invite(), 180, 'r1'));
      leg.end();
      receive(response(requests('CANCEL')[0]!, 200, 'r1'));
      receive(response(invite(), 487, 'r1'));
      expect(events.ends).toEqual([{ kind: 'cancelled' }]);
      const ack = requests('ACK')[0]!;
      expect(branch(ack)).toBe(branch(invite()));
      expect(ack.headers.get('CSeq')).toBe('1 ACK');
    });

    it('with no final response within 64×T1 of the CANCEL, the INVITE SHOULD be considered cancelled and its transaction destroyed (§9.1)', () => {
      receive(response(invite(), 180, 'r1'));
      vi.advanceTimersByTime(50_000); // rings past Timer B
      leg.end();
      receive(response(requests('CANCEL')[0]!, 200, 'r1'));
      vi.advanceTimersByTime(31_999);
      expect(events.ends).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(events.ends).toEqual([{ kind: 'cancelled' }]);
      expect(leg.state).toBe('ended');
      expect(layer.size.clients).toBe(0);
      // A 487 that comes after all still gets its ACK, and changes nothing.
      receive(response(invite(), 487, 'r1'));
      expect(requests('ACK')).toHaveLength(1);
      expect(events.ends).toHaveLength(1);
    });
  });

  describe('2xx responses the call no longer wants', () => {
    it('a 2xx that crosses the CANCEL gets an ACK and then a BYE in its dialog, and the leg ends as cancelled (§9.1, §15)', () => {
      receive(response(invite(), 180, 'r1'));
      leg.end();
      receive(response(requests('CANCEL')[0]!, 200, 'r1'));
      receive(response(invite(), 200, 'r1', { contact: 'sip:callee@192.0.2.30:5070', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'CANCEL', 'ACK', 'BYE']);
      const [ack, bye] = [requests('ACK')[0]!, requests('BYE')[0]!];
      expect([toTag(ack), ack.uri, ack.headers.get('CSeq')]).toEqual(['r1', 'sip:callee@192.0.2.30:5070', '1 ACK']);
      expect([toTag(bye), bye.uri, bye.headers.get('CSeq')]).toEqual(['r1', 'sip:callee@192.0.2.30:5070', '2 BYE']);
      expect(branch(ack)).not.toBe(branch(invite())); // the ACK of a 2xx is its own transaction
      expect(events.answers).toBe(0);
      expect(events.ends).toEqual([{ kind: 'cancelled' }]);
      // Its retransmission gets the same ACK again, and no second BYE.
      receive(response(invite(), 200, 'r1', { contact: 'sip:callee@192.0.2.30:5070', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'CANCEL', 'ACK', 'BYE', 'ACK']);
      expect(requests('ACK')[1]).toBe(ack);
    });

    it('a 2xx after end() but before any provisional (no CANCEL yet) is ACKed and BYEd', () => {
      leg.end();
      receive(response(invite(), 200, 'r1', { contact: 'sip:callee@192.0.2.30', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'ACK', 'BYE']);
      expect(events.ends).toEqual([{ kind: 'cancelled' }]);
    });

    it('a 2xx that comes after the leg gave up on the INVITE (64×T1 after CANCEL) is matched by dialog, ACKed and BYEd', () => {
      receive(response(invite(), 180, 'r1'));
      leg.end();
      receive(response(requests('CANCEL')[0]!, 200, 'r1'));
      vi.advanceTimersByTime(32_000);
      expect(events.ends).toEqual([{ kind: 'cancelled' }]);
      receive(response(invite(), 200, 'r1', { contact: 'sip:callee@192.0.2.30', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'CANCEL', 'ACK', 'BYE']);
      expect(toTag(requests('BYE')[0]!)).toBe('r1');
      expect(events.answers).toBe(0);
      expect(events.ends).toHaveLength(1);
    });
  });

  describe('forking (§13.2.2.4)', () => {
    const twoHundred = (tag: string, host: string) => response(invite(), 200, tag, { contact: `sip:callee@${host}`, sdp: true });

    it('a 2xx from a second fork gets its own ACK (its To tag, its Contact) and a BYE, while the first dialog stays up', () => {
      receive(response(invite(), 180, 'fork1'));
      receive(twoHundred('fork1', '192.0.2.31'));
      receive(twoHundred('fork2', '192.0.2.32'));
      expect(methods()).toEqual(['INVITE', 'ACK', 'ACK', 'BYE']);
      const [ack1, ack2] = requests('ACK');
      expect([toTag(ack1!), ack1!.uri]).toEqual(['fork1', 'sip:callee@192.0.2.31']);
      expect([toTag(ack2!), ack2!.uri]).toEqual(['fork2', 'sip:callee@192.0.2.32']);
      const bye = requests('BYE')[0]!;
      expect([toTag(bye), bye.uri, bye.headers.get('CSeq')]).toEqual(['fork2', 'sip:callee@192.0.2.32', '2 BYE']);
      expect(events.answers).toBe(1);
      expect(events.ends).toEqual([]);
      expect(leg.state).toBe('answered');
      // Each fork's retransmission gets that fork's ACK again.
      receive(twoHundred('fork2', '192.0.2.32'));
      receive(twoHundred('fork1', '192.0.2.31'));
      expect(requests('ACK').slice(2)).toEqual([ack2, ack1]);
      expect(requests('BYE')).toHaveLength(1);
      // The first call ends when we hang up: BYE in the first dialog.
      leg.end();
      const bye1 = requests('BYE')[1]!;
      expect([toTag(bye1), bye1.uri, bye1.headers.get('CSeq')]).toEqual(['fork1', 'sip:callee@192.0.2.31', '2 BYE']);
      expect(events.ends).toEqual([{ kind: 'local-bye' }]);
    });

    it('a second fork\'s 2xx after the INVITE transaction ended (Timer M) is still ACKed and BYEd', () => {
      receive(twoHundred('fork1', '192.0.2.31'));
      vi.advanceTimersByTime(32_000);
      expect(layer.size.clients).toBe(0);
      receive(twoHundred('fork2', '192.0.2.32'));
      expect(methods()).toEqual(['INVITE', 'ACK', 'ACK', 'BYE']);
      expect(toTag(requests('BYE')[0]!)).toBe('fork2');
      expect(leg.state).toBe('answered');
    });

    it('a BYE from the second fork is answered 200 and leaves the first dialog up', () => {
      receive(twoHundred('fork1', '192.0.2.31'));
      receive(twoHundred('fork2', '192.0.2.32'));
      const h = new SipHeaders()
        .append('Via', 'SIP/2.0/UDP 192.0.2.32:5060;branch=z9hG4bKforkbye')
        .append('From', `${invite().headers.get('To')!};tag=fork2`)
        .append('To', invite().headers.get('From')!)
        .append('Call-ID', invite().headers.get('Call-ID')!)
        .append('CSeq', '1 BYE');
      layer.receiveRequest({ kind: 'request', method: 'BYE', uri: 'sip:tollgate@192.0.2.1', headers: h, body: Buffer.alloc(0) }, carrier);
      const answered = sent.filter((m): m is SipResponse => m.kind === 'response');
      expect(answered.map((r) => r.status)).toEqual([200]);
      expect(leg.state).toBe('answered');
      expect(events.ends).toEqual([]);
    });
  });

  describe('2xx retransmissions after the transaction ended', () => {
    it('are ACKed again, matched by dialog (Call-ID, From tag, To tag), not by Call-ID alone (§13.2.2.4)', () => {
      receive(response(invite(), 200, 'a1', { contact: 'sip:callee@192.0.2.31', sdp: true }));
      vi.advanceTimersByTime(32_000); // Timer M: the INVITE transaction is gone
      expect(layer.size.clients).toBe(0);
      receive(response(invite(), 200, 'a1', { contact: 'sip:callee@192.0.2.31', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'ACK', 'ACK']);
      // The same Call-ID with another From tag is no dialog of ours.
      const stranger = response(invite(), 200, 'a1', { contact: 'sip:callee@192.0.2.31', sdp: true });
      stranger.headers.set('From', `<sip:+14155550100@192.0.2.20>;tag=not-ours`);
      expect(uac.onStrayResponse(stranger)).toBe(false);
      // A 2xx to a BYE is no INVITE answer either.
      const byeOk = response(invite(), 200, 'a1');
      byeOk.headers.set('CSeq', '2 BYE');
      expect(uac.onStrayResponse(byeOk)).toBe(false);
      expect(methods()).toEqual(['INVITE', 'ACK', 'ACK']);
    });

    it('after our BYE, a retransmitted 2xx still gets its ACK and no second BYE', () => {
      receive(response(invite(), 200, 'a1', { contact: 'sip:callee@192.0.2.31', sdp: true }));
      leg.end();
      receive(response(invite(), 200, 'a1', { contact: 'sip:callee@192.0.2.31', sdp: true }));
      expect(methods()).toEqual(['INVITE', 'ACK', 'BYE', 'ACK']);
    });
  });

  it('after a digest challenge, the CANCEL targets the new INVITE and the ACK of the 2xx carries its credentials (§9.1, §13.2.2.4)', () => {
    uac.close();
    sent = [];
    events = { progress: [], answers: 0, ends: [] };
    leg = place({ username: 'acct', password: 'secret' });
    const first = invite();
    receive(response(first, 407, 'p1', { headers: [['Proxy-Authenticate', 'Digest realm="carrier", nonce="abc", algorithm=MD5, qop="auth"']] }));
    const second = requests('INVITE')[1]!;
    expect(second.headers.get('CSeq')).toBe('2 INVITE');
    expect(second.headers.get('Proxy-Authorization')).toMatch(/^Digest username="acct"/);
    // A provisional of the first INVITE does not allow a CANCEL of the second.
    leg.end();
    receive(response(first, 180, 'p1'));
    expect(methods()).not.toContain('CANCEL');
    receive(response(second, 200, 'p2', { contact: 'sip:callee@192.0.2.31', sdp: true }));
    const ack = requests('ACK').find((a) => toTag(a) === 'p2')!;
    expect(parseCSeq(ack.headers.get('CSeq')!)).toEqual({ seq: 2, method: 'ACK' });
    expect(ack.headers.get('Proxy-Authorization')).toBe(second.headers.get('Proxy-Authorization'));
    expect(requests('BYE').map(toTag)).toEqual(['p2']);
    expect(events.ends).toEqual([{ kind: 'cancelled' }]);
  });

  it('close() ends a ringing leg at once (after its CANCEL) and clears every timer', () => {
    receive(response(invite(), 180, 'r1'));
    uac.close();
    expect(methods()).toEqual(['INVITE', 'CANCEL']);
    expect(events.ends).toEqual([{ kind: 'cancelled' }]);
    layer.close();
    expect(vi.getTimerCount()).toBe(0);
  });
});
