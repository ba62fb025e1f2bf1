import type { Logger } from 'pino';
import type { Peer, TransportProtocol } from '../transport/sip-transport.js';
import { SipHeaders, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { buildResponse } from './sip-serializer.js';
import { parseAuthParams, parseCSeq } from './sip-grammar.js';
import type { ClientTransaction, ServerTransaction, TransactionLayer } from './transactions.js';
import { cancelWait, RFC3261_TIMERS, type TimerValues } from './transaction-timers.js';
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
  /** The leg is over (never answered, or hung up by either side). Called once; after end() it is the only event. */
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
  /**
   * CANCEL before the answer (once, and only after a provisional response, RFC 3261 §9.1), BYE
   * after; no-op once ended. A ringing leg ends when the INVITE's final response (487) comes, or
   * 64×T1 after the CANCEL if none does; an answer that crosses the CANCEL is ACKed and BYEd.
   */
  end(): void;
  /** The INVITE as last sent (tests and logging). */
  readonly invite: SipRequest;
}

/** Who a dialog's requests go to: the callee's tag, its Contact and the route set (§12.1.2). */
interface DialogPeer {
  readonly leg: Leg;
  readonly remoteTag: string;
  readonly remoteTarget: string;
  readonly routeSet: readonly string[];
}

/**
 * One dialog a 2xx to our INVITE created (RFC 3261 §12.1.2). The first 2xx while we still want
 * the call is the answer and its dialog is kept; every other one (another fork's 2xx, a 2xx
 * after CANCEL, ring timeout or end) is ACKed and then ended with BYE (§13.2.2.4, §15).
 */
interface UacDialog extends DialogPeer {
  /** Our CSeq in this dialog: it starts at the INVITE's (§12.1.2). */
  localCseq: number;
  /** The ACK of this dialog's 2xx, sent again for each retransmission of it (§13.2.2.4). */
  readonly ack: SipRequest;
  readonly kept: boolean;
  /** A BYE went out (ours) or came in (theirs): the dialog is over. */
  over: boolean;
}

/**
 * A call leg we place:
 *
 *   calling ─1xx─▶ early ─2xx─▶ answered ─BYE either way─▶ ended
 *   calling/early ─300-699, Timer B (calling only), transport error─▶ ended
 *   calling/early ─end()─▶ (CANCEL once a provisional came) ─487, 2xx (ACK+BYE), 64×T1─▶ ended
 *
 * An ended leg lingers for 64×T1 so that late or retransmitted responses still find it: a 2xx
 * gets its ACK (and a BYE when its dialog was never kept), a non-2xx final its ACK.
 */
interface Leg {
  readonly callId: string;
  readonly localTag: string;
  state: 'calling' | 'early' | 'answered' | 'ended';
  invite: SipRequest;
  /** The CSeq number of the INVITE as last sent (a digest retry sends a new one). */
  inviteCseq: number;
  inviteTx: ClientTransaction | null;
  readonly peer: Peer;
  readonly opts: OutboundInvite;
  authTried: boolean;
  /** A provisional response to the current INVITE came: CANCEL may be sent (§9.1). */
  gotProvisional: boolean;
  /** end() was called before the answer: CANCEL when allowed, refuse any answer. */
  cancelPending: boolean;
  cancelSent: boolean;
  cancelTimer: ReturnType<typeof setTimeout> | null;
  lingerTimer: ReturnType<typeof setTimeout> | null;
  readonly localUri: string;
  readonly remoteUri: string;
  /** Every dialog a 2xx created, by the callee's To tag. */
  readonly dialogs: Map<string, UacDialog>;
  /** The kept dialog: the call. */
  answered: UacDialog | null;
}

export interface SipUacHost {
  readonly txl: TransactionLayer;
  send(msg: SipMessage, peer: Peer): Promise<void>;
  /** host:port for Via and Contact on this transport. */
  localAddress(protocol: TransportProtocol): string;
  readonly userAgent: string;
  readonly log: Logger;
  /** T1/T2/T4 (default RFC 3261's): the CANCEL wait and how long ended legs linger are 64×T1. */
  readonly timers?: TimerValues;
}

const legKey = (callId: string, localTag: string): string => `${callId}|${localTag}`;

/**
 * The outbound end of the back-to-back user agent: a UAC core (RFC 3261 §13.2) for calls
 * tollgate places towards a carrier. Sends the INVITE through the shared transaction layer,
 * answers a 401/407 once with the trunk's digest credentials (RFC 2617/7616), ACKs every 2xx
 * itself (and its retransmissions, matched by dialog), keeps the first answer and ends any other
 * dialog (a second fork, an answer after CANCEL) with ACK then BYE, CANCELs once before and BYEs
 * after the answer, and takes the callee's in-dialog BYE and re-INVITE/UPDATE (routed here by
 * the SipServer).
 */
export class SipUac {
  /** Legs not yet ended. */
  private readonly live = new Map<string, Leg>();
  /** Live and lingering legs by Call-ID and our From tag: where late responses are matched. */
  private readonly byLocal = new Map<string, Leg>();
  /** Every dialog by Call-ID, our tag, the callee's tag: where in-dialog requests are matched. */
  private readonly dialogs = new Map<string, UacDialog>();
  private readonly t: TimerValues;

  constructor(private readonly host: SipUacHost) {
    this.t = host.timers ?? RFC3261_TIMERS;
  }

  get active(): number {
    return this.live.size;
  }

  invite(opts: OutboundInvite): OutboundLeg {
    const callId = newCallId();
    const localTag = newTag();
    const domain = opts.domain ?? opts.peer.address;
    const leg: Leg = {
      callId,
      localTag,
      state: 'calling',
      invite: null as unknown as SipRequest,
      inviteCseq: 1,
      inviteTx: null,
      peer: opts.peer,
      opts,
      authTried: false,
      gotProvisional: false,
      cancelPending: false,
      cancelSent: false,
      cancelTimer: null,
      lingerTimer: null,
      localUri: `<sip:${opts.fromUser}@${domain}>;tag=${localTag}`,
      remoteUri: `<sip:${opts.toUser}@${domain}>`,
      dialogs: new Map(),
      answered: null,
    };
    this.live.set(callId, leg);
    this.byLocal.set(legKey(callId, localTag), leg);
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

  private sendInvite(leg: Leg, authorization: readonly [string, string] | null): void {
    const local = this.host.localAddress(leg.peer.protocol);
    const h = new SipHeaders()
      .append('Via', `SIP/2.0/${leg.peer.protocol.toUpperCase()} ${local};branch=${newBranch()};rport`)
      .append('Max-Forwards', '70')
      .append('From', leg.localUri)
      .append('To', leg.remoteUri)
      .append('Call-ID', leg.callId)
      .append('CSeq', `${leg.inviteCseq} INVITE`)
      .append('User-Agent', this.host.userAgent)
      .append('Contact', `<sip:tollgate@${local}${transportParam(leg.peer.protocol)}>`)
      .append('Allow', 'INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO')
      .append('Content-Type', 'application/sdp');
    for (const [k, v] of leg.opts.headers ?? []) h.append(k, v);
    if (authorization) h.append(authorization[0], authorization[1]);
    const invite: SipRequest = { kind: 'request', method: 'INVITE', uri: leg.opts.requestUri, headers: h, body: leg.opts.sdp };
    leg.invite = invite;
    // §9.1: a CANCEL needs a provisional response of the INVITE it cancels.
    leg.gotProvisional = false;
    leg.inviteTx = this.host.txl.sendRequest(invite, leg.peer, {
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
    for (const r of invite.headers.getAll('Route')) h.append('Route', r);
    return { kind: 'request', method: 'ACK', uri: invite.uri, headers: h, body: Buffer.alloc(0) };
  }

  private onInviteResponse(leg: Leg, res: SipResponse): void {
    if (res.status >= 200 && res.status < 300) return this.onTwoXx(leg, res);
    const cseq = parseCSeq(res.headers.get('CSeq') ?? '');
    if (cseq?.seq !== leg.inviteCseq) return; // a response to an INVITE we already replaced (auth)
    if (leg.state === 'ended') return; // e.g. a 487 after we gave up waiting for it
    if (res.status < 200) {
      leg.gotProvisional = true;
      if (leg.cancelPending) {
        // end() was called before any provisional: now the CANCEL may go (§9.1).
        this.sendCancel(leg);
        return;
      }
      if (res.status > 100) {
        if (leg.state === 'calling') leg.state = 'early';
        leg.opts.events.onProgress?.(res.status, sdpBody(res));
      }
      return;
    }
    if ((res.status === 401 || res.status === 407) && leg.opts.credentials && !leg.authTried && !leg.cancelPending) {
      const header = res.headers.get(res.status === 401 ? 'WWW-Authenticate' : 'Proxy-Authenticate');
      const auth = header ? this.authorize(leg, header, res.status === 401 ? 'Authorization' : 'Proxy-Authorization') : null;
      if (auth) {
        leg.authTried = true;
        leg.inviteCseq++;
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

  /**
   * A 2xx to one of our INVITEs, from the transaction or matched later by dialog (§13.2.2.4).
   * Each dialog gets its own ACK, and the same ACK again for each retransmission. The first 2xx
   * while the call is still wanted answers it; any other dialog is ACKed and then ended with
   * BYE: a second fork's (the first call stays up), one that crossed our CANCEL (§9.1), one that
   * came after the ring timeout or after we gave up on the INVITE.
   */
  private onTwoXx(leg: Leg, res: SipResponse): void {
    const remoteTag = tagOf(res.headers.get('To')) ?? '';
    const known = leg.dialogs.get(remoteTag);
    if (known) {
      void this.host.send(known.ack, leg.peer).catch(() => {});
      return;
    }
    const seq = parseCSeq(res.headers.get('CSeq') ?? '')?.seq ?? leg.inviteCseq;
    const keep = (leg.state === 'calling' || leg.state === 'early') && !leg.cancelPending && seq === leg.inviteCseq;
    const contact = res.headers.getAll('Contact')[0];
    // §12.1.2: the remote target is the 2xx's Contact, the route set its Record-Route reversed.
    const remote: DialogPeer = {
      leg,
      remoteTag,
      remoteTarget: contact ? contact.replace(/^[^<]*<([^>]*)>.*$/, '$1').trim() : leg.opts.requestUri,
      routeSet: [...res.headers.getAll('Record-Route')].reverse(),
    };
    const dialog: UacDialog = { ...remote, localCseq: seq, ack: this.twoXxAck(remote, seq), kept: keep, over: false };
    leg.dialogs.set(remoteTag, dialog);
    this.dialogs.set(dialogKey(leg.callId, leg.localTag, remoteTag), dialog);
    void this.host.send(dialog.ack, leg.peer).catch(() => {});
    if (keep) {
      leg.answered = dialog;
      leg.state = 'answered';
      leg.opts.events.onAnswer(sdpBody(res) ?? Buffer.alloc(0));
      return;
    }
    this.sendBye(dialog);
    this.host.log.info({ callId: leg.callId, remoteTag, status: res.status, legState: leg.state, cancelled: leg.cancelPending }, 'an unwanted 2xx on an outbound leg was acknowledged and ended with BYE');
    if (leg.state === 'ended') this.linger(leg);
    else if (leg.state !== 'answered') this.finish(leg, { kind: 'cancelled' });
  }

  /**
   * §13.2.2.4: the ACK of a 2xx is built like a request in its dialog, with the CSeq number of
   * the INVITE and its credentials, and goes end to end (a new branch, not the transaction).
   */
  private twoXxAck(d: DialogPeer, seq: number): SipRequest {
    const leg = d.leg;
    const ack = this.dialogRequest(d, 'ACK', seq);
    if (seq === leg.inviteCseq) {
      for (const name of ['Authorization', 'Proxy-Authorization']) {
        const v = leg.invite.headers.get(name);
        if (v !== undefined) ack.headers.append(name, v);
      }
    }
    return ack;
  }

  private dialogRequest(d: DialogPeer, method: string, cseq: number): SipRequest {
    const leg = d.leg;
    const local = this.host.localAddress(leg.peer.protocol);
    const h = new SipHeaders()
      .append('Via', `SIP/2.0/${leg.peer.protocol.toUpperCase()} ${local};branch=${newBranch()};rport`)
      .append('Max-Forwards', '70')
      .append('From', leg.localUri)
      .append('To', d.remoteTag ? `${leg.remoteUri};tag=${d.remoteTag}` : leg.remoteUri)
      .append('Call-ID', leg.callId)
      .append('CSeq', `${cseq} ${method}`)
      .append('User-Agent', this.host.userAgent);
    for (const r of d.routeSet) h.append('Route', r);
    return { kind: 'request', method, uri: d.remoteTarget, headers: h, body: Buffer.alloc(0) };
  }

  private end(leg: Leg): void {
    if (leg.state === 'ended') return;
    if (leg.state === 'answered' && leg.answered) {
      this.sendBye(leg.answered);
      this.finish(leg, { kind: 'local-bye' });
      return;
    }
    // §9.1: CANCEL once, and only after a provisional response; until then, remember to.
    if (leg.cancelPending) return;
    leg.cancelPending = true;
    if (leg.gotProvisional) this.sendCancel(leg);
  }

  /**
   * §9.1: the CANCEL copies the INVITE's Request-URI, Call-ID, From, To, CSeq number, top Via
   * (same branch) and Route. It is sent once. If the INVITE has no final response 64×T1 later,
   * it counts as cancelled: its transaction is dropped and the leg ends (a 2xx that still comes
   * is matched by dialog, ACKed and BYEd).
   */
  private sendCancel(leg: Leg): void {
    if (leg.cancelSent || leg.state === 'ended') return;
    leg.cancelSent = true;
    const h = new SipHeaders()
      .append('Via', leg.invite.headers.getAll('Via')[0] ?? '')
      .append('Max-Forwards', '70')
      .append('From', leg.invite.headers.get('From') ?? '')
      .append('To', leg.invite.headers.get('To') ?? '')
      .append('Call-ID', leg.callId)
      .append('CSeq', `${leg.inviteCseq} CANCEL`)
      .append('User-Agent', this.host.userAgent);
    for (const r of leg.invite.headers.getAll('Route')) h.append('Route', r);
    const cancel: SipRequest = { kind: 'request', method: 'CANCEL', uri: leg.invite.uri, headers: h, body: Buffer.alloc(0) };
    // The CANCEL's own response (200, or 481 when it came too late) settles nothing: the INVITE's does.
    this.host.txl.sendRequest(cancel, leg.peer, { onResponse: () => {}, onTimeout: () => {} }, () => cancel);
    leg.cancelTimer = setTimeout(() => {
      leg.cancelTimer = null;
      if (leg.state === 'ended') return;
      this.host.log.info({ callId: leg.callId }, 'no final response to a cancelled INVITE within 64×T1: the leg ends');
      leg.inviteTx?.terminate();
      this.finish(leg, { kind: 'cancelled' });
    }, cancelWait(this.t));
  }

  private sendBye(d: UacDialog): void {
    if (d.over) return;
    d.over = true;
    const bye = this.dialogRequest(d, 'BYE', ++d.localCseq);
    this.host.txl.sendRequest(bye, d.leg.peer, { onResponse: () => {}, onTimeout: () => {} }, () => bye);
  }

  private finish(leg: Leg, end: OutboundEnd): void {
    if (leg.state === 'ended') return;
    leg.state = 'ended';
    this.live.delete(leg.callId);
    if (leg.cancelTimer) clearTimeout(leg.cancelTimer);
    leg.cancelTimer = null;
    this.linger(leg);
    try {
      leg.opts.events.onEnd(end);
    } catch (err) {
      this.host.log.error({ err, callId: leg.callId }, 'outbound leg end handler failed');
    }
  }

  /** Keeps an ended leg and its dialogs 64×T1 (from its last new dialog) for late responses and requests. */
  private linger(leg: Leg): void {
    if (leg.lingerTimer) clearTimeout(leg.lingerTimer);
    leg.lingerTimer = setTimeout(() => this.forget(leg), 64 * this.t.t1);
    leg.lingerTimer.unref?.();
  }

  private forget(leg: Leg): void {
    if (leg.lingerTimer) clearTimeout(leg.lingerTimer);
    leg.lingerTimer = null;
    const k = legKey(leg.callId, leg.localTag);
    if (this.byLocal.get(k) === leg) this.byLocal.delete(k);
    for (const d of leg.dialogs.values()) {
      const dk = dialogKey(leg.callId, leg.localTag, d.remoteTag);
      if (this.dialogs.get(dk) === d) this.dialogs.delete(dk);
    }
  }

  /**
   * A response that matched no transaction: a 2xx retransmission or a late 2xx after the INVITE
   * transaction ended, or a final response to an INVITE we gave up on. Matched by Call-ID and
   * our From tag (the To tag then picks the dialog). True when it belonged to an outbound leg.
   */
  onStrayResponse(res: SipResponse): boolean {
    const cseq = parseCSeq(res.headers.get('CSeq') ?? '');
    if (cseq?.method !== 'INVITE' || res.status < 200) return false;
    const leg = this.byLocal.get(legKey(res.headers.get('Call-ID') ?? '', tagOf(res.headers.get('From')) ?? ''));
    if (!leg) return false;
    if (res.status < 300) {
      this.onTwoXx(leg, res);
    } else if (cseq.seq === leg.inviteCseq) {
      // §17.1.1.3: a non-2xx final response is ACKed hop by hop, even when it comes too late.
      void this.host.send(this.nonTwoXxAck(leg.invite, res), leg.peer).catch(() => {});
    }
    return true;
  }

  /** Whether an in-dialog request names a dialog of a call tollgate placed (handleInDialog takes it). */
  hasDialog(req: SipRequest): boolean {
    return this.dialogs.has(dialogKey(req.headers.get('Call-ID') ?? '', tagOf(req.headers.get('To')) ?? '', tagOf(req.headers.get('From')) ?? ''));
  }

  /**
   * An in-dialog request from the callee (BYE, re-INVITE, UPDATE, INFO, OPTIONS). True when it
   * belonged to an outbound leg and was answered here.
   */
  handleInDialog(tx: ServerTransaction): boolean {
    const req = tx.request;
    const key = dialogKey(req.headers.get('Call-ID') ?? '', tagOf(req.headers.get('To')) ?? '', tagOf(req.headers.get('From')) ?? '');
    const dialog = this.dialogs.get(key);
    if (!dialog) return false;
    const leg = dialog.leg;
    const reply = (status: number, reason?: string, body?: Buffer): void => {
      const res = buildResponse(req, status, reason, {
        headers: [['Server', this.host.userAgent], ...(body ? ([['Content-Type', 'application/sdp'], ['Contact', `<sip:tollgate@${this.host.localAddress(leg.peer.protocol)}${transportParam(leg.peer.protocol)}>`]] as [string, string][]) : [])],
        ...(body ? { body } : {}),
      });
      void tx.respond(res);
    };
    // A dialog we are ending (another fork, an answer after CANCEL) or a leg that is over.
    const live = dialog.kept && leg.state !== 'ended';
    switch (req.method) {
      case 'BYE':
        reply(200);
        dialog.over = true;
        if (live) this.finish(leg, { kind: 'remote-bye' });
        return true;
      case 'INVITE':
      case 'UPDATE': {
        if (!live) {
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
        reply(live ? 200 : 481);
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

  /**
   * Ends every leg (shutdown): BYE for answered legs, CANCEL for ringing ones, which end at once
   * since no one will wait for their 487; then forgets them all and clears every timer.
   */
  close(): void {
    for (const leg of [...this.live.values()]) {
      this.end(leg);
      this.finish(leg, { kind: 'cancelled' });
    }
    for (const leg of new Set(this.byLocal.values())) this.forget(leg);
  }
}
