import { randomUUID } from 'node:crypto';
import { parsePhoneNumberFromString } from 'libphonenumber-js';
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.js';
import type { RecordCompletion, Settlement, SettleStatus } from '../billing/index.js';
import type { KeyMode } from '../store/key-record.js';
import type { Scope } from '../store/scopes.js';
import type { Store } from '../store/store.js';
import { systemClock, toIso, type Clock } from '../util/time.js';
import type { Counters } from './counters.js';
import { actorOf, type Principal } from './principal.js';
import { sourceAllowed } from './source-address.js';
import { periodBounds } from './budget-period.js';
import { billedSeconds, costOf as rateCost, flatRate, reserveFor, type RateTable, type Rate } from './rate-table.js';

export type PolicyAction = 'api' | 'call.inbound' | 'call.outbound';
export type Transport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss' | 'http' | 'https';

export interface AuthorizeRequest {
  readonly principal: Principal;
  readonly action: PolicyAction;
  /** The scope needed; null for self-service actions a key may always take on itself. */
  readonly scope: Scope | null;
  /** Where the request came from; null for the local operator (the CLI on the gateway host). */
  readonly sourceIp: string | null;
  readonly transport?: Transport;
  /**
   * The environment the request reaches: a live carrier trunk or the test sink. A call's
   * environment is always its key's mode: a caller that names one may only repeat it
   * (MODE_MISMATCH otherwise); absent, the key's mode is the grant's.
   */
  readonly targetMode?: KeyMode;
  /** E.164 number dialled (outbound calls). */
  readonly destination?: string;
  /** E.164 number presented as caller ID (outbound calls). */
  readonly callerId?: string;
  readonly callId?: string;
  readonly requestedMaxDurationSec?: number;
  // There is deliberately no price here: a call is priced by the gateway's rate table (or
  // policy.defaultRatePerMinute), never by whoever asks for the call.
}

export type DenyCode =
  | 'KEY_REVOKED'
  | 'KEY_EXPIRED'
  | 'KEY_QUARANTINED'
  | 'SCOPE_NOT_GRANTED'
  | 'SOURCE_IP_NOT_ALLOWED'
  | 'TLS_REQUIRED'
  | 'MODE_MISMATCH'
  | 'DESTINATION_INVALID'
  | 'DESTINATION_NOT_ALLOWED'
  | 'DESTINATION_BLOCKED'
  | 'CALLER_ID_NOT_OWNED'
  | 'DURATION_INVALID'
  | 'RATE_LIMITED'
  | 'CONCURRENCY_LIMITED'
  | 'BUDGET_EXHAUSTED';

/** What a call may use once admitted; pass it back to renew() while it runs and complete() at the end. */
/** A call the budget cannot cover for this long is refused rather than admitted for seconds. */
export const MIN_BUDGET_SECONDS = 10;

/**
 * What a call of `billableSeconds` is billed: seconds rounded up by the rate's increments and
 * their cost with the connection fee. A call cut at its limit may measure a few ms over: it is
 * never billed past the granted duration.
 */
export function settlementOf(grant: Pick<CallGrant, 'rate' | 'maxDurationSec'>, billableSeconds: number): { seconds: number; cost: number } {
  const real = Math.min(Math.max(0, billableSeconds), grant.maxDurationSec);
  return { seconds: billedSeconds(grant.rate, real), cost: rateCost(grant.rate, real) };
}

/** The longest call (≤ max) whose reservation fits in `remaining` (reserveFor only grows with time). */
function affordableSeconds(rate: Rate, remaining: number, max: number): number {
  let lo = 0;
  let hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (reserveFor(rate, mid) <= remaining) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export interface CallGrant {
  readonly callId: string;
  readonly keyId: string;
  readonly direction: 'inbound' | 'outbound';
  readonly maxDurationSec: number;
  /** What ends the call at maxDurationSec: the key's maximum duration, or the budget running out. */
  readonly limitedBy: 'max-duration' | 'budget';
  readonly ratePerMinute: number;
  /** The price the call is reserved and settled at (increments, connection fee), from the rate table. */
  readonly rate: Rate;
  /** The environment the call may reach: always the key's mode (a test key's grant is a test grant). */
  readonly mode: KeyMode;
  readonly leasePool: string;
  readonly budget: { readonly account: string; readonly reservationId: string; readonly reserved: number } | null;
}

export type Verdict =
  | { readonly ok: true; readonly grant: CallGrant | null }
  | { readonly ok: false; readonly code: DenyCode; readonly message: string; readonly retryAfterMs?: number };

/** Where complete() hands a finished call's settlement: the billing layer's SettlementLedger. */
export interface SettlementSink {
  submit(s: Settlement): Promise<SettleStatus>;
}

export interface PolicyEngineOptions {
  leaseTtlSec: number;
  defaultRatePerMinute: number;
  blockedPrefixes: readonly string[];
  /** Prices by destination prefix (docs/rates.md); without one every call costs defaultRatePerMinute. */
  rates?: RateTable | null;
}

const TLS_TRANSPORTS: ReadonlySet<Transport> = new Set(['tls', 'wss', 'https']);

/**
 * The one place that decides whether a key (or token) may do something. Returns data, never
 * throws for a refusal (STYLE.md §3); only store/counter faults throw. Checks run cheapest
 * first; counters are touched only when every static check passed, and a concurrency slot
 * taken is given back when the budget check then refuses. Every refusal is audited.
 */
export class PolicyEngine {
  constructor(
    private readonly counters: Counters,
    private readonly store: Store,
    private readonly ledger: SettlementSink,
    private readonly audit: AuditLog,
    private readonly opts: PolicyEngineOptions,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
    private readonly onDecision: (action: PolicyAction, verdict: string) => void = () => {},
  ) {}

  async authorize(req: AuthorizeRequest): Promise<Verdict> {
    const v = await this.decide(req);
    this.onDecision(req.action, v.ok ? 'ok' : v.code);
    if (!v.ok) {
      await this.audit.append({
        actor: actorOf(req.principal),
        action: 'policy.denied',
        target: req.principal.key.id,
        details: {
          action: req.action,
          code: v.code,
          sourceIp: req.sourceIp,
          ...(req.destination ? { destination: req.destination } : {}),
          ...(req.callId ? { callId: req.callId } : {}),
        },
      });
    }
    return v;
  }

  private deny(code: DenyCode, message: string, retryAfterMs?: number): Verdict {
    return retryAfterMs === undefined ? { ok: false, code, message } : { ok: false, code, message, retryAfterMs };
  }

  /**
   * Whether a call or stream admitted earlier may go on under the key as it is now: the same
   * checks as authorize() that do not touch counters (status, expiry, scope, source address,
   * TLS, mode, and for outbound calls the destination rules). Used when a key changes while its
   * calls run (revocation, quarantine, a policy update).
   */
  recheck(req: AuthorizeRequest): Verdict {
    return this.staticDeny(req, this.clock()) ?? { ok: true, grant: null };
  }

  /** The checks that need no counters, cheapest first; null when all pass. */
  private staticDeny(req: AuthorizeRequest, now: number): Verdict | null {
    const { key, scopes, token } = req.principal;
    if (key.status === 'revoked') return this.deny('KEY_REVOKED', 'the key has been revoked');
    if (key.status === 'quarantined') return this.deny('KEY_QUARANTINED', 'the key is quarantined until it is rotated');
    if (key.status === 'expired' || (key.expiresAt && Date.parse(key.expiresAt) <= now)) return this.deny('KEY_EXPIRED', 'the key has expired');
    if (req.scope !== null && !scopes.has(req.scope)) return this.deny('SCOPE_NOT_GRANTED', `this needs the scope ${req.scope}`);
    if (req.sourceIp !== null && !sourceAllowed(key, req.sourceIp)) return this.deny('SOURCE_IP_NOT_ALLOWED', 'the source address is not in the key\'s allowlist');
    if (key.requireTls && req.transport && !TLS_TRANSPORTS.has(req.transport)) return this.deny('TLS_REQUIRED', 'this key must be used over TLS');
    if (req.targetMode && req.targetMode !== key.mode) {
      return this.deny('MODE_MISMATCH', key.mode === 'test' ? 'a test key cannot reach live destinations' : 'a live key cannot use the test environment');
    }
    if (token?.callId && req.callId && token.callId !== req.callId) return this.deny('SCOPE_NOT_GRANTED', 'the token is bound to another call');
    if (req.action === 'call.outbound') {
      const dest = req.destination ?? '';
      const phone = /^\+[1-9][0-9]{1,14}$/.test(dest) ? parsePhoneNumberFromString(dest) : undefined;
      if (!phone?.isValid()) return this.deny('DESTINATION_INVALID', 'the destination is not a valid E.164 number');
      const e164 = phone.number;
      const blocked = [...this.opts.blockedPrefixes, ...key.blockedPrefixes].find((p) => e164.startsWith(p));
      if (blocked) return this.deny('DESTINATION_BLOCKED', `destinations starting ${blocked} are blocked`);
      if (!phone.country || !key.allowedCountries.includes(phone.country)) {
        return this.deny('DESTINATION_NOT_ALLOWED', `calls to ${phone.country ?? 'this destination'} are not allowed for this key`);
      }
      if (token?.destination && token.destination !== e164) return this.deny('DESTINATION_NOT_ALLOWED', 'the token is bound to another destination');
      if (req.callerId !== undefined && !key.callerIds.includes(req.callerId)) {
        return this.deny('CALLER_ID_NOT_OWNED', 'the caller ID is not a number this key owns');
      }
    }
    return null;
  }

  private async decide(req: AuthorizeRequest): Promise<Verdict> {
    const { key } = req.principal;
    const now = this.clock();
    const denied = this.staticDeny(req, now);
    if (denied) return denied;
    if (req.action === 'api') return { ok: true, grant: null };

    const requested = req.requestedMaxDurationSec;
    if (requested !== undefined && (!Number.isInteger(requested) || requested < 1)) {
      return this.deny('DURATION_INVALID', 'the maximum duration must be a whole number of seconds, at least 1');
    }
    const maxDurationSec = Math.min(key.maxCallDurationSec, requested ?? key.maxCallDurationSec);

    const cps = await this.counters.rateLimit(`cps:${key.id}`, key.callsPerSecond, key.cpsBurst);
    if (!cps.allowed) return this.deny('RATE_LIMITED', `more than ${key.callsPerSecond} calls per second`, cps.retryAfterMs);

    const callId = req.callId ?? randomUUID();
    const leasePool = `calls:${key.id}`;
    const leaseTtlMs = this.opts.leaseTtlSec * 1000;
    const lease = await this.counters.acquireLease(leasePool, callId, key.maxConcurrentCalls, leaseTtlMs);
    if (!lease.acquired) {
      return this.deny('CONCURRENCY_LIMITED', `already ${lease.active} of ${key.maxConcurrentCalls} concurrent calls`, 1000);
    }

    const direction = req.action === 'call.inbound' ? 'inbound' : 'outbound';
    let rate: Rate;
    if (this.opts.rates) {
      const priced = req.destination ? this.opts.rates.lookup(req.destination, direction) : null;
      if (!priced && direction === 'outbound') {
        await this.counters.releaseLease(leasePool, callId);
        return this.deny('DESTINATION_NOT_ALLOWED', 'the rate table has no price for this destination');
      }
      rate = priced ?? flatRate(this.opts.defaultRatePerMinute, direction);
    } else rate = flatRate(this.opts.defaultRatePerMinute, direction);
    let budget: CallGrant['budget'] = null;
    let grantedSec = maxDurationSec;
    let limitedBy: CallGrant['limitedBy'] = 'max-duration';
    if (key.budget) {
      const period = periodBounds(key.budget.period, now);
      const account = `budget:${key.id}:${period.id}`;
      // The reservation lives as long as the call may, plus a lease period of slack.
      const reserve = async (seconds: number, seed?: number) =>
        this.counters.reserveBudget(account, callId, reserveFor(rate, seconds), key.budget!.amount, seconds * 1000 + leaseTtlMs, seed);
      let r = await reserve(grantedSec);
      let seedUsed: number | undefined;
      if (r.kind === 'needs_seed') {
        seedUsed = (await this.store.sumUsage(key.id, period.from, period.to)).amount;
        r = await reserve(grantedSec, seedUsed);
      }
      if (r.kind === 'insufficient') {
        // Not enough for the whole maximum duration: admit the call for what the budget still
        // covers (at least MIN_BUDGET_SECONDS); it is hung up when that runs out.
        const remaining = Math.max(0, key.budget.amount - r.spent - r.reserved);
        const affordable = affordableSeconds(rate, remaining, grantedSec);
        if (affordable >= MIN_BUDGET_SECONDS && affordable < grantedSec) {
          grantedSec = affordable;
          limitedBy = 'budget';
          r = await reserve(grantedSec, seedUsed);
        }
      }
      if (r.kind !== 'reserved') {
        await this.counters.releaseLease(leasePool, callId);
        const remaining = r.kind === 'insufficient' ? Math.max(0, key.budget.amount - r.spent - r.reserved) : 0;
        return this.deny('BUDGET_EXHAUSTED', `the remaining budget (${remaining}) cannot cover ${MIN_BUDGET_SECONDS} s at ${rate.ratePerMinute}/min`);
      }
      budget = { account, reservationId: callId, reserved: reserveFor(rate, grantedSec) };
    }

    return {
      ok: true,
      grant: { callId, keyId: key.id, direction, maxDurationSec: grantedSec, limitedBy, ratePerMinute: rate.ratePerMinute, rate, mode: key.mode, leasePool, budget },
    };
  }

  /** Keeps a running call's lease (and reservation) alive; call well within leaseTtlSec. */
  async renew(grant: CallGrant): Promise<boolean> {
    const ttl = this.opts.leaseTtlSec * 1000;
    const ok = await this.counters.renewLease(grant.leasePool, grant.callId, ttl);
    if (grant.budget) await this.counters.renewReservation(grant.budget.account, grant.budget.reservationId, grant.maxDurationSec * 1000 + ttl);
    return ok;
  }

  /**
   * Frees a call's concurrency slot the moment it ends, ahead of its settlement (which frees it
   * again, idempotently, and settles the budget at the real cost).
   */
  async freeSlot(grant: CallGrant): Promise<void> {
    await this.counters.releaseLease(grant.leasePool, grant.callId);
  }

  /**
   * Gives a grant back unused (the call never started): frees the slot and drops the
   * reservation; writes no usage. Counters only: both steps are idempotent.
   */
  async release(grant: CallGrant): Promise<void> {
    try {
      if (grant.budget) await this.counters.settleBudget(grant.budget.account, grant.budget.reservationId, 0);
    } finally {
      await this.counters.releaseLease(grant.leasePool, grant.callId);
    }
  }

  /**
   * Ends an answered call: works out what it is billed (settlementOf) and hands the settlement
   * to the ledger, which settles the budget at that cost, frees the concurrency slot, writes the
   * usage record (and `record`, the call record's completion) once, and keeps retrying through
   * a store outage or a restart. The caller completes each call once; the usage record's id,
   * derived from grant.callId, makes a repeat harmless. Resolves once the settlement is in the
   * store ('landed') or journaled for retries ('pending'); never rejects for a store fault.
   */
  async complete(grant: CallGrant, billableSeconds: number, record?: RecordCompletion): Promise<{ cost: number; seconds: number; status: SettleStatus }> {
    const { seconds, cost } = settlementOf(grant, billableSeconds);
    const status = await this.ledger.submit({
      callId: grant.callId,
      keyId: grant.keyId,
      direction: grant.direction,
      seconds,
      amount: cost,
      createdAt: toIso(this.clock()),
      budget: grant.budget ? { account: grant.budget.account, reservationId: grant.budget.reservationId } : null,
      leasePool: grant.leasePool,
      ...(record ? { record } : {}),
    });
    this.log.debug({ callId: grant.callId, keyId: grant.keyId, seconds, cost, status }, 'call settled');
    return { cost, seconds, status };
  }
}
