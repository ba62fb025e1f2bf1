import type { Logger } from 'pino';
import type { InboundMessage, Peer, SipTransport, TransportProtocol } from '../transport/sip-transport.js';
import { isReliable } from '../transport/sip-transport.js';
import { DEFAULT_LIMITS, SipHeaders, type ParseLimits, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { parseMessage } from './sip-parser.js';
import { buildResponse, buildResponseFromPartial, serializeMessage } from './sip-serializer.js';
import { formatVia, parseCSeq, parseNameAddr, parseUri, parseVia } from './sip-grammar.js';
import { TransactionLayer, type ServerTransaction } from './transactions.js';
import { RFC3261_TIMERS, timerH, type TimerValues } from './transaction-timers.js';
import { DigestAuthenticator, type DigestAlgorithm } from './digest-auth.js';
import { AuthBlocker, type AuthBlockerOptions } from './auth-blocker.js';
import { sipRefusalFor, type CallDenyCode, type CallPolicy } from './call-policy.js';
import { dialogKey, type Dialog } from './dialog.js';
import { newBranch, newTag } from './sip-ids.js';
import { SipUac } from './sip-uac.js';
import { sdpBody, tagOf, transportParam } from './message-parts.js';

export const ALLOWED_METHODS = ['INVITE', 'ACK', 'CANCEL', 'BYE', 'OPTIONS', 'UPDATE', 'INFO', 'REGISTER'] as const;
const ALLOW = ALLOWED_METHODS.join(', ');

export interface SipServerOptions {
  realm: string;
  nonceKey: Buffer;
  nonceTtlMs: number;
  digestAlgorithms?: readonly DigestAlgorithm[];
  userAgent: string;
  timers?: TimerValues;
  limits?: ParseLimits;
  bruteForce: AuthBlockerOptions;
  /** Address put in Contact/Via when the transport is bound to a wildcard address. */
  advertisedAddress?: string;
}

export type EndReason =
  | 'remote-bye'
  | 'local-hangup'
  | 'cancelled'
  | 'ack-timeout'
  | 'transport-error'
  | 'media-timeout'
  | 'media-lost'
  | 'max-duration'
  /** The key's budget ran out (the call was admitted for what the budget covered). */
  | 'budget-exhausted'
  | 'shutdown'
  | 'refused'
  /** The agent hung up: a hangup message, REST, or its socket closed. */
  | 'agent-hangup'
  /** The agent could not be reached and the fallback tone ended. */
  | 'agent-unavailable';

/** An inbound call leg, from INVITE to BYE. */
export interface InboundCall<Grant> {
  readonly id: string;
  readonly keyId: string;
  readonly dialled: string;
  readonly target: string;
  readonly from: string;
  /** The user part of P-Asserted-Identity, when present (STIR verification uses it over From). */
  readonly assertedFrom: string | null;
  /** The Identity header (RFC 8224), when present. */
  readonly identity: string | null;
  readonly peer: Peer;
  readonly grant: Grant;
  readonly maxDurationSec: number;
  /** What ends the call at maxDurationSec. */
  readonly limitedBy: 'max-duration' | 'budget';
  readonly receivedAt: number;
  answeredAt: number | null;
  endedAt: number | null;
  /** Sends BYE (when answered) and ends the call. */
  hangup(reason: EndReason): Promise<void>;
}

export type OfferResult = { readonly ok: true; readonly sdp: Buffer } | { readonly ok: false; readonly code: CallDenyCode | 'SDP_NOT_ACCEPTABLE'; readonly message: string };

/** The application side of a call: media and what to do with it. */
export interface CallHandler<Grant> {
  /** Answers the caller's SDP offer (media allocated), or refuses. */
  offer(call: InboundCall<Grant>, sdp: Buffer): Promise<OfferResult>;
  /** A re-INVITE or UPDATE with a new offer (hold, resume, codec change). */
  reoffer(call: InboundCall<Grant>, sdp: Buffer): Promise<OfferResult>;
  /** The 200 OK went out: the call is answered (timers, records). */
  answered?(call: InboundCall<Grant>): void;
  /** The call ended for `reason`; release media. Called once. */
  ended(call: InboundCall<Grant>, reason: EndReason): void;
  /** INFO in the dialog (e.g. application/dtmf-relay). */
  info?(call: InboundCall<Grant>, contentType: string, body: Buffer): void;
}

export interface SipServerEvents {
  /** Counted refusals and blocks, for metrics. */
  onAuthFailure?(ip: string): void;
  onBlocked?(ip: string): void;
  onCall?(outcome: string): void;
}

interface CallState<Grant> {
  call: InboundCall<Grant>;
  dialog: Dialog;
  inviteTx: ServerTransaction;
  okResponse: SipResponse | null;
  okTimer: ReturnType<typeof setTimeout> | null;
  ackTimer: ReturnType<typeof setTimeout> | null;
  endTimer: ReturnType<typeof setTimeout> | null;
  ended: boolean;
}

/**
 * tollgate's SIP user agent server: the inbound end of the back-to-back user agent. Calls end
 * here (nothing is proxied): each INVITE is authenticated with digest against the key's SIP
 * credentials, authorised by the policy, then answered by the call handler with its own media.
 */
export class SipServer<Grant> {
  private readonly transports = new Map<TransportProtocol, SipTransport>();
  private readonly txl: TransactionLayer;
  private readonly digest: DigestAuthenticator;
  private readonly blocker: AuthBlocker;
  private readonly calls = new Map<string, CallState<Grant>>();
  private readonly timers: TimerValues;
  private readonly limits: ParseLimits;
  private draining = false;
  private closed = false;
  /** Outbound legs (calls tollgate places) share the transports and transaction layer. */
  readonly uac: SipUac;

  constructor(
    private readonly opts: SipServerOptions,
    private readonly policy: CallPolicy<Grant>,
    private readonly handler: CallHandler<Grant>,
    private readonly log: Logger,
    private readonly events: SipServerEvents = {},
  ) {
    this.timers = opts.timers ?? RFC3261_TIMERS;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.digest = new DigestAuthenticator({ realm: opts.realm, nonceKey: opts.nonceKey, nonceTtlMs: opts.nonceTtlMs, ...(opts.digestAlgorithms ? { algorithms: opts.digestAlgorithms } : {}) });
    this.blocker = new AuthBlocker(opts.bruteForce, Date.now, (ip) => {
      this.log.warn({ ip }, 'source blocked after repeated authentication failures');
      this.events.onBlocked?.(ip);
    });
    this.txl = new TransactionLayer((m, p) => this.send(m, p), {
      onRequest: (tx) => void this.onRequest(tx).catch((err: unknown) => this.onHandlerError(tx, err)),
      onStrayAck: (req) => this.onAck(req),
      onStrayResponse: (res) => void this.uac.onStrayResponse(res),
      onServerTimeout: () => {},
    }, this.timers);
    this.uac = new SipUac({
      txl: this.txl,
      send: (m, p) => this.send(m, p),
      localAddress: (p) => this.localAddress(p),
      userAgent: opts.userAgent,
      log: this.log,
      timers: this.timers,
    });
  }

  get activeCalls(): number {
    return this.calls.size;
  }

  addTransport(t: SipTransport): void {
    this.transports.set(t.protocol, t);
  }

  /** Entry point for every message a transport receives. */
  handle(inbound: InboundMessage): void {
    if (this.closed) return;
    const { peer } = inbound;
    if (this.blocker.isBlocked(peer.address)) return;
    const parsed = parseMessage(inbound.data, this.limits);
    if (!parsed.ok) {
      if (parsed.status !== null && parsed.partial?.isRequest && parsed.partial.method !== 'ACK') {
        const res = buildResponseFromPartial(parsed.partial, parsed.status, parsed.reason);
        if (res) void this.send(res, peer).catch(() => {});
      }
      this.log.debug({ ip: peer.address, protocol: peer.protocol, reason: parsed.reason }, 'unparseable SIP message');
      return;
    }
    const msg = parsed.message;
    if (msg.kind === 'response') {
      this.txl.receiveResponse(msg, peer);
      return;
    }
    this.markReceived(msg, peer);
    this.txl.receiveRequest(msg, peer);
  }

  /** RFC 3581 and RFC 3261 §18.2.1: note the real source in the top Via (received, rport). */
  private markReceived(req: SipRequest, peer: Peer): void {
    const first = req.headers.getAll('Via')[0];
    const via = first === undefined ? null : parseVia(first);
    if (!via) return;
    const params = new Map(via.params);
    if (via.host.replace(/^\[|\]$/g, '') !== peer.address) params.set('received', peer.address);
    if (params.has('rport')) params.set('rport', String(peer.port));
    if (params.size === via.params.size && [...params].every(([k, v]) => via.params.get(k) === v)) return;
    const rewritten = formatVia({ ...via, params });
    req.headers.removeFirstValue('Via');
    req.headers.prepend('Via', rewritten);
  }

  async send(msg: SipMessage, peer: Peer): Promise<void> {
    const t = this.transports.get(peer.protocol);
    if (!t) throw new Error(`no ${peer.protocol} transport`);
    await t.send(serializeMessage(msg), peer);
  }

  /**
   * Every response but 100 carries a To tag (RFC 3261 §8.2.6.2): a fresh one unless the caller
   * gives the dialog's tag (buildResponse keeps a tag the request already has).
   */
  private respond(tx: ServerTransaction, status: number, reason?: string, extra?: { headers?: [string, string][]; body?: Buffer; toTag?: string }): Promise<void> {
    const headers: [string, string][] = [['Server', this.opts.userAgent], ...(extra?.headers ?? [])];
    const toTag = extra?.toTag ?? (status > 100 ? newTag() : undefined);
    return tx.respond(buildResponse(tx.request, status, reason, { ...extra, headers, ...(toTag ? { toTag } : {}) }));
  }

  private onHandlerError(tx: ServerTransaction, err: unknown): void {
    this.log.error({ err, method: tx.request.method }, 'error handling SIP request');
    if (tx.state === 'trying' || tx.state === 'proceeding') void this.respond(tx, 500).catch(() => {});
  }

  private findCall(req: SipRequest): CallState<Grant> | null {
    const callId = req.headers.get('Call-ID') ?? '';
    const toTag = tagOf(req.headers.get('To'));
    const fromTag = tagOf(req.headers.get('From'));
    if (!toTag || !fromTag) return null;
    return this.calls.get(dialogKey(callId, toTag, fromTag)) ?? null;
  }

  private async onRequest(tx: ServerTransaction): Promise<void> {
    const req = tx.request;
    const uri = parseUri(req.uri);
    if (!uri) return this.respond(tx, 400, 'Bad Request-URI');
    if (uri.scheme === 'tel' && req.method !== 'INVITE') return this.respond(tx, 416);
    const mf = req.headers.get('Max-Forwards');
    if (mf !== undefined && Number(mf.trim()) === 0 && req.method !== 'OPTIONS') return this.respond(tx, 483);
    const require = req.headers.getAll('Require').map((s) => s.toLowerCase());
    if (require.length > 0 && req.method !== 'CANCEL' && req.method !== 'ACK') {
      return this.respond(tx, 420, 'Bad Extension', { headers: [['Unsupported', require.join(', ')]] });
    }
    // In-dialog requests of calls tollgate placed (the callee's BYE, re-INVITE, …).
    if (tagOf(req.headers.get('To')) && this.uac.handleInDialog(tx)) return;
    switch (req.method) {
      case 'OPTIONS':
        return this.respond(tx, 200, 'OK', { headers: [['Allow', ALLOW], ['Accept', 'application/sdp'], ['Supported', '']] });
      case 'INVITE':
        return tagOf(req.headers.get('To')) ? this.onReinvite(tx) : this.onInvite(tx);
      case 'CANCEL':
        return this.onCancel(tx);
      case 'BYE':
        return this.onBye(tx);
      case 'UPDATE':
        return this.onUpdate(tx);
      case 'INFO':
        return this.onInfo(tx);
      case 'REGISTER':
        return this.onRegister(tx);
      default:
        return this.respond(tx, 405, 'Method Not Allowed', { headers: [['Allow', ALLOW]] });
    }
  }

  /**
   * Digest check shared by INVITE and REGISTER: null when authenticated (with the username),
   * else the challenge or refusal has been sent.
   */
  private async authenticate(tx: ServerTransaction, proxy: boolean): Promise<string | null> {
    const req = tx.request;
    const ip = tx.peer.address;
    const header = proxy ? 'Proxy-Authorization' : 'Authorization';
    const challengeHeader = proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate';
    const status = proxy ? 407 : 401;
    const values = req.headers.entries().filter((h) => h.name.toLowerCase() === header.toLowerCase()).map((h) => h.value);
    const result = await this.digest.verify(req.method, values, (u, alg) => this.policy.ha1(u, alg));
    if (result.ok) {
      this.blocker.succeed(ip);
      return result.username;
    }
    if (result.reason === 'invalid') {
      this.events.onAuthFailure?.(ip);
      this.log.info({ ip, username: result.username, method: req.method }, 'SIP authentication failed');
      if (this.blocker.fail(ip)) return null; // blocked: no answer (Kamailio pike drops)
    }
    const challenges = this.digest.challenges(result.reason === 'stale');
    await this.respond(tx, status, undefined, { headers: challenges.map((c) => [challengeHeader, c] as [string, string]) });
    return null;
  }

  private async refuse(tx: ServerTransaction, code: CallDenyCode, message: string, retryAfterMs?: number): Promise<void> {
    const r = sipRefusalFor(code, retryAfterMs);
    const headers: [string, string][] = [['Reason', `SIP;cause=${r.status};text="${code}"`]];
    if (r.retryAfterSec !== undefined) headers.push(['Retry-After', String(r.retryAfterSec)]);
    this.log.info({ ip: tx.peer.address, code, message, status: r.status }, 'call refused');
    this.events.onCall?.(code);
    await this.respond(tx, r.status, r.reason, { headers });
  }

  private async onInvite(tx: ServerTransaction): Promise<void> {
    const req = tx.request;
    if (this.draining) return this.refuse(tx, 'DRAINING', 'shutting down');
    await this.respond(tx, 100, 'Trying');
    const username = await this.authenticate(tx, true);
    if (username === null) return;
    const uri = parseUri(req.uri)!;
    const dialled = uri.scheme === 'tel' ? uri.host : uri.user ?? '';
    const callId = req.headers.get('Call-ID') ?? '';
    const verdict = await this.policy.authorizeInbound({ keyId: username, sourceIp: tx.peer.address, transport: tx.peer.protocol, dialled, callId });
    if (!verdict.ok) return this.refuse(tx, verdict.code, verdict.message, verdict.retryAfterMs);
    const release = async (): Promise<void> => {
      await this.policy.release(verdict.grant).catch((err: unknown) => this.log.error({ err }, 'could not release a refused call'));
    };
    if (tx.cancelled || tx.state !== 'proceeding') return release();
    const offer = sdpBody(req);
    if (!offer) {
      await release();
      return this.respond(tx, 488, 'Not Acceptable Here', { headers: [['Warning', '399 tollgate "an SDP offer in the INVITE is required"']] });
    }
    const localTag = newTag();
    const fromHeader = req.headers.get('From') ?? '';
    const remoteTag = tagOf(fromHeader) ?? '';
    const contact = req.headers.getAll('Contact')[0];
    const remoteTarget = (contact && parseNameAddr(contact) ? contact.replace(/^[^<]*<([^>]*)>.*$/, '$1') : null) ?? req.uri;
    const toHeader = req.headers.get('To') ?? '';
    const dialog: Dialog = {
      callId,
      localTag,
      remoteTag,
      state: 'early',
      remoteTarget,
      routeSet: req.headers.getAll('Record-Route'),
      localUri: `${toHeader};tag=${localTag}`,
      remoteUri: fromHeader,
      localCseq: Math.floor(Math.random() * 10_000),
      remoteCseq: parseCSeq(req.headers.get('CSeq') ?? '')?.seq ?? 0,
      peer: tx.peer,
      invite: req,
    };
    const fromAddr = parseNameAddr(fromHeader);
    const state: CallState<Grant> = {
      call: {
        id: callId,
        keyId: username,
        dialled,
        target: verdict.target,
        from: fromAddr?.uri.user ?? '',
        assertedFrom: parseNameAddr(req.headers.get('P-Asserted-Identity') ?? '')?.uri.user ?? null,
        identity: req.headers.get('Identity') ?? null,
        peer: tx.peer,
        grant: verdict.grant,
        maxDurationSec: verdict.maxDurationSec,
        limitedBy: verdict.limitedBy ?? 'max-duration',
        receivedAt: Date.now(),
        answeredAt: null,
        endedAt: null,
        hangup: (reason) => this.hangup(state, reason),
      },
      dialog,
      inviteTx: tx,
      okResponse: null,
      okTimer: null,
      ackTimer: null,
      endTimer: null,
      ended: false,
    };
    const key = dialogKey(callId, localTag, remoteTag);
    this.calls.set(key, state);
    let answer: OfferResult;
    try {
      answer = await this.handler.offer(state.call, offer);
    } catch (err) {
      this.calls.delete(key);
      await release();
      throw err;
    }
    if (!answer.ok || tx.cancelled || tx.state !== 'proceeding') {
      this.calls.delete(key);
      if (answer.ok) {
        // Cancelled while media was being set up.
        this.endCall(state, 'cancelled');
        return;
      }
      await release();
      this.handler.ended(state.call, 'refused');
      if (answer.code === 'SDP_NOT_ACCEPTABLE') {
        return this.respond(tx, 488, 'Not Acceptable Here', { headers: [['Warning', `399 tollgate "${answer.message.replace(/"/g, "'")}"`]] });
      }
      return this.refuse(tx, answer.code, answer.message);
    }
    const local = this.localAddress(tx.peer.protocol);
    const ok = buildResponse(req, 200, 'OK', {
      toTag: localTag,
      body: answer.sdp,
      headers: [
        ['Server', this.opts.userAgent],
        ['Contact', `<sip:${local}${transportParam(tx.peer.protocol)}>`],
        ['Allow', ALLOW],
        ['Content-Type', 'application/sdp'],
      ],
    });
    state.okResponse = ok;
    dialog.state = 'answered';
    state.call.answeredAt = Date.now();
    this.events.onCall?.('answered');
    await tx.respond(ok);
    try {
      this.handler.answered?.(state.call);
    } catch (err) {
      this.log.error({ err, callId: state.call.id }, 'call handler failed on answer');
    }
    this.retransmitOk(state, this.timers.t1);
    state.ackTimer = setTimeout(() => void this.ackTimeout(state), timerH(this.timers));
    state.endTimer = setTimeout(() => void this.hangup(state, state.call.limitedBy === 'budget' ? 'budget-exhausted' : 'max-duration'), state.call.maxDurationSec * 1000);
  }

  /**
   * RFC 3261 §13.3.1.4: the UAS core resends the 2xx (T1 doubling to T2) until the ACK; over
   * reliable transports it is sent once. Either way the ACK must come within 64×T1 (ackTimer).
   */
  private retransmitOk(state: CallState<Grant>, interval: number): void {
    if (isReliable(state.dialog.peer.protocol)) return;
    state.okTimer = setTimeout(() => {
      if (state.dialog.state !== 'answered' || !state.okResponse) return;
      void this.send(state.okResponse, state.dialog.peer).catch(() => {});
      this.retransmitOk(state, Math.min(2 * interval, this.timers.t2));
    }, interval);
  }

  private async ackTimeout(state: CallState<Grant>): Promise<void> {
    if (state.dialog.state !== 'answered') return;
    this.log.warn({ callId: state.call.id }, 'no ACK for the 2xx: ending the call');
    await this.hangup(state, 'ack-timeout');
  }

  private onAck(req: SipRequest): void {
    const state = this.findCall(req);
    if (!state || state.dialog.state !== 'answered') return;
    state.dialog.state = 'confirmed';
    if (state.okTimer) clearTimeout(state.okTimer);
    if (state.ackTimer) clearTimeout(state.ackTimer);
    state.okTimer = null;
    state.ackTimer = null;
  }

  private async onCancel(tx: ServerTransaction): Promise<void> {
    const invite = this.txl.findInviteFor(tx.request);
    if (!invite) return this.respond(tx, 481);
    await this.respond(tx, 200);
    if (invite.state === 'proceeding' && !invite.cancelled) {
      invite.cancelled = true;
      // onInvite sees `cancelled` when its pending step (policy, media) returns, and cleans up.
      await invite.respond(buildResponse(invite.request, 487, 'Request Terminated', { toTag: newTag(), headers: [['Server', this.opts.userAgent]] }));
    }
  }

  private async onBye(tx: ServerTransaction): Promise<void> {
    const state = this.findCall(tx.request);
    if (!state) return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.respond(tx, 200);
    this.endCall(state, 'remote-bye');
  }

  private async inDialogOffer(tx: ServerTransaction, state: CallState<Grant>): Promise<void> {
    const offer = sdpBody(tx.request);
    if (!offer) return this.respond(tx, 200, 'OK', { headers: [['Allow', ALLOW]] });
    const answer = await this.handler.reoffer(state.call, offer);
    if (!answer.ok) return this.respond(tx, 488, 'Not Acceptable Here');
    const local = this.localAddress(tx.peer.protocol);
    await this.respond(tx, 200, 'OK', {
      body: answer.sdp,
      headers: [['Contact', `<sip:${local}${transportParam(tx.peer.protocol)}>`], ['Allow', ALLOW], ['Content-Type', 'application/sdp']],
    });
  }

  private async onReinvite(tx: ServerTransaction): Promise<void> {
    const state = this.findCall(tx.request);
    if (!state || state.ended) return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.inDialogOffer(tx, state);
  }

  private async onUpdate(tx: ServerTransaction): Promise<void> {
    const state = this.findCall(tx.request);
    if (!state || state.ended) return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.inDialogOffer(tx, state);
  }

  private async onInfo(tx: ServerTransaction): Promise<void> {
    const state = this.findCall(tx.request);
    if (!state || state.ended) return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    const ct = tx.request.headers.get('Content-Type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    this.handler.info?.(state.call, ct, tx.request.body);
    await this.respond(tx, 200);
  }

  /** REGISTER: authenticated with 401 (RFC 3261 §22.2); the binding is acknowledged for its expiry. */
  private async onRegister(tx: ServerTransaction): Promise<void> {
    const username = await this.authenticate(tx, false);
    if (username === null) return;
    const expires = Math.min(3600, Number(tx.request.headers.get('Expires') ?? '3600') || 3600);
    const contacts = tx.request.headers.getAll('Contact');
    await this.respond(tx, 200, 'OK', {
      headers: [...contacts.map((c) => ['Contact', /;expires=/i.test(c) ? c : `${c};expires=${expires}`] as [string, string]), ['Expires', String(expires)]],
    });
  }

  /** Ends a call from our side: BYE when it was answered, then release. */
  private hangup(state: CallState<Grant>, reason: EndReason): Promise<void> {
    if (state.ended) return Promise.resolve();
    if (state.dialog.state === 'answered' || state.dialog.state === 'confirmed') {
      const bye = this.buildInDialogRequest(state.dialog, 'BYE');
      this.txl.sendRequest(bye, state.dialog.peer, { onResponse: () => {}, onTimeout: () => {} }, () => bye);
    }
    this.endCall(state, reason);
    return Promise.resolve();
  }

  private endCall(state: CallState<Grant>, reason: EndReason): void {
    if (state.ended) return;
    state.ended = true;
    state.dialog.state = 'terminated';
    state.call.endedAt = Date.now();
    if (state.okTimer) clearTimeout(state.okTimer);
    if (state.ackTimer) clearTimeout(state.ackTimer);
    if (state.endTimer) clearTimeout(state.endTimer);
    this.calls.delete(dialogKey(state.dialog.callId, state.dialog.localTag, state.dialog.remoteTag));
    const seconds = state.call.answeredAt ? (state.call.endedAt - state.call.answeredAt) / 1000 : 0;
    this.events.onCall?.(`ended:${reason}`);
    try {
      this.handler.ended(state.call, reason);
    } catch (err) {
      this.log.error({ err, callId: state.call.id }, 'call handler failed on end');
    }
    const settle = state.call.answeredAt ? this.policy.complete(state.call.grant, seconds) : this.policy.release(state.call.grant);
    void settle.catch((err: unknown) => this.log.error({ err, callId: state.call.id }, 'could not settle a call'));
    this.log.info({ callId: state.call.id, keyId: state.call.keyId, reason, seconds: Math.round(seconds * 10) / 10 }, 'call ended');
  }

  private buildInDialogRequest(d: Dialog, method: string): SipRequest {
    const local = this.localAddress(d.peer.protocol);
    const headers = new SipHeaders()
      .append('Via', `SIP/2.0/${d.peer.protocol.toUpperCase()} ${local};branch=${newBranch()};rport`)
      .append('Max-Forwards', '70')
      .append('From', d.localUri)
      .append('To', d.remoteUri)
      .append('Call-ID', d.callId)
      .append('CSeq', `${++d.localCseq} ${method}`)
      .append('User-Agent', this.opts.userAgent);
    for (const r of d.routeSet) headers.append('Route', r);
    return { kind: 'request', method, uri: d.remoteTarget, headers, body: Buffer.alloc(0) };
  }

  private localAddress(protocol: TransportProtocol): string {
    const t = this.transports.get(protocol);
    const a = t?.address() ?? { address: '127.0.0.1', port: 5060 };
    let host = this.opts.advertisedAddress ?? a.address;
    if (host === '0.0.0.0' || host === '::') host = '127.0.0.1';
    return `${host.includes(':') ? `[${host}]` : host}:${a.port}`;
  }

  /** Refuse new calls (503) from now on; running calls go on. */
  drain(): void {
    this.draining = true;
  }

  /** Hangs up every call and closes the transaction layer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const state of [...this.calls.values()]) await this.hangup(state, 'shutdown');
    this.uac.close();
    this.closed = true;
    // Give the BYEs a moment on the wire before the transports close.
    await new Promise((r) => setTimeout(r, 50));
    this.txl.close();
  }
}
