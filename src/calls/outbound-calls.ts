import { randomInt, randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Logger } from 'pino';
import type { Gateway } from '../main.js';
import { TollgateError } from '../errors/index.js';
import type { Principal } from '../policy/principal.js';
import { actorOf } from '../policy/principal.js';
import type { CallGrant } from '../policy/policy-engine.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { Codec, MediaApp, MediaSpec } from '../media/media-protocol.js';
import type { OutboundEnd, OutboundLeg, SipUac } from '../sip/sip-uac.js';
import { buildOffer, isAnswerError, parseAnswer, type LocalOffer } from '../sdp/index.js';
import type { AgentBridge, BridgeCall, ConnectResult } from '../agents/agent-bridge.js';
import { newCallSid } from '../agents/ids.js';
import { isE164 } from '../keys/key-input.js';
import { parseInput } from '../util/parse-input.js';
import { toIso } from '../util/time.js';
import type { AgentRoute, CallEndedBy } from '../store/store.js';
import { agentRouteSchema } from './number-service.js';
import { toSpec } from './media-call-handler.js';
import type { CallRecords } from './call-records.js';
import { CallTimers } from './call-timers.js';
import type { TrunkService } from './trunk-service.js';
import type { TestSink } from './test-sink.js';
import { attestationFor, canonicalTn, type Attestation, type StirSigning } from '../stir/index.js';

const callBaseSchema = z.strictObject({
  to: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  from: z.string().refine(isE164, 'must be a valid E.164 number such as +14155550100'),
  /** What talks to the callee: an agent the gateway dials (default), or echo/tone for line tests. */
  target: z.enum(['agent', 'echo', 'tone']).default('agent'),
  agent: agentRouteSchema.omit({ webhookUrl: true, fallback: true }).optional(),
  parameters: z.record(z.string().min(1).max(64), z.string().max(1024)).refine((p) => Object.keys(p).length <= 32, 'at most 32 parameters').default({}),
  maxDurationSec: z.number().int().min(1).max(86_400).optional(),
  /** How long to let it ring. */
  ringTimeoutSec: z.number().int().min(1).max(300).default(60),
  record: z.boolean().default(false),
});

export const callInputSchema = callBaseSchema.superRefine((c, ctx) => {
  if (c.target === 'agent' && !c.agent?.url) ctx.addIssue({ code: 'custom', path: ['agent', 'url'], message: 'is required for target agent (the ws:// or wss:// URL tollgate dials when the callee answers)' });
  if (c.target !== 'agent' && c.agent) ctx.addIssue({ code: 'custom', path: ['agent'], message: `is only for target agent, not ${c.target}` });
});
export type CallInput = z.input<typeof callInputSchema>;

/** The dial message of an agent's stream: the stream is the agent, so no target or agent URL. */
const streamDialSchema = callBaseSchema.omit({ target: true, agent: true });

/** Progress of a live outbound call, as GET /v1/calls/{id} shows it. */
export type CallProgress = 'trying' | 'ringing' | 'answered' | 'ended';

interface Live {
  readonly callSid: string;
  readonly keyId: string;
  readonly input: z.output<typeof callInputSchema>;
  readonly grant: CallGrant;
  readonly trunkId: string | null;
  leg: OutboundLeg | null;
  offer: LocalOffer | null;
  local: { address: string; port: number; sessionId: number } | null;
  progress: CallProgress;
  startedAt: number;
  answeredAt: number | null;
  /** Why we are ending it (set before the BYE/CANCEL goes out). */
  ending: { reason: string; by: CallEndedBy } | null;
  readonly timers: CallTimers;
  readonly details: Record<string, unknown>;
  done: boolean;
  /** The agent dialled from its stream: bound at the answer instead of dialled. */
  readonly stream: { adopt(call: BridgeCall): Promise<ConnectResult>; notAnswered(reason: string): void } | null;
}

/** SIP rejection → the CDR's end reason. */
function rejectionReason(status: number): string {
  if (status === 486 || status === 600) return 'busy';
  if (status === 480 || status === 408) return 'no-answer';
  if (status === 487) return 'cancelled';
  if (status === 603) return 'declined';
  return `failed-${status}`;
}

/**
 * Outbound calls (POST /v1/calls, the stream's dial message): policy first (scope, geofence,
 * blocked prefixes, caller-ID ownership, CPS, concurrency, budget reservation) — a refusal sends
 * nothing anywhere; then a trunk (test-mode keys: the built-in test sink), media, the INVITE
 * through the SIP UAC with the trunk's digest credentials, and on answer the agent. The call
 * ends at its maximum duration (with a warning to the agent first), by either side, or by API.
 */
export class OutboundCalls {
  private readonly live = new Map<string, Live>();
  /** Record completions in flight (awaited by flush before the store closes). */
  private readonly writes = new Set<Promise<unknown>>();
  /** STIR/SHAKEN signing (set once the HTTP address, the default x5u, is known); null: unsigned. */
  private stir: StirSigning | null = null;

  setStir(stir: StirSigning | null): void {
    this.stir = stir;
  }

  constructor(
    private readonly gw: Gateway,
    private readonly sip: { readonly uac: SipUac },
    private readonly media: MediaEngine,
    private readonly bridge: AgentBridge,
    private readonly records: CallRecords,
    private readonly trunks: TrunkService,
    private readonly sink: TestSink,
    private readonly opts: { codecs: readonly Codec[]; warningBeforeEndSec: number; maxQueueMs: number; leaseTtlSec: number; defaultAttestation: Attestation },
    private readonly log: Logger,
  ) {}

  get active(): number {
    return this.live.size;
  }

  progressOf(callSid: string): CallProgress | null {
    return this.live.get(callSid)?.progress ?? null;
  }

  /** Places a call; resolves once the INVITE is on its way (progress: trying). */
  async place(
    principal: Principal,
    raw: unknown,
    source: { ip: string | null; transport: 'http' | 'https' },
    stream?: { adopt(call: BridgeCall): Promise<ConnectResult>; notAnswered(reason: string): void },
  ): Promise<{ callSid: string; progress: CallProgress; maxDurationSec: number; trunk: string }> {
    // An agent that dials from its own stream needs no agent URL: the stream is the agent.
    const input: z.output<typeof callInputSchema> = stream
      ? { ...parseInput(streamDialSchema, raw), target: 'agent' }
      : parseInput(callInputSchema, raw);
    if (input.record) throw new TollgateError('RECORDING_UNAVAILABLE', 'recording is not available in this version: place the call with record false');
    const key = principal.key;
    const callSid = newCallSid();
    const ownedNumber = (await this.gw.numbers.lookup(input.from))?.keyId === key.id;
    const verdict = await this.gw.policy.authorize({
      principal,
      action: 'call.outbound',
      scope: 'calls:outbound',
      sourceIp: source.ip,
      transport: source.transport,
      targetMode: key.mode,
      destination: input.to,
      // A number of the key's in the number table is its own caller ID too.
      ...(ownedNumber ? {} : { callerId: input.from }),
      callId: callSid,
      ...(input.maxDurationSec !== undefined ? { requestedMaxDurationSec: input.maxDurationSec } : {}),
    });
    if (!verdict.ok) {
      await this.gw.audit.append({ actor: actorOf(principal), action: 'call.refused', target: key.id, details: { code: verdict.code, to: input.to, from: input.from } });
      this.log.info({ keyId: key.id, code: verdict.code, to: input.to }, 'outbound call refused');
      if (verdict.code === 'RATE_LIMITED' || verdict.code === 'CONCURRENCY_LIMITED' || verdict.code === 'BUDGET_EXHAUSTED') {
        this.gw.webhooks.notify('limit.exceeded', key.id, { limit: verdict.code, action: 'call.outbound', to: input.to, message: verdict.message });
      }
      throw new TollgateError(verdict.code, verdict.message, verdict.retryAfterMs !== undefined ? { details: { retryAfterMs: verdict.retryAfterMs } } : {});
    }
    const grant = verdict.grant!;
    // Test keys never reach a carrier: their calls go to the built-in test sink.
    const route = key.mode === 'test'
      ? { trunk: null, peer: { protocol: 'udp' as const, ...this.sink.address }, credentials: null }
      : await this.trunks.route(input.to);
    if (!route) {
      await this.gw.policy.release(grant);
      throw new TollgateError('NO_ROUTE', `no carrier trunk can take a call to ${input.to} now`);
    }
    const l: Live = {
      callSid, keyId: key.id, input, grant, trunkId: route.trunk?.id ?? null, leg: null, offer: null, local: null,
      progress: 'trying', startedAt: Date.now(), answeredAt: null, ending: null, timers: new CallTimers(), details: {}, done: false, stream: stream ?? null,
    };
    const recorded = await this.records.start({
      id: callSid, keyId: key.id, direction: 'outbound', from: input.from, to: input.to, target: input.target, sipCallId: null,
      status: 'ringing', startedAt: toIso(l.startedAt), answeredAt: null, endedAt: null, endReason: null, endedBy: null, billableSeconds: 0,
      details: { trunk: route.trunk?.id ?? 'test-sink', progress: 'trying' },
    });
    if (!recorded) {
      await this.gw.policy.release(grant);
      throw new TollgateError('STORE_UNAVAILABLE', 'call records are unavailable: the call was not placed');
    }
    this.live.set(callSid, l);
    try {
      const local = await this.media.open(callSid);
      l.local = { ...local, sessionId: randomInt(1, 2 ** 31) };
      const srtp = route.trunk ? route.trunk.srtp !== 'off' : false;
      l.offer = buildOffer({ address: local.address, port: local.port, sessionId: l.local.sessionId, sessionVersion: 1, username: 'tollgate' }, { codecs: route.trunk?.codecs ?? this.opts.codecs, srtp, telephoneEvent: true });
    } catch (err) {
      this.log.error({ err, callSid }, 'no media for an outbound call');
      this.finish(l, { reason: 'media-unavailable', by: 'gateway' }, 0);
      throw new TollgateError('NO_ROUTE', 'no media capacity for the call now');
    }
    const host = route.peer.address.includes(':') ? `[${route.peer.address}]` : route.peer.address;
    const domain = route.trunk?.host ?? host;
    const headers: [string, string][] = [['P-Asserted-Identity', `<sip:${input.from}@${domain}>`]];
    // STIR/SHAKEN (RFC 8224/8225/8588): A when the key owns the calling number, B for a known
    // customer's other numbers, else the configured default.
    const origTn = canonicalTn(input.from);
    const destTn = canonicalTn(input.to);
    if (this.stir && origTn && destTn) {
      const attest = attestationFor({ ownsNumber: ownedNumber || key.callerIds.includes(input.from), knownCustomer: true, override: key.attestation, defaultAttestation: this.opts.defaultAttestation });
      headers.push(['Identity', this.stir.identity({ attest, origTn, destTn: [destTn], iat: Math.floor(Date.now() / 1000), origid: randomUUID() })]);
      l.details.identity = { attest, x5u: this.stir.x5u };
    }
    l.leg = this.sip.uac.invite({
      peer: route.peer,
      requestUri: `sip:${input.to}@${host}:${route.peer.port}${route.peer.protocol === 'udp' ? '' : `;transport=${route.peer.protocol}`}`,
      fromUser: input.from,
      toUser: input.to,
      domain,
      sdp: Buffer.from(l.offer.sdp),
      headers,
      credentials: route.credentials,
      events: {
        onProgress: (status) => {
          if (status === 180 || status === 183) {
            l.progress = 'ringing';
            void this.records.update(callSid, { details: { ...l.details, trunk: l.trunkId ?? 'test-sink', progress: 'ringing' } });
          }
        },
        onAnswer: (sdp) => void this.onAnswer(l, sdp),
        onEnd: (end) => this.onLegEnd(l, end),
      },
    });
    void this.records.update(callSid, { details: { trunk: l.trunkId ?? 'test-sink', progress: 'trying', sipCallId: l.leg.callId } });
    l.timers.after(input.ringTimeoutSec * 1000, () => {
      if (l.progress === 'trying' || l.progress === 'ringing') this.end(l, 'no-answer', 'gateway');
    });
    this.log.info({ callSid, keyId: key.id, to: input.to, trunk: l.trunkId ?? 'test-sink' }, 'outbound call placed');
    this.gw.webhooks.notify('call.started', key.id, { callId: callSid, direction: 'outbound', from: input.from, to: input.to, trunk: l.trunkId ?? 'test-sink' });
    return { callSid, progress: l.progress, maxDurationSec: grant.maxDurationSec, trunk: l.trunkId ?? 'test-sink' };
  }

  private async onAnswer(l: Live, sdp: Buffer): Promise<void> {
    if (l.done || !l.offer) return;
    const neg = parseAnswer(sdp, l.offer);
    if (isAnswerError(neg)) {
      l.details.sdp = neg.reason;
      this.end(l, 'sdp-not-acceptable', 'gateway');
      return;
    }
    l.progress = 'answered';
    l.answeredAt = Date.now();
    const app: MediaApp = l.input.target === 'agent' ? 'agent' : l.input.target;
    let spec: MediaSpec = toSpec(neg, app === 'agent' ? 'echo' : app, undefined);
    void this.records.update(l.callSid, { status: 'answered', answeredAt: toIso(l.answeredAt), details: { ...l.details, trunk: l.trunkId ?? 'test-sink', progress: 'answered' } });
    this.gw.webhooks.notify('call.answered', l.keyId, { callId: l.callSid, direction: 'outbound', from: l.input.from, to: l.input.to });
    const maxMs = l.grant.maxDurationSec * 1000;
    l.timers.after(maxMs, () => this.end(l, l.grant.limitedBy === 'budget' ? 'budget-exhausted' : 'max-duration', 'policy'));
    // Keep the concurrency lease alive for long calls.
    const renewEvery = Math.max(1000, (this.opts.leaseTtlSec * 1000) / 3);
    l.timers.every(renewEvery, () => void this.gw.policy.renew(l.grant).catch(() => false));
    if (app === 'agent') {
      const agent = l.input.agent ?? { url: null, protocol: 'twilio' as const, sampleRate: 0 as const, parameters: {} };
      const routeOf: AgentRoute = { url: agent.url ?? null, webhookUrl: null, protocol: agent.protocol, sampleRate: agent.sampleRate, parameters: { ...agent.parameters, ...l.input.parameters }, fallback: '480' };
      const info: BridgeCall = {
        mediaId: l.callSid,
        callSid: l.callSid,
        keyId: l.keyId,
        from: l.input.from,
        to: l.input.to,
        direction: 'outbound',
        target: 'agent',
        route: routeOf,
        verstat: 'No-TN-Validation',
        agentHangup: (how) => {
          l.details.agentHangup = how;
          this.end(l, 'agent-hangup', 'agent');
        },
      };
      const r = l.stream ? await l.stream.adopt(info) : await this.bridge.connect(info);
      if (l.done) return;
      if (!r.ok) {
        l.details.agentError = r.reason;
        this.end(l, 'agent-unavailable', 'gateway');
        return;
      }
      spec = { ...spec, app: 'agent', agent: { encoding: r.format.encoding, sampleRate: r.format.sampleRate, maxQueueMs: this.opts.maxQueueMs } };
      const warnMs = this.opts.warningBeforeEndSec * 1000;
      if (warnMs > 0) l.timers.after(Math.max(0, maxMs - warnMs), () => this.bridge.warn(l.callSid, l.grant.limitedBy === 'budget' ? 'budget' : 'max-duration', Math.min(warnMs, maxMs)));
    }
    this.media.configure(l.callSid, spec);
  }

  /** Ends a live call from our side (API, policy, agent). */
  end(l: Live, reason: string, by: CallEndedBy): void {
    if (l.done) return;
    l.ending ??= { reason, by };
    if (l.leg && l.leg.state !== 'ended') l.leg.end();
    else this.finish(l, l.ending, 0);
  }

  /** Hang-up by API: false when there is no such live call of this key. */
  hangup(callSid: string, keyId: string, by: CallEndedBy = 'agent'): boolean {
    const l = this.live.get(callSid);
    if (!l || l.keyId !== keyId) return false;
    this.end(l, by === 'agent' ? 'agent-hangup' : 'api-hangup', by);
    return true;
  }

  private onLegEnd(l: Live, end: OutboundEnd): void {
    const seconds = l.answeredAt ? (Date.now() - l.answeredAt) / 1000 : 0;
    let outcome: { reason: string; by: CallEndedBy };
    switch (end.kind) {
      case 'rejected':
        outcome = { reason: rejectionReason(end.status), by: 'callee' };
        l.details.sipStatus = end.status;
        break;
      case 'timeout':
        outcome = { reason: 'no-answer', by: 'gateway' };
        break;
      case 'transport-error':
        outcome = { reason: 'trunk-unreachable', by: 'gateway' };
        break;
      case 'remote-bye':
        outcome = { reason: 'remote-bye', by: 'callee' };
        break;
      case 'cancelled':
      case 'local-bye':
        outcome = l.ending ?? { reason: 'local-hangup', by: 'gateway' };
        break;
    }
    this.finish(l, l.ending && (end.kind === 'cancelled' || end.kind === 'local-bye' || end.kind === 'rejected') ? l.ending : outcome, seconds);
  }

  private finish(l: Live, outcome: { reason: string; by: CallEndedBy }, seconds: number): void {
    if (l.done) return;
    l.done = true;
    l.progress = 'ended';
    this.live.delete(l.callSid);
    l.timers.clear();
    this.bridge.ended(l.callSid, outcome.reason);
    if (l.stream && !l.answeredAt) l.stream.notAnswered(outcome.reason);
    const closing = this.media.close(l.callSid);
    const settle = l.answeredAt ? this.gw.policy.complete(l.grant, seconds) : this.gw.policy.release(l.grant).then(() => ({ cost: 0 }));
    const write = Promise.all([closing.catch(() => null), settle.catch((err: unknown) => {
      this.log.error({ err, callSid: l.callSid }, 'could not settle an outbound call');
      return { cost: 0 };
    })]).then(([, settled]) =>
      this.records.update(l.callSid, {
        status: l.answeredAt ? 'ended' : 'failed',
        endedAt: toIso(Date.now()),
        endReason: outcome.reason,
        endedBy: outcome.by,
        billableSeconds: Math.round(seconds * 1000) / 1000,
        details: { ...l.details, trunk: l.trunkId ?? 'test-sink', progress: 'ended', cost: settled.cost },
      }),
    );
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
    this.log.info({ callSid: l.callSid, reason: outcome.reason, by: outcome.by, seconds: Math.round(seconds * 10) / 10 }, 'outbound call ended');
    this.gw.webhooks.notify('call.ended', l.keyId, { callId: l.callSid, direction: 'outbound', from: l.input.from, to: l.input.to, status: l.answeredAt ? 'ended' : 'failed', endReason: outcome.reason, endedBy: outcome.by, billableSeconds: Math.round(seconds * 1000) / 1000 });
  }

  /** Ends every live call (shutdown). */
  close(): void {
    for (const l of [...this.live.values()]) {
      this.end(l, 'shutdown', 'gateway');
      // A ringing call's CANCEL may never be answered now: complete its record anyway.
      this.finish(l, { reason: 'shutdown', by: 'gateway' }, l.answeredAt ? (Date.now() - l.answeredAt) / 1000 : 0);
    }
  }

  /** Waits for every ended call's settlement and record (before the store closes). */
  async flush(): Promise<void> {
    while (this.writes.size) await Promise.allSettled([...this.writes]);
  }
}
