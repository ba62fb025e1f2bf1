import type { Logger } from 'pino';
import { settlementOf, type CallGrant } from '../policy/policy-engine.js';
import type { CallEndedBy, CallPatch, CallRecord } from '../store/store.js';
import type { SessionStats } from '../media/media-protocol.js';
import { toIso } from '../util/time.js';
import { CallTimers } from './call-timers.js';

/**
 * Why a call ended (the CDR's endReason). Inbound and outbound calls share the list; a SIP
 * rejection of an outbound call we could not name more precisely is `failed-<status>`.
 */
export type EndReason =
  | 'remote-bye'
  | 'local-hangup'
  | 'cancelled'
  | 'ack-timeout'
  | 'transport-error'
  | 'media-timeout'
  | 'media-lost'
  | 'media-unavailable'
  | 'record-unavailable'
  | 'sdp-not-acceptable'
  | 'identity-invalid'
  | 'max-duration'
  /** The key's budget ran out (the call was admitted for what the budget covered). */
  | 'budget-exhausted'
  | 'shutdown'
  /** The agent hung up: a hangup message, REST, or its socket closed. */
  | 'agent-hangup'
  /** The agent could not be reached (and the fallback, if any, ended). */
  | 'agent-unavailable'
  /** DELETE /v1/calls/{id} by the key's owner. */
  | 'api-hangup'
  /** The key was revoked, quarantined or expired, or its policy no longer allows the call. */
  | 'key-revoked'
  | 'key-quarantined'
  | 'key-expired'
  | 'key-policy-changed'
  /** Outbound: how the callee's side ended it. */
  | 'no-answer'
  | 'busy'
  | 'declined'
  | 'trunk-unreachable'
  | `failed-${number}`;

/**
 * A call's life, one diagram for both directions (docs/calls.md):
 *
 *   setup ──ring──▶ ringing ──answer──▶ answered
 *     │                │                   │
 *     └────────────────┴───── end() ───────┴──▶ ended
 *
 * setup: admitted by policy (lease and reservation held), record written, media and agent being
 * brought up (inbound) or INVITE sent (outbound). ringing: 180/183 sent or received. answered:
 * the 200 OK went out or came in; the billable time runs. ended: every resource given back once.
 */
export type CallState = 'setup' | 'ringing' | 'answered' | 'ended';

const NEXT: Readonly<Record<CallState, readonly CallState[]>> = {
  setup: ['ringing', 'answered', 'ended'],
  ringing: ['answered', 'ended'],
  answered: ['ended'],
  ended: [],
};

/** The signalling side of a call (an inbound UAS leg or an outbound UAC leg). */
export interface CallLeg {
  /** Ends the signalling: BYE when answered; before that CANCEL (outbound) or a final refusal (inbound). Idempotent. */
  hangup(reason: EndReason): void;
}

/** What a Call gives back when it ends; the registry builds these from config. */
export interface CallResources {
  readonly media: { close(callId: string): Promise<SessionStats | null> };
  /** Ends the agent side: `stop` to a bound agent, or aborts a dial or attach in progress. */
  readonly agents: { ended(callId: string, reason: string): void };
  /** Keeps the concurrency lease and budget reservation alive while the call runs. */
  renew(grant: CallGrant): Promise<unknown>;
  /**
   * Frees the call's concurrency slot (its lease) only. end() calls it at once, so the key's
   * next call is admitted as soon as this one is over; complete() and release() free it too,
   * later (after the media figures), which is harmless: releasing a lease is idempotent.
   */
  freeSlot(grant: CallGrant): Promise<unknown>;
  /**
   * Settles an answered call — usage, budget, lease and the record's completion, durably and
   * once per call id (the settlement ledger) — at `cost`, as settlementOf prices it.
   */
  complete(grant: CallGrant, billableSeconds: number, record: { id: string; patch: CallPatch } | null): Promise<unknown>;
  /** Gives an unanswered call's grant back (no usage). */
  release(grant: CallGrant): Promise<void>;
  readonly records: { start(rec: CallRecord): Promise<boolean>; update(id: string, patch: CallPatch): Promise<void> };
  notify(type: 'call.started' | 'call.answered' | 'call.ended', keyId: string, data: Record<string, unknown>): void;
  /** How often the lease is renewed (a third of its TTL). */
  readonly renewEveryMs: number;
  readonly log: Logger;
  readonly now: () => number;
}

export interface CallInit {
  /** The gateway's own id for the call ('CA' + 32 hex): every per-call resource is keyed by it. */
  readonly id: string;
  readonly keyId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly from: string;
  readonly to: string;
  /** echo | tone | agent | attach */
  readonly target: string;
  readonly grant: CallGrant;
  readonly startedAt: number;
}

/**
 * One call, inbound or outbound, and everything it holds: its policy grant (concurrency lease
 * and budget reservation, renewed while it lives), its signalling leg, its media session, its
 * agent, its timers and its record. `end()` is the one way out, on every path (BYE, CANCEL, a
 * 2xx that could not be sent, worker crash, agent gone, revoke, drain, shutdown, store error):
 * it runs once and gives every resource back exactly once.
 */
export class Call {
  readonly id: string;
  readonly keyId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly from: string;
  readonly to: string;
  readonly target: string;
  readonly grant: CallGrant;
  readonly startedAt: number;
  readonly timers = new CallTimers();
  /** Facts for the record's details (trunk, identity, agent errors, media stats, …). */
  readonly details: Record<string, unknown> = {};
  private _state: CallState = 'setup';
  answeredAt: number | null = null;
  endedAt: number | null = null;
  endReason: EndReason | null = null;
  endedBy: CallEndedBy | null = null;
  /** The SIP Call-ID of the leg (dialog identity only), for the record. */
  sipCallId: string | null = null;
  private leg: CallLeg | null = null;
  private mediaOpening: Promise<unknown> | null = null;
  private recordWritten = false;
  private readonly endHooks: ((call: Call) => void)[] = [];
  /** Resolves when the call has ended and its settlement and record are written (or given up). */
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;

  constructor(
    init: CallInit,
    private readonly res: CallResources,
  ) {
    this.id = init.id;
    this.keyId = init.keyId;
    this.direction = init.direction;
    this.from = init.from;
    this.to = init.to;
    this.target = init.target;
    this.grant = init.grant;
    this.startedAt = init.startedAt;
    this.finished = new Promise((r) => (this.resolveFinished = r));
    // The lease and reservation live from admission (a ring or an agent dial can outlast them).
    this.timers.every(res.renewEveryMs, () => void res.renew(this.grant).catch((err: unknown) => res.log.warn({ err, callId: this.id }, 'could not renew the call\'s lease')));
  }

  get state(): CallState {
    return this._state;
  }

  get ended(): boolean {
    return this._state === 'ended';
  }

  /** Progress as the API shows it. */
  get progress(): 'trying' | 'ringing' | 'answered' | 'ended' {
    return this._state === 'setup' ? 'trying' : this._state;
  }

  private transition(to: CallState): boolean {
    if (!NEXT[this._state].includes(to)) return false;
    this._state = to;
    return true;
  }

  /** Writes the call's record; false (and nothing written) when the store refuses it. */
  async startRecord(extra: { sipCallId?: string | null; details?: Record<string, unknown> } = {}): Promise<boolean> {
    if (extra.sipCallId !== undefined) this.sipCallId = extra.sipCallId;
    Object.assign(this.details, extra.details ?? {});
    const ok = await this.res.records.start({
      id: this.id,
      keyId: this.keyId,
      direction: this.direction,
      from: this.from,
      to: this.to,
      target: this.target,
      sipCallId: this.sipCallId,
      status: 'ringing',
      startedAt: toIso(this.startedAt),
      answeredAt: null,
      endedAt: null,
      endReason: null,
      endedBy: null,
      billableSeconds: 0,
      details: { ...this.details },
    });
    this.recordWritten = ok;
    return ok;
  }

  /** Queues the call.started webhook (with the trunk or the caller's verstat when known). */
  announceStarted(): void {
    const d = this.details;
    this.res.notify('call.started', this.keyId, {
      callId: this.id,
      direction: this.direction,
      from: this.from,
      to: this.to,
      target: this.target,
      ...(typeof d.trunk === 'string' ? { trunk: d.trunk } : {}),
      ...(d.identity && typeof d.identity === 'object' && 'verstat' in d.identity ? { identity: (d.identity).verstat } : {}),
    });
  }

  /** The signalling leg, once there is one; a call that already ended hangs it up at once. */
  attachLeg(leg: CallLeg): void {
    this.leg = leg;
    if (this.ended && this.endReason) leg.hangup(this.endReason);
  }

  /**
   * Opens the call's media session (keyed by the call's id); null when the call ended first.
   * A session opened while the call ends is closed by end().
   */
  async openMedia<T>(open: (callId: string) => Promise<T>): Promise<T | null> {
    if (this.ended) return null;
    const opening = open(this.id);
    this.mediaOpening = opening.catch(() => undefined);
    const r = await opening;
    return this.ended ? null : r;
  }

  /** Runs `fn` once when the call ends (after its resources are released). */
  whenEnded(fn: (call: Call) => void): void {
    if (this.ended) fn(this);
    else this.endHooks.push(fn);
  }

  /** A provisional response went out or came in. */
  ringing(): void {
    if (!this.transition('ringing')) return;
    this.patchRecord({ details: { ...this.details, progress: 'ringing' } });
  }

  /**
   * The call is answered: the billable time starts, and it is hung up when its granted time
   * runs out (the key's maximum duration, or what its budget covers).
   */
  answered(): boolean {
    if (!this.transition('answered')) return false;
    this.answeredAt = this.res.now();
    this.patchRecord({ status: 'answered', answeredAt: toIso(this.answeredAt), details: { ...this.details, progress: 'answered' } });
    this.res.notify('call.answered', this.keyId, { callId: this.id, direction: this.direction, from: this.from, to: this.to });
    const limitedByBudget = this.grant.limitedBy === 'budget';
    this.timers.after(this.grant.maxDurationSec * 1000, () => this.end(limitedByBudget ? 'budget-exhausted' : 'max-duration', 'policy'));
    return true;
  }

  /** Milliseconds left before the call's granted time ends (its full grant before the answer). */
  remainingMs(): number {
    const max = this.grant.maxDurationSec * 1000;
    return this.answeredAt === null ? max : Math.max(0, max - (this.res.now() - this.answeredAt));
  }

  private patchRecord(patch: CallPatch): void {
    if (this.recordWritten) void this.res.records.update(this.id, patch);
  }

  /**
   * Ends the call, once: the leg is hung up (BYE, CANCEL or a refusal), the agent stopped, the
   * media closed, the grant settled (answered) or released (not), the record completed, and the
   * call.ended webhook queued. Later calls do nothing.
   */
  end(reason: EndReason, by: CallEndedBy): void {
    if (!this.transition('ended')) return;
    this.endedAt = this.res.now();
    this.endReason = reason;
    this.endedBy = by;
    this.timers.clear();
    // The call is over for the key's concurrency limit now, not when its settlement lands
    // (that waits for the media worker's figures): a caller redialling at once is admitted.
    void this.res.freeSlot(this.grant).catch((err: unknown) => this.res.log.warn({ err, callId: this.id }, 'could not free the call\'s concurrency slot at its end; its settlement will'));
    try {
      this.leg?.hangup(reason);
    } catch (err) {
      this.res.log.error({ err, callId: this.id }, 'could not hang up the call\'s leg');
    }
    this.res.agents.ended(this.id, reason);
    for (const fn of this.endHooks.splice(0)) {
      try {
        fn(this);
      } catch (err) {
        this.res.log.error({ err, callId: this.id }, 'a call end hook failed');
      }
    }
    void this.release().finally(() => this.resolveFinished());
  }

  /** Billable seconds: from the answer to the end, never past the grant. */
  billableSeconds(): number {
    if (this.answeredAt === null) return 0;
    return Math.min(this.grant.maxDurationSec, Math.max(0, ((this.endedAt ?? this.res.now()) - this.answeredAt) / 1000));
  }

  private async release(): Promise<void> {
    const reason = this.endReason!;
    const by = this.endedBy!;
    const billable = this.billableSeconds();
    const answered = this.answeredAt !== null;
    // A session still being opened is closed once it is (the worker handles them in order);
    // its figures go into the record, so settlement waits for them (a worker answers in ms).
    const stats = this.mediaOpening ? await this.mediaOpening.then(() => this.res.media.close(this.id)).catch(() => null) : null;
    if (stats) {
      this.details.media = { packetsIn: stats.packetsIn, packetsOut: stats.packetsOut, lost: stats.lost, late: stats.late, authFailures: stats.authFailures, rejectedSource: stats.rejectedSource };
      this.res.log.info({ callId: this.id, reason, media: stats }, 'call media closed');
    }
    // The price the ledger settles at: rate, increments, connection fee, never past the grant.
    this.details.cost = answered ? settlementOf(this.grant, billable).cost : 0;
    this.details.progress = 'ended';
    this.details.rate = { prefix: this.grant.rate.prefix, perMinute: this.grant.rate.ratePerMinute, increment: `${this.grant.rate.increment.first}/${this.grant.rate.increment.next}` };
    const patch: CallPatch = {
      status: answered ? 'ended' : 'failed',
      endedAt: toIso(this.endedAt!),
      endReason: reason,
      endedBy: by,
      billableSeconds: Math.round(billable * 1000) / 1000,
      details: { ...this.details },
    };
    this.res.notify('call.ended', this.keyId, { callId: this.id, direction: this.direction, from: this.from, to: this.to, ...patch, details: undefined });
    this.res.log.info({ callId: this.id, keyId: this.keyId, direction: this.direction, reason, by, seconds: Math.round(billable * 10) / 10 }, 'call ended');
    try {
      if (answered) {
        await this.res.complete(this.grant, billable, this.recordWritten ? { id: this.id, patch } : null);
        return;
      }
      await this.res.release(this.grant);
    } catch (err) {
      this.res.log.error({ err, callId: this.id }, 'could not settle the call');
    }
    if (this.recordWritten) await this.res.records.update(this.id, patch);
  }
}
