import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect as tcpConnect, type Socket as TcpSocket } from 'node:net';
import { randomBytes, randomInt } from 'node:crypto';
import { parseMessage } from '../../src/sip/sip-parser.js';
import { buildResponse, serializeMessage } from '../../src/sip/sip-serializer.js';
import { SipHeaders, type SipMessage, type SipRequest, type SipResponse } from '../../src/sip/sip-message.js';
import { SipStreamFramer } from '../../src/sip/sip-stream-framer.js';
import { parseAuthParams, parseCSeq, parseNameAddr, parseVia } from '../../src/sip/sip-grammar.js';
import { digestResponse, type DigestAlgorithm } from '../../src/sip/digest-auth.js';
import { newBranch, newCallId, newTag } from '../../src/sip/sip-ids.js';
import { sdpBody, tagOf } from '../../src/sip/message-parts.js';

/**
 * A small raw SIP user agent client for integration tests, over UDP or TCP, that lets a test
 * choose what real carriers choose (Call-ID, From tag, CSeq, branch) and do what SIPp cannot
 * easily do mid-call: reuse a Call-ID, re-send an INVITE on a new branch (a merged request),
 * CANCEL after a provisional, drop a TCP connection before the answer, and count the RTP that
 * comes back.
 *
 *   const uac = await RawUac.open({ transport: 'udp', server: gw.sip.udp! });
 *   const call = uac.call({ dialled: '+14155550100', credentials: { username: keyId, password: secret } });
 *   await call.connect();                       // INVITE, 407, INVITE with digest, 200, ACK
 *   call.rtp.stream(call.remoteMedia!);          // 20 ms PCMU packets until stopStream()
 *   await call.rtp.waitForEchoes(25);
 *   await call.bye();
 *   await uac.close();
 *
 * Messages are parsed with the gateway's own parser (src/sip/sip-parser.ts) and digest answers
 * computed with `digestResponse` (src/sip/digest-auth.ts). Requests the gateway sends (BYE,
 * OPTIONS, INFO, …) are answered 200 at once; a non-2xx final response to an INVITE is ACKed
 * in its transaction (RFC 3261 §17.1.1.3); a 2xx is ACKed by `ack()` (or `connect()`), and its
 * retransmissions again after that (§13.2.2.4). Nothing is retransmitted over UDP: on loopback
 * the tests do not lose datagrams, and a retransmission would blur what a test measures.
 * Every wait is bounded and says what it waited for and what had arrived.
 */

export interface SipEndpoint {
  readonly address: string;
  readonly port: number;
}

export interface RawUacOptions {
  readonly transport: 'udp' | 'tcp';
  /** The gateway's SIP address for that transport (RunningGateway.sip.udp / .tcp). */
  readonly server: SipEndpoint;
  /** Local address to bind or connect from. Default 127.0.0.1. */
  readonly host?: string;
}

export interface Received {
  readonly msg: SipMessage;
  /** performance.now() at arrival. */
  readonly atMs: number;
}

interface Waiter {
  readonly check: (m: SipMessage) => boolean;
  readonly fail: (err: Error) => void;
}

/** The branch parameter of a message's top Via, or null. */
export function branchOf(m: SipMessage): string | null {
  const top = m.headers.getAll('Via')[0];
  return (top ? parseVia(top)?.params.get('branch') : null) ?? null;
}

/** CSeq number and method of a message. */
export function cseqOf(m: SipMessage): { seq: number; method: string } {
  const c = parseCSeq(m.headers.get('CSeq') ?? '');
  return { seq: c?.seq ?? -1, method: c?.method ?? '' };
}

/** "INVITE 2 → 407" style, for failure messages. */
export function describe(m: SipMessage): string {
  const c = cseqOf(m);
  return m.kind === 'response' ? `${m.status} (${c.seq} ${c.method})` : `${m.method} (${c.seq})`;
}

/** A plain-RTP SDP offer for `port` (PCMU and telephone-event; PCMA too unless codecs says). */
export function offerSdp(port: number, o: { address?: string; codecs?: readonly ('PCMU' | 'PCMA')[] } = {}): string {
  const address = o.address ?? '127.0.0.1';
  const codecs = o.codecs ?? ['PCMU', 'PCMA'];
  const pts = codecs.map((c) => (c === 'PCMU' ? 0 : 8));
  return [
    'v=0',
    `o=- ${randomInt(1, 2 ** 31)} 1 IN IP4 ${address}`,
    's=-',
    `c=IN IP4 ${address}`,
    't=0 0',
    `m=audio ${port} RTP/AVP ${[...pts, 101].join(' ')}`,
    ...codecs.map((c) => `a=rtpmap:${c === 'PCMU' ? 0 : 8} ${c}/8000`),
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-15',
    'a=ptime:20',
    'a=sendrecv',
    '',
  ].join('\r\n');
}

/** The audio address of an SDP body (c= and m=audio), or null. */
export function mediaOf(sdp: Buffer | string | null): SipEndpoint | null {
  if (!sdp) return null;
  const text = sdp.toString();
  const c = /^c=IN IP[46] (\S+)/m.exec(text);
  const m = /^m=audio (\d+) /m.exec(text);
  return c && m ? { address: c[1]!, port: Number(m[1]) } : null;
}

/** One SIP client socket (a UDP socket, or one TCP connection to the gateway) and its calls. */
export class RawUac {
  /** Every message received, in order (requests from the gateway included). */
  readonly received: Received[] = [];
  /** Datagrams or framed messages that did not parse. */
  unparsed = 0;
  private readonly waiters = new Set<Waiter>();
  private readonly calls = new Map<string, UacCall>();
  private closedReason: string | null = null;

  private constructor(
    readonly transport: 'udp' | 'tcp',
    readonly server: SipEndpoint,
    readonly local: SipEndpoint,
    private readonly udp: UdpSocket | null,
    private readonly tcp: TcpSocket | null,
  ) {}

  static async open(o: RawUacOptions): Promise<RawUac> {
    const host = o.host ?? '127.0.0.1';
    if (o.transport === 'udp') {
      const sock = createSocket('udp4');
      await new Promise<void>((res, rej) => {
        sock.once('error', rej);
        sock.bind(0, host, () => {
          sock.off('error', rej);
          res();
        });
      });
      const uac = new RawUac('udp', o.server, { address: host, port: sock.address().port }, sock, null);
      sock.on('message', (data, rinfo) => uac.onData(data, { address: rinfo.address, port: rinfo.port }));
      sock.on('error', () => {});
      return uac;
    }
    const sock = tcpConnect({ host: o.server.address, port: o.server.port, localAddress: host });
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`RawUac: no TCP connection to ${o.server.address}:${o.server.port} in 5 s`)), 5000);
      sock.once('error', (err) => {
        clearTimeout(t);
        rej(err);
      });
      sock.once('connect', () => {
        clearTimeout(t);
        res();
      });
    });
    sock.setNoDelay(true);
    const uac = new RawUac('tcp', o.server, { address: sock.localAddress ?? host, port: sock.localPort ?? 0 }, null, sock);
    const framer = new SipStreamFramer({ onMessage: (m) => uac.onData(m, o.server), onError: () => sock.destroy() });
    sock.on('data', (d: Buffer) => framer.push(d));
    sock.on('error', () => {});
    sock.once('close', () => uac.closedByPeer('the TCP connection closed'));
    return uac;
  }

  /** Via sent-by and Contact host:port of this client. */
  get hostport(): string {
    return `${this.local.address}:${this.local.port}`;
  }

  /** A call from this client; nothing is sent until start() or connect(). */
  call(o: UacCallOptions): UacCall {
    const call = new UacCall(this, o);
    this.calls.set(`${call.callId}\n${call.fromTag}`, call);
    return call;
  }

  /** Sends a message (or raw bytes) to the gateway, or to `to` for UDP. */
  send(msg: SipMessage | Buffer | string, to: SipEndpoint = this.server): void {
    if (this.closedReason) throw new Error(`RawUac: cannot send, ${this.closedReason}`);
    const data = typeof msg === 'string' ? Buffer.from(msg) : Buffer.isBuffer(msg) ? msg : serializeMessage(msg);
    if (this.udp) this.udp.send(data, to.port, to.address);
    else this.tcp!.write(data);
  }

  /**
   * Resolves with the first message received (already, or within `timeoutMs`) for which `pred`
   * holds; rejects saying what it waited for and what had arrived.
   */
  waitFor(pred: (m: SipMessage) => boolean, timeoutMs = 5000, what = 'a SIP message'): Promise<SipMessage> {
    const have = this.received.find((r) => pred(r.msg));
    if (have) return Promise.resolve(have.msg);
    return new Promise<SipMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`RawUac: timed out after ${timeoutMs} ms waiting for ${what}; received ${this.summary()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        check: (m) => {
          if (!pred(m)) return false;
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(m);
          return true;
        },
        fail: (err) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(err);
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** What arrived so far, one short line. */
  summary(): string {
    return this.received.length ? this.received.map((r) => describe(r.msg)).join(', ') : 'nothing';
  }

  private onData(data: Buffer, from: SipEndpoint): void {
    const parsed = parseMessage(data);
    if (!parsed.ok) {
      this.unparsed++;
      return;
    }
    const msg = parsed.message;
    this.received.push({ msg, atMs: performance.now() });
    const call = this.calls.get(`${msg.headers.get('Call-ID') ?? ''}\n${tagOf(msg.headers.get(msg.kind === 'request' ? 'To' : 'From')) ?? ''}`);
    if (msg.kind === 'request') {
      // Answer what the gateway asks (BYE, OPTIONS, INFO, …); never an ACK (RFC 3261 §17.2.3).
      if (msg.method !== 'ACK' && !this.closedReason) this.send(buildResponse(msg, msg.method === 'INVITE' ? 488 : 200), from);
      call?.onRequest(msg);
    } else {
      call?.onResponse(msg);
    }
    for (const w of [...this.waiters]) w.check(msg);
  }

  private closedByPeer(reason: string): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    for (const w of [...this.waiters]) w.fail(new Error(`RawUac: ${reason} while waiting; received ${this.summary()}`));
  }

  /** Drops the TCP connection at once, without a word (UDP: closes the socket). Idempotent. */
  destroy(): void {
    this.closedByPeer('the client dropped its connection');
    this.tcp?.destroy();
    if (this.udp) {
      try {
        this.udp.close();
      } catch {
        // already closed
      }
    }
  }

  /** Closes the socket and every call's RTP peer that the call opened itself. Idempotent. */
  async close(): Promise<void> {
    for (const c of this.calls.values()) c.closeOwnRtp();
    if (this.tcp && !this.tcp.destroyed) {
      await new Promise<void>((res) => {
        const t = setTimeout(() => {
          this.tcp!.destroy();
          res();
        }, 1000);
        this.tcp!.once('close', () => {
          clearTimeout(t);
          res();
        });
        this.tcp!.end();
      });
    }
    this.closedReason ??= 'the client closed';
    for (const w of [...this.waiters]) w.fail(new Error(`RawUac: closed while waiting; received ${this.summary()}`));
    if (this.udp) await new Promise<void>((res) => {
      try {
        this.udp!.close(() => res());
      } catch {
        res();
      }
    });
  }
}

export interface UacCallOptions {
  /** The Request-URI user part: the number dialled. */
  readonly dialled: string;
  /** Default: a fresh random Call-ID. */
  readonly callId?: string;
  /** Default: a fresh random tag. */
  readonly fromTag?: string;
  /** From user part. Default "carrier". */
  readonly fromUser?: string;
  /** CSeq of the first INVITE. Default 1. */
  readonly cseq?: number;
  /** Answers a 407 (or 401) challenge with digest (the key id and its secret). */
  readonly credentials?: { readonly username: string; readonly password: string } | null;
  /** Which offered algorithm to answer; default the first offered that digest-auth.ts knows. */
  readonly digestAlgorithm?: DigestAlgorithm;
  /** The RTP peer whose port goes in the offer; default one opened by start() and closed with the client. */
  readonly rtp?: RtpPeer;
  /** The INVITE body instead of an offer for the RTP peer; null sends no SDP. */
  readonly sdp?: string | null;
  /** Extra INVITE headers, in order. */
  readonly headers?: readonly (readonly [string, string])[];
  /** The Request-URI instead of sip:<dialled>@<gateway> (e.g. another node's, for a replay). */
  readonly requestUri?: string;
}

/** One dialog a RawUac starts: INVITE (with digest), ACK, BYE, CANCEL, re-sends; and its RTP. */
export class UacCall {
  readonly callId: string;
  readonly fromTag: string;
  readonly requestUri: string;
  /** The CSeq of the current INVITE; BYE and others go above it. */
  cseq: number;
  private nextCseq: number;
  /** The current INVITE as sent (the one with credentials, after a challenge), and its branch. */
  invite: SipRequest | null = null;
  branch = '';
  /** Every response to this call's requests, in order. */
  readonly responses: SipResponse[] = [];
  /** The 2xx that answered the call, its To tag, Contact and SDP address. */
  answer: SipResponse | null = null;
  toTag: string | null = null;
  remoteTarget: string | null = null;
  remoteMedia: SipEndpoint | null = null;
  /** A BYE the gateway sent (already answered 200). */
  byeReceived: SipRequest | null = null;
  private acked = false;
  private rtpPeer: RtpPeer | null;
  private ownsRtp = false;

  constructor(
    private readonly uac: RawUac,
    private readonly o: UacCallOptions,
  ) {
    this.callId = o.callId ?? newCallId();
    this.fromTag = o.fromTag ?? newTag();
    this.cseq = o.cseq ?? 1;
    this.nextCseq = this.cseq;
    const [host, port] = [uac.server.address, uac.server.port];
    this.requestUri = o.requestUri ?? `sip:${o.dialled}@${host}:${port}${uac.transport === 'tcp' ? ';transport=tcp' : ''}`;
    this.rtpPeer = o.rtp ?? null;
  }

  /** The call's RTP peer (opened by start() unless given). */
  get rtp(): RtpPeer {
    if (!this.rtpPeer) throw new Error('UacCall: no RTP peer before start()');
    return this.rtpPeer;
  }

  private get from(): string {
    return `"${this.o.fromUser ?? 'carrier'}" <sip:${this.o.fromUser ?? 'carrier'}@${this.uac.hostport}>;tag=${this.fromTag}`;
  }

  private get toUri(): string {
    return `<sip:${this.o.dialled}@${this.uac.server.address}:${this.uac.server.port}>`;
  }

  private via(branch: string): string {
    return `SIP/2.0/${this.uac.transport.toUpperCase()} ${this.uac.hostport};branch=${branch};rport`;
  }

  private request(method: string, uri: string, branch: string, cseq: number, to: string, extra: readonly (readonly [string, string])[] = [], body: Buffer = Buffer.alloc(0)): SipRequest {
    const headers = new SipHeaders()
      .append('Via', this.via(branch))
      .append('Max-Forwards', '70')
      .append('From', this.from)
      .append('To', to)
      .append('Call-ID', this.callId)
      .append('CSeq', `${cseq} ${method}`);
    for (const [k, v] of extra) headers.append(k, v);
    return { kind: 'request', method, uri, headers, body };
  }

  /**
   * Sends an INVITE (a new transaction: new branch, next CSeq), with `authorization` as its
   * [header, value] if given. Low level: start() and connect() use it.
   */
  async sendInvite(authorization: readonly [string, string] | null = null): Promise<SipRequest> {
    if (!this.rtpPeer && this.o.sdp === undefined) {
      this.rtpPeer = await RtpPeer.open({ host: this.uac.local.address });
      this.ownsRtp = true;
    }
    const body = this.o.sdp === null ? null : (this.o.sdp ?? offerSdp(this.rtp.port, { address: this.uac.local.address }));
    this.cseq = this.nextCseq++;
    this.branch = newBranch();
    const extra: [string, string][] = [['Contact', `<sip:${this.o.fromUser ?? 'carrier'}@${this.uac.hostport}${this.uac.transport === 'tcp' ? ';transport=tcp' : ''}>`]];
    for (const [k, v] of this.o.headers ?? []) extra.push([k, v]);
    if (authorization) extra.push([authorization[0], authorization[1]]);
    if (body !== null) extra.push(['Content-Type', 'application/sdp']);
    this.invite = this.request('INVITE', this.requestUri, this.branch, this.cseq, this.toUri, extra, body === null ? Buffer.alloc(0) : Buffer.from(body));
    this.uac.send(this.invite);
    return this.invite;
  }

  /**
   * Re-sends the current INVITE as it is (same Call-ID, From tag, CSeq, credentials and body):
   * on its own branch it is a retransmission; on `branch` (e.g. newBranch()) it is the same
   * request arriving by another path, a merged request (RFC 3261 §8.2.2.2). Returns the branch.
   */
  resendInvite(branch: string = this.branch): string {
    if (!this.invite) throw new Error('UacCall: no INVITE to re-send');
    const headers = this.invite.headers.clone();
    headers.removeFirstValue('Via');
    headers.prepend('Via', this.via(branch));
    this.uac.send({ ...this.invite, headers });
    return branch;
  }

  /**
   * Sends the INVITE; with credentials, waits for the challenge, ACKs it (done on receipt)
   * and sends the INVITE again with the digest answer. Resolves once the INVITE that counts is
   * on its way (or the first one got a final answer other than a challenge).
   */
  async start(timeoutMs = 5000): Promise<void> {
    await this.sendInvite();
    if (!this.o.credentials) return;
    const first = await this.finalResponse(timeoutMs);
    if (first.status !== 407 && first.status !== 401) return;
    await this.sendInvite(this.authorization(first));
  }

  /** start(), then the final response; a 2xx is ACKed. Throws unless it is a 2xx. */
  async connect(timeoutMs = 5000): Promise<SipResponse> {
    await this.start(timeoutMs);
    const res = await this.finalResponse(timeoutMs);
    if (res.status >= 300) throw new Error(`UacCall ${this.callId}: the INVITE was answered ${res.status} ${res.reason}; received ${this.uac.summary()}`);
    this.ack();
    return res;
  }

  /** A response to the current INVITE transaction (its branch) with this status. */
  response(status: number, timeoutMs = 5000): Promise<SipResponse> {
    const branch = this.branch;
    return this.uac.waitFor((m) => m.kind === 'response' && m.status === status && branchOf(m) === branch && cseqOf(m).method === 'INVITE', timeoutMs, `${status} to INVITE ${this.cseq}`) as Promise<SipResponse>;
  }

  /** The final response to the current INVITE transaction. */
  finalResponse(timeoutMs = 5000): Promise<SipResponse> {
    const branch = this.branch;
    return this.uac.waitFor((m) => m.kind === 'response' && m.status >= 200 && branchOf(m) === branch && cseqOf(m).method === 'INVITE', timeoutMs, `a final response to INVITE ${this.cseq}`) as Promise<SipResponse>;
  }

  /** The final response on another branch of this call (a re-sent INVITE). */
  finalResponseOn(branch: string, timeoutMs = 5000): Promise<SipResponse> {
    return this.uac.waitFor((m) => m.kind === 'response' && m.status >= 200 && branchOf(m) === branch, timeoutMs, `a final response on branch ${branch}`) as Promise<SipResponse>;
  }

  /** ACK for the 2xx (RFC 3261 §13.2.2.4): a transaction of its own, to the remote target. */
  ack(): void {
    if (!this.answer || !this.toTag) throw new Error(`UacCall ${this.callId}: nothing to ACK (no 2xx yet)`);
    this.acked = true;
    this.uac.send(this.request('ACK', this.remoteTarget ?? this.requestUri, newBranch(), this.cseq, `${this.toUri};tag=${this.toTag}`));
  }

  /** BYE in the dialog; resolves with its final response. */
  async bye(timeoutMs = 5000): Promise<SipResponse> {
    if (!this.toTag) throw new Error(`UacCall ${this.callId}: no dialog to BYE`);
    const seq = this.nextCseq++;
    const branch = newBranch();
    this.uac.send(this.request('BYE', this.remoteTarget ?? this.requestUri, branch, seq, `${this.toUri};tag=${this.toTag}`));
    return this.uac.waitFor((m) => m.kind === 'response' && m.status >= 200 && branchOf(m) === branch, timeoutMs, `a final response to BYE ${seq}`) as Promise<SipResponse>;
  }

  /**
   * CANCEL of the current INVITE (RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq
   * number and branch); resolves with the CANCEL's own final response. The 487 to the INVITE
   * comes separately: response(487).
   */
  async cancel(timeoutMs = 5000): Promise<SipResponse> {
    if (!this.invite) throw new Error(`UacCall ${this.callId}: no INVITE to CANCEL`);
    const branch = this.branch;
    this.uac.send(this.request('CANCEL', this.invite.uri, branch, this.cseq, this.toUri));
    return this.uac.waitFor((m) => m.kind === 'response' && m.status >= 200 && branchOf(m) === branch && cseqOf(m).method === 'CANCEL', timeoutMs, `a final response to CANCEL ${this.cseq}`) as Promise<SipResponse>;
  }

  /** The BYE the gateway sends (already answered 200). */
  waitForBye(timeoutMs = 5000): Promise<SipRequest> {
    return this.uac.waitFor((m) => m.kind === 'request' && m.method === 'BYE' && m.headers.get('Call-ID') === this.callId && tagOf(m.headers.get('To')) === this.fromTag, timeoutMs, `a BYE for call ${this.callId}`) as Promise<SipRequest>;
  }

  /** @internal RawUac hands over responses to this call. */
  onResponse(res: SipResponse): void {
    this.responses.push(res);
    const { seq, method } = cseqOf(res);
    if (method !== 'INVITE') return;
    if (res.status >= 200 && res.status < 300) {
      if (!this.answer && seq === this.cseq) {
        this.answer = res;
        this.toTag = tagOf(res.headers.get('To'));
        const contact = res.headers.getAll('Contact')[0];
        this.remoteTarget = contact && parseNameAddr(contact) ? (/<([^>]+)>/.exec(contact)?.[1] ?? contact.trim()) : null;
        this.remoteMedia = mediaOf(sdpBody(res));
      } else if (this.acked && seq === this.cseq) {
        this.ack(); // a retransmitted 2xx: ACK again (RFC 3261 §13.2.2.4)
      }
    } else if (res.status >= 300) {
      // RFC 3261 §17.1.1.3: the ACK of a non-2xx final response is part of its transaction:
      // same branch, Request-URI and From as that INVITE, To from the response.
      const headers = new SipHeaders()
        .append('Via', res.headers.getAll('Via')[0] ?? this.via(this.branch))
        .append('Max-Forwards', '70')
        .append('From', res.headers.get('From') ?? this.from)
        .append('To', res.headers.get('To') ?? this.toUri)
        .append('Call-ID', this.callId)
        .append('CSeq', `${seq} ACK`);
      this.uac.send({ kind: 'request', method: 'ACK', uri: this.invite?.uri ?? this.requestUri, headers, body: Buffer.alloc(0) });
    }
  }

  /** @internal RawUac hands over requests of this dialog (already answered). */
  onRequest(req: SipRequest): void {
    if (req.method === 'BYE') this.byeReceived = req;
  }

  /** @internal */
  closeOwnRtp(): void {
    if (this.ownsRtp) this.rtpPeer?.close();
  }

  /** The Proxy-Authorization (or Authorization) answering a 407 (or 401) challenge. */
  authorization(challenge: SipResponse): [string, string] {
    const creds = this.o.credentials!;
    const proxy = challenge.status === 407;
    const name = (proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate').toLowerCase();
    const offers = challenge.headers
      .entries()
      .filter((h) => h.name.toLowerCase() === name)
      .map((h) => parseAuthParams(h.value))
      .filter((p): p is NonNullable<typeof p> => p !== null && p.scheme.toLowerCase() === 'digest')
      .map((p) => ({ params: p.params, algorithm: (p.params.get('algorithm') ?? 'MD5').toUpperCase() }))
      .filter((p) => (this.o.digestAlgorithm ? p.algorithm === this.o.digestAlgorithm : p.algorithm === 'MD5' || p.algorithm === 'SHA-256'));
    const offer = offers[0];
    if (!offer) throw new Error(`UacCall: no usable digest challenge in ${challenge.status}`);
    const algorithm = offer.algorithm as DigestAlgorithm;
    const realm = offer.params.get('realm') ?? '';
    const nonce = offer.params.get('nonce') ?? '';
    const qop = (offer.params.get('qop') ?? '').split(',').map((s) => s.trim()).includes('auth') ? ('auth' as const) : undefined;
    const nc = '00000001';
    const cnonce = randomBytes(8).toString('hex');
    const uri = this.requestUri;
    const response = digestResponse({ algorithm, username: creds.username, realm, password: creds.password, method: 'INVITE', uri, nonce, nc, cnonce, ...(qop ? { qop } : {}) });
    const value = `Digest username="${creds.username}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}` + (qop ? `, qop=auth, nc=${nc}, cnonce="${cnonce}"` : '');
    return [proxy ? 'Proxy-Authorization' : 'Authorization', value];
  }
}

/** µ-law and A-law silence bytes: what a gateway sends when it has nothing to play. */
const SILENCE_BYTES = new Set([0xff, 0x7f, 0xd5, 0x55]);
let nextMarker = 0;
const MARKERS = [0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x9a, 0xab, 0xbc, 0xcd];

/**
 * A plain-RTP peer on 127.0.0.1: sends 20 ms packets whose payload is one marker byte repeated
 * (distinct per peer, never a silence value), and counts what comes back: `echoed` are packets
 * carrying its own marker (its audio, echoed), `foreign` those carrying another peer's marker
 * (audio of another call: they must never arrive).
 */
export class RtpPeer {
  readonly ssrc = randomInt(1, 2 ** 31);
  sent = 0;
  /** Every RTP packet received. */
  received = 0;
  echoed = 0;
  foreign = 0;
  /** The payloads of the first packets received (at most 500: 10 s), for what was heard. */
  readonly payloads: Buffer[] = [];
  private seq = randomInt(0, 0xffff);
  private ts = randomInt(0, 2 ** 31);
  private timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly sock: UdpSocket,
    readonly port: number,
    /** The byte every payload this peer sends is made of. */
    readonly marker: number,
  ) {
    sock.on('message', (pkt) => this.onPacket(pkt));
    sock.on('error', () => {});
  }

  static async open(o: { host?: string; marker?: number } = {}): Promise<RtpPeer> {
    const sock = createSocket('udp4');
    await new Promise<void>((res, rej) => {
      sock.once('error', rej);
      sock.bind(0, o.host ?? '127.0.0.1', () => {
        sock.off('error', rej);
        res();
      });
    });
    const marker = o.marker ?? MARKERS[nextMarker++ % MARKERS.length]!;
    if (SILENCE_BYTES.has(marker)) throw new Error('RtpPeer: a marker must not be a silence byte');
    return new RtpPeer(sock, sock.address().port, marker);
  }

  private onPacket(pkt: Buffer): void {
    if (pkt.length < 12 || pkt[0]! >> 6 !== 2) return;
    const pt = pkt[1]! & 0x7f;
    if (pt >= 72 && pt <= 95) return; // RTCP on the RTP port (rtcp-mux)
    this.received++;
    const cc = pkt[0]! & 0x0f;
    const payload = pkt.subarray(12 + 4 * cc);
    if (payload.length === 0) return;
    if (this.payloads.length < 500) this.payloads.push(Buffer.from(payload));
    const b = payload[0]!;
    if (payload.every((x) => x === b)) {
      if (b === this.marker) this.echoed++;
      else if (!SILENCE_BYTES.has(b) && MARKERS.includes(b)) this.foreign++;
    }
    for (const w of [...this.waiters]) w();
  }

  /** Sends one 20 ms packet (160 bytes of the marker) to `to`. */
  sendOne(to: SipEndpoint, payloadType = 0): void {
    if (this.closed) return;
    const p = Buffer.alloc(12 + 160, this.marker);
    p[0] = 0x80;
    p[1] = payloadType & 0x7f;
    p.writeUInt16BE(this.seq, 2);
    p.writeUInt32BE(this.ts >>> 0, 4);
    p.writeUInt32BE(this.ssrc, 8);
    this.seq = (this.seq + 1) & 0xffff;
    this.ts = (this.ts + 160) % 2 ** 32;
    this.sock.send(p, to.port, to.address);
    this.sent++;
  }

  /** Streams a packet every 20 ms to `to` until stopStream() (at most `maxPackets`, default 1 min). */
  stream(to: SipEndpoint, o: { payloadType?: number; maxPackets?: number } = {}): void {
    this.stopStream();
    const limit = this.sent + (o.maxPackets ?? 3000);
    this.timer = setInterval(() => {
      if (this.sent >= limit) return this.stopStream();
      this.sendOne(to, o.payloadType ?? 0);
    }, 20);
  }

  stopStream(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get streaming(): boolean {
    return this.timer !== null;
  }

  /** Sends `count` packets paced at 20 ms. */
  async send(to: SipEndpoint, count: number, payloadType = 0): Promise<void> {
    for (let i = 0; i < count && !this.closed; i++) {
      this.sendOne(to, payloadType);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Resolves once `echoed` has reached `total`; rejects after `timeoutMs` with the counts. */
  waitForEchoes(total: number, timeoutMs = 5000): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.echoed >= total) return resolve(this.echoed);
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`RtpPeer :${this.port}: timed out after ${timeoutMs} ms waiting for ${total} echoed packets (sent ${this.sent}, received ${this.received}, echoed ${this.echoed}, foreign ${this.foreign})`));
      }, timeoutMs);
      const check = (): void => {
        if (this.echoed < total) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(this.echoed);
      };
      this.waiters.add(check);
    });
  }

  /** Stops streaming and closes the socket. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopStream();
    try {
      this.sock.close();
    } catch {
      // already closed
    }
  }
}
