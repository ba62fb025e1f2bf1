import type { Logger } from 'pino';
import type { Peer, TransportProtocol } from '../transport/sip-transport.js';
import { SipHeaders, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { buildResponse } from './sip-serializer.js';
import { parseAuthParams, parseCSeq, parseNameAddr } from './sip-grammar.js';
import type { ServerTransaction, TransactionLayer } from './transactions.js';
import { digestResponse, type DigestAlgorithm } from './digest-auth.js';
import { dialogKey } from './dialog.js';
import { sdpBody, tagOf, transportParam } from './message-parts.js';
import { newBranch, newCallId, newTag } from './sip-ids.js';
import { randomBytes } from 'node:crypto';

/** Why an outbound leg ended or never got answered. */
export type OutboundEnd =
  | { readonly kind: 'rejected'; readonly status: number; readonly reason: string }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'transport-error' }
  | { readonly kind: 'cancelled' }
  | { readonly kind: 'remote-bye' }
  | { readonly kind: 'local-bye' };

export interface OutboundLegEvents {
  /** 1xx other than 100 (180 ringing, 183 session progress with early media SDP). */
  onProgress?(status: number, sdp: Buffer | null): void;
  /** The 2xx: the callee answered with this SDP. */
  onAnswer(sdp: Buffer): void;
  /** The leg is over (never answered, or hung up by either side). Called once. */
  onEnd(end: OutboundEnd): void;
  /** A re-INVITE/UPDATE offer from the callee; the answer SDP, or null to refuse (488). */
  onReoffer?(sdp: Buffer): Buffer | null;
}

export interface OutboundInvite {
  readonly peer: Peer;
  /** e.g. sip:+14155550100@carrier.example.com */
  readonly requestUri: string;
  /** The calling number (user part of From), e.g. +14155550100. */
  readonly fromUser: string;
  /** The domain of From/To when it is not the peer's host. */
  readonly domain?: string;
  readonly toUser: string;
  readonly sdp: Buffer;
  /** Extra headers (Identity, P-Asserted-Identity, …). */
  readonly headers?: readonly (readonly [string, string])[];
  /** Digest credentials towards the carrier (401/407 challenges answered once). */
  readonly credentials?: { readonly username: string; readonly password: string } | null;
  readonly events: OutboundLegEvents;
}

export interface OutboundLeg {
  readonly callId: string;
  readonly state: 'calling' | 'early' | 'answered' | 'ended';
  /** CANCEL before the answer, BYE after; no-op once ended. */
  end(): void;
  /** The INVITE as last sent (tests and logging). */
  readonly invite: SipRequest;
}

interface Leg {
  readonly callId: string;
  readonly localTag: string;
  remoteTag: string | null;
  state: 'calling' | 'early' | 'answered' | 'ended';
  invite: SipRequest;
  cseq: number;
  readonly peer: Peer;
  readonly opts: OutboundInvite;
  remoteTarget: string;
  routeSet: string[];
  authTried: boolean;
  gotProvisional: boolean;
  cancelPending: boolean;
  localUri: string;
  remoteUri: string;
  ack: SipRequest | null;
}

export interface SipUacHost {
  readonly txl: TransactionLayer;
  send(msg: SipMessage, peer: Peer): Promise<void>;
  /** host:port for Via and Contact on this transport. */
  localAddress(protocol: TransportProtocol): string;
  readonly userAgent: string;
  readonly log: Logger;
}


/**
 * The outbound end of the back-to-back user agent: a UAC core (RFC 3261 §13.2) for calls
 * tollgate places towards a carrier. Sends the INVITE through the shared transaction layer,
 * answers a 401/407 once with the trunk's digest credentials (RFC 2617/7616), ACKs the 2xx
 * itself (and its retransmissions), CANCELs before and BYEs after the answer, and takes the
 * callee's in-dialog BYE and re-INVITE/UPDATE (routed here by the SipServer).
 */
export class SipUac {
  private readonly legs = new Map<string, Leg>();
  private readonly byCallId = new Map<string, Leg>();

  constructor(private readonly host: SipUacHost) {}

  get active(): number {
    return this.byCallId.size;
  }

  invite(opts: OutboundInvite): OutboundLeg {
    const callId = newCallId();
    const localTag = newTag();
    const domain = opts.domain ?? opts.peer.address;
    const leg: Leg = {
      callId,
      localTag,
      remoteTag: null,
      state: 'calling',
      invite: null as unknown as SipRequest,
      cseq: 1,
      peer: opts.peer,
      opts,
      remoteTarget: opts.requestUri,
      routeSet: [],
      authTried: false,
      gotProvisional: false,
      cancelPending: false,
      localUri: `<sip:${opts.fromUser}@${domain}>;tag=${localTag}`,
      remoteUri: `<sip:${opts.toUser}@${domain}>`,
      ack: null,
    };
    this.byCallId.set(callId, leg);
    this.sendInvite(leg, null);
    const end = (): void => this.end(leg);
    return {
      callId,
      get state() {
        return leg.state;
      },
      get invite() {
        return leg.invite;
      },
      end,
    };
  }

  private baseHeaders(leg: Leg, method: string, cseq: number, branch = newBranch()): SipHeaders {
    const local = this.host.localAddress(leg.peer.protocol);
    return new SipHeaders()
      .append('Via', `SIP/2.0/${leg.peer.protocol.toUpperCase()} ${local};branch=${branch};rport`)
      .append('Max-Forwards', '70')
      .append('From', leg.localUri)
      .append('To', leg.remoteTag ? `${leg.remoteUri};tag=${leg.remoteTag}` : leg.remoteUri)
      .append('Call-ID', leg.callId)
      .append('CSeq', `${cseq} ${method}`)
      .append('User-Agent', this.host.userAgent);
  }

  private sendInvite(leg: Leg, authorization: readonly [string, string] | null): void {
    const local = this.host.localAddress(leg.peer.protocol);
    const h = this.baseHeaders(leg, 'INVITE', leg.cseq)
      .append('Contact', `<sip:tollgate@${local}${transportParam(leg.peer.protocol)}>`)
      .append('Allow', 'INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO')
      .append('Content-Type', 'application/sdp');
    for (const [k, v] of leg.opts.headers ?? []) h.append(k, v);
    if (authorization) h.append(authorization[0], authorization[1]);
    const invite: SipRequest = { kind: 'request', method: 'INVITE', uri: leg.opts.requestUri, headers: h, body: leg.opts.sdp };
    leg.invite = invite;
    this.host.txl.sendRequest(invite, leg.peer, {
      onResponse: (res) => this.onInviteResponse(leg, res),
      onTimeout: () => this.finish(leg, { kind: 'timeout' }),
      onTransportError: () => this.finish(leg, { kind: 'transport-error' }),
    }, (res) => this.nonTwoXxAck(invite, res));
  }

  /** §17.1.1.3: the ACK of a non-2xx final response, inside the INVITE transaction. */
  private nonTwoXxAck(invite: SipRequest, res: SipResponse): SipRequest {
    const h = new SipHeaders()
      .append('Via', invite.headers.getAll('Via')[0] ?? '')
      .append('Max-Forwards', '70')
      .append('From', invite.headers.get('From') ?? '')
      .append('To', res.headers.get('To') ?? '')
      .append('Call-ID', invite.headers.get('Call-ID') ?? '')
      .append('CSeq', `${parseCSeq(invite.headers.get('CSeq') ?? '')?.seq ?? 1} ACK`);
    return { kind: 'request', method: 'ACK', uri: invite.uri, headers: h, body: Buffer.alloc(0) };
  }

  private onInviteResponse(leg: Leg, res: SipResponse): void {
    const cseq = parseCSeq(res.headers.get('CSeq') ?? '');
    if (cseq?.seq !== leg.cseq) return; // a response to an INVITE we already replaced (auth)
    if (res.status < 200) {
      if (res.status > 100) {
        leg.gotProvisional = true;
        if (leg.state === 'calling') leg.state = 'early';
        leg.opts.events.onProgress?.(res.status, sdpBody(res));
      } else leg.gotProvisional = true;
      if (leg.cancelPending) this.sendCancel(leg);
      return;
    }
    if (res.status < 300) return this.onTwoXx(leg, res);
    if ((res.status === 401 || res.status === 407) && leg.opts.credentials && !leg.authTried && leg.state !== 'ended' && !leg.cancelPending) {
      const header = res.headers.get(res.status === 401 ? 'WWW-Authenticate' : 'Proxy-Authenticate');
      const auth = header ? this.authorize(leg, header, res.status === 401 ? 'Authorization' : 'Proxy-Authorization') : null;
      if (auth) {
        leg.authTried = true;
        leg.cseq++;
        this.sendInvite(leg, auth);
        return;
      }
    }
    this.finish(leg, leg.cancelPending && res.status === 487 ? { kind: 'cancelled' } : { kind: 'rejected', status: res.status, reason: res.reason });
  }

  /** Answers a digest challenge (MD5 or SHA-256, qop=auth when offered). */
  private authorize(leg: Leg, challenge: string, headerName: string): [string, string] | null {
    const parsed = parseAuthParams(challenge);
    if (!parsed || parsed.scheme.toLowerCase() !== 'digest') return null;
    const p = parsed.params;
    const realm = p.get('realm');
    const nonce = p.get('nonce');
    if (realm === undefined || nonce === undefined) return null;
    const algorithm = (p.get('algorithm') ?? 'MD5').toUpperCase() as DigestAlgorithm;
    if (algorithm !== 'MD5' && algorithm !== 'SHA-256') return null;
    const qops = (p.get('qop') ?? '').split(',').map((s) => s.trim());
    const qop = qops.includes('auth') ? ('auth' as const) : undefined;
    const cnonce = randomBytes(8).toString('hex');
    const nc = '00000001';
    const creds = leg.opts.credentials!;
    const uri = leg.opts.requestUri;
    const response = digestResponse({ algorithm, username: creds.username, realm, password: creds.password, method: 'INVITE', uri, nonce, ...(qop ? { qop, nc, cnonce } : {}) });
    const parts = [`username="${creds.username}"`, `realm="${realm}"`, `nonce="${nonce}"`, `uri="${uri}"`, `response="${response}"`, `algorithm=${algorithm}`];
    if (qop) parts.push(`qop=${qop}`, `nc=${nc}`, `cnonce="${cnonce}"`);
    const opaque = p.get('opaque');
    if (opaque !== undefined) parts.push(`opaque="${opaque}"`);
    return [headerName, `Digest ${parts.join(', ')}`];
  }

  private onTwoXx(leg: Leg, res: SipResponse): void {
    const remoteTag = tagOf(res.headers.get('To'));
    if (leg.state === 'answered' || leg.state === 'ended') {
      // A retransmitted 2xx (our ACK was lost): ACK again (§13.2.2.4). After we ended, ACK and BYE.
      if (leg.ack) void this.host.send(leg.ack, leg.peer).catch(() => {});
      return;
    }
    leg.remoteTag = remoteTag ?? '';
    const contact = res.headers.getAll('Contact')[0];
    const target = contact ? parseNameAddr(contact) : null;
    if (target) leg.remoteTarget = contact!.replace(/^[^<]*<([^>]*)>.*$/, '$1');
    leg.routeSet = [...res.headers.getAll('Record-Route')].reverse();
    this.legs.set(dialogKey(leg.callId, leg.localTag, leg.remoteTag), leg);
    const ack = this.inDialogRequest(leg, 'ACK', leg.cseq);
    leg.ack = ack;
    void this.host.send(ack, leg.peer).catch(() => {});
    if (leg.cancelPending) {
      // The answer crossed our CANCEL: the call is up, so end it with BYE (§9.1).
      leg.state = 'answered';
      this.sendBye(leg);
      this.finish(leg, { kind: 'cancelled' });
      return;
    }
    leg.state = 'answered';
    leg.opts.events.onAnswer(sdpBody(res) ?? Buffer.alloc(0));
  }

  private inDialogRequest(leg: Leg, method: string, cseq: number): SipRequest {
    const h = this.baseHeaders(leg, method, cseq);
    for (const r of leg.routeSet) h.append('Route', r);
    return { kind: 'request', method, uri: leg.remoteTarget, headers: h, body: Buffer.alloc(0) };
  }

  private end(leg: Leg): void {
    if (leg.state === 'ended') return;
    if (leg.state === 'answered') {
      this.sendBye(leg);
      this.finish(leg, { kind: 'local-bye' });
      return;
    }
    // §9.1: CANCEL only after a provisional response; until then, remember to.
    leg.cancelPending = true;
    if (leg.gotProvisional) this.sendCancel(leg);
  }

  private sendCancel(leg: Leg): void {
    const via = leg.invite.headers.getAll('Via')[0] ?? '';
    const h = new SipHeaders()
      .append('Via', via)
      .append('Max-Forwards', '70')
      .append('From', leg.invite.headers.get('From') ?? '')
      .append('To', leg.invite.headers.get('To') ?? '')
      .append('Call-ID', leg.callId)
      .append('CSeq', `${leg.cseq} CANCEL`)
      .append('User-Agent', this.host.userAgent);
    const cancel: SipRequest = { kind: 'request', method: 'CANCEL', uri: leg.invite.uri, headers: h, body: Buffer.alloc(0) };
    this.host.txl.sendRequest(cancel, leg.peer, { onResponse: () => {}, onTimeout: () => this.finish(leg, { kind: 'cancelled' }) }, () => cancel);
  }

  private sendBye(leg: Leg): void {
    const bye = this.inDialogRequest(leg, 'BYE', ++leg.cseq);
    this.host.txl.sendRequest(bye, leg.peer, { onResponse: () => {}, onTimeout: () => {} }, () => bye);
  }

  private finish(leg: Leg, end: OutboundEnd): void {
    if (leg.state === 'ended') return;
    leg.state = 'ended';
    this.byCallId.delete(leg.callId);
    // Keep the dialog a little longer so 2xx retransmissions and a late BYE still match.
    if (leg.remoteTag !== null) {
      const key = dialogKey(leg.callId, leg.localTag, leg.remoteTag);
      setTimeout(() => {
        if (this.legs.get(key) === leg) this.legs.delete(key);
      }, 32_000).unref();
    }
    try {
      leg.opts.events.onEnd(end);
    } catch (err) {
      this.host.log.error({ err, callId: leg.callId }, 'outbound leg end handler failed');
    }
  }

  /** A 2xx that matched no transaction (retransmission after the INVITE transaction ended). */
  onStrayResponse(res: SipResponse): boolean {
    const callId = res.headers.get('Call-ID');
    const leg = callId ? this.byCallId.get(callId) ?? [...this.legs.values()].find((l) => l.callId === callId) : undefined;
    if (!leg || res.status < 200 || res.status >= 300) return false;
    if (leg.ack) void this.host.send(leg.ack, leg.peer).catch(() => {});
    return true;
  }

  /**
   * An in-dialog request from the callee (BYE, re-INVITE, UPDATE, INFO, OPTIONS). True when it
   * belonged to an outbound leg and was answered here.
   */
  handleInDialog(tx: ServerTransaction): boolean {
    const req = tx.request;
    const key = dialogKey(req.headers.get('Call-ID') ?? '', tagOf(req.headers.get('To')) ?? '', tagOf(req.headers.get('From')) ?? '');
    const leg = this.legs.get(key);
    if (!leg) return false;
    const reply = (status: number, reason?: string, body?: Buffer): void => {
      const res = buildResponse(req, status, reason, {
        headers: [['Server', this.host.userAgent], ...(body ? ([['Content-Type', 'application/sdp'], ['Contact', `<sip:tollgate@${this.host.localAddress(leg.peer.protocol)}${transportParam(leg.peer.protocol)}>`]] as [string, string][]) : [])],
        ...(body ? { body } : {}),
      });
      void tx.respond(res);
    };
    switch (req.method) {
      case 'BYE':
        reply(200);
        this.finish(leg, { kind: 'remote-bye' });
        return true;
      case 'INVITE':
      case 'UPDATE': {
        if (leg.state === 'ended') {
          reply(481, 'Call/Transaction Does Not Exist');
          return true;
        }
        const offer = sdpBody(req);
        if (!offer) {
          reply(200);
          return true;
        }
        const answer = leg.opts.events.onReoffer?.(offer) ?? null;
        if (answer) reply(200, 'OK', answer);
        else reply(488, 'Not Acceptable Here');
        return true;
      }
      default:
        reply(leg.state === 'ended' ? 481 : 200);
        return true;
    }
  }

  /** OPTIONS to a peer (trunk health): the final status, or null when nothing answers. */
  ping(peer: Peer): Promise<number | null> {
    return new Promise((resolve) => {
      const local = this.host.localAddress(peer.protocol);
      const host = peer.address.includes(':') ? `[${peer.address}]` : peer.address;
      const h = new SipHeaders()
        .append('Via', `SIP/2.0/${peer.protocol.toUpperCase()} ${local};branch=${newBranch()};rport`)
        .append('Max-Forwards', '70')
        .append('From', `<sip:tollgate@${local}>;tag=${newTag()}`)
        .append('To', `<sip:${host}:${peer.port}>`)
        .append('Call-ID', newCallId())
        .append('CSeq', '1 OPTIONS')
        .append('User-Agent', this.host.userAgent)
        .append('Accept', 'application/sdp');
      const req: SipRequest = { kind: 'request', method: 'OPTIONS', uri: `sip:${host}:${peer.port}${transportParam(peer.protocol)}`, headers: h, body: Buffer.alloc(0) };
      this.host.txl.sendRequest(req, peer, {
        onResponse: (res) => {
          if (res.status >= 200) resolve(res.status);
        },
        onTimeout: () => resolve(null),
        onTransportError: () => resolve(null),
      }, () => req);
    });
  }

  /** Ends every leg (shutdown). */
  close(): void {
    for (const leg of [...this.byCallId.values()]) this.end(leg);
  }
}
