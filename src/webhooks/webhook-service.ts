import type { Logger } from 'pino';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.js';
import { signingSecretFor } from '../keys/key-identity.js';
import { tollgateSignature } from '../keys/request-signature.js';
import { TollgateError } from '../errors/index.js';
import { newId } from '../keys/key-format.js';
import type { Store, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint } from '../store/store.js';
import { parseInput } from '../util/parse-input.js';
import { systemClock, toIso, type Clock } from '../util/time.js';
import { backoffMs } from '../util/backoff.js';
import { buildEvent, isWebhookEventType, WEBHOOK_EVENT_TYPES, type WebhookEventType } from './webhook-events.js';
import { guardedSender, type WebhookOutcome, type WebhookSender } from './webhook-sender.js';
import { EgressGuard, type EgressTrust } from '../net/index.js';
import { checkWebhookUrl, urlForAudit, urlForLog } from './webhook-url.js';

/** config.webhooks, plus what the service needs from the rest of the config. */
export interface WebhookServiceOptions {
  /** Attempts before a delivery is settled as failed (config default 8). */
  readonly maxAttempts: number;
  /** Delay after the first failed attempt; doubles with each (config default 1000 ms). */
  readonly initialBackoffMs: number;
  /** Ceiling of the delay before jitter (config default 600 000 ms). */
  readonly maxBackoffMs: number;
  /** Bound on one attempt, connect to response headers (config default 5000 ms). */
  readonly timeoutMs: number;
  /** Attempts in flight at once on this node (config default 8). */
  readonly concurrency: number;
  /** Accept http:// endpoints (tests and labs; config default false). */
  readonly allowHttp: boolean;
  /** Derives each key's signing secret (signingSecretFor). */
  readonly masterKey: Buffer;
  /** How often the loop looks for due deliveries written elsewhere: other nodes, the CLI, a previous run. Default 1000 ms. */
  readonly pollIntervalMs?: number | undefined;
}

export interface WebhookServiceDeps {
  readonly clock?: Clock;
  /** [0, 1) for the backoff jitter. */
  readonly random?: () => number;
  /** The egress guard endpoints are checked with at registration and sent through (default: one with an empty egress.allow). */
  readonly egress?: EgressGuard;
  /** Default: POST through `egress` (guardedSender). */
  readonly send?: WebhookSender;
}

/**
 * Whose URL an endpoint's is (docs/security.md, "Server-side requests"). Account-wide endpoints
 * can only be added with keys:admin: the operator's own receivers, which may be private. A
 * key's endpoints are untrusted even when an admin added them: the key reads their delivery
 * log, so a private destination there would tell the key how the gateway's network answers.
 */
export const endpointTrust = (e: { readonly keyId: string | null }): EgressTrust => (e.keyId === null ? 'operator' : 'untrusted');

/** Endpoints per key, and account-wide: bounds the fan-out of one event. */
export const MAX_ENDPOINTS_PER_OWNER = 16;
/** Whose signing secret signs account-wide endpoints' deliveries (never a key id: those start key_). */
export const ACCOUNT_SIGNER = 'account';
/** Extra time a claimed delivery stays leased beyond the attempt's own timeout. */
const LEASE_MARGIN_MS = 10_000;

export const webhookEndpointInputSchema = z.strictObject({
  url: z.string().min(1).max(2048),
  events: z.array(z.enum([...WEBHOOK_EVENT_TYPES, '*'])).min(1).max(WEBHOOK_EVENT_TYPES.length + 1),
  /** The owning key; null = account-wide (keys:admin). The REST route fills in the caller's key when absent. */
  keyId: z.string().min(1).max(64).nullable(),
});
export type WebhookEndpointInput = z.input<typeof webhookEndpointInputSchema>;

export interface DeliveryListOptions {
  keyId?: string | null | undefined;
  endpointId?: string | undefined;
  status?: WebhookDeliveryStatus | undefined;
  limit: number;
  before?: string | undefined;
  beforeId?: string | undefined;
}

/**
 * Signed webhooks with a durable queue. emit() writes one delivery row per subscribed endpoint
 * before it returns; the delivery loop (start/stop) claims due rows under a lease
 * (Store.claimDueDeliveries, so two nodes never send the same delivery at once), POSTs the
 * exact stored payload with a fresh Tollgate-Signature, and records the outcome: 2xx =
 * delivered; anything else is retried with exponential backoff and jitter until maxAttempts,
 * then failed. Rows written while no loop ran (by the CLI, or before a restart) are picked up
 * by the next poll. Delivery is at least once: receivers deduplicate on the event id.
 */
export class WebhookService {
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly send: WebhookSender;
  private readonly egress: EgressGuard;
  private readonly pollIntervalMs: number;
  private running = false;
  private stopped: Promise<void> | null = null;
  private poll: NodeJS.Timeout | null = null;
  private wake: { at: number; timer: NodeJS.Timeout } | null = null;
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;
  /** Attempts in flight, by delivery id. */
  private readonly inFlight = new Map<string, AbortController>();
  /** Every attempt and fire-and-forget emit still running: stop() waits for them. */
  private readonly tasks = new Set<Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly opts: WebhookServiceOptions,
    private readonly log: Logger,
    deps: WebhookServiceDeps = {},
  ) {
    this.clock = deps.clock ?? systemClock;
    this.random = deps.random ?? Math.random;
    this.egress = deps.egress ?? new EgressGuard({ allow: [] });
    this.send = deps.send ?? guardedSender(this.egress);
    this.pollIntervalMs = opts.pollIntervalMs ?? 1000;
  }

  // ── events ──────────────────────────────────────────────────────────────────────────────

  /**
   * Records `type` about `keyId` (null: an account event) for every enabled endpoint of that
   * key and every account-wide endpoint subscribed to it. Resolves once the deliveries are
   * stored (they survive a crash from then on); sending happens in the loop. Rejects with
   * StoreError when the store fails.
   */
  async emit(type: WebhookEventType, keyId: string | null, data: Record<string, unknown>): Promise<void> {
    if (!isWebhookEventType(type)) throw new TollgateError('VALIDATION_FAILED', `unknown webhook event type ${String(type)}`);
    const endpoints = await this.store.endpointsFor(keyId, type);
    if (endpoints.length === 0) return;
    const now = toIso(this.clock());
    const event = buildEvent(type, keyId, data, now);
    const payload = JSON.stringify(event);
    for (const e of endpoints) {
      await this.store.insertDelivery({
        id: newId('whd'), endpointId: e.id, keyId: e.keyId, eventId: event.id, eventType: type, payload, status: 'pending', attempts: 0,
        nextAttemptAt: now, lastStatus: null, lastError: null, createdAt: now, updatedAt: now, deliveredAt: null,
      });
    }
    this.log.debug({ eventId: event.id, eventType: type, keyId, endpoints: endpoints.length }, 'webhook event queued');
    this.kick();
  }

  /** emit() for code that must not wait or fail (the call path): a store fault is logged, not thrown. */
  notify(type: WebhookEventType, keyId: string | null, data: Record<string, unknown>): void {
    this.track(this.emit(type, keyId, data).catch((err: unknown) => this.log.warn({ err, eventType: type, keyId }, 'could not queue webhook event')));
  }

  // ── endpoints and the delivery log ──────────────────────────────────────────────────────

  /**
   * Adds an endpoint. Ownership (who may act for `keyId`) is the caller's check. A URL whose
   * destination the egress guard refuses for the endpoint's trust (a literal address, or a name
   * resolving there now) is refused with EGRESS_REFUSED; a name that does not resolve yet is
   * accepted, and every delivery is checked again.
   */
  async addEndpoint(input: WebhookEndpointInput, actor: string): Promise<WebhookEndpoint> {
    const p = parseInput(webhookEndpointInputSchema, input);
    const url = checkWebhookUrl(p.url, { allowHttp: this.opts.allowHttp });
    if (!url.ok) throw new TollgateError('VALIDATION_FAILED', `url: ${url.reason}`, { details: { field: 'url' } });
    const egress = await this.egress.check(url.url, endpointTrust(p), { schemes: ['http:', 'https:'] });
    if (!egress.ok && egress.refusal !== 'unresolvable') {
      throw new TollgateError('EGRESS_REFUSED', 'url: destination not allowed (docs/security.md, "Server-side requests")', { details: { field: 'url' } });
    }
    if (p.keyId !== null) {
      const key = await this.store.getKey(p.keyId);
      if (!key) throw new TollgateError('VALIDATION_FAILED', `keyId: no key with id ${p.keyId}`, { details: { field: 'keyId' } });
      if (key.status === 'revoked') throw new TollgateError('CONFLICT', `key ${p.keyId} is revoked`);
    }
    const existing = await this.store.listWebhookEndpoints({ keyId: p.keyId, limit: MAX_ENDPOINTS_PER_OWNER });
    if (existing.length >= MAX_ENDPOINTS_PER_OWNER) {
      throw new TollgateError('CONFLICT', `${p.keyId ? `key ${p.keyId}` : 'the account'} already has ${MAX_ENDPOINTS_PER_OWNER} webhook endpoints`);
    }
    const now = toIso(this.clock());
    const endpoint: WebhookEndpoint = { id: newId('wh'), keyId: p.keyId, url: p.url, events: [...new Set(p.events)], enabled: true, createdAt: now, updatedAt: now };
    await this.store.insertWebhookEndpoint(endpoint);
    await this.audit.append({ actor, action: 'webhook.added', target: p.keyId, details: { endpointId: endpoint.id, url: urlForAudit(endpoint.url), events: endpoint.events } });
    this.log.info({ endpointId: endpoint.id, keyId: p.keyId, target: urlForLog(endpoint.url), actor }, 'webhook endpoint added');
    return endpoint;
  }

  listEndpoints(opts: { keyId?: string | null | undefined; limit: number; after?: string | undefined }): Promise<WebhookEndpoint[]> {
    return this.store.listWebhookEndpoints(opts);
  }

  getEndpoint(id: string): Promise<WebhookEndpoint | null> {
    return this.store.getWebhookEndpoint(id);
  }

  /** Removes an endpoint; its pending deliveries are settled as failed ('endpoint removed'). */
  async removeEndpoint(id: string, actor: string): Promise<void> {
    const e = await this.store.getWebhookEndpoint(id);
    if (!e || !(await this.store.deleteWebhookEndpoint(id))) throw new TollgateError('NOT_FOUND', `no webhook endpoint ${id}`);
    await this.audit.append({ actor, action: 'webhook.removed', target: e.keyId, details: { endpointId: id, url: urlForAudit(e.url) } });
    this.log.info({ endpointId: id, keyId: e.keyId, actor }, 'webhook endpoint removed');
  }

  listDeliveries(opts: DeliveryListOptions): Promise<WebhookDelivery[]> {
    return this.store.listDeliveries(opts);
  }

  getDelivery(id: string): Promise<WebhookDelivery | null> {
    return this.store.getDelivery(id);
  }

  /**
   * Queues a failed (or already delivered) delivery for one more attempt now, with the same
   * event id and body. Its attempts keep counting: once past maxAttempts, a failed manual
   * attempt settles it as failed again at once. CONFLICT while it is still pending.
   */
  async retry(id: string, actor: string): Promise<WebhookDelivery> {
    const d = await this.store.getDelivery(id);
    if (!d) throw new TollgateError('NOT_FOUND', `no webhook delivery ${id}`);
    if (d.status === 'pending') throw new TollgateError('CONFLICT', `delivery ${id} is already pending`);
    const now = toIso(this.clock());
    const queued = await this.store.updateDelivery(id, { status: 'pending', nextAttemptAt: now, updatedAt: now });
    if (!queued) throw new TollgateError('NOT_FOUND', `no webhook delivery ${id}`);
    await this.audit.append({ actor, action: 'webhook.retried', target: d.keyId, details: { deliveryId: id, eventId: d.eventId, endpointId: d.endpointId, previousStatus: d.status } });
    this.kick();
    return queued;
  }

  /** The secret deliveries to `keyId`'s endpoints (null: account-wide endpoints) are signed with. */
  signingSecret(keyId: string | null): string {
    return signingSecretFor(this.opts.masterKey, keyId ?? ACCOUNT_SIGNER);
  }

  // ── the delivery loop ───────────────────────────────────────────────────────────────────

  /** Starts the loop: polls every pollIntervalMs and right after each emit. Timers are unref'd. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.poll = setInterval(() => this.kick(), this.pollIntervalMs);
    this.poll.unref();
    this.kick();
  }

  /**
   * Stops the loop (idempotent): clears its timers, aborts attempts in flight and puts them back
   * in the queue uncounted (they are due at once for the next run or another node), and waits
   * for queued emits to reach the store. A stopped service does not start again; emit() still
   * queues (a later run or another node sends).
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.running = false;
      if (this.poll) clearInterval(this.poll);
      if (this.wake) clearTimeout(this.wake.timer);
      this.poll = null;
      this.wake = null;
      for (const ctl of this.inFlight.values()) ctl.abort();
      await this.pumping;
      while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    })();
    return this.stopped;
  }

  /**
   * Sends every delivery due now and waits for the outcomes (tests, and `tollgate webhooks`
   * one-shot commands). Returns the number of attempts made.
   */
  async deliverNow(): Promise<number> {
    let attempts = 0;
    for (;;) {
      const batch = await this.claim(this.opts.concurrency);
      if (batch.length === 0) return attempts;
      await Promise.all(batch.map((d) => this.attempt(d)));
      attempts += batch.length;
    }
  }

  private kick(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = null;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.kick();
      }
    });
  }

  /** Claims as many due deliveries as there are free slots and starts them. */
  private async pump(): Promise<void> {
    while (this.running) {
      const free = this.opts.concurrency - this.inFlight.size;
      if (free <= 0) return;
      let batch: WebhookDelivery[];
      try {
        batch = await this.claim(free);
      } catch (err) {
        this.log.warn({ err }, 'could not claim webhook deliveries');
        return;
      }
      for (const d of batch) this.track(this.attempt(d).finally(() => this.kick()));
      if (batch.length < free) return;
    }
  }

  private claim(limit: number): Promise<WebhookDelivery[]> {
    const now = this.clock();
    return this.store.claimDueDeliveries(toIso(now), limit, toIso(now + this.opts.timeoutMs + LEASE_MARGIN_MS));
  }

  private track(p: Promise<unknown>): void {
    this.tasks.add(p);
    void p.finally(() => this.tasks.delete(p));
  }

  /**
   * Wakes the loop at `at` (a retry's due time) when that is sooner than the next poll would.
   * A timer may fire up to a millisecond before the clock reads `at` (timers run on the monotonic
   * clock, Date.now on the wall clock, each rounded to the millisecond); the claim would then find
   * nothing due and the retry would wait for the next poll, so an early wake sleeps again.
   */
  private scheduleWake(at: number): void {
    if (!this.running || (this.wake && this.wake.at <= at)) return;
    if (this.wake) clearTimeout(this.wake.timer);
    const timer = setTimeout(() => {
      this.wake = null;
      if (this.clock() < at) this.scheduleWake(at);
      else this.kick();
    }, Math.max(1, at - this.clock()));
    timer.unref();
    this.wake = { at, timer };
  }

  /** One attempt of a claimed delivery. Never throws: a store fault leaves the lease to expire, and the delivery is tried again. */
  private async attempt(d: WebhookDelivery): Promise<void> {
    const ctl = new AbortController();
    this.inFlight.set(d.id, ctl);
    const ctx = { deliveryId: d.id, endpointId: d.endpointId, eventId: d.eventId, eventType: d.eventType, keyId: d.keyId };
    try {
      const endpoint = await this.store.getWebhookEndpoint(d.endpointId);
      const refusal = !endpoint
        ? 'endpoint removed'
        : !endpoint.enabled
          ? 'endpoint disabled'
          : ((c) => (c.ok ? null : `url ${c.reason}`))(checkWebhookUrl(endpoint.url, { allowHttp: this.opts.allowHttp }));
      if (!endpoint || refusal) {
        const now = toIso(this.clock());
        await this.store.updateDelivery(d.id, { status: 'failed', nextAttemptAt: null, lastStatus: null, lastError: refusal, updatedAt: now });
        this.log.warn({ ...ctx, error: refusal }, 'webhook delivery dropped');
        return;
      }
      const secret = signingSecretFor(this.opts.masterKey, d.keyId ?? ACCOUNT_SIGNER);
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'tollgate',
        'tollgate-signature': tollgateSignature(secret, d.payload, Math.floor(this.clock() / 1000)),
        'tollgate-event': d.eventType,
        'tollgate-delivery': d.id,
      };
      const started = this.clock();
      const outcome = await this.send({ url: endpoint.url, trust: endpointTrust(endpoint), headers, body: d.payload, timeoutMs: this.opts.timeoutMs, signal: ctl.signal });
      if (!outcome.ok && (outcome.aborted || ctl.signal.aborted)) {
        // Stopping: hand it back uncounted, due at once.
        await this.store.updateDelivery(d.id, { nextAttemptAt: toIso(this.clock()) });
        return;
      }
      await this.record(d, outcome, { ...ctx, target: urlForLog(endpoint.url), ms: this.clock() - started });
    } catch (err) {
      this.log.warn({ ...ctx, err }, 'webhook attempt could not be recorded; it will be retried when its lease ends');
    } finally {
      this.inFlight.delete(d.id);
    }
  }

  private async record(d: WebhookDelivery, outcome: WebhookOutcome, ctx: Record<string, unknown>): Promise<void> {
    const attempts = d.attempts + 1;
    const nowMs = this.clock();
    const now = toIso(nowMs);
    if (outcome.ok) {
      await this.store.updateDelivery(d.id, { status: 'delivered', attempts, nextAttemptAt: null, lastStatus: outcome.status, lastError: null, deliveredAt: now, updatedAt: now });
      this.log.info({ ...ctx, attempt: attempts, status: outcome.status }, 'webhook delivered');
      return;
    }
    // A refused destination stays refused: no retries towards it.
    if (attempts >= this.opts.maxAttempts || outcome.refused) {
      await this.store.updateDelivery(d.id, { status: 'failed', attempts, nextAttemptAt: null, lastStatus: outcome.status, lastError: outcome.error, updatedAt: now });
      this.log.warn({ ...ctx, attempt: attempts, status: outcome.status, error: outcome.error }, outcome.refused ? 'webhook delivery failed; destination not allowed' : 'webhook delivery failed; no attempts left');
      return;
    }
    const next = nowMs + backoffMs(attempts, this.opts, this.random);
    await this.store.updateDelivery(d.id, { status: 'pending', attempts, nextAttemptAt: toIso(next), lastStatus: outcome.status, lastError: outcome.error, updatedAt: now });
    this.log.info({ ...ctx, attempt: attempts, status: outcome.status, error: outcome.error, nextAttemptAt: toIso(next) }, 'webhook attempt failed; will retry');
    this.scheduleWake(next);
  }
}
