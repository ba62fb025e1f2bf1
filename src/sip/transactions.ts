import type { Peer } from '../transport/sip-transport.js';
import { isReliable } from '../transport/sip-transport.js';
import type { SipRequest, SipResponse, SipMessage } from './sip-message.js';
import { parseCSeq, parseVia } from './sip-grammar.js';
import { MAGIC_COOKIE } from './sip-ids.js';
import { timerB, timerD, timerF, timerH, timerI, timerJ, timerK, timerL, timerM, type TimerValues } from './transaction-timers.js';

/** Sends one message to a peer; the stack serialises it and picks the transport. */
export type SendFn = (msg: SipMessage, peer: Peer) => Promise<void>;

type Timer = ReturnType<typeof setTimeout>;

/** The top Via's branch and sent-by, the keys of RFC 3261 §17.1.3 and §17.2.3 matching. */
function topVia(msg: SipMessage): { branch: string; sentBy: string } | null {
  const raw = msg.headers.getAll('Via')[0];
  const via = raw === undefined ? null : parseVia(raw);
  if (!via) return null;
  const branch = via.params.get('branch') ?? '';
  return { branch, sentBy: `${via.host.toLowerCase()}:${via.port ?? ''}` };
}

function cseqMethod(msg: SipMessage): string | null {
  const raw = msg.headers.get('CSeq');
  return raw === undefined ? null : parseCSeq(raw)?.method ?? null;
}

/**
 * Server transaction key (RFC 3261 §17.2.3): branch + sent-by + method, with ACK matching the
 * INVITE it acknowledges. Requests without the magic cookie (RFC 2543 peers) are not matched
 * as retransmissions; they get a key unique to their own Call-ID/CSeq/From tag.
 */
export function serverKey(req: SipRequest): string | null {
  const v = topVia(req);
  if (!v) return null;
  const method = req.method === 'ACK' ? 'INVITE' : req.method;
  if (v.branch.startsWith(MAGIC_COOKIE)) return `${v.branch}|${v.sentBy}|${method}`;
  return `legacy|${req.headers.get('Call-ID') ?? ''}|${req.headers.get('CSeq') ?? ''}|${v.sentBy}|${method}`;
}

/** Client transaction key (RFC 3261 §17.1.3): branch + CSeq method. */
export function clientKey(msg: SipMessage): string | null {
  const v = topVia(msg);
  const m = cseqMethod(msg);
  return v && m ? `${v.branch}|${m}` : null;
}

/**
 * What client and server transactions share: the request, its peer and key, the way out, and a
 * state that ends in 'terminated' with every timer cancelled then.
 */
abstract class Transaction<S extends string> {
  abstract state: S | 'terminated';
  private timers: Timer[] = [];

  constructor(
    readonly key: string,
    readonly request: SipRequest,
    readonly peer: Peer,
    protected readonly send: SendFn,
    protected readonly t: TimerValues,
    private readonly onEnd: () => void,
  ) {}

  get isInvite(): boolean {
    return this.request.method === 'INVITE';
  }

  protected after(ms: number, fn: () => void): Timer {
    const timer = setTimeout(fn, ms);
    this.timers.push(timer);
    return timer;
  }

  protected cancel(timer: Timer | null): void {
    if (timer === null) return;
    clearTimeout(timer);
    this.timers = this.timers.filter((t) => t !== timer);
  }

  protected clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.clearTimers();
    this.onEnd();
  }
}

/**
 * INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's Accepted state):
 *
 *            INVITE → Proceeding ──1xx──▶ Proceeding
 *                        │ 2xx                 │ 300-699
 *                        ▼                     ▼
 *                     Accepted (Timer L)    Completed ── Timer G: resend final (unreliable)
 *                        │                     │ ACK           │ Timer H: no ACK → timeout
 *                        ▼                     ▼
 *                    Terminated           Confirmed (Timer I) ─▶ Terminated
 *
 * A non-INVITE server transaction (§17.2.2) is the same without Accepted/Confirmed:
 * Trying → Proceeding → Completed (Timer J) → Terminated.
 */
export type ServerState = 'trying' | 'proceeding' | 'accepted' | 'completed' | 'confirmed' | 'terminated';

export class ServerTransaction extends Transaction<ServerState> {
  state: ServerState;
  private lastResponse: SipResponse | null = null;
  private gInterval: number;
  /** Set by the TU when it learns the request was cancelled (CANCEL → 487). */
  cancelled = false;
  /** An INVITE without a final response yet (counted by the layer as in progress). */
  private unsettled: boolean;

  constructor(
    key: string,
    request: SipRequest,
    peer: Peer,
    send: SendFn,
    t: TimerValues,
    onTerminated: (tx: ServerTransaction) => void,
    private readonly onTimeout: (tx: ServerTransaction) => void,
    /** An INVITE transaction got its final response or ended without one. */
    private readonly onSettled: () => void = () => {},
  ) {
    super(key, request, peer, send, t, () => {
      this.settle();
      onTerminated(this);
    });
    this.state = request.method === 'INVITE' ? 'proceeding' : 'trying';
    this.unsettled = request.method === 'INVITE';
    this.gInterval = t.t1;
  }

  private settle(): void {
    if (!this.unsettled) return;
    this.unsettled = false;
    this.onSettled();
  }

  /** The TU's response. Later responses after a final one are ignored (RFC 3261 §17.2.1). */
  respond(res: SipResponse): Promise<void> {
    if (this.state === 'terminated' || this.state === 'completed' || this.state === 'confirmed' || this.state === 'accepted') return Promise.resolve();
    this.lastResponse = res;
    const reliable = isReliable(this.peer.protocol);
    if (res.status >= 200) this.settle();
    if (res.status < 200) {
      this.state = 'proceeding';
    } else if (this.isInvite && res.status < 300) {
      // The UAS core retransmits the 2xx itself until the ACK (§13.3.1.4).
      this.state = 'accepted';
      this.after(timerL(this.t), () => this.terminate());
    } else if (this.isInvite) {
      this.state = 'completed';
      if (!reliable) this.scheduleG();
      this.after(timerH(this.t), () => {
        this.onTimeout(this);
        this.terminate();
      });
    } else {
      this.state = 'completed';
      const j = timerJ(this.t, reliable);
      if (j === 0) queueMicrotask(() => this.terminate());
      else this.after(j, () => this.terminate());
    }
    return this.send(res, this.peer);
  }

  private scheduleG(): void {
    this.after(this.gInterval, () => {
      if (this.state !== 'completed' || !this.lastResponse) return;
      void this.send(this.lastResponse, this.peer).catch(() => {});
      this.gInterval = Math.min(2 * this.gInterval, this.t.t2);
      this.scheduleG();
    });
  }

  /** A retransmission of the request, or the ACK of a non-2xx final response. */
  absorb(req: SipRequest): void {
    if (req.method === 'ACK') {
      if (this.state === 'completed') {
        this.state = 'confirmed';
        this.clearTimers();
        const i = timerI(this.t, isReliable(this.peer.protocol));
        if (i === 0) this.terminate();
        else this.after(i, () => this.terminate());
      }
      return;
    }
    // §17.2.1/§17.2.2: resend the latest response to a retransmitted request.
    if (this.lastResponse && (this.state === 'proceeding' || this.state === 'completed' || this.state === 'accepted')) {
      void this.send(this.lastResponse, this.peer).catch(() => {});
    }
  }

  /** Ends the transaction on a transport error (§17.2.4). */
  transportError(): void {
    this.terminate();
  }

}

export interface ClientHandlers {
  /** Every response matched to the transaction (1xx, and the final ones). */
  onResponse(res: SipResponse): void;
  /** Timer B or F fired: no final response (the TU treats it as 408). */
  onTimeout(): void;
  onTransportError?(err: unknown): void;
}

/**
 * INVITE client transaction (RFC 3261 §17.1.1 with RFC 6026):
 *
 *   Calling (Timer A resend, Timer B timeout) ─1xx─▶ Proceeding (no timer: waits for the TU)
 *   Calling/Proceeding ─300-699─▶ Completed (ACK, Timer D) ─▶ Terminated
 *   Calling/Proceeding ─2xx─▶ Accepted (Timer M: further 2xx go to the TU) ─▶ Terminated
 *
 * Timer B runs only in Calling (§17.1.1.2): once a provisional response arrives, the far end
 * has the INVITE and the call may ring for as long as the TU wants; the TU ends it with CANCEL
 * (§9.1) and gives up on the transaction itself if no final response follows.
 *
 * Non-INVITE client transaction (§17.1.2):
 *   Trying (Timer E resend, Timer F timeout) ─1xx─▶ Proceeding ─final─▶ Completed (Timer K)
 */
export type ClientState = 'calling' | 'trying' | 'proceeding' | 'accepted' | 'completed' | 'terminated';

export class ClientTransaction extends Transaction<ClientState> {
  state: ClientState;
  private interval: number;
  /** Timer B (INVITE) or F (non-INVITE). */
  private timeoutTimer: Timer | null = null;

  constructor(
    key: string,
    request: SipRequest,
    peer: Peer,
    send: SendFn,
    t: TimerValues,
    private readonly handlers: ClientHandlers,
    onTerminated: (tx: ClientTransaction) => void,
    private readonly buildAck: (res: SipResponse) => SipRequest,
  ) {
    super(key, request, peer, send, t, () => onTerminated(this));
    this.state = request.method === 'INVITE' ? 'calling' : 'trying';
    this.interval = t.t1;
  }

  start(): void {
    const reliable = isReliable(this.peer.protocol);
    this.send(this.request, this.peer).catch((err: unknown) => {
      this.handlers.onTransportError?.(err);
      this.terminate();
    });
    if (!reliable) this.scheduleRetransmit();
    this.timeoutTimer = this.after(this.isInvite ? timerB(this.t) : timerF(this.t), () => {
      // Timer B only matters in Calling (§17.1.1.2); Timer F in Trying and Proceeding (§17.1.2.2).
      if (this.isInvite ? this.state === 'calling' : this.state === 'trying' || this.state === 'proceeding') {
        this.handlers.onTimeout();
        this.terminate();
      }
    });
  }

  /** Timer A (INVITE: doubling, no cap while calling) or E (non-INVITE: doubling up to T2). */
  private scheduleRetransmit(): void {
    this.after(this.interval, () => {
      const active = this.isInvite ? this.state === 'calling' : this.state === 'trying' || this.state === 'proceeding';
      if (!active) return;
      void this.send(this.request, this.peer).catch(() => {});
      // §17.1.2.2: in Proceeding, non-INVITE retransmits every T2.
      this.interval = this.isInvite ? 2 * this.interval : this.state === 'proceeding' ? this.t.t2 : Math.min(2 * this.interval, this.t.t2);
      this.scheduleRetransmit();
    });
  }

  receive(res: SipResponse): void {
    const reliable = isReliable(this.peer.protocol);
    switch (this.state) {
      case 'calling':
      case 'trying':
      case 'proceeding':
        if (res.status < 200) {
          this.state = 'proceeding';
          // §17.1.1.2: a provisional response stops Timer A and Timer B for an INVITE.
          if (this.isInvite) {
            this.cancel(this.timeoutTimer);
            this.timeoutTimer = null;
          }
          this.handlers.onResponse(res);
        } else if (this.isInvite && res.status < 300) {
          this.state = 'accepted';
          this.clearTimers();
          this.handlers.onResponse(res);
          this.after(timerM(this.t), () => this.terminate());
        } else {
          this.state = 'completed';
          this.clearTimers();
          if (this.isInvite) void this.send(this.buildAck(res), this.peer).catch(() => {});
          this.handlers.onResponse(res);
          const wait = this.isInvite ? timerD(this.t, reliable) : timerK(this.t, reliable);
          if (wait === 0) this.terminate();
          else this.after(wait, () => this.terminate());
        }
        return;
      case 'accepted':
        // RFC 6026 §8.4: retransmitted 2xx go to the TU, which re-sends its ACK.
        if (res.status >= 200 && res.status < 300) this.handlers.onResponse(res);
        return;
      case 'completed':
        // A retransmitted final response: re-send the ACK (INVITE only).
        if (this.isInvite && res.status >= 300) void this.send(this.buildAck(res), this.peer).catch(() => {});
        // A 2xx after a non-2xx final response (another fork answered, RFC 3261 §13.2.2.4):
        // the UAC core ACKs it and ends that dialog, so it goes up rather than being dropped.
        else if (this.isInvite && res.status >= 200 && res.status < 300) this.handlers.onResponse(res);
        return;
      case 'terminated':
        return;
    }
  }

}

export interface TransactionUser {
  /** A request that starts a new server transaction (not a retransmission, not a non-2xx ACK). */
  onRequest(tx: ServerTransaction): void;
  /** An ACK that matches no transaction: the ACK of a 2xx, for the dialog layer (§17.2.3). */
  onStrayAck(req: SipRequest, peer: Peer): void;
  /** A response that matches no client transaction: a 2xx retransmission for the UAC core. */
  onStrayResponse(res: SipResponse, peer: Peer): void;
  /** Timer H fired: a final non-2xx response to an INVITE was never acknowledged. */
  onServerTimeout?(tx: ServerTransaction): void;
}

/** Holds the live transactions and routes each message to its transaction or the TU. */
export class TransactionLayer {
  private readonly servers = new Map<string, ServerTransaction>();
  private readonly clients = new Map<string, ClientTransaction>();
  private invitesInProgress = 0;

  constructor(
    private readonly send: SendFn,
    private readonly tu: TransactionUser,
    private readonly t: TimerValues,
  ) {}

  get size(): { servers: number; clients: number } {
    return { servers: this.servers.size, clients: this.clients.size };
  }

  /** INVITE server transactions without a final response yet: calls being set up (a load signal). */
  get pendingInvites(): number {
    return this.invitesInProgress;
  }

  /** Whether a request belongs to a live server transaction (a retransmission, or the ACK of a non-2xx). */
  hasServerFor(req: SipRequest): boolean {
    const key = serverKey(req);
    return key !== null && this.servers.has(key);
  }

  receiveRequest(req: SipRequest, peer: Peer): void {
    const key = serverKey(req);
    if (key === null) return;
    const existing = this.servers.get(key);
    if (existing) {
      existing.absorb(req);
      return;
    }
    if (req.method === 'ACK') {
      this.tu.onStrayAck(req, peer);
      return;
    }
    if (req.method === 'INVITE') this.invitesInProgress++;
    const tx = new ServerTransaction(key, req, peer, this.send, this.t, (x) => this.servers.delete(x.key), (x) => this.tu.onServerTimeout?.(x), () => this.invitesInProgress--);
    this.servers.set(key, tx);
    this.tu.onRequest(tx);
  }

  receiveResponse(res: SipResponse, peer: Peer): void {
    const key = clientKey(res);
    const tx = key === null ? undefined : this.clients.get(key);
    if (tx) tx.receive(res);
    else this.tu.onStrayResponse(res, peer);
  }

  /** Finds the INVITE server transaction a CANCEL refers to (same branch and sent-by, §9.2). */
  findInviteFor(cancel: SipRequest): ServerTransaction | null {
    const key = serverKey(cancel);
    if (key === null) return null;
    return this.servers.get(key.replace(/\|CANCEL$/, '|INVITE')) ?? null;
  }

  sendRequest(req: SipRequest, peer: Peer, handlers: ClientHandlers, buildAck: (res: SipResponse) => SipRequest): ClientTransaction {
    const key = clientKey(req);
    if (key === null) throw new Error('request has no Via branch or CSeq');
    const tx = new ClientTransaction(key, req, peer, this.send, this.t, handlers, (x) => this.clients.delete(x.key), buildAck);
    this.clients.set(key, tx);
    tx.start();
    return tx;
  }

  /** Terminates every transaction (on close). */
  close(): void {
    for (const tx of [...this.servers.values()]) tx.terminate();
    for (const tx of [...this.clients.values()]) tx.terminate();
  }
}
