import { randomInt } from 'node:crypto';
import type { Logger } from 'pino';
import type { CallHandler, InboundInvite, InboundLeg, LegEnd, OfferResult } from '../sip/sip-server.js';
import type { CallDenyCode } from '../sip/call-policy.js';
import type { MediaEngine } from '../media/media-engine.js';
import type { Codec, MediaApp, MediaSpec, SrtpSuite } from '../media/media-protocol.js';
import { buildAnswer, isParseError, isRejection, negotiate, parseOffer } from '../sdp/index.js';
import type { AgentBridge } from '../agents/agent-bridge.js';
import { newCallSid } from '../agents/ids.js';
import type { KeyService } from '../keys/key-service.js';
import type { DenyCode, PolicyEngine } from '../policy/policy-engine.js';
import { keyPrincipal } from '../policy/principal.js';
import type { StirFailure, StirVerifier, Verstat } from '../stir/index.js';
import { identityRefusal } from './identity-refusal.js';
import type { NumberRecord } from '../store/store.js';
import type { Call, EndReason } from './call.js';
import type { CallRegistry } from './call-registry.js';
import { normaliseDialled, type NumberService } from './number-service.js';
import { toSpec, type MediaTrust } from './media-spec.js';
import { RateLimitedLog } from '../observability/rate-limited-log.js';

/** Every policy refusal is a SIP refusal: the compiler checks DenyCode ⊆ CallDenyCode here. */
const asCallDeny = (code: DenyCode): CallDenyCode => code;

/** Queues a signed webhook (WebhookService.notify): never waits, never throws. */
export type InboundNotify = (type: 'limit.exceeded' | 'identity.failed', keyId: string, data: Record<string, unknown>) => void;

export interface InboundCallsDeps {
  readonly keys: Pick<KeyService, 'getCurrent'>;
  readonly policy: Pick<PolicyEngine, 'authorize' | 'release'>;
  readonly numbers: Pick<NumberService, 'lookup'>;
  readonly registry: CallRegistry;
  readonly media: Pick<MediaEngine, 'open' | 'configure'>;
  readonly bridge: Pick<AgentBridge, 'connect' | 'start' | 'warn'> | null;
  /** Verifies inbound Identity headers (null: none is checked, verstat No-TN-Validation). */
  readonly stir: { readonly verifier: StirVerifier; readonly rejectFailed: boolean } | null;
  readonly notify: InboundNotify;
  readonly log: Logger;
}

export interface InboundCallsOptions {
  readonly codecs: readonly Codec[];
  /** SDES suites we accept (the offerer's first supported line wins). */
  readonly suites: readonly SrtpSuite[];
  /**
   * media.sendBeforeLatch: 'signalling' (default) sends to the caller's SDP address before its
   * first RTP only when that is the address its INVITE came from; 'always' trusts the SDP (for
   * carriers whose media and signalling addresses differ and which wait for our RTP first).
   */
  readonly sendBeforeLatch: 'signalling' | 'always';
  readonly agents: {
    readonly maxQueueMs: number;
    readonly onAgentClose: 'hangup' | 'tone';
    readonly closeToneMs: number;
    readonly fallbackToneMs: number;
    readonly warningBeforeEndSec: number;
    /**
     * What the caller hears while the agent is being reached (agents.progress): 'ringing' sends
     * 180 Ringing (default), 'ringback' sends 183 with the SDP answer and plays the ringing tone
     * as early media, 'none' sends nothing until the answer.
     */
    readonly progress: 'ringing' | 'ringback' | 'none';
  };
}

/** The media side of a live inbound call. */
interface InboundMedia {
  readonly local: { readonly address: string; readonly port: number; readonly sessionId: number };
  sessionVersion: number;
  localKey: { suite: SrtpSuite; keySalt: Buffer } | null;
  srtp: 'required' | 'optional' | 'off';
  /** Who may receive media before the caller's first packet (media/rtp-latch.ts). */
  readonly trust: MediaTrust;
  app: MediaApp;
  agent: MediaSpec['agent'];
  spec: MediaSpec | null;
}

/** A leg's end, as the call's end reason and who ended it. */
const LEG_END: Readonly<Record<LegEnd, readonly [EndReason, 'caller' | 'gateway']>> = {
  'remote-bye': ['remote-bye', 'caller'],
  cancelled: ['cancelled', 'caller'],
  'ack-timeout': ['ack-timeout', 'gateway'],
  'transport-error': ['transport-error', 'gateway'],
  shutdown: ['shutdown', 'gateway'],
};

/** What a caller is told when we end a call before answering it. */
function refusalFor(reason: EndReason): CallDenyCode {
  switch (reason) {
    case 'key-revoked':
      return 'KEY_REVOKED';
    case 'key-quarantined':
      return 'KEY_QUARANTINED';
    case 'key-expired':
      return 'KEY_EXPIRED';
    case 'key-policy-changed':
      return 'SCOPE_NOT_GRANTED';
    case 'shutdown':
      return 'DRAINING';
    default:
      return 'TEMPORARILY_UNAVAILABLE';
  }
}

/**
 * Inbound calls (carrier → tollgate): the SIP layer's CallHandler. For each authenticated
 * INVITE it asks the policy (calls:inbound, source, TLS, CPS, concurrency, budget) under a call
 * id of its own, checks the dialled number belongs to the key, and from then on a Call owns
 * everything: the record, STIR/SHAKEN verification, a media session (SDP answer with SDES-SRTP),
 * the number's agent (dialled or attached while the caller hears ringing), the answer, and every
 * way the call can end.
 */
export class InboundCalls implements CallHandler {
  private readonly mediaOf = new Map<string, InboundMedia>();
  /** Refusals that repeat per call under load (no media port): a sample of them, without stacks. */
  private readonly quietLog: RateLimitedLog;

  constructor(
    private readonly deps: InboundCallsDeps,
    private readonly opts: InboundCallsOptions,
  ) {
    this.quietLog = new RateLimitedLog(deps.log, { intervalMs: 10_000, burst: 5 });
  }

  async invite(inv: InboundInvite, leg: InboundLeg): Promise<void> {
    const { deps } = this;
    if (deps.registry.draining) return leg.refuse('DRAINING', 'shutting down');
    const key = await deps.keys.getCurrent(inv.keyId);
    if (!key) return leg.refuse('KEY_REVOKED', 'the key no longer exists');
    const id = newCallSid();
    const destination = normaliseDialled(inv.dialled);
    const verdict = await deps.policy.authorize({
      principal: keyPrincipal(key),
      action: 'call.inbound',
      scope: 'calls:inbound',
      sourceIp: inv.sourceIp,
      transport: inv.transport,
      callId: id,
      // Inbound calls are priced on the dialled number (the key's own DID).
      destination,
    });
    if (!verdict.ok) {
      if (verdict.code === 'RATE_LIMITED' || verdict.code === 'CONCURRENCY_LIMITED' || verdict.code === 'BUDGET_EXHAUSTED') {
        deps.notify('limit.exceeded', key.id, { limit: verdict.code, action: 'call.inbound', to: inv.dialled, message: verdict.message });
      }
      return leg.refuse(asCallDeny(verdict.code), verdict.message, verdict.retryAfterMs);
    }
    const grant = verdict.grant!;
    let number: NumberRecord | null;
    try {
      number = await deps.numbers.lookup(destination);
    } catch (err) {
      await deps.policy.release(grant);
      throw err;
    }
    // A number of another key answers like an unknown one: numbers cannot be enumerated.
    if (!number || number.keyId !== key.id || leg.state !== 'early') {
      await deps.policy.release(grant);
      if (leg.state === 'early') await leg.refuse('NUMBER_NOT_FOUND', 'no such number for this trunk');
      return;
    }

    // From here a Call owns the lease and the reservation, and end() gives them back.
    const call = deps.registry.create({ id, keyId: key.id, direction: 'inbound', from: inv.from, to: inv.dialled, target: number.target, grant, startedAt: inv.receivedAt });
    call.sipCallId = inv.sipCallId;
    leg.bind({
      ended: (r) => call.end(LEG_END[r][0], LEG_END[r][1]),
      reoffer: (sdp) => Promise.resolve(this.reoffer(call, sdp)),
    });
    call.attachLeg({ hangup: (reason) => (leg.state === 'early' ? void leg.refuse(refusalFor(reason), reason) : leg.hangup()) });
    call.whenEnded(() => this.mediaOf.delete(call.id));
    const fail = (code: CallDenyCode | 'SDP_NOT_ACCEPTABLE', message: string, reason: EndReason): void => {
      void leg.refuse(code, message);
      call.end(reason, 'gateway');
    };

    if (!(await call.startRecord({ sipCallId: inv.sipCallId }))) return fail('RECORD_UNAVAILABLE', 'call records are unavailable', 'record-unavailable');
    if (call.ended) return;
    // STIR/SHAKEN: verify the caller's Identity header (RFC 8224); the result goes to the agent and the record.
    const verstat = await this.verifyIdentity(call, inv);
    if (call.ended) return;
    call.announceStarted();
    if (typeof verstat === 'object') return fail(identityRefusal(verstat.rejected), 'the Identity header failed verification', 'identity-invalid');
    if (!inv.sdp) return fail('SDP_NOT_ACCEPTABLE', 'an SDP offer in the INVITE is required', 'sdp-not-acceptable');

    let local: { address: string; port: number } | null;
    try {
      local = await call.openMedia((callId) => deps.media.open(callId));
    } catch (err) {
      // Port exhaustion is a load condition, refused 480 per call: counted in
      // tollgate_sip_calls_total{outcome="MEDIA_UNAVAILABLE"}, logged as a sample.
      this.quietLog.write('warn', 'no-media-port', { err: (err as Error).message, callId: id }, 'no media port for the call');
      return fail('MEDIA_UNAVAILABLE', 'no media capacity', 'media-unavailable');
    }
    if (!local) return;
    const m: InboundMedia = {
      local: { ...local, sessionId: randomInt(1, 2 ** 31) },
      sessionVersion: 0,
      localKey: null,
      srtp: key.requireTls ? 'required' : number.srtp,
      // The caller names its media address in its SDP: until its own packets arrive, media goes
      // there only when it is the address the INVITE came from (media.sendBeforeLatch).
      trust: { signallingAddress: inv.sourceIp, trustSdp: this.opts.sendBeforeLatch === 'always' },
      app: number.target === 'tone' ? 'tone' : number.target === 'echo' ? 'echo' : 'agent',
      agent: undefined,
      spec: null,
    };
    this.mediaOf.set(id, m);
    const answer = this.negotiate(m, inv.sdp);
    if (!answer.ok) {
      call.details.sdp = answer.reason;
      return fail('SDP_NOT_ACCEPTABLE', answer.reason, 'sdp-not-acceptable');
    }
    let fallbackTone = false;
    if (m.app === 'agent') {
      const outcome = await this.bringAgent(call, leg, m, number, answer, verstat);
      if (outcome === 'failed' || call.ended) return;
      fallbackTone = outcome === 'fallback-tone';
    }
    m.spec = { ...answer.spec, app: m.app, ...(m.agent ? { agent: m.agent } : {}) };
    deps.media.configure(id, m.spec);
    if (!(await leg.answer(Buffer.from(answer.sdp)))) return; // the leg reported why (ended, 2xx not sent)
    if (!call.answered()) return;
    this.afterAnswer(call, m, fallbackTone);
  }

  /**
   * Verifies the INVITE's Identity headers, every one of them (StirVerifier.verifyAll: the best
   * SHAKEN result wins); `{ rejected }` with the deciding failure when none passed and
   * stir.verify.rejectFailed is on.
   */
  private async verifyIdentity(call: Call, inv: InboundInvite): Promise<Verstat | { rejected: StirFailure }> {
    const stir = this.deps.stir;
    if (!stir) {
      call.details.identity = { verstat: 'No-TN-Validation' };
      return 'No-TN-Validation';
    }
    const from = inv.assertedFrom ?? inv.from;
    const v = await stir.verifier.verifyAll({ identities: inv.identities, from, to: inv.dialled });
    call.details.identity = {
      verstat: v.verstat,
      ...(v.attest ? { attest: v.attest } : {}),
      ...(v.reason ? { reason: v.reason } : {}),
      ...(v.failure ? { failure: v.failure } : {}),
      // Which of several Identity headers decided (1 = the first).
      ...(v.examined !== undefined && v.examined > 1 ? { header: v.header, examined: v.examined } : {}),
    };
    if (v.verstat !== 'TN-Validation-Failed') return v.verstat;
    this.deps.log.info({ callId: call.id, reason: v.reason, failure: v.failure, header: v.header }, 'inbound Identity failed verification');
    this.deps.notify('identity.failed', call.keyId, { callId: call.id, from, to: inv.dialled, reason: v.reason, rejected: stir.rejectFailed });
    return stir.rejectFailed ? { rejected: v.failure ?? 'malformed' } : v.verstat;
  }

  /** Negotiates an offer against our options; the answer SDP and the spec, or a 488 reason. */
  private negotiate(m: InboundMedia, sdp: Buffer): { ok: true; sdp: string; spec: MediaSpec } | { ok: false; reason: string } {
    const offer = parseOffer(sdp);
    if (isParseError(offer)) return { ok: false, reason: offer.reason };
    const plan = negotiate(offer, { codecs: this.opts.codecs, srtp: m.srtp, suites: this.opts.suites, telephoneEvent: true, localKey: m.localKey });
    if (isRejection(plan)) return { ok: false, reason: plan.reason };
    m.sessionVersion++;
    m.localKey = plan.srtp ? { suite: plan.srtp.suite, keySalt: plan.srtp.localKeySalt } : null;
    const text = buildAnswer(plan, { address: m.local.address, port: m.local.port, sessionId: m.local.sessionId, sessionVersion: m.sessionVersion, username: 'tollgate' });
    return { ok: true, sdp: text, spec: toSpec(plan, m.app, m.agent, m.trust) };
  }

  /**
   * Brings the number's agent to the call while the caller hears ringing (agents.progress). A
   * CANCEL meanwhile ends the call, which aborts the dial or the attach wait: the agent hears
   * nothing, or a close before `start`. When the agent cannot be reached the number's fallback
   * applies: a tone then hang-up, or a 480/503 refusal.
   */
  private async bringAgent(call: Call, leg: InboundLeg, m: InboundMedia, number: NumberRecord, answer: { sdp: string; spec: MediaSpec }, verstat: Verstat): Promise<'connected' | 'fallback-tone' | 'failed'> {
    const { deps } = this;
    const progress = this.opts.agents.progress;
    if (progress === 'ringback') {
      deps.media.configure(call.id, { ...answer.spec, app: 'ringback' });
      await leg.ring(183, Buffer.from(answer.sdp));
    } else if (progress === 'ringing') await leg.ring(180);
    if (call.ended) return 'failed';
    call.ringing();
    const route = number.agent;
    const r = route && deps.bridge
      ? await deps.bridge.connect({
        callSid: call.id,
        keyId: call.keyId,
        from: call.from,
        to: call.to,
        direction: 'inbound',
        target: number.target === 'attach' ? 'attach' : 'agent',
        route,
        // A number's route was set with keys:admin: the operator's own agents and webhooks.
        routeTrust: 'operator',
        verstat,
        agentHangup: (how) => this.agentHangup(call, m, how),
      })
      : { ok: false as const, reason: 'the number has no agent route' };
    if (call.ended) return 'failed';
    if (r.ok) {
      m.agent = { encoding: r.format.encoding, sampleRate: r.format.sampleRate, maxQueueMs: this.opts.agents.maxQueueMs };
      return 'connected';
    }
    deps.log.warn({ callId: call.id, reason: r.reason }, 'agent unavailable');
    call.details.agentError = r.reason;
    const fallback = route?.fallback ?? '480';
    if (fallback === 'tone') {
      m.app = 'tone';
      return 'fallback-tone';
    }
    void leg.refuse(fallback === '503' ? 'AGENT_SERVICE_UNAVAILABLE' : 'AGENT_UNAVAILABLE', r.reason);
    call.end('agent-unavailable', 'gateway');
    return 'failed';
  }

  private afterAnswer(call: Call, m: InboundMedia, fallbackTone: boolean): void {
    const { deps } = this;
    const cfg = this.opts.agents;
    if (fallbackTone) call.timers.after(cfg.fallbackToneMs, () => call.end('agent-unavailable', 'gateway'));
    if (m.app !== 'agent' || !deps.bridge) return;
    const bridge = deps.bridge;
    bridge.start(call.id);
    const warnMs = cfg.warningBeforeEndSec * 1000;
    if (warnMs > 0) {
      const maxMs = call.grant.maxDurationSec * 1000;
      call.timers.after(Math.max(0, maxMs - warnMs), () => bridge.warn(call.id, call.grant.limitedBy === 'budget' ? 'budget' : 'max-duration', Math.min(warnMs, maxMs)));
    }
  }

  /** The agent hung up (message, REST, closed socket): end now, or after a tone if configured. */
  private agentHangup(call: Call, m: InboundMedia, how: string): void {
    call.details.agentHangup = how;
    const cfg = this.opts.agents;
    if (how === 'socket-closed' && cfg.onAgentClose === 'tone' && cfg.closeToneMs > 0 && m.spec && call.state === 'answered') {
      m.app = 'tone';
      m.spec = { ...m.spec, app: 'tone' };
      this.deps.media.configure(call.id, m.spec);
      call.timers.after(cfg.closeToneMs, () => call.end('agent-hangup', 'agent'));
      return;
    }
    call.end('agent-hangup', 'agent');
  }

  private reoffer(call: Call, sdp: Buffer): OfferResult {
    const m = this.mediaOf.get(call.id);
    if (!m?.spec || call.ended) return { ok: false, code: 'SDP_NOT_ACCEPTABLE', message: 'no media for this call' };
    const result = this.negotiate(m, sdp);
    if (!result.ok) return { ok: false, code: 'SDP_NOT_ACCEPTABLE', message: result.reason };
    m.spec = { ...result.spec, app: m.app, ...(m.agent ? { agent: m.agent } : {}) };
    this.deps.media.configure(call.id, m.spec);
    return { ok: true, sdp: Buffer.from(result.sdp) };
  }
}
