import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { SipHeaders, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { TransactionLayer, type ServerTransaction } from './transactions.js';
import { RFC3261_TIMERS } from './transaction-timers.js';
import type { Peer } from '../transport/sip-transport.js';

const udp: Peer = { protocol: 'udp', address: '192.0.2.10', port: 5060 };
const tcp: Peer = { protocol: 'tcp', address: '192.0.2.10', port: 5060, connectionId: 'c1' };

function request(method: string, branch = 'z9hG4bKabc123', cseq = 1): SipRequest {
  const headers = new SipHeaders()
    .append('Via', `SIP/2.0/UDP 192.0.2.10:5060;branch=${branch}`)
    .append('From', '<sip:alice@example.com>;tag=f1')
    .append('To', '<sip:+14155550100@tollgate>')
    .append('Call-ID', 'call-1')
    .append('CSeq', `${cseq} ${method}`)
    .append('Max-Forwards', '70');
  return { kind: 'request', method, uri: 'sip:+14155550100@127.0.0.1', headers, body: Buffer.alloc(0) };
}

function response(req: SipRequest, status: number): SipResponse {
  const headers = new SipHeaders();
  for (const name of ['Via', 'From', 'To', 'Call-ID', 'CSeq']) headers.append(name, req.headers.get(name)!);
  return { kind: 'response', status, reason: 'x', headers, body: Buffer.alloc(0) };
}

describe('SIP transactions (RFC 3261 §17)', () => {
  let sent: { msg: SipMessage; peer: Peer }[];
  let requests: ServerTransaction[];
  let strayAcks: SipRequest[];
  let layer: TransactionLayer;
  beforeEach(() => {
    vi.useFakeTimers();
    sent = [];
    requests = [];
    strayAcks = [];
    layer = new TransactionLayer(
      (msg, peer) => {
        sent.push({ msg, peer });
        return Promise.resolve();
      },
      { onRequest: (tx) => requests.push(tx), onStrayAck: (r) => strayAcks.push(r), onStrayResponse: () => {} },
      RFC3261_TIMERS,
    );
  });
  afterEach(() => {
    layer.close();
    vi.useRealTimers();
  });
  const statuses = () => sent.filter((s) => s.msg.kind === 'response').map((s) => (s.msg as SipResponse).status);

  it('an INVITE server transaction answers a retransmitted INVITE with its latest response, not a new transaction', async () => {
    layer.receiveRequest(request('INVITE'), udp);
    await requests[0]!.respond(response(requests[0]!.request, 100));
    layer.receiveRequest(request('INVITE'), udp);
    expect(requests).toHaveLength(1);
    expect(statuses()).toEqual([100, 100]);
  });

  it('counts INVITE server transactions until their final response, or their end without one (a load signal)', async () => {
    layer.receiveRequest(request('INVITE', 'z9hG4bKp1'), udp);
    layer.receiveRequest(request('INVITE', 'z9hG4bKp2'), udp);
    layer.receiveRequest(request('OPTIONS', 'z9hG4bKp3'), udp);
    expect(layer.pendingInvites).toBe(2);
    expect(layer.hasServerFor(request('INVITE', 'z9hG4bKp1'))).toBe(true);
    expect(layer.hasServerFor(request('INVITE', 'z9hG4bKnone'))).toBe(false);
    await requests[0]!.respond(response(requests[0]!.request, 100));
    expect(layer.pendingInvites).toBe(2);
    await requests[0]!.respond(response(requests[0]!.request, 486));
    expect(layer.pendingInvites).toBe(1);
    requests[1]!.terminate();
    expect(layer.pendingInvites).toBe(0);
    vi.advanceTimersByTime(40_000);
    expect(layer.pendingInvites).toBe(0);
  });

  it('a final non-2xx INVITE response is retransmitted on Timer G (T1 doubling to T2) until the ACK (§17.2.1)', async () => {
    layer.receiveRequest(request('INVITE'), udp);
    const tx = requests[0]!;
    await tx.respond(response(tx.request, 486));
    vi.advanceTimersByTime(500);
    vi.advanceTimersByTime(1000);
    vi.advanceTimersByTime(2000);
    vi.advanceTimersByTime(4000);
    vi.advanceTimersByTime(4000);
    expect(statuses()).toEqual([486, 486, 486, 486, 486, 486]);
    layer.receiveRequest(request('ACK'), udp);
    expect(tx.state).toBe('confirmed');
    vi.advanceTimersByTime(8000);
    expect(statuses()).toHaveLength(6);
    expect(tx.state).toBe('terminated'); // Timer I (T4) has run
    expect(strayAcks).toHaveLength(0); // the ACK was absorbed by the transaction
  });

  it('Timer H ends an INVITE server transaction whose final response is never acknowledged (64×T1)', async () => {
    layer.receiveRequest(request('INVITE'), udp);
    const tx = requests[0]!;
    await tx.respond(response(tx.request, 404));
    vi.advanceTimersByTime(32_000);
    expect(tx.state).toBe('terminated');
    const count = statuses().length;
    vi.advanceTimersByTime(10_000);
    expect(statuses()).toHaveLength(count);
  });

  it('over a reliable transport, Timer G is off and Timer I is zero (§17.2.1)', async () => {
    layer.receiveRequest(request('INVITE'), tcp);
    const tx = requests[0]!;
    await tx.respond(response(tx.request, 486));
    vi.advanceTimersByTime(10_000);
    expect(statuses()).toEqual([486]);
    layer.receiveRequest(request('ACK'), tcp);
    expect(tx.state).toBe('terminated');
  });

  it('after a 2xx, the INVITE transaction leaves 2xx retransmission to the TU and passes the ACK up (§13.3.1.4, RFC 6026)', async () => {
    layer.receiveRequest(request('INVITE'), udp);
    const tx = requests[0]!;
    await tx.respond(response(tx.request, 200));
    vi.advanceTimersByTime(4000);
    expect(statuses()).toEqual([200]);
    expect(tx.state).toBe('accepted');
    // A retransmitted INVITE in Accepted gets the 2xx again.
    layer.receiveRequest(request('INVITE'), udp);
    expect(statuses()).toEqual([200, 200]);
    vi.advanceTimersByTime(32_000);
    expect(tx.state).toBe('terminated');
    const ack = request('ACK', 'z9hG4bKnewbranch');
    layer.receiveRequest(ack, udp);
    expect(strayAcks).toEqual([ack]);
  });

  it('a non-INVITE server transaction resends its final response to retransmissions, then ends after Timer J', async () => {
    layer.receiveRequest(request('OPTIONS'), udp);
    const tx = requests[0]!;
    await tx.respond(response(tx.request, 200));
    layer.receiveRequest(request('OPTIONS'), udp);
    expect(statuses()).toEqual([200, 200]);
    vi.advanceTimersByTime(32_000);
    expect(tx.state).toBe('terminated');
    layer.receiveRequest(request('OPTIONS'), udp);
    expect(requests).toHaveLength(2); // a new transaction now
  });

  it('a CANCEL finds the INVITE transaction with the same branch (§9.2)', () => {
    layer.receiveRequest(request('INVITE', 'z9hG4bKxyz'), udp);
    layer.receiveRequest(request('CANCEL', 'z9hG4bKxyz'), udp);
    expect(requests.map((t) => t.request.method)).toEqual(['INVITE', 'CANCEL']);
    expect(layer.findInviteFor(requests[1]!.request)).toBe(requests[0]);
  });

  describe('client transactions', () => {
    const requestsSent = () => sent.filter((s) => s.msg.kind === 'request').map((s) => (s.msg as SipRequest).method);

    it('an INVITE client retransmits on Timer A (doubling) and times out on Timer B (§17.1.1.2)', () => {
      const req = request('INVITE', 'z9hG4bKclient1');
      let timedOut = false;
      layer.sendRequest(req, udp, { onResponse: () => {}, onTimeout: () => (timedOut = true) }, () => request('ACK', 'z9hG4bKclient1'));
      vi.advanceTimersByTime(500 + 1000 + 2000 + 4000 + 8000 + 16_000);
      expect(requestsSent()).toEqual(Array(7).fill('INVITE'));
      expect(timedOut).toBe(false);
      vi.advanceTimersByTime(500);
      expect(timedOut).toBe(true);
    });

    it('an INVITE client transaction MUST NOT fire Timer B once in Proceeding, and stops Timer A there (RFC 3261 §17.1.1.2)', () => {
      const req = request('INVITE', 'z9hG4bKclientB');
      let timedOut = false;
      const tx = layer.sendRequest(req, udp, { onResponse: () => {}, onTimeout: () => (timedOut = true) }, () => request('ACK', 'z9hG4bKclientB'));
      vi.advanceTimersByTime(1000);
      layer.receiveResponse(response(req, 180), udp);
      expect(tx.state).toBe('proceeding');
      vi.advanceTimersByTime(10 * 32_000);
      expect(timedOut).toBe(false);
      expect(tx.state).toBe('proceeding');
      expect(requestsSent()).toEqual(['INVITE', 'INVITE']); // the one at T1, none after the 180
      expect(vi.getTimerCount()).toBe(0); // nothing left running: the TU decides when to give up
    });

    it('in Accepted, every 2xx (a retransmission or another fork\'s) goes up to the TU until Timer M (RFC 6026 §8.4)', () => {
      const req = request('INVITE', 'z9hG4bKclientM');
      const got: number[] = [];
      const tx = layer.sendRequest(req, udp, { onResponse: (r) => got.push(r.status), onTimeout: () => {} }, () => request('ACK', 'z9hG4bKclientM'));
      layer.receiveResponse(response(req, 200), udp);
      layer.receiveResponse(response(req, 200), udp);
      layer.receiveResponse(response(req, 486), udp); // a non-2xx after a 2xx is dropped
      expect(got).toEqual([200, 200]);
      expect(tx.state).toBe('accepted');
      expect(requestsSent()).toEqual(['INVITE']); // the TU, not the transaction, ACKs a 2xx
      vi.advanceTimersByTime(32_000);
      expect(tx.state).toBe('terminated');
    });

    it('a 2xx that follows a non-2xx final response (another fork answered) goes up to the TU, which ends that dialog (§13.2.2.4)', () => {
      const req = request('INVITE', 'z9hG4bKclientC');
      const got: number[] = [];
      layer.sendRequest(req, udp, { onResponse: (r) => got.push(r.status), onTimeout: () => {} }, () => request('ACK', 'z9hG4bKclientC'));
      layer.receiveResponse(response(req, 487), udp);
      layer.receiveResponse(response(req, 200), udp);
      expect(got).toEqual([487, 200]);
      expect(requestsSent()).toEqual(['INVITE', 'ACK']);
    });

    it('a non-2xx final response to our INVITE is ACKed, and ACKed again if it is retransmitted', () => {
      const req = request('INVITE', 'z9hG4bKclient2');
      const got: number[] = [];
      layer.sendRequest(req, udp, { onResponse: (r) => got.push(r.status), onTimeout: () => {} }, () => request('ACK', 'z9hG4bKclient2'));
      layer.receiveResponse(response(req, 180), udp);
      layer.receiveResponse(response(req, 486), udp);
      layer.receiveResponse(response(req, 486), udp);
      expect(got).toEqual([180, 486]);
      expect(requestsSent()).toEqual(['INVITE', 'ACK', 'ACK']);
    });

    it('a non-INVITE client retransmits on Timer E capped at T2 and times out on Timer F', () => {
      const req = request('BYE', 'z9hG4bKclient3');
      let timedOut = false;
      layer.sendRequest(req, udp, { onResponse: () => {}, onTimeout: () => (timedOut = true) }, () => req);
      vi.advanceTimersByTime(500 + 1000 + 2000 + 4000 + 4000);
      expect(requestsSent()).toEqual(Array(6).fill('BYE'));
      vi.advanceTimersByTime(32_000);
      expect(timedOut).toBe(true);
    });

    it('over TCP there are no retransmissions', () => {
      layer.sendRequest(request('BYE', 'z9hG4bKclient4'), tcp, { onResponse: () => {}, onTimeout: () => {} }, () => request('BYE'));
      vi.advanceTimersByTime(10_000);
      expect(requestsSent()).toEqual(['BYE']);
    });
  });
});
