import { createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { RateLimitedLog } from '../observability/rate-limited-log.js';
import type { InboundMessage, Peer, SipTransport, TransportProtocol } from '../transport/sip-transport.js';
import { isReliable } from '../transport/sip-transport.js';
import { DEFAULT_LIMITS, SipHeaders, type ParseLimits, type SipMessage, type SipRequest, type SipResponse } from './sip-message.js';
import { parseMessage } from './sip-parser.js';
import { buildResponse, buildResponseFromPartial, serializeMessage } from './sip-serializer.js';
import { formatVia, parseCSeq, parseNameAddr, parseUri, parseVia } from './sip-grammar.js';
import { TransactionLayer, type ServerTransaction } from './transactions.js';
import { RFC3261_TIMERS, timerH, type TimerValues } from './transaction-timers.js';
import { DigestAuthenticator, type DigestAlgorithm, type DigestFailure } from './digest-auth.js';
import { AuthBlocker, type AuthBlock, type AuthBlockerOptions } from './auth-blocker.js';
import { ChallengeLimiter, type ChallengeLimiterOptions } from './challenge-limiter.js';
import { sipRefusalFor, type CallDenyCode, type LoadMonitor, type NonceCountStore, type SipCredentials } from './call-policy.js';
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
  /** Accept digest answers without qop (legacy clients; see DigestOptions.allowNoQop). Default false. */
  allowNoQop?: boolean;
  userAgent: string;
  timers?: TimerValues;
  limits?: ParseLimits;
  bruteForce: AuthBlockerOptions;
  /** Answers without authentication per source, and flood blocking. */
  challenges: ChallengeLimiterOptions;
  /** Address put in Contact/Via when the transport is bound to a wildcard address. */
  advertisedAddress?: string;
}

/** Why an inbound leg ended on the SIP side (the application ends it with hangup() or refuse()). */
export type LegEnd =
  /** The caller sent BYE. */
  | 'remote-bye'
  /** The caller sent CANCEL before the answer (487 went out). */
  | 'cancelled'
  /** No ACK for our 2xx within 64×T1 (a BYE went out). */
  | 'ack-timeout'
  /** The 2xx could not be sent. */
  | 'transport-error'
  /** The SIP server is closing. */
  | 'shutdown';

/** An authenticated INVITE that starts a new dialog, as the application sees it. */
export interface InboundInvite {
  /** The authenticated digest username: the key id. */
  readonly keyId: string;
  readonly sourceIp: string;
  readonly transport: TransportProtocol;
  /** The Request-URI's user part (or the tel: number). */
  readonly dialled: string;
  /** The From user part. */
  readonly from: string;
  /** The user part of P-Asserted-Identity, when present (STIR verification uses it over From). */
  readonly assertedFrom: string | null;
  /** Every Identity header (RFC 8224), in order. */
  readonly identities: readonly string[];
  /** The SDP offer, or null when the INVITE has none. */
  readonly sdp: Buffer | null;
  /** The SIP Call-ID: names the dialog only (RFC 3261 §12), never the call. */
  readonly sipCallId: string;
  readonly receivedAt: number;
}

export type OfferResult = { readonly ok: true; readonly sdp: Buffer } | { readonly ok: false; readonly code: CallDenyCode | 'SDP_NOT_ACCEPTABLE'; readonly message: string };

/** What the application hears from an inbound leg. */
export interface InboundLegEvents {
  /** The leg ended on the SIP side; called at most once, never after hangup() or refuse(). */
  ended(reason: LegEnd): void;
  /** A re-INVITE or UPDATE with a new offer (hold, resume, codec change). */
  reoffer(sdp: Buffer): Promise<OfferResult>;
  /** INFO in the dialog (e.g. application/dtmf-relay). */
  info?(contentType: string, body: Buffer): void;
}

/**
 * The UAS side of one inbound dialog, handed to the application after digest authentication.
 * The application answers or refuses it; until then CANCEL, and after it BYE, ACK timeout or a
 * failed 2xx, end it from the SIP side (events.ended).
 *
 *   early ─answer()─▶ answered ─ACK─▶ confirmed
 *     │                  │                │
 *     └─refuse()/CANCEL──┴──hangup()/BYE/ACK timeout/2xx not sent──▶ ended
 */
export interface InboundLeg {
  readonly state: 'early' | 'answered' | 'confirmed' | 'ended';
  /** Sets the event sink; an end that happened before is delivered at once. */
  bind(events: InboundLegEvents): void;
  /** A provisional response (180 Ringing, or 183 Session Progress with early-media SDP). */
  ring(status: 180 | 183, sdp?: Buffer): Promise<void>;
  /** Sends the 200 OK; false when the leg has ended or the 2xx could not be sent (then events.ended('transport-error')). */
  answer(sdp: Buffer): Promise<boolean>;
  /** A final refusal before the answer; no-op once answered or ended. */
  refuse(code: CallDenyCode | 'SDP_NOT_ACCEPTABLE', message: string, retryAfterMs?: number): Promise<void>;
  /** BYE when answered; before the answer, a 480 refusal. Idempotent. */
  hangup(): void;
}

/** The application side of inbound calls. */
export interface CallHandler {
  /**
   * A new authenticated INVITE. The handler binds the leg, then answers or refuses it; a
   * handler that throws gets a 500 sent for it.
   */
  invite(invite: InboundInvite, leg: InboundLeg): Promise<void>;
}

/** Why requests from a source are dropped unread. */
export type SourceBlock = AuthBlock | 'flood';

export interface SipServerEvents {
  /** Counted refusals and blocks, for metrics. */
  onAuthFailure?(ip: string, failure: DigestFailure): void;
  /** A block started: a (source, username) pair, a scanning source, or a flooding source. */
  onBlocked?(ip: string, block: SourceBlock): void;
  /** A request dropped without an answer because its source (or source and username) is blocked. */
  onDropped?(block: SourceBlock): void;
  /** A request without credentials: challenged, or over its source's rate (no answer). */
  onChallenge?(outcome: 'sent' | 'rate-limited'): void;
  /** A new INVITE refused 503 because the node is overloaded, and the signal that said so. */
  onOverload?(signal: string): void;
  onCall?(outcome: string): void;
}

/** What the SIP server is handed besides its settings. */
export interface SipServerDeps {
  readonly credentials: SipCredentials;
  /** Digest (nonce, nc) pairs already used: shared by a cluster through the counters backend. */
  readonly nonceCounts: NonceCountStore;
  /** Asked before each new INVITE; without one the node is never overloaded. */
  readonly load?: LoadMonitor;
  readonly handler: CallHandler;
  readonly log: Logger;
  readonly events?: SipServerEvents;
}

interface LegState {
  readonly dialog: Dialog;
  readonly inviteTx: ServerTransaction;
  state: InboundLeg['state'];
  events: InboundLegEvents | null;
  /** An end from the SIP side before the application bound the leg. */
  pendingEnd: LegEnd | null;
  okResponse: SipResponse | null;
  okTimer: ReturnType<typeof setTimeout> | null;
  ackTimer: ReturnType<typeof setTimeout> | null;
}

/**
 * tollgate's SIP user agent server: the inbound end of the back-to-back user agent. Calls end
 * here (nothing is proxied): each INVITE is authenticated with digest against the key's SIP
 * credentials, authorised by the policy, then answered by the call handler with its own media.
 */
export class SipServer {
  private readonly transports = new Map<TransportProtocol, SipTransport>();
  private readonly txl: TransactionLayer;
  private readonly digest: DigestAuthenticator;
  private readonly blocker: AuthBlocker;
  private readonly limiter: ChallengeLimiter;
  /** Key of the To tags of stateless answers: the same request always gets the same tag (§8.2.7). */
  private readonly tagKey = randomBytes(16);
  /** Conditions that repeat per request under attack or load: logged as a sample. */
  private readonly quietLog: RateLimitedLog;
  private readonly credentials: SipCredentials;
  private readonly handler: CallHandler;
  private readonly log: Logger;
  private readonly events: SipServerEvents;
  private readonly load: LoadMonitor | null;
  /** Live inbound legs by dialog (Call-ID, our tag, the caller's tag): identifies the dialog only. */
  private readonly legs = new Map<string, LegState>();
  /** The leg an INVITE server transaction created (CANCEL finds it through the transaction). */
  private readonly legOfInvite = new WeakMap<ServerTransaction, LegState>();
  /**
   * INVITEs received but not yet a leg (being authenticated), by Call-ID, From tag and CSeq:
   * a copy arriving by another path meanwhile is a merged request too (§8.2.2.2).
   */
  private readonly invitesArriving = new Set<string>();
  private readonly timers: TimerValues;
  private readonly limits: ParseLimits;
  private draining = false;
  private closed = false;
  /** Outbound legs (calls tollgate places) share the transports and transaction layer. */
  readonly uac: SipUac;

  constructor(
    private readonly opts: SipServerOptions,
    deps: SipServerDeps,
  ) {
    this.credentials = deps.credentials;
    this.handler = deps.handler;
    this.log = deps.log;
    this.events = deps.events ?? {};
    this.load = deps.load ?? null;
    this.quietLog = new RateLimitedLog(this.log, { intervalMs: 10_000, burst: 5 });
    this.timers = opts.timers ?? RFC3261_TIMERS;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.digest = new DigestAuthenticator({
      realm: opts.realm,
      nonceKey: opts.nonceKey,
      nonceTtlMs: opts.nonceTtlMs,
      nonceCounts: deps.nonceCounts,
      allowNoQop: opts.allowNoQop ?? false,
      ...(opts.digestAlgorithms ? { algorithms: opts.digestAlgorithms } : {}),
    });
    this.blocker = new AuthBlocker(opts.bruteForce, Date.now, (ip, username, block) => {
      this.quietLog.write('warn', `blocked:${block}`, { ip, username, block }, block === 'brute-force'
        ? 'a username blocked from a source after repeated authentication failures'
        : 'a source blocked from trying new usernames: too many failed');
      this.events.onBlocked?.(ip, block);
    });
    this.limiter = new ChallengeLimiter(opts.challenges);
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

  /** Inbound dialogs not yet ended. */
  get activeLegs(): number {
    return this.legs.size;
  }

  /** INVITEs received and not yet answered finally: calls being set up (a load signal). */
  get pendingInvites(): number {
    return this.txl.pendingInvites;
  }

  /** Server and client transactions held (a gauge for operators and the flood bench). */
  get transactions(): { servers: number; clients: number } {
    return this.txl.size;
  }

  addTransport(t: SipTransport): void {
    this.transports.set(t.protocol, t);
  }

  /** Entry point for every message a transport receives. */
  handle(inbound: InboundMessage): void {
    if (this.closed) return;
    const { peer } = inbound;
    // A flooding source costs one map lookup per message until its block ends.
    if (this.limiter.isBlocked(peer.address)) {
      this.events.onDropped?.('flood');
      return;
    }
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
    if (this.frontDoor(msg, peer)) return;
    this.txl.receiveRequest(msg, peer);
  }

  /**
   * The stateless front door (RFC 3261 §8.2.7, the way Kamailio challenges): a request that
   * needs no transaction of ours is answered, or dropped, here, and nothing of it is kept. An
   * unauthenticated INVITE then costs a parse, an HMAC and one datagram: no server transaction,
   * no 100 Trying, no 407 retransmissions (over UDP the client's own retransmissions get the
   * 407 again), no Timer H. Its ACK matches no transaction and no dialog and is dropped.
   *
   * Answered here, each costing its source one token of `sip.challenges` (over the rate: no
   * answer; a source that keeps at it is blocked as a flood): the digest challenge of an
   * INVITE or REGISTER without credentials for our realm; OPTIONS; a request for a dialog that
   * does not exist (481); the early refusals (400, 416, 420, 483, 405); and the 503 of a new
   * INVITE while draining or overloaded. Dropped here: requests with credentials whose source
   * and username are blocked.
   *
   * Passed on to the transaction layer: retransmissions of live transactions, ACKs, CANCELs of
   * live INVITEs, requests of live dialogs, and requests with credentials.
   */
  private frontDoor(req: SipRequest, peer: Peer): boolean {
    const method = req.method;
    if (method === 'ACK' || this.txl.hasServerFor(req)) return false;
    if (method === 'CANCEL') return this.txl.findInviteFor(req) ? false : this.answerStateless(req, peer, 481, 'Call/Transaction Does Not Exist');
    if (tagOf(req.headers.get('To'))) {
      if (this.findLeg(req) || this.uac.hasDialog(req)) return false;
      return this.answerStateless(req, peer, 481, 'Call/Transaction Does Not Exist');
    }
    const uri = parseUri(req.uri);
    if (!uri) return this.answerStateless(req, peer, 400, 'Bad Request-URI');
    if (uri.scheme === 'tel' && method !== 'INVITE') return this.answerStateless(req, peer, 416);
    const mf = req.headers.get('Max-Forwards');
    if (mf !== undefined && Number(mf.trim()) === 0 && method !== 'OPTIONS') return this.answerStateless(req, peer, 483);
    const require = req.headers.getAll('Require').map((v) => v.toLowerCase());
    if (require.length > 0) return this.answerStateless(req, peer, 420, 'Bad Extension', [['Unsupported', require.join(', ')]]);
    switch (method) {
      case 'OPTIONS':
        return this.answerStateless(req, peer, 200, 'OK', [['Allow', ALLOW], ['Accept', 'application/sdp'], ['Supported', '']]);
      case 'BYE':
      case 'UPDATE':
      case 'INFO':
        return this.answerStateless(req, peer, 481, 'Call/Transaction Does Not Exist');
      case 'INVITE':
        if (this.draining) return this.refuseStateless(req, peer, 'DRAINING', 'shutting down');
        if (this.load) {
          // Before any digest work: an overloaded node spends nothing more on a new call.
          const v = this.load.admit();
          if (!v.ok) {
            this.events.onOverload?.(v.signal);
            return this.refuseStateless(req, peer, 'OVERLOADED', `overloaded: ${v.signal}`, v.retryAfterSec * 1000);
          }
        }
        return this.challengeOrPass(req, peer, true);
      case 'REGISTER':
        return this.challengeOrPass(req, peer, false);
      default:
        return this.answerStateless(req, peer, 405, 'Method Not Allowed', [['Allow', ALLOW]]);
    }
  }

  /** No credentials for our realm: a stateless challenge. Credentials of a blocked pair: dropped. Else on to a transaction. */
  private challengeOrPass(req: SipRequest, peer: Peer, proxy: boolean): boolean {
    const creds = this.digest.credentialsFor(this.authorizationValues(req, proxy));
    if (creds) {
      const block = this.blocker.isBlocked(peer.address, creds.get('username') ?? '');
      if (!block) return false;
      this.events.onDropped?.(block);
      return true;
    }
    const status = proxy ? 407 : 401;
    const challengeHeader = proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate';
    return this.answerStateless(req, peer, status, undefined, this.digest.challenges().map((c) => [challengeHeader, c] as [string, string]), true);
  }

  private authorizationValues(req: SipRequest, proxy: boolean): string[] {
    const header = proxy ? 'proxy-authorization' : 'authorization';
    return req.headers.entries().filter((h) => h.name.toLowerCase() === header).map((h) => h.value);
  }

  /**
   * Answers without a transaction, if the source's rate allows; true either way (the request is
   * done with). The To tag is derived from the request, so a retransmission gets the same one.
   */
  private answerStateless(req: SipRequest, peer: Peer, status: number, reason?: string, headers: [string, string][] = [], challenge = false): boolean {
    const admission = this.limiter.take(peer.address);
    if (admission !== 'ok') {
      if (challenge) this.events.onChallenge?.('rate-limited');
      if (admission === 'blocked') {
        this.quietLog.write('warn', 'blocked:flood', { ip: peer.address, block: 'flood', blockSec: Math.round(this.opts.challenges.blockMs / 1000) }, 'a source blocked: it kept sending requests over its rate without authenticating');
        this.events.onBlocked?.(peer.address, 'flood');
      }
      return true;
    }
    if (challenge) this.events.onChallenge?.('sent');
    const tag = createHmac('sha256', this.tagKey)
      .update(`${req.headers.get('Call-ID') ?? ''}\n${tagOf(req.headers.get('From')) ?? ''}\n${req.headers.get('CSeq') ?? ''}\n${req.headers.getAll('Via')[0] ?? ''}`)
      .digest()
      .subarray(0, 9)
      .toString('base64url');
    const res = buildResponse(req, status, reason, { headers: [['Server', this.opts.userAgent], ...headers], ...(status > 100 ? { toTag: tag } : {}) });
    this.send(res, peer).catch((err: unknown) => this.sendFailed(req, peer, err));
    return true;
  }

  /** A call refusal (Reason header, Retry-After) sent without a transaction: draining and overload. */
  private refuseStateless(req: SipRequest, peer: Peer, code: CallDenyCode, message: string, retryAfterMs?: number): boolean {
    const r = sipRefusalFor(code, retryAfterMs);
    const headers: [string, string][] = [['Reason', `SIP;cause=${r.status};text="${code}"`]];
    if (r.retryAfterSec !== undefined) headers.push(['Retry-After', String(r.retryAfterSec)]);
    this.quietLog.write('warn', `refused:${code}`, { ip: peer.address, code, message, status: r.status }, 'call refused');
    this.events.onCall?.(code);
    return this.answerStateless(req, peer, r.status, r.reason, headers);
  }

  /** A response that could not be sent: the client has gone (a closed connection, a reset). Not a fault of ours. */
  private sendFailed(req: SipRequest, peer: Peer, err: unknown): void {
    this.quietLog.write('warn', 'send-failed', { ip: peer.address, protocol: peer.protocol, method: req.method, error: err instanceof Error ? err.message : String(err) }, 'a SIP response could not be sent: the client has gone');
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

  /** Sends a message; a transport failure (the peer gone, a socket closed) rejects with SipSendError. */
  async send(msg: SipMessage, peer: Peer): Promise<void> {
    const t = this.transports.get(peer.protocol);
    if (!t) throw new Error(`no ${peer.protocol} transport`);
    try {
      await t.send(serializeMessage(msg), peer);
    } catch (err) {
      throw new SipSendError(peer, err);
    }
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
    // The answer could not go out because the client has gone: its condition, not our fault,
    // and it can repeat per request (a client that closes at once), so no stack and a sample.
    if (err instanceof SipSendError) {
      this.sendFailed(tx.request, tx.peer, err.cause);
      tx.transportError();
      return;
    }
    this.log.error({ err, method: tx.request.method }, 'error handling SIP request');
    if (tx.state === 'trying' || tx.state === 'proceeding') void this.respond(tx, 500).catch(() => {});
  }

  private findLeg(req: SipRequest): LegState | null {
    const callId = req.headers.get('Call-ID') ?? '';
    const toTag = tagOf(req.headers.get('To'));
    const fromTag = tagOf(req.headers.get('From'));
    if (!toTag || !fromTag) return null;
    return this.legs.get(dialogKey(callId, toTag, fromTag)) ?? null;
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
    const challengeHeader = proxy ? 'Proxy-Authenticate' : 'WWW-Authenticate';
    const status = proxy ? 407 : 401;
    let result: Awaited<ReturnType<DigestAuthenticator['verify']>>;
    try {
      result = await this.digest.verify(req.method, req.uri, this.authorizationValues(req, proxy), (u, alg) => this.credentials.ha1(u, alg));
    } catch (err) {
      // The key store or the nonce-count memory (Redis) did not answer: refused, never let
      // through unchecked. A fault, but one that repeats per request while it lasts: sampled.
      this.quietLog.write('error', 'digest-fault', { err, ip, method: req.method }, 'could not check digest credentials: the key store or the nonce-count memory failed');
      await this.respond(tx, 500, 'Server Internal Error');
      return null;
    }
    if (result.ok) {
      this.blocker.succeed(ip, result.username);
      return result.username;
    }
    if (result.reason === 'invalid') {
      this.events.onAuthFailure?.(ip, result.failure);
      this.quietLog.write('info', `auth-failed:${result.failure}`, { ip, username: result.username, method: req.method, failure: result.failure }, 'SIP authentication failed');
      if (this.blocker.fail(ip, result.username)) {
        // Blocked: no answer (as Kamailio's pike drops), and nothing kept: the transaction ends
        // here, and the client's retransmissions are dropped at the front door.
        tx.terminate();
        return null;
      }
      // RFC 7616 §3.4.6: a digest uri other than the Request-URI is a bad request, not a
      // wrong password; a fresh challenge would not help the client.
      if (result.failure === 'uri-mismatch') {
        await this.respond(tx, 400, 'Digest URI Mismatch');
        return null;
      }
    }
    const challenges = this.digest.challenges(result.reason === 'stale');
    await this.respond(tx, status, undefined, { headers: challenges.map((c) => [challengeHeader, c] as [string, string]) });
    return null;
  }

  private async refuse(tx: ServerTransaction, code: CallDenyCode, message: string, retryAfterMs?: number, toTag?: string): Promise<void> {
    const r = sipRefusalFor(code, retryAfterMs);
    const headers: [string, string][] = [['Reason', `SIP;cause=${r.status};text="${code}"`]];
    if (r.retryAfterSec !== undefined) headers.push(['Retry-After', String(r.retryAfterSec)]);
    this.log.info({ ip: tx.peer.address, code, message, status: r.status }, 'call refused');
    this.events.onCall?.(code);
    await this.respond(tx, r.status, r.reason, { headers, ...(toTag ? { toTag } : {}) });
  }

  private async onInvite(tx: ServerTransaction): Promise<void> {
    const req = tx.request;
    if (this.draining) return this.refuse(tx, 'DRAINING', 'shutting down');
    const callId = req.headers.get('Call-ID') ?? '';
    const fromHeader = req.headers.get('From') ?? '';
    const remoteTag = tagOf(fromHeader) ?? '';
    const cseq = parseCSeq(req.headers.get('CSeq') ?? '')?.seq ?? 0;
    // RFC 3261 §8.2.2.2: the same request arriving by another path (same Call-ID, From tag and
    // CSeq as an INVITE in progress, another branch) is a merged request: 482, not a new call.
    // "In progress" starts at arrival: a copy that comes while the first is still being
    // authenticated (its credentials read from the store) is merged too, not a digest replay.
    const arriving = `${callId}\n${remoteTag}\n${cseq}`;
    if (this.invitesArriving.has(arriving)) return this.respond(tx, 482, 'Loop Detected');
    for (const l of this.legs.values()) {
      if (l.dialog.callId === callId && l.dialog.remoteTag === remoteTag && l.dialog.remoteCseq === cseq && l.inviteTx !== tx) {
        return this.respond(tx, 482, 'Loop Detected');
      }
    }
    this.invitesArriving.add(arriving);
    let username: string | null;
    try {
      await this.respond(tx, 100, 'Trying');
      username = await this.authenticate(tx, true);
    } finally {
      // From here on (no await until the leg is stored) the leg itself names the INVITE.
      this.invitesArriving.delete(arriving);
    }
    if (username === null || tx.cancelled || tx.state !== 'proceeding') return;
    const uri = parseUri(req.uri)!;
    const localTag = newTag();
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
      remoteCseq: cseq,
      peer: tx.peer,
      invite: req,
    };
    const leg: LegState = { dialog, inviteTx: tx, state: 'early', events: null, pendingEnd: null, okResponse: null, okTimer: null, ackTimer: null };
    this.legs.set(dialogKey(callId, localTag, remoteTag), leg);
    this.legOfInvite.set(tx, leg);
    const invite: InboundInvite = {
      keyId: username,
      sourceIp: tx.peer.address,
      transport: tx.peer.protocol,
      dialled: uri.scheme === 'tel' ? uri.host : uri.user ?? '',
      from: parseNameAddr(fromHeader)?.uri.user ?? '',
      assertedFrom: parseNameAddr(req.headers.get('P-Asserted-Identity') ?? '')?.uri.user ?? null,
      identities: req.headers.getAll('Identity'),
      sdp: sdpBody(req),
      sipCallId: callId,
      receivedAt: Date.now(),
    };
    try {
      await this.handler.invite(invite, this.legHandle(leg));
    } catch (err) {
      this.log.error({ err }, 'call handler failed on an INVITE');
      if (leg.state === 'early') {
        await this.refuseLeg(leg, 'TEMPORARILY_UNAVAILABLE', 'internal error', undefined, 500);
        this.legEnded(leg, 'transport-error');
      }
    }
  }

  /** The application's handle on a leg. */
  private legHandle(leg: LegState): InboundLeg {
    return {
      get state() {
        return leg.state;
      },
      bind: (events) => {
        leg.events = events;
        if (leg.pendingEnd) {
          const reason = leg.pendingEnd;
          leg.pendingEnd = null;
          events.ended(reason);
        }
      },
      ring: (status, sdp) => {
        if (leg.state !== 'early' || leg.inviteTx.state !== 'proceeding') return Promise.resolve();
        const headers: [string, string][] = [['Contact', `<sip:${this.localAddress(leg.dialog.peer.protocol)}${transportParam(leg.dialog.peer.protocol)}>`]];
        if (sdp) headers.push(['Content-Type', 'application/sdp']);
        return this.respond(leg.inviteTx, status, undefined, { toTag: leg.dialog.localTag, headers, ...(sdp ? { body: sdp } : {}) }).catch(() => undefined);
      },
      answer: (sdp) => this.answerLeg(leg, sdp),
      refuse: async (code, message, retryAfterMs) => {
        if (leg.state !== 'early') return;
        await this.refuseLeg(leg, code, message, retryAfterMs);
        this.closeLeg(leg);
      },
      hangup: () => {
        if (leg.state === 'early') {
          void this.refuseLeg(leg, 'TEMPORARILY_UNAVAILABLE', 'the call ended');
          this.closeLeg(leg);
        } else if (leg.state !== 'ended') {
          this.sendBye(leg);
          this.closeLeg(leg);
        }
      },
    };
  }

  /** Sends the final refusal of an early leg with our dialog tag and a Reason header. */
  private async refuseLeg(leg: LegState, code: CallDenyCode | 'SDP_NOT_ACCEPTABLE', message: string, retryAfterMs?: number, status?: number): Promise<void> {
    const tx = leg.inviteTx;
    if (tx.state !== 'proceeding') return;
    if (code === 'SDP_NOT_ACCEPTABLE') {
      this.events.onCall?.(code);
      return this.respond(tx, 488, 'Not Acceptable Here', { toTag: leg.dialog.localTag, headers: [['Warning', `399 tollgate "${message.replace(/["\\\r\n]/g, "'")}"`]] }).catch(() => undefined);
    }
    if (status !== undefined) return this.respond(tx, status, undefined, { toTag: leg.dialog.localTag }).catch(() => undefined);
    return this.refuse(tx, code, message, retryAfterMs, leg.dialog.localTag).catch(() => undefined);
  }

  private async answerLeg(leg: LegState, sdp: Buffer): Promise<boolean> {
    const tx = leg.inviteTx;
    if (leg.state !== 'early' || tx.state !== 'proceeding') return false;
    const local = this.localAddress(tx.peer.protocol);
    const ok = buildResponse(tx.request, 200, 'OK', {
      toTag: leg.dialog.localTag,
      body: sdp,
      headers: [
        ['Server', this.opts.userAgent],
        ['Contact', `<sip:${local}${transportParam(tx.peer.protocol)}>`],
        ['Allow', ALLOW],
        ['Content-Type', 'application/sdp'],
      ],
    });
    leg.okResponse = ok;
    leg.state = 'answered';
    leg.dialog.state = 'answered';
    try {
      await tx.respond(ok);
    } catch (err) {
      // RFC 3261 §17.2.4: the 2xx could not be sent; the call cannot go on.
      this.log.warn({ err: (err as Error).message, ip: tx.peer.address }, 'the 2xx could not be sent: ending the call');
      this.legEnded(leg, 'transport-error');
      return false;
    }
    if (leg.state !== 'answered') return false;
    this.events.onCall?.('answered');
    this.retransmitOk(leg, this.timers.t1);
    leg.ackTimer = setTimeout(() => this.ackTimeout(leg), timerH(this.timers));
    return true;
  }

  /**
   * RFC 3261 §13.3.1.4: the UAS core resends the 2xx (T1 doubling to T2) until the ACK; over
   * reliable transports it is sent once. Either way the ACK must come within 64×T1 (ackTimer).
   */
  private retransmitOk(leg: LegState, interval: number): void {
    if (isReliable(leg.dialog.peer.protocol)) return;
    leg.okTimer = setTimeout(() => {
      if (leg.state !== 'answered' || !leg.okResponse) return;
      void this.send(leg.okResponse, leg.dialog.peer).catch(() => {});
      this.retransmitOk(leg, Math.min(2 * interval, this.timers.t2));
    }, interval);
  }

  private ackTimeout(leg: LegState): void {
    if (leg.state !== 'answered') return;
    this.log.warn({ sipCallId: leg.dialog.callId }, 'no ACK for the 2xx: ending the call');
    this.sendBye(leg);
    this.legEnded(leg, 'ack-timeout');
  }

  private onAck(req: SipRequest): void {
    const leg = this.findLeg(req);
    if (!leg || leg.state !== 'answered') return;
    leg.state = 'confirmed';
    leg.dialog.state = 'confirmed';
    this.clearLegTimers(leg);
  }

  private async onCancel(tx: ServerTransaction): Promise<void> {
    const invite = this.txl.findInviteFor(tx.request);
    if (!invite) return this.respond(tx, 481);
    await this.respond(tx, 200);
    if (invite.state !== 'proceeding' || invite.cancelled) return;
    invite.cancelled = true;
    const leg = this.legOfInvite.get(invite);
    // §9.2: 487 to the INVITE; the application hears of it at once (it may be dialling an agent).
    await invite.respond(buildResponse(invite.request, 487, 'Request Terminated', { toTag: leg?.dialog.localTag ?? newTag(), headers: [['Server', this.opts.userAgent]] })).catch(() => undefined);
    if (leg && leg.state === 'early') this.legEnded(leg, 'cancelled');
  }

  private async onBye(tx: ServerTransaction): Promise<void> {
    const leg = this.findLeg(tx.request);
    if (!leg || leg.state === 'ended') return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.respond(tx, 200);
    this.legEnded(leg, 'remote-bye');
  }

  private async inDialogOffer(tx: ServerTransaction, leg: LegState): Promise<void> {
    const offer = sdpBody(tx.request);
    if (!offer) return this.respond(tx, 200, 'OK', { headers: [['Allow', ALLOW]] });
    if (!leg.events) return this.respond(tx, 491, 'Request Pending');
    const answer = await leg.events.reoffer(offer);
    if (!answer.ok) return this.respond(tx, 488, 'Not Acceptable Here');
    const local = this.localAddress(tx.peer.protocol);
    await this.respond(tx, 200, 'OK', {
      body: answer.sdp,
      headers: [['Contact', `<sip:${local}${transportParam(tx.peer.protocol)}>`], ['Allow', ALLOW], ['Content-Type', 'application/sdp']],
    });
  }

  private async onReinvite(tx: ServerTransaction): Promise<void> {
    const leg = this.findLeg(tx.request);
    if (!leg || leg.state === 'ended' || leg.state === 'early') return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.inDialogOffer(tx, leg);
  }

  private async onUpdate(tx: ServerTransaction): Promise<void> {
    const leg = this.findLeg(tx.request);
    if (!leg || leg.state === 'ended' || leg.state === 'early') return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    await this.inDialogOffer(tx, leg);
  }

  private async onInfo(tx: ServerTransaction): Promise<void> {
    const leg = this.findLeg(tx.request);
    if (!leg || leg.state === 'ended') return this.respond(tx, 481, 'Call/Transaction Does Not Exist');
    const ct = tx.request.headers.get('Content-Type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    leg.events?.info?.(ct, tx.request.body);
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

  private sendBye(leg: LegState): void {
    const bye = this.buildInDialogRequest(leg.dialog, 'BYE');
    this.txl.sendRequest(bye, leg.dialog.peer, { onResponse: () => {}, onTimeout: () => {}, onTransportError: () => {} }, () => bye);
  }

  private clearLegTimers(leg: LegState): void {
    if (leg.okTimer) clearTimeout(leg.okTimer);
    if (leg.ackTimer) clearTimeout(leg.ackTimer);
    leg.okTimer = null;
    leg.ackTimer = null;
  }

  /** Forgets a leg (ended by the application or the SIP side). */
  private closeLeg(leg: LegState): boolean {
    if (leg.state === 'ended') return false;
    leg.state = 'ended';
    leg.dialog.state = 'terminated';
    this.clearLegTimers(leg);
    this.legs.delete(dialogKey(leg.dialog.callId, leg.dialog.localTag, leg.dialog.remoteTag));
    return true;
  }

  /** The leg ended on the SIP side: tell the application once. */
  private legEnded(leg: LegState, reason: LegEnd): void {
    if (!this.closeLeg(leg)) return;
    this.events.onCall?.(`ended:${reason}`);
    if (!leg.events) {
      leg.pendingEnd = reason;
      return;
    }
    try {
      leg.events.ended(reason);
    } catch (err) {
      this.log.error({ err, sipCallId: leg.dialog.callId }, 'call handler failed on a leg end');
    }
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

  /** Ends every leg still up (BYE or 503) and closes the transaction layer. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const leg of [...this.legs.values()]) {
      if (leg.state === 'early') await this.refuseLeg(leg, 'DRAINING', 'shutting down');
      else this.sendBye(leg);
      this.legEnded(leg, 'shutdown');
    }
    this.uac.close();
    this.closed = true;
    // Give the BYEs a moment on the wire before the transports close.
    await new Promise((r) => setTimeout(r, 50));
    this.txl.close();
  }
}

/** A message could not be handed to its transport: the peer's connection is gone, or a socket failed. */
export class SipSendError extends Error {
  constructor(readonly peer: Peer, cause: unknown) {
    super(`could not send to ${peer.protocol}:${peer.address}:${peer.port}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'SipSendError';
  }
}
