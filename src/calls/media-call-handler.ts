import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { CallHandler, EndReason, InboundCall, OfferResult } from '../sip/sip-server.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { AgentAudio, Codec, MediaApp, MediaSpec, SrtpSuite } from '../media/media-protocol.js';
import { buildAnswer, isParseError, isRejection, negotiate, parseOffer, type NegotiatedMedia } from '../sdp/index.js';
import type { AgentBridge } from '../agents/agent-bridge.js';
import { newCallSid } from '../agents/ids.js';
import type { InboundGrant } from './inbound-call-policy.js';
import { endedBy, type CallRecords } from './call-records.js';
import { CallTimers } from './call-timers.js';
import type { StirVerifier, Verstat } from '../stir/index.js';
import { settlementOf } from '../policy/policy-engine.js';
import { toIso } from '../util/time.js';

/** Queues a signed webhook (WebhookService.notify): never waits, never throws. */
export type NotifyFn = (type: 'call.started' | 'call.answered' | 'call.ended' | 'identity.failed', keyId: string, data: Record<string, unknown>) => void;

export interface MediaCallHandlerOptions {
  notify?: NotifyFn;
  /** Verifies inbound Identity headers (null: none is checked, verstat No-TN-Validation). */
  stir?: { verifier: StirVerifier; rejectFailed: boolean } | null;
  codecs: readonly Codec[];
  /** SDES suites we accept (the offerer's first supported line wins). */
  suites: readonly SrtpSuite[];
  agents: {
    readonly maxQueueMs: number;
    readonly onAgentClose: 'hangup' | 'tone';
    readonly closeToneMs: number;
    readonly fallbackToneMs: number;
    readonly warningBeforeEndSec: number;
  };
}

interface Live {
  readonly call: InboundCall<InboundGrant>;
  readonly callSid: string;
  readonly local: { address: string; port: number; sessionId: number };
  sessionVersion: number;
  localKey: { suite: SrtpSuite; keySalt: Buffer } | null;
  app: MediaApp;
  agent: AgentAudio | undefined;
  spec: MediaSpec | null;
  /** Set when the call fails before it is answered: the CDR's end reason. */
  failReason: string | null;
  /** The agent could not be reached and the caller hears the fallback tone. */
  fallbackTone: boolean;
  readonly details: Record<string, unknown>;
  readonly timers: CallTimers;
  readonly verstat: Verstat;
}

/** The media worker's view of a negotiated stream. */
export function toSpec(m: NegotiatedMedia, app: MediaApp, agent: AgentAudio | undefined): MediaSpec {
  return {
    app,
    codec: m.codec,
    payloadType: m.payloadType,
    telephoneEventPt: m.telephoneEvent?.payloadType ?? null,
    ptimeMs: m.ptime,
    remote: { address: m.remote.address, port: m.remote.port, rtcpPort: m.remote.rtcpPort },
    rtcpMux: m.rtcpMux,
    srtp: m.srtp
      ? { send: { suite: m.srtp.suite, keySalt: m.srtp.localKeySalt.toString('base64') }, recv: { suite: m.srtp.suite, keySalt: m.srtp.remoteKeySalt.toString('base64') } }
      : null,
    direction: m.direction,
    ...(agent ? { agent } : {}),
  };
}

/**
 * Joins the SIP side of a call to its media and its application: answers the caller's SDP
 * (src/sdp: RFC 3264 with SDES-SRTP) with a port pair on a media worker, brings the number's
 * agent to the call (agent and attach targets) or runs echo/tone, keeps the call's record (CDR)
 * from the INVITE to the end, and releases everything when the call ends. Media timeouts and
 * worker crashes come back as hang-ups.
 */
export class MediaCallHandler implements CallHandler<InboundGrant> {
  private readonly live = new Map<string, Live>();
  /** Record completions in flight (awaited by flush before the store closes). */
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly media: MediaEngine,
    private readonly records: CallRecords,
    private readonly bridge: AgentBridge | null,
    private readonly opts: MediaCallHandlerOptions,
    private readonly log: Logger,
  ) {}

  get activeCalls(): number {
    return this.live.size;
  }


  /** A media worker reported no RTP for the timeout: hang up. */
  onMediaTimeout(callId: string): void {
    const l = this.live.get(callId);
    if (l) void l.call.hangup('media-timeout');
  }

  /** A media worker died: its calls are over (BYE, CDR), other workers' calls go on. */
  onMediaLost(callIds: readonly string[]): void {
    for (const id of callIds) {
      const l = this.live.get(id);
      if (l) void l.call.hangup('media-lost');
    }
  }

  /** Negotiates an offer against our options; the answer SDP and the spec, or a 488 reason. */
  private answer(l: Live, sdp: Buffer): { ok: true; sdp: string; spec: MediaSpec } | { ok: false; reason: string } {
    const offer = parseOffer(sdp);
    if (isParseError(offer)) return { ok: false, reason: offer.reason };
    const plan = negotiate(offer, {
      codecs: this.opts.codecs,
      srtp: l.call.grant.srtp,
      suites: this.opts.suites,
      telephoneEvent: true,
      localKey: l.localKey,
    });
    if (isRejection(plan)) return { ok: false, reason: plan.reason };
    l.sessionVersion++;
    l.localKey = plan.srtp ? { suite: plan.srtp.suite, keySalt: plan.srtp.localKeySalt } : null;
    const text = buildAnswer(plan, { address: l.local.address, port: l.local.port, sessionId: l.local.sessionId, sessionVersion: l.sessionVersion, username: 'tollgate' });
    return { ok: true, sdp: text, spec: toSpec(plan, l.app, l.agent) };
  }

  async offer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    const callSid = newCallSid();
    const recorded = await this.records.start({
      id: callSid,
      keyId: call.keyId,
      direction: 'inbound',
      from: call.from,
      to: call.dialled,
      target: call.target,
      sipCallId: call.id,
      status: 'ringing',
      startedAt: toIso(call.receivedAt),
      answeredAt: null,
      endedAt: null,
      endReason: null,
      endedBy: null,
      billableSeconds: 0,
      details: {},
    });
    if (!recorded) return { ok: false, code: 'RECORD_UNAVAILABLE', message: 'call records are unavailable' };
    // STIR/SHAKEN: verify the caller's Identity header (RFC 8224); the result goes to the agent and the CDR.
    let verstat: Verstat = 'No-TN-Validation';
    const identity: Record<string, unknown> = {};
    if (this.opts.stir) {
      const v = await this.opts.stir.verifier.verify({ identity: call.identity, from: call.assertedFrom ?? call.from, to: call.dialled });
      verstat = v.verstat;
      Object.assign(identity, { verstat: v.verstat, ...(v.attest ? { attest: v.attest } : {}), ...(v.reason ? { reason: v.reason } : {}) });
      if (v.verstat === 'TN-Validation-Failed') {
        this.log.info({ callId: call.id, callSid, reason: v.reason }, 'inbound Identity failed verification');
        this.opts.notify?.('identity.failed', call.keyId, { callId: callSid, from: call.assertedFrom ?? call.from, to: call.dialled, reason: v.reason, rejected: this.opts.stir.rejectFailed });
        if (this.opts.stir.rejectFailed) {
          await this.records.update(callSid, { status: 'failed', endedAt: toIso(Date.now()), endReason: 'identity-invalid', endedBy: 'gateway', details: { identity } });
          return { ok: false, code: 'IDENTITY_INVALID', message: v.reason ?? 'the Identity header failed verification' };
        }
      }
    }
    let local: { address: string; port: number };
    try {
      local = await this.media.open(call.id);
    } catch (err) {
      this.log.error({ err, callId: call.id }, 'no media port for the call');
      await this.records.update(callSid, { status: 'failed', endedAt: toIso(Date.now()), endReason: 'media-unavailable', endedBy: 'gateway' });
      return { ok: false, code: 'MEDIA_UNAVAILABLE', message: 'no media capacity' };
    }
    const app: MediaApp = call.target === 'tone' ? 'tone' : call.target === 'echo' ? 'echo' : 'agent';
    const l: Live = {
      call,
      callSid,
      local: { ...local, sessionId: randomInt(1, 2 ** 31) },
      sessionVersion: 0,
      localKey: null,
      app,
      agent: undefined,
      spec: null,
      failReason: null,
      fallbackTone: false,
      details: { identity },
      timers: new CallTimers(),
      verstat,
    };
    // From here on ended() completes the record, whatever happens.
    this.live.set(call.id, l);
    this.opts.notify?.('call.started', call.keyId, { callId: callSid, direction: 'inbound', from: call.from, to: call.dialled, target: call.target, identity: verstat });
    const result = this.answer(l, sdp);
    if (!result.ok) {
      l.failReason = 'sdp-not-acceptable';
      l.details.sdp = result.reason;
      return { ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason };
    }
    let spec = result.spec;
    if (app === 'agent') {
      const refused = await this.connectAgent(l);
      if (refused) return refused;
      spec = { ...spec, app: l.app, ...(l.agent ? { agent: l.agent } : {}) };
    }
    l.spec = spec;
    this.media.configure(call.id, spec);
    return { ok: true, sdp: Buffer.from(result.sdp) };
  }

  /** Brings the number's agent to the call; a refusal when the caller must be turned away. */
  private async connectAgent(l: Live): Promise<OfferResult | null> {
    const { call } = l;
    const route = call.grant.number.agent;
    const target = call.target === 'attach' ? 'attach' : 'agent';
    const r = route && this.bridge
      ? await this.bridge.connect({
        mediaId: call.id,
        callSid: l.callSid,
        keyId: call.keyId,
        from: call.from,
        to: call.dialled,
        direction: 'inbound',
        target,
        route,
        verstat: l.verstat,
        agentHangup: (how) => this.agentHangup(l, how),
      })
      : { ok: false as const, reason: 'the number has no agent route' };
    if (r.ok) {
      l.agent = { encoding: r.format.encoding, sampleRate: r.format.sampleRate, maxQueueMs: this.opts.agents.maxQueueMs };
      return null;
    }
    this.log.warn({ callId: call.id, callSid: l.callSid, reason: r.reason }, 'agent unavailable');
    l.details.agentError = r.reason;
    const fallback = route?.fallback ?? '480';
    if (fallback === 'tone') {
      l.app = 'tone';
      l.fallbackTone = true;
      return null;
    }
    l.failReason = 'agent-unavailable';
    return { ok: false, code: fallback === '503' ? 'AGENT_SERVICE_UNAVAILABLE' : 'AGENT_UNAVAILABLE', message: r.reason };
  }

  /** The agent hung up (message, REST, closed socket): BYE now, or after a tone if configured. */
  private agentHangup(l: Live, how: string): void {
    l.details.agentHangup = how;
    const cfg = this.opts.agents;
    if (how === 'socket-closed' && cfg.onAgentClose === 'tone' && cfg.closeToneMs > 0 && l.spec) {
      l.app = 'tone';
      l.spec = { ...l.spec, app: 'tone' };
      this.media.configure(l.call.id, l.spec);
      l.timers.after(cfg.closeToneMs, () => void l.call.hangup('agent-hangup'));
      return;
    }
    void l.call.hangup('agent-hangup');
  }

  answered(call: InboundCall<InboundGrant>): void {
    const l = this.live.get(call.id);
    if (!l) return;
    void this.records.update(l.callSid, { status: 'answered', answeredAt: toIso(call.answeredAt ?? Date.now()) });
    this.opts.notify?.('call.answered', call.keyId, { callId: l.callSid, direction: 'inbound', from: call.from, to: call.dialled });
    if (l.fallbackTone) l.timers.after(this.opts.agents.fallbackToneMs, () => void call.hangup('agent-unavailable'));
    const warnMs = this.opts.agents.warningBeforeEndSec * 1000;
    if (l.app === 'agent' && warnMs > 0 && this.bridge) {
      const bridge = this.bridge;
      const at = Math.max(0, call.maxDurationSec * 1000 - warnMs);
      l.timers.after(at, () => bridge.warn(call.id, call.limitedBy === 'budget' ? 'budget' : 'max-duration', Math.min(warnMs, call.maxDurationSec * 1000)));
    }
  }

  reoffer(call: InboundCall<InboundGrant>, sdp: Buffer): Promise<OfferResult> {
    const l = this.live.get(call.id);
    if (!l?.spec) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: 'no media for this call' });
    const result = this.answer(l, sdp);
    if (!result.ok) return Promise.resolve({ ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason });
    l.spec = result.spec;
    this.media.configure(call.id, result.spec);
    return Promise.resolve({ ok: true, sdp: Buffer.from(result.sdp) });
  }

  ended(call: InboundCall<InboundGrant>, reason: EndReason): void {
    const l = this.live.get(call.id);
    this.live.delete(call.id);
    this.bridge?.ended(call.id, reason);
    const closing = this.media.close(call.id);
    if (!l) return;
    l.timers.clear();
    const endedAt = call.endedAt ?? Date.now();
    const billable = call.answeredAt ? Math.max(0, endedAt - call.answeredAt) / 1000 : 0;
    const endReason = reason === 'refused' && l.failReason ? l.failReason : reason;
    // The same price the policy engine settles at (rate, increments, connection fee; never past the grant).
    const grant = call.grant.policy;
    l.details.cost = call.answeredAt ? settlementOf(grant, billable).cost : 0;
    l.details.rate = { prefix: grant.rate.prefix, perMinute: grant.rate.ratePerMinute, increment: `${grant.rate.increment.first}/${grant.rate.increment.next}` };
    const patch = {
      status: call.answeredAt ? ('ended' as const) : ('failed' as const),
      endedAt: toIso(endedAt),
      endReason,
      endedBy: endReason === 'agent-unavailable' ? ('gateway' as const) : endedBy(reason),
      billableSeconds: Math.round(billable * 1000) / 1000,
      details: l.details,
    };
    this.opts.notify?.('call.ended', call.keyId, { callId: l.callSid, direction: 'inbound', from: call.from, to: call.dialled, ...patch, details: undefined });
    const write = closing
      .then((stats) => {
        if (!stats) return;
        this.log.info({ callId: call.id, callSid: l.callSid, reason, media: stats }, 'call media closed');
        l.details.media = { packetsIn: stats.packetsIn, packetsOut: stats.packetsOut, lost: stats.lost, late: stats.late, authFailures: stats.authFailures };
      })
      .catch(() => undefined)
      .then(() => this.records.update(l.callSid, { ...patch, details: l.details }));
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  /** Waits for every ended call's record to be written (before the store closes). */
  async flush(): Promise<void> {
    while (this.writes.size) await Promise.all([...this.writes]);
  }
}
